"""Every object name the topology creates, claimed once, and checked before anything renders.

The components take their names from here (or from the plan and graph, which this module reads), so
the list below is the list of objects a stack applies: `planned_objects` is compared with the render
in the tests. A name two config entries would both produce, a name Kubernetes would reject, or a
label value over 63 characters is a config error naming the key that produced it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from stacks.config import ModelCache, StackConfig, key
from stacks.config.smoke import JOB_NAME as SMOKE_JOB
from stacks.edge import edge_objects, ingress_routes, policy_rules
from stacks.graph import ServiceGraph
from stacks.observability import scrape_targets
from stacks.plan import Plan

HF_SECRET = "huggingface-token"
ENSURE_MODEL_CONFIG = "ollama-ensure-model"
RESOURCE_QUOTA = "llm-infra-quota"
LIMIT_RANGE = "llm-infra-defaults"
ALERTS = "llm-infra-alerts"
DASHBOARD = "llm-infra-dashboard"

STATEFULSET_NAME_MAX = 52
"""Its pods' controller-revision-hash label is `<name>-<10-character hash>`, and label values have at most 63 characters."""
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _host_dir(host_path: str) -> str:
    """A volume's source cannot change ("persistentvolumesource is immutable"), nor a claim's volumeName: a hostPath
    cache in another directory is another volume and claim, named with a digest of the directory (none for the
    default one). The old pair is retained with its data, and using the old directory again finds it."""
    default = ModelCache.model_fields["host_path"].default
    return "" if host_path == default else "-" + hashlib.sha256(host_path.encode()).hexdigest()[:8]


def cache_pv_name(namespace: str, node: str, host_path: str) -> str:
    return f"{namespace}-model-cache-{node}{_host_dir(host_path)}"


def cache_claim_name(mode: str, owner: str, host_path: str = "") -> str:
    """The model cache claim of a node (hostPath), a workload (perPod), or the one shared claim (rwx)."""
    if mode == "hostPath":
        return f"model-cache-{owner}{_host_dir(host_path)}"
    return "model-cache" if mode == "rwx" else f"model-cache-{owner}"


def stack_config_map(service: str) -> str:
    return f"{service}-config"


def agent_config_map(agent: str) -> str:
    return f"agent-{agent}"


@dataclass(frozen=True)
class Claim:
    kind: str
    namespace: str | None
    """None for cluster-scoped kinds."""
    name: str
    source: str
    """The config key that produced the name."""
    controller: bool = False
    """Made by a controller from an object of the stack (LeaderWorkerSet's headless Service), not rendered; claimed so
    that no other object takes its name, and counted in the quota."""


def cache_users(plan: Plan, graph: ServiceGraph) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every workload that mounts the model cache: (Deployment name, node, config path)."""
    out = [(w.deployment_name, w.node, w.config_path) for w in plan.workloads]
    # A multi-node replica: each rank's pod on its own node (perPod: a claim each; hostPath: each node's).
    out += [(r.pod, r.node, w.config_path) for w in plan.vllm for r in w.ranks]
    if graph.llama_stack is not None:
        out.append((graph.llama_stack.endpoint.name, graph.llama_stack.node, ("llamaStack",)))
    return out


def planned_objects(cfg: StackConfig, plan: Plan, graph: ServiceGraph) -> list[Claim]:
    ns = cfg.namespace
    out = [] if cfg.existing_namespace else [Claim("Namespace", None, ns, key("namespace"))]
    cache = cfg.model_cache
    if cache.provisioner is not None and cache.storage_class_name is not None:
        out.append(Claim("StorageClass", None, cache.storage_class_name, key("modelCache", "storageClassName")))
    stack = graph.llama_stack
    workloads = [(name, node, key(*path)) for name, node, path in cache_users(plan, graph)]
    node_key = {n.name: key("nodes", i, "name") for i, n in enumerate(cfg.nodes)}
    if cache.mode == "hostPath":
        for node in sorted({n for _, n, _ in workloads}):
            out.append(Claim("PersistentVolume", None, cache_pv_name(ns, node, cache.host_path), node_key[node]))
            out.append(Claim("PersistentVolumeClaim", ns, cache_claim_name("hostPath", node, cache.host_path), node_key[node]))
    elif cache.mode == "rwx":
        out.append(Claim("PersistentVolumeClaim", ns, cache_claim_name("rwx", ""), key("modelCache", "mode")))
    else:
        out += [Claim("PersistentVolumeClaim", ns, cache_claim_name("perPod", name), source) for name, _, source in workloads]
    if cfg.gpu_sharing.mode == "dra":
        out += [Claim("ResourceClaim", ns, g.gpu.claim_name, key(*g.gpu.config_path)) for g in plan.used_gpus()]
    if plan.vllm and cfg.hf_token is not None:
        out.append(Claim("Secret", ns, HF_SECRET, key("hfToken")))
    if plan.workloads:
        out.append(Claim("ConfigMap", ns, ENSURE_MODEL_CONFIG, key("ollama")))
    lws = {r.pod: w for w in plan.vllm if w.multi_node for r in w.ranks}
    out += [Claim("Deployment", ns, name, source) for name, _, source in workloads if name not in lws]
    for w in (w for w in plan.vllm if w.multi_node):
        # The LeaderWorkerSet, and the headless Service its controller names after it (LWS_LEADER_ADDRESS resolves there).
        out += [Claim("LeaderWorkerSet", ns, w.deployment_name, key(*w.config_path, "pipelineParallel")),
                Claim("Service", ns, w.deployment_name, key(*w.config_path, "pipelineParallel"), controller=True)]
    for w in plan.workloads:
        out.append(Claim("Service", ns, w.service_name, key(*w.config_path)))
    first_of: dict[str, tuple[str, ...]] = {}  # one pass each, not one per model: fleets have thousands
    for w in plan.vllm:
        first_of.setdefault(w.service_name, w.config_path)
    aliases: dict[str, list[str]] = {}
    for ep in graph.endpoints.values():
        if ep.alias_of is not None:
            aliases.setdefault(ep.alias_of, []).append(ep.name)
    for name, path in sorted(first_of.items()):
        out.append(Claim("Service", ns, name, key(*path)))
        out += [Claim("Service", ns, alias, key(*path)) for alias in aliases.get(name, [])]
    if stack is not None:
        out.append(Claim("ConfigMap", ns, stack_config_map(stack.endpoint.name), key("llamaStack")))
        out.append(Claim("Service", ns, stack.endpoint.name, key("llamaStack")))
    out += [Claim("ConfigMap", ns, agent_config_map(a.name), key("agents", a.name)) for a in graph.agents]
    if cfg.smoke.job:  # components/smoke.py: the checks' script and the Job running it
        out += [Claim(kind, ns, SMOKE_JOB, key("smoke", "job")) for kind in ("ConfigMap", "Job")]
    # One PodDisruptionBudget per serving workload: an Ollama server, a vLLM model (all replicas), Llama Stack.
    out += [Claim("PodDisruptionBudget", ns, w.deployment_name, key(*w.config_path)) for w in plan.workloads]
    out += [Claim("PodDisruptionBudget", ns, name, key(*path)) for name, path in sorted(first_of.items())]
    if stack is not None:
        out.append(Claim("PodDisruptionBudget", ns, stack.endpoint.name, key("llamaStack")))
    out += [Claim("HorizontalPodAutoscaler", ns, w.deployment_name, key(*w.config_path, "autoscale"))
            for w in plan.workloads if w.server.autoscale is not None]
    # A KEDA ScaledObject per reserved vLLM replica (components/autoscaling.py).
    out += [Claim("ScaledObject", ns, w.deployment_name, key(*w.config_path, "autoscale")) for w in plan.vllm if w.reserved]
    mon = cfg.monitoring
    if mon.prometheus_operator:
        out += [Claim("ServiceMonitor", ns, ep.name, key("monitoring", "prometheusOperator")) for ep in scrape_targets(graph)]
        out.append(Claim("PrometheusRule", ns, ALERTS, key("monitoring", "prometheusOperator")))
    if mon.dashboards:
        out.append(Claim("ConfigMap", ns, DASHBOARD, key("monitoring", "dashboards")))
    routes = ingress_routes(cfg, graph)
    out += [Claim(kind, ns, name, key(*path)) for kind, name, path in edge_objects(cfg, routes, policy_rules(cfg, graph, routes))]
    if not cfg.existing_namespace:
        out += [Claim("ResourceQuota", ns, RESOURCE_QUOTA, key("namespace")), Claim("LimitRange", ns, LIMIT_RANGE, key("namespace"))]
    return out


def name_problems(cfg: StackConfig, plan: Plan, graph: ServiceGraph) -> list[str]:
    problems: list[str] = []
    seen: dict[tuple[str, str | None, str], Claim] = {}
    claims = planned_objects(cfg, plan, graph)
    for c in claims:
        where = f"{c.kind} {c.namespace + '/' if c.namespace else ''}{c.name}"
        other = seen.get((c.kind, c.namespace, c.name))
        if other is not None and other.source != c.source:
            problems.append(f"{c.source}: makes {where}, which {other.source} makes too; rename one of them")
        seen.setdefault((c.kind, c.namespace, c.name), c)
        rule = DNS_1035_LABEL if c.kind in ("Service", "LeaderWorkerSet") else DNS_1123_LABEL if c.kind in ("Deployment", "Namespace") else DNS_1123_SUBDOMAIN
        limit = 63 if rule is not DNS_1123_SUBDOMAIN else 253
        if len(c.name) > limit or not rule.fullmatch(c.name):
            problems.append(f"{c.source}: makes {where}, not a valid {c.kind} name (at most {limit} characters, "
                            f"lowercase letters, digits and '-'{', starting with a letter' if rule is DNS_1035_LABEL else ''}); shorten or rename it")
        if c.kind == "LeaderWorkerSet" and len(c.name) + len("-0") > STATEFULSET_NAME_MAX:
            # Its worker StatefulSet is `<name>-0`; a StatefulSet's controller-revision-hash label is its name plus a hash.
            problems.append(f"{c.source}: LeaderWorkerSet {c.name} makes the StatefulSet {c.name}-0, longer than the "
                            f"{STATEFULSET_NAME_MAX} characters a StatefulSet name may have; shorten the model key")
        if c.kind in ("Deployment", "Service", "NetworkPolicy", "Ingress", "Middleware", "LeaderWorkerSet", "ResourceClaim") and (len(c.name) > 63 or not LABEL_VALUE.fullmatch(c.name)):
            problems.append(f"{c.source}: {c.name!r} is used as a label value, which allows at most 63 characters")
    for i, n in enumerate(cfg.nodes):
        if len(n.name) > 63:
            problems.append(f"{key('nodes', i, 'name')}: {n.name[:40]}... ({len(n.name)} characters) cannot be matched by the "
                            "kubernetes.io/hostname label pods are placed with (label values have at most 63 characters)")
    return list(dict.fromkeys(problems))
