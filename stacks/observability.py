"""What to scrape, chart and alert on, derived from the service graph and the plan. Pure Python.

Every expression names only series the engines export (catalog/metrics.yaml: vLLM 0.33, the NVIDIA DCGM
exporter, kube-state-metrics); the tests parse each one and check its names. The scrape targets are the
graph's vLLM Services (Ollama has no /metrics; Llama Stack 0.7.3 exports OpenTelemetry only), the GPU
panels and the GPU-memory alert carry the plan's figure for each GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks.config import StackConfig, Vllm
from stacks.graph import Endpoint, ServiceGraph
from stacks.plan import Plan
from stacks.timing import ollama_rollout_seconds, vllm_startup_seconds

MIB = 2**20
RATE_WINDOW = "5m"
KV_FULL = 0.9
"""KV cache usage (0-1) above which requests start to wait or be preempted."""
WAITING_MINUTES = 5


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    unit: str
    """Grafana unit id (`reqps`, `s`, `percentunit`, `short`, `decmbytes`)."""
    queries: tuple[Query, ...]
    metrics: str
    """What the panel reads, for the README's table."""


@dataclass(frozen=True)
class AlertRule:
    alert: str
    expr: str
    for_: str
    severity: str
    summary: str
    labels: tuple[tuple[str, str], ...] = ()
    """Besides severity: what tells one alert of a kind from another (promtool refuses duplicates)."""


def scrape_targets(graph: ServiceGraph) -> list[Endpoint]:
    """The Services with a Prometheus /metrics: vLLM's (on its API port), aliases left out (same pods)."""
    return [ep for _, ep in sorted(graph.endpoints.items()) if ep.kind == "vllm" and ep.alias_of is None]


def _sel(ns: str, model: bool = True) -> str:
    return f'{{namespace="{ns}", model_name=~"$model_name"}}' if model else f'{{namespace="{ns}"}}'


def _quantile(q: float, metric: str, sel: str) -> str:
    return f"histogram_quantile({q}, sum by (le, model_name) (rate({metric}_bucket{sel}[{RATE_WINDOW}])))"


def _percentiles(title: str, histogram: str, sel: str) -> PanelSpec:
    """p50 and p95 of a vLLM latency histogram, per model, in seconds."""
    return PanelSpec(title, "s", tuple(Query(_quantile(q, histogram, sel), f"p{round(q * 100)} {{{{model_name}}}}") for q in (0.5, 0.95)),
                     f"{histogram}_bucket")


def panels(cfg: StackConfig, plan: Plan) -> list[PanelSpec]:
    """The dashboard's panels, per model (the `model_name` variable), then per GPU next to the plan."""
    s = _sel(cfg.namespace)
    out = [] if not plan.vllm else [
        PanelSpec("Requests per second", "reqps",
                  (Query(f"sum by (model_name) (rate(vllm:request_success_total{s}[{RATE_WINDOW}]))", "{{model_name}}"),),
                  "vllm:request_success_total"),
        PanelSpec("Running and waiting requests", "short",
                  (Query(f"sum by (model_name) (vllm:num_requests_running{s})", "running {{model_name}}"),
                   Query(f"sum by (model_name) (vllm:num_requests_waiting{s})", "waiting {{model_name}}")),
                  "vllm:num_requests_running, vllm:num_requests_waiting"),
        PanelSpec("KV cache usage", "percentunit",
                  (Query(f"max by (model_name) (vllm:kv_cache_usage_perc{s})", "{{model_name}}"),),
                  "vllm:kv_cache_usage_perc"),
        _percentiles("Time to first token (p50, p95)", "vllm:time_to_first_token_seconds", s),
        PanelSpec("Generated tokens per second", "short",
                  (Query(f"sum by (model_name) (rate(vllm:generation_tokens_total{s}[{RATE_WINDOW}]))", "{{model_name}}"),),
                  "vllm:generation_tokens_total"),
        _percentiles("End-to-end request latency (p50, p95)", "vllm:e2e_request_latency_seconds", s),
    ]
    if cfg.monitoring.gpu_metrics:
        out += _gpu_panels(plan)
    return out


def _gpu_panels(plan: Plan) -> list[PanelSpec]:
    """One panel per node: each GPU's memory used, and the plan's figure for it as a flat line."""
    out = []
    for node in dict.fromkeys(g.gpu.node for g in plan.gpus if g.pods):
        queries: list[Query] = []
        for g in plan.gpus:
            if not g.pods or g.gpu.node != node:
                continue
            where = f"{g.gpu.node}/{g.gpu.index}"
            # Joined to the pods by the plan, which pinned them there: it holds in every gpuSharing mode, where DCGM's own
            # pod labels rely on the kubelet's record of allocated devices, which visible-devices pinning bypasses.
            holders = ", ".join(dict.fromkeys(p.workload for p in g.pods))
            queries.append(Query(f'max(DCGM_FI_DEV_FB_USED{{Hostname="{g.gpu.node}", gpu="{g.gpu.index}"}})', f"{where} used ({holders})"))
            queries.append(Query(f"vector({round(g.allocated_bytes / MIB)})", f"{where} plan"))
        out.append(PanelSpec(f"GPU memory on {node}, next to the plan (MiB)", "decmbytes", tuple(queries),
                             "DCGM_FI_DEV_FB_USED; the plan's allocated MiB per GPU"))
    return out


def alert_rules(cfg: StackConfig, plan: Plan, graph: ServiceGraph) -> list[AlertRule]:
    ns = cfg.namespace
    s = _sel(ns, model=False)
    rules = [] if not plan.vllm else [
        AlertRule("VllmKvCacheNearlyFull", f"max by (namespace, model_name) (vllm:kv_cache_usage_perc{s}) > {KV_FULL}", "5m", "warning",
                  f"{{{{ $labels.model_name }}}}: KV cache over {KV_FULL:.0%} for 5 minutes; requests wait or are preempted"),
        AlertRule("VllmRequestsWaiting", f"sum by (namespace, model_name) (vllm:num_requests_waiting{s}) > 0", f"{WAITING_MINUTES}m", "warning",
                  f"{{{{ $labels.model_name }}}}: requests have waited for {WAITING_MINUTES} minutes; the model needs more replicas"),
    ]
    rules += [
        AlertRule("LlmPodRestarting", f"increase(kube_pod_container_status_restarts_total{s}[15m]) > 2", "0m", "warning",
                  "{{ $labels.pod }}/{{ $labels.container }} restarted more than twice in 15 minutes"),
    ]
    reserved = {v.deployment_name for v in plan.vllm if v.reserved}
    budgets = start_budgets(cfg, plan)
    for name, ep in sorted(graph.endpoints.items()):
        if ep.alias_of is not None:
            continue
        running = [w for w in ep.workloads if w not in reserved]
        # A rollout replaces a single pod without a surge: no ready pod for a whole start-up is normal then.
        wait = max([300] + [budgets.get(w, 0) for w in running])
        rules.append(AlertRule(
            "LlmServiceHasNoReadyPod",
            # A multi-node replica's readiness is its leader's (ready once every rank joined): the leader StatefulSet
            # LeaderWorkerSet names after itself.
            f'sum(kube_statefulset_status_replicas_ready{{namespace="{ns}", statefulset=~"{"|".join(running)}"}}) == 0'
            if ep.groups else
            f'sum(kube_deployment_status_replicas_available{{namespace="{ns}", deployment=~"{"|".join(running)}"}}) == 0',
            f"{wait}s", "critical", f"Service {name} has had no ready pod for longer than its start-up ({wait} s): its clients "
            "get errors", (("service", name),)))
    if cfg.monitoring.gpu_metrics:
        for g in plan.gpus:
            if g.pods:
                planned = round(g.allocated_bytes / MIB)
                rules.append(AlertRule(
                    "GpuMemoryAbovePlan",
                    f'max(DCGM_FI_DEV_FB_USED{{Hostname="{g.gpu.node}", gpu="{g.gpu.index}"}}) > {planned}', "10m", "warning",
                    f"GPU {g.gpu.node}/{g.gpu.index} uses more than the {planned} MiB the plan gave its pods: something outside the "
                    "plan runs there, or an estimate is off (make status)", (("gpu", f"{g.gpu.node}/{g.gpu.index}"),)))
    return rules


def start_budgets(cfg: StackConfig, plan: Plan) -> dict[str, int]:
    """Each Deployment's start-up budget in seconds (stacks/timing.py): how long it may rightly have no ready pod."""
    out = {}
    if cfg.ollama is not None:
        out.update({w.deployment_name: ollama_rollout_seconds(w, cfg.ollama.pull_mib_per_second, cfg.ollama.server_start_seconds)
                    for w in plan.workloads})
    out.update({v.deployment_name: vllm_startup_seconds(v, cfg.vllm or Vllm()) for v in plan.vllm})
    return out


def demand_query(namespace: str, served_name: str) -> str:
    """Requests in flight across every pod of one model, running and waiting (the scrape adds `namespace`; vLLM labels
    `model_name`): what the reserved replicas' ScaledObjects ask Prometheus. Running requests count, so a replica that
    took half the load keeps its trigger active instead of switching itself off once nothing waits."""
    sel = f'{{namespace="{namespace}", model_name="{served_name}"}}'
    return f"sum(vllm:num_requests_running{sel}) + sum(vllm:num_requests_waiting{sel})"


def expressions(cfg: StackConfig, plan: Plan, graph: ServiceGraph) -> list[str]:
    """Every PromQL expression the stack ships (dashboard, alerts, autoscalers), for the tests."""
    exprs = [q.expr for p in panels(cfg, plan) for q in p.queries] + [r.expr for r in alert_rules(cfg, plan, graph)]
    exprs += [demand_query(cfg.namespace, w.served_name) for w in plan.vllm if w.reserved]
    return exprs
