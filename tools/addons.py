"""What the cluster must run for a stack: the add-ons its objects and settings rely on, printed by `make render`.

Derived from the config and the kinds of the rendered objects (a ServiceMonitor rendered needs the Prometheus Operator's
CRDs, a ScaledObject KEDA, ...). Nothing here installs anything: the list says what to install before `pulumi up`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stacks.config import StackConfig, servers
from stacks.config.edge import CONTROLLER_NAMESPACE
from stacks.plan import Plan, text_table

CONTROLLER_NAME = {"nginx": "ingress-nginx", "traefik": "Traefik"}


@dataclass(frozen=True)
class Addon:
    name: str
    """What to install (and which of its objects the stack names)."""
    needed_by: str
    """The stack's objects or fields that rely on it."""
    setting: str
    """The config key that brings it in."""


def count(kinds: Mapping[str, int], *names: str) -> str:
    return ", ".join(f"{kinds[k]} {k}" for k in names if kinds.get(k))


def needed_addons(cfg: StackConfig, plan: Plan, kinds: Mapping[str, int]) -> list[Addon]:
    """The add-ons, in install order; `kinds`: rendered objects per kind."""
    out = []
    ing = cfg.ingress
    if ing is not None and kinds.get("Ingress"):
        crd = " (traefik.io/v1alpha1)" if kinds.get("Middleware") else ""
        out.append(Addon(f"{CONTROLLER_NAME[ing.controller]}, IngressClass {ing.ingress_class}", count(kinds, "Ingress", "Middleware") + crd,
                         "ingress.controller"))
        if ing.tls.enabled and ing.tls.cluster_issuer:
            out.append(Addon(f"cert-manager, ClusterIssuer {ing.tls.cluster_issuer}", "the Ingresses' TLS certificates",
                             "ingress.tls.clusterIssuer"))
    if kinds.get("ServiceMonitor") or kinds.get("PrometheusRule"):
        out.append(Addon("Prometheus Operator CRDs", count(kinds, "ServiceMonitor", "PrometheusRule") + " (monitoring.coreos.com/v1)",
                         "monitoring.prometheusOperator"))
    if kinds.get("ScaledObject"):
        out.append(Addon("KEDA 2.x", f"{count(kinds, 'ScaledObject')} (keda.sh/v1alpha1), asking monitoring.prometheusUrl",
                         "vllm.models.<name>.autoscale"))
    if kinds.get("HorizontalPodAutoscaler"):
        # The HPA controller reads CPU use from metrics.k8s.io (k8s.io/kubernetes v1.34.4
        # pkg/controller/podautoscaler/metrics/client.go: PodMetricses of k8s.io/metrics v1beta1).
        out.append(Addon("metrics-server (metrics.k8s.io)", f"{count(kinds, 'HorizontalPodAutoscaler')} on CPU",
                         "ollama.<role>.autoscale"))
    if kinds.get("LeaderWorkerSet"):
        out.append(Addon("LeaderWorkerSet controller (kubernetes-sigs/lws)", f"{count(kinds, 'LeaderWorkerSet')} (leaderworkerset.x-k8s.io/v1)",
                         "vllm.models.<name>.pipelineParallel"))
    sharing = cfg.gpu_sharing
    if sharing.mode == "dra" and kinds.get("ResourceClaim"):
        # NVIDIA/k8s-dra-driver-gpu docs/prerequisites.md: the NVIDIA Container Toolkit with CDI, NFD, driver 565+.
        out.append(Addon(f"NVIDIA DRA driver, DeviceClass {sharing.device_class_name}",
                         f"{count(kinds, 'ResourceClaim')} (resource.k8s.io/v1)", "gpuSharing.mode: dra"))
    elif sharing.mode == "exclusive" and plan.used_gpus():
        out.append(Addon(f"NVIDIA device plugin, RuntimeClass {sharing.runtime_class_name}",
                         "nvidia.com/gpu limits, runtimeClassName", "gpuSharing.mode: exclusive"))
    elif sharing.mode == "visible-devices" and plan.used_gpus():
        out.append(Addon(f"RuntimeClass {sharing.runtime_class_name} (NVIDIA container runtime)",
                         "runtimeClassName, NVIDIA_VISIBLE_DEVICES (no GPU request)", "gpuSharing.mode: visible-devices"))
    cache = cfg.model_cache
    if cache.mode != "hostPath" and cache.storage_class_name:
        out.append(Addon(f"provisioner {cache.provisioner}" if cache.provisioner else f"StorageClass {cache.storage_class_name}",
                         f"{count(kinds, 'PersistentVolumeClaim')} of class {cache.storage_class_name}",
                         "modelCache.provisioner" if cache.provisioner else "modelCache.storageClassName"))
    for name in cfg.image_pull_secrets:
        out.append(Addon(f"Secret {name} (registry credentials)", f"every pod's imagePullSecrets, in namespace {cfg.namespace}",
                         "imagePullSecrets"))
    workloads = [*((cfg.vllm.models.values()) if cfg.vllm else ()), *((s for _, _, s in servers(cfg))),
                 *((cfg.llama_stack,) if cfg.llama_stack else ())]
    for pc in sorted({w.priority_class_name for w in workloads if w.priority_class_name}):
        out.append(Addon(f"PriorityClass {pc}", "the pods that name it (pod creation fails without it)", "priorityClassName"))
    return out


def admitted_namespace(cfg: StackConfig) -> str | None:
    """Where the NetworkPolicies let the ingress controller in from, and why (a sentence), or None without an ingress."""
    if cfg.ingress is None:
        return None
    np, controller = cfg.network_policy, cfg.ingress.controller
    default = CONTROLLER_NAMESPACE[controller]
    if not np.enabled:
        return "NetworkPolicies are off (networkPolicy.enabled: false): every namespace reaches the pods"
    if np.ingress_namespace is None:
        other = next(c for c in CONTROLLER_NAMESPACE if c != controller)
        return (f"the NetworkPolicies admit the ingress controller from namespace {default}, the default for {controller} "
                f"(networkPolicy.ingressNamespace unset): switching ingress.controller to {other} admits "
                f"{CONTROLLER_NAMESPACE[other]} instead; set networkPolicy.ingressNamespace where your controller runs elsewhere")
    return (f"the NetworkPolicies admit the ingress controller from namespace {np.ingress_namespace}, set by "
            f"networkPolicy.ingressNamespace ({controller}'s default: {default}); switching ingress.controller keeps it")


def format_addons(cfg: StackConfig, plan: Plan, kinds: Mapping[str, int]) -> str:
    """The add-ons as a short table, with the ingress namespace the policies admit under it."""
    rows = [("add-on the cluster needs", "for", "because of")]
    rows += [(a.name, a.needed_by, a.setting) for a in needed_addons(cfg, plan, kinds)]
    if len(rows) == 1:
        return "Add-ons: none (the stack needs only Kubernetes itself)"
    ns = admitted_namespace(cfg) if kinds.get("Ingress") else None
    return "\n".join(["Add-ons to install before `pulumi up`", text_table(rows, left=3)] + ([f"  {ns}"] if ns else []))
