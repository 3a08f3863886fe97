"""ModelCache: where model weights live, kept through `pulumi destroy`.

Three modes (seed 002's storage options):
- hostPath: per node, a cluster-scoped PersistentVolume over a host directory plus a claim bound to
  it; every pod on that node shares it.
- rwx: one ReadWriteMany claim (Longhorn or another RWX class) shared by every pod.
- perPod: one ReadWriteOnce claim per workload (local-path); the replicas of a workload share it on
  their node, and each workload keeps its own copy of the weights.

Every PV and claim has `retain_on_delete`, PVs reclaim `Retain`, and a StorageClass this component
creates (optional) has `reclaimPolicy: Retain`. The namespace holding the claims is retained by the
Topology, so destroying the stack cannot cascade into them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.labels import labels, meta
from stacks.config import ModelCache as ModelCacheSpec
from stacks.names import cache_claim_name, cache_pv_name

MOUNT_PATH = "/models"
HOST_PATH_CLAIM_REQUEST = "1Gi"
"""What a hostPath claim requests: its PersistentVolume (capacity `modelCache.size`) is bound to it by name, and a claim
on a statically provisioned volume can never be resized (the API server: "only dynamically provisioned pvc can be
resized"), so `size` lives on the volume alone, where raising it is an ordinary update. A host directory has no quota
either way."""


@dataclass(frozen=True)
class ModelCacheArgs:
    namespace: str
    spec: ModelCacheSpec
    nodes: list[str]
    """Nodes that run model pods (hostPath mode: one PV + claim each)."""
    workloads: list[str]
    """Workload names (perPod mode: one claim each)."""


class ModelCache(pulumi.ComponentResource):
    claims: dict[str, str]
    """Claim name by node (hostPath), by workload (perPod) or under "*" (rwx)."""

    def __init__(self, name: str, args: ModelCacheArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-infra:storage:ModelCache", name, None, opts)
        self._mode = args.spec.mode
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        spec = args.spec
        lab = labels("model-cache", name, "storage")
        self.claims = {}
        self.volumes: list[k8s.core.v1.PersistentVolume] = []
        self.pvcs: list[k8s.core.v1.PersistentVolumeClaim] = []

        storage_class = spec.storage_class_name
        if spec.provisioner is not None:
            assert storage_class is not None  # checked at the edge
            k8s.storage.v1.StorageClass(
                f"{name}-class",
                metadata=meta(storage_class, None, lab),
                provisioner=spec.provisioner,
                reclaim_policy="Retain",
                volume_binding_mode="WaitForFirstConsumer",
                opts=keep,
            )

        if spec.mode == "hostPath":
            for node in args.nodes:
                pv_name = cache_pv_name(args.namespace, node, spec.host_path)
                claim = cache_claim_name("hostPath", node, spec.host_path)
                self.volumes.append(
                    k8s.core.v1.PersistentVolume(
                        f"{name}-{node}-pv",
                        metadata=meta(pv_name, None, lab),
                        spec=k8s.core.v1.PersistentVolumeSpecArgs(
                            capacity={"storage": spec.size},
                            access_modes=["ReadWriteOnce"],
                            persistent_volume_reclaim_policy="Retain",
                            storage_class_name="",
                            host_path=k8s.core.v1.HostPathVolumeSourceArgs(path=spec.host_path, type="DirectoryOrCreate"),
                            claim_ref=k8s.core.v1.ObjectReferenceArgs(namespace=args.namespace, name=claim),
                            node_affinity=_pinned_to(node),
                        ),
                        opts=keep,
                    )
                )
                self._claim(name, node, claim, args.namespace, lab, "ReadWriteOnce", "", pv_name, HOST_PATH_CLAIM_REQUEST, keep)
        elif spec.mode == "rwx":
            self._claim(name, "*", cache_claim_name("rwx", ""), args.namespace, lab, "ReadWriteMany", storage_class, None, spec.size, keep)
        else:
            for workload in args.workloads:
                self._claim(name, workload, cache_claim_name("perPod", workload), args.namespace, lab, "ReadWriteOnce", storage_class, None, spec.size, keep)

        self.register_outputs({"mode": spec.mode, "claims": self.claims})

    def _claim(self, name, owner, claim, namespace, lab, access, storage_class, volume, size, opts) -> None:
        self.claims[owner] = claim
        self.pvcs.append(
            k8s.core.v1.PersistentVolumeClaim(
                f"{name}-{claim}",
                metadata=meta(claim, namespace, lab),
                spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                    access_modes=[access],
                    storage_class_name=storage_class,
                    volume_name=volume,
                    resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": size}),
                ),
                opts=opts,
            )
        )

    def claim_for(self, node: str, workload: str) -> str:
        """The claim a pod of `workload` on `node` mounts."""
        if self._mode == "hostPath":
            return self.claims[node]
        if self._mode == "rwx":
            return self.claims["*"]
        return self.claims[workload]


def _pinned_to(node: str) -> k8s.core.v1.VolumeNodeAffinityArgs:
    return k8s.core.v1.VolumeNodeAffinityArgs(
        required=k8s.core.v1.NodeSelectorArgs(
            node_selector_terms=[
                k8s.core.v1.NodeSelectorTermArgs(
                    match_expressions=[
                        k8s.core.v1.NodeSelectorRequirementArgs(key="kubernetes.io/hostname", operator="In", values=[node])
                    ]
                )
            ]
        )
    )
