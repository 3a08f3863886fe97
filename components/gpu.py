"""GPU pinning: the three modes, as pod-spec fields (pure) and DRA claims (a component).

- dra: one `resource.k8s.io/v1` ResourceClaim per physical GPU, selected by uuid or pciBusID in
  CEL, shared by every pod the plan puts on that GPU (`resourceClaimName`).
- visible-devices: no GPU request; `runtimeClassName` nvidia and the GPU's UUID in both
  `NVIDIA_VISIBLE_DEVICES` (the runtime injects only that GPU, overriding the image's `all`) and
  `CUDA_VISIBLE_DEVICES` (what Ollama reads). The scheduler cannot see this: the plan is the only
  accounting.
- exclusive: `nvidia.com/gpu: 1` limits through the stock device plugin; one GPU pod per GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.labels import labels, meta
from stacks.catalog import NVIDIA_DRA_DRIVER
from stacks.config import GpuSharing
from stacks.plan import GpuRef

CLAIM_REQUEST = "gpu"
"""Name of the device request inside each ResourceClaim."""


def claim_ref(gpu: GpuRef) -> str:
    """Name of a GPU's claim inside the pod spec (`spec.resourceClaims[].name`)."""
    return f"gpu-{gpu.index}"


@dataclass(frozen=True)
class GpuPodFields:
    """What a GPU pin adds to a pod: pod-spec fields, container resources and env."""

    runtime_class_name: str | None = None
    resource_claims: list[k8s.core.v1.PodResourceClaimArgs] | None = None
    container_claims: list[k8s.core.v1.ResourceClaimArgs] | None = None
    limits: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    tolerations: list[k8s.core.v1.TolerationArgs] = field(default_factory=lambda: gpu_node_tolerations())


def gpu_node_tolerations() -> list[k8s.core.v1.TolerationArgs]:
    """The taint GPU node pools carry (`nvidia.com/gpu:NoSchedule`): tolerated by every pod the plan puts on a GPU node."""
    return [k8s.core.v1.TolerationArgs(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]


def gpu_pod_fields(sharing: GpuSharing, gpus: Sequence[GpuRef], cuda_env: bool) -> GpuPodFields:
    """Pod fields that pin a pod to `gpus`. `cuda_env`: also set CUDA_VISIBLE_DEVICES (Ollama reads
    only that; vLLM sees exactly the GPUs the runtime injects)."""
    if sharing.mode == "dra":
        return GpuPodFields(
            resource_claims=[k8s.core.v1.PodResourceClaimArgs(name=claim_ref(g), resource_claim_name=g.claim_name) for g in gpus],
            container_claims=[k8s.core.v1.ResourceClaimArgs(name=claim_ref(g)) for g in gpus],
        )
    if sharing.mode == "visible-devices":
        assert all(g.uuid for g in gpus)  # checked at the edge
        uuids = ",".join(g.uuid or "" for g in gpus)
        env = {"NVIDIA_VISIBLE_DEVICES": uuids, **({"CUDA_VISIBLE_DEVICES": uuids} if cuda_env else {})}
        return GpuPodFields(runtime_class_name=sharing.runtime_class_name, env=env)
    return GpuPodFields(runtime_class_name=sharing.runtime_class_name, limits={"nvidia.com/gpu": str(len(gpus))})


def cel_selector(gpu: GpuRef) -> str:
    """CEL that selects exactly this GPU; `index` is no attribute since NVIDIA DRA driver 25.8 (k8s-dra-driver-gpu device attributes).
    A driver's unqualified attributes (`uuid`) live in the driver's own domain, whatever the DeviceClass is called
    (k8s.io/api v0.34.4 resource/v1/types.go:549-553, QualifiedName: "names without a domain prefix are assumed to be part of the driver's domain"), so a DeviceClass of
    your own (`a100-gpus`) still selects by `device.attributes["gpu.nvidia.com"]`."""
    if gpu.uuid:
        return f'device.attributes["{NVIDIA_DRA_DRIVER}"].uuid == "{gpu.uuid}"'
    return f'device.attributes["resource.kubernetes.io"].pciBusID == "{gpu.pci_bus_id}"'


@dataclass(frozen=True)
class GpuClaimsArgs:
    namespace: str
    sharing: GpuSharing
    gpus: list[GpuRef]
    """The GPUs that have pods planned on them."""


class GpuClaims(pulumi.ComponentResource):
    """One ResourceClaim per physical GPU (dra mode)."""

    claims: dict[str, k8s.resource.v1.ResourceClaim]

    def __init__(self, name: str, args: GpuClaimsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-infra:gpu:GpuClaims", name, None, opts)
        self.claims = {}
        for gpu in args.gpus:
            self.claims[gpu.claim_name] = k8s.resource.v1.ResourceClaim(
                f"{name}-{gpu.node}-gpu-{gpu.index}",  # one URN per GPU slot: a new selector is a replace (see claim_name)
                metadata=meta(gpu.claim_name, args.namespace, labels("gpu-claim", gpu.claim_name, "gpu"),
                              {"llm-infra/gpu": f"{gpu.node}/{gpu.index}"}),
                spec=k8s.resource.v1.ResourceClaimSpecArgs(
                    devices=k8s.resource.v1.DeviceClaimArgs(
                        requests=[
                            k8s.resource.v1.DeviceRequestArgs(
                                name=CLAIM_REQUEST,
                                exactly=k8s.resource.v1.ExactDeviceRequestArgs(
                                    device_class_name=args.sharing.device_class_name,
                                    selectors=[
                                        k8s.resource.v1.DeviceSelectorArgs(
                                            cel=k8s.resource.v1.CELDeviceSelectorArgs(
                                                expression=cel_selector(gpu)
                                            )
                                        )
                                    ],
                                ),
                            )
                        ]
                    )
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"claims": sorted(self.claims)})
