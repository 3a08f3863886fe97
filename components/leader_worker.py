"""LeaderWorkerSet (leaderworkerset.x-k8s.io/v1, kubernetes-sigs/lws v0.10.0): one multi-node vLLM replica.

The LeaderWorkerSet controller makes a leader StatefulSet `<name>` (pod `<name>-0`) and a worker StatefulSet `<name>-0`
(pods `<name>-0-1` .. `<name>-0-<size-1>`), and a headless Service `<name>` (subdomainPolicy Shared) that publishes
not-ready addresses. Its webhook puts LWS_LEADER_ADDRESS (`<name>-0.<name>.<namespace>`), LWS_GROUP_SIZE and
LWS_WORKER_INDEX (0 on the leader) first in every container's environment (pkg/utils/pod/pod_utils.go AddLWSVariables),
so the container args may refer to them as `$(VAR)`.

- startupPolicy `LeaderCreated`: the workers start with the leader. `LeaderReady` would wait for a leader that can only be
  Ready once the workers have joined it.
- restartPolicy `RecreateGroupOnPodRestart`: a rank that restarts cannot rejoin a running group; the group starts over.
- One group per object (replicas 1): each replica's ranks are pinned to the nodes the plan chose for it.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apiextensions import CustomResource

from components.labels import meta
from stacks.edge import GROUP_LABEL, ROLE_LABEL

__all__ = ["GROUP_LABEL", "ROLE_LABEL", "leader_worker_set"]

API_VERSION = "leaderworkerset.x-k8s.io/v1"
KIND = "LeaderWorkerSet"
LWS_LEADER_ADDRESS = "LWS_LEADER_ADDRESS"
LWS_WORKER_INDEX = "LWS_WORKER_INDEX"


def leader_worker_set(resource_name: str, name: str, namespace: str, obj_labels: dict[str, str], annotations: dict[str, str],
                      size: int, leader: k8s.core.v1.PodTemplateSpecArgs, worker: k8s.core.v1.PodTemplateSpecArgs,
                      opts: pulumi.ResourceOptions) -> CustomResource:
    return CustomResource(
        resource_name,
        api_version=API_VERSION,
        kind=KIND,
        # Pulumi waits for custom resources only when told what to wait for (pulumi-kubernetes 4.18+): the group is
        # Available once every rank is ready and up to date (lws leaderworkerset_controller.go), within the custom timeouts.
        metadata=meta(name, namespace, obj_labels, {**annotations, "pulumi.com/waitFor": "condition=Available"}),
        spec={
            "replicas": 1,
            "startupPolicy": "LeaderCreated",
            "networkConfig": {"subdomainPolicy": "Shared"},
            # One group: replace it whole (the only rollout LWS has; a group cannot mix two templates' ranks).
            "rolloutStrategy": {"type": "RollingUpdate", "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0}},
            "leaderWorkerTemplate": {
                "size": size,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": leader,
                "workerTemplate": worker,
            },
        },
        opts=opts,
    )
