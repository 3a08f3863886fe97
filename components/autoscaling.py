"""Autoscalers within the plan: a KEDA ScaledObject per reserved vLLM replica.

The plan places every replica up to `autoscale.maxReplicas` on its own GPUs and counts them (printed
as reserved). A reserved replica is a Deployment with 0 pods; its ScaledObject (KEDA 2.x, `keda.sh/v1alpha1`)
starts its one pod, on the GPUs reserved for it, when the model's requests in flight (vLLM's
`vllm:num_requests_running` + `vllm:num_requests_waiting`, from Prometheus) pass (replicas + k - 1) x
`requestsPerReplica`, k being its place among the reserved replicas, and stops it once demand stays below
that for the cooldown: the model's start-up budget, so a replica that takes minutes to load is not stopped
and started again on every lull.
"""

from __future__ import annotations

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource

from components.labels import labels, meta

POLLING_SECONDS = 15


def scaled_object_spec(deployment: str, query: str, prometheus_url: str, per_replica: int, carried_by: int, cooldown_seconds: int
                       ) -> dict[str, object]:
    """`carried_by`: the replicas that carry the load before this one starts (the running ones and earlier reserved ones)."""
    return {
        "scaleTargetRef": {"name": deployment},
        "minReplicaCount": 0,
        "maxReplicaCount": 1,  # the replica's own pod, on its reserved GPUs; more pods would have no room
        "pollingInterval": POLLING_SECONDS,
        "cooldownPeriod": cooldown_seconds,
        "triggers": [{
            "type": "prometheus",
            "metadata": {
                "serverAddress": prometheus_url,
                "query": query,
                "threshold": str(per_replica),
                # Starts when demand passes what the replicas before it carry (KEDA: active when the value exceeds it).
                "activationThreshold": str(per_replica * carried_by),
            },
        }],
    }


def scaled_object(resource_name: str, deployment: str, namespace: str, spec: dict[str, object], parent: pulumi.Resource,
                  depends_on: list[pulumi.Resource]) -> CustomResource:
    return CustomResource(
        resource_name,
        api_version="keda.sh/v1alpha1",
        kind="ScaledObject",
        metadata=meta(deployment, namespace, labels("autoscaler", deployment, "scaled-object")),
        spec=spec,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on),
    )
