"""Pod-level settings every GPU server shares: placement, pinning, hardening, rollout."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.gpu import GpuPodFields
from components.labels import meta, selector


def no_surge() -> k8s.apps.v1.DeploymentStrategyArgs:
    """Replace pods one at a time without a surge: a new pod never needs GPU memory the old one still holds."""
    return k8s.apps.v1.DeploymentStrategyArgs(
        type="RollingUpdate",
        rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=0, max_unavailable=1),
    )


def disruption_budget(resource_name: str, name: str, namespace: str, obj_labels: dict[str, str], parent: pulumi.Resource
                      ) -> k8s.policy.v1.PodDisruptionBudget:
    """A node drain may take one pod of the workload at a time, and never waits forever: maxUnavailable 1, not
    minAvailable 1 (which would block the drain of a single-replica GPU server for good)."""
    return k8s.policy.v1.PodDisruptionBudget(
        resource_name,
        metadata=meta(name, namespace, obj_labels),
        spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
            max_unavailable=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(obj_labels))),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def gpu_pod_spec(node: str, gpu: GpuPodFields, containers: list, volumes: list, init_containers: list | None = None,
                 termination_grace_period_seconds: int | None = None) -> k8s.core.v1.PodSpecArgs:
    """A pod on its planned node and GPUs: no service-account token, no service-link env, RuntimeDefault seccomp."""
    return k8s.core.v1.PodSpecArgs(
        node_selector={"kubernetes.io/hostname": node},
        runtime_class_name=gpu.runtime_class_name,
        resource_claims=gpu.resource_claims,
        tolerations=gpu.tolerations,
        automount_service_account_token=False,
        enable_service_links=False,
        termination_grace_period_seconds=termination_grace_period_seconds,
        security_context=k8s.core.v1.PodSecurityContextArgs(seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")),
        init_containers=init_containers,
        containers=containers,
        volumes=volumes,
    )
