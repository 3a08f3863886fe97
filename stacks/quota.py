"""The namespace's ResourceQuota, from the plan: what the planned pods request, plus one rolling pod more.

Rollouts replace one pod at a time without a surge, but a terminating pod still counts against a quota
until it is gone, so the quota holds the planned pods and the largest of them once more. Object counts
come from the name registry (the objects the stack creates), plus `kube-root-ca.crt`, which Kubernetes
puts in every namespace, twice over: room for each of them to be replaced in one `pulumi up`.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks.config import StackConfig
from stacks.config.smoke import CPU as SMOKE_CPU, MEMORY_MIB as SMOKE_MEMORY_MIB
from stacks.graph import ServiceGraph
from stacks.names import planned_objects
from stacks.plan import Plan, server_pods, shm_gib

REPLACE_ROOM = 2
COUNTED = {"Service": "services", "ConfigMap": "configmaps", "Secret": "secrets",
           "PersistentVolumeClaim": "persistentvolumeclaims", "Deployment": "count/deployments.apps",
           "ResourceClaim": "count/resourceclaims.resource.k8s.io"}


@dataclass(frozen=True)
class PodRequest:
    cpu: float
    memory_mib: int
    gpus: int = 0
    """`nvidia.com/gpu` (exclusive mode)."""


def pod_requests(cfg: StackConfig, plan: Plan, graph: ServiceGraph) -> list[PodRequest]:
    """Every planned pod's requests, as the components render them."""
    pods = []
    exclusive = cfg.gpu_sharing.mode == "exclusive"
    for w in plan.workloads:
        pods += [PodRequest(w.server.cpu, round(w.server.memory_gib * 1024), 1 if exclusive else 0)] * server_pods(w.server)  # up to autoscale.maxReplicas
    for v in plan.vllm:  # every rank of a multi-node replica is a pod
        pods += [PodRequest(v.spec.cpu, round((v.spec.memory_gib + shm_gib(v.spec)) * 1024),
                            v.spec.tensor_parallel if exclusive else 0)] * len(v.ranks)
    if graph.llama_stack is not None and cfg.llama_stack is not None:
        pods.append(PodRequest(cfg.llama_stack.cpu, round(cfg.llama_stack.memory_gib * 1024)))
    if _acme(cfg):
        pods.append(ACME_SOLVER)
    if cfg.smoke.job:  # components/smoke.py
        pods.append(PodRequest(SMOKE_CPU, SMOKE_MEMORY_MIB))
    return pods


ACME_SOLVER = PodRequest(0.1, 128)
"""cert-manager's HTTP-01 solver pod, while a certificate is issued (at most the LimitRange's default requests)."""


def _acme(cfg: StackConfig) -> bool:
    """cert-manager issues the certificate in the stack's namespace: its solver pod and Service, a temporary key Secret."""
    return cfg.ingress is not None and cfg.ingress.tls.enabled and cfg.ingress.tls.cluster_issuer is not None


def quota(cfg: StackConfig, plan: Plan, graph: ServiceGraph) -> dict[str, str]:
    pods = pod_requests(cfg, plan, graph)
    biggest = max(pods, key=lambda p: (p.memory_mib, p.cpu, p.gpus))
    cpu = sum(p.cpu for p in pods) + biggest.cpu
    memory = sum(p.memory_mib for p in pods) + biggest.memory_mib
    hard = {"pods": str(len(pods) + 1), "requests.cpu": f"{cpu:g}", "requests.memory": f"{memory}Mi",
            "limits.memory": f"{memory}Mi"}
    gpus = sum(p.gpus for p in pods)
    if gpus:
        hard["requests.nvidia.com/gpu"] = str(gpus + max(p.gpus for p in pods))
    counts: dict[str, int] = {}
    for c in planned_objects(cfg, plan, graph):
        if c.kind in COUNTED:
            counts[COUNTED[c.kind]] = counts.get(COUNTED[c.kind], 0) + 1
    counts["configmaps"] = counts.get("configmaps", 0) + 1  # kube-root-ca.crt
    if cfg.ingress is not None and cfg.ingress.tls.enabled:
        # The TLS Secret (yours, or cert-manager's), and with cert-manager its temporary private key and solver Service.
        counts["secrets"] = counts.get("secrets", 0) + 1 + (1 if _acme(cfg) else 0)
        if _acme(cfg):
            counts["services"] = counts.get("services", 0) + 1
    # Room for every counted object to be replaced in one update: a changed ConfigMap or Secret, a GPU's new claim, a
    # moved replica. A create-before-delete replace holds both objects for a moment, and a delete frees quota only
    # when the quota controller next recounts, so even delete-before-replace needs the room (the real API server
    # refused an agent's ConfigMap replacement with the exact count: "exceeded quota ... limited: configmaps=9").
    hard.update({k: str(REPLACE_ROOM * v) for k, v in counts.items()})
    return dict(sorted(hard.items()))
