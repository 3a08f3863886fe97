"""Pod-level settings every GPU server shares: placement, pinning, hardening, rollout."""

from __future__ import annotations

import pulumi_kubernetes as k8s

from components.gpu import GpuPodFields


def no_surge() -> k8s.apps.v1.DeploymentStrategyArgs:
    """Replace pods one at a time without a surge: a new pod never needs GPU memory the old one still holds."""
    return k8s.apps.v1.DeploymentStrategyArgs(
        type="RollingUpdate",
        rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=0, max_unavailable=1),
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
