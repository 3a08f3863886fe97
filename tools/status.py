"""The stack's pods next to the plan: what seed 000's monitor.sh showed, checked against what was planned.

    make status STACK=dev                                   # current kubeconfig context
    make status STACK=prod ARGS="--service-url vllm-llama-3b=http://127.0.0.1:8000"   # through port-forwards

For every pod of the stack (Kubernetes Python client, label app.kubernetes.io/part-of=llm-infra): its planned
node and GPUs next to where it runs, readiness and restarts, and the plan's VRAM next to what the engine
reports using: Ollama `GET /api/ps` (`size_vram` of the loaded model), vLLM `GET /metrics`
(`vllm:kv_cache_usage_perc`). The plan comes from the stack file, offline, as `make render` computes it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from stacks.catalog import GIB
from stacks.loader import Stack, stack_from
from stacks.plan import text_table
from tools.offline import raw_of, stack_config

KV_USAGE = re.compile(r'^vllm:kv_cache_usage_perc\{([^}]*)\}\s+([0-9.eE+-]+)', re.M)


@dataclass(frozen=True)
class Planned:
    deployment: str
    node: str
    gpus: str
    vram_gib: float
    """Per GPU: the Ollama pod's prediction + context, or the vLLM server's share + context."""
    service: str
    kind: str
    model: str
    reserved: bool = False
    """A replica the plan holds room for that only its autoscaler starts (no pod is its normal state)."""


def planned(stack: Stack) -> dict[str, Planned]:
    plan, graph = stack.plan, stack.graph
    owner = {d: ep for ep in graph.endpoints.values() if ep.alias_of is None for d in ep.workloads}
    out = {}
    for w in plan.workloads:
        ep = owner[w.deployment_name]
        out[w.deployment_name] = Planned(w.deployment_name, w.node, str(w.gpu.index), w.pods[0].total_bytes / GIB, ep.name, "ollama", w.model_name)
    for v in plan.vllm:
        ep = owner[v.deployment_name]
        if v.multi_node:  # one row per rank, by pod name: the ranks of a LeaderWorkerSet are on different nodes
            for r in v.ranks:
                out[r.pod] = Planned(r.pod, r.node, ",".join(str(g.index) for g in r.gpus), r.shares[0].total_bytes / GIB, ep.name,
                                     "vllm" if r.rank == 0 else "vllm-worker", v.served_name)
            continue
        out[v.deployment_name] = Planned(v.deployment_name, v.node, ",".join(str(g.index) for g in v.gpus),
                                         v.shares[0].total_bytes / GIB, ep.name, "vllm", v.served_name, v.reserved)
    if graph.llama_stack is not None:
        name = graph.llama_stack.endpoint.name
        out[name] = Planned(name, graph.llama_stack.node, "-", 0.0, name, "llama-stack", "")
    return out


def engine_usage(p: Planned, base_url: str, client: httpx.Client) -> str:
    """What the engine itself reports, or why it could not be read."""
    try:
        if p.kind == "ollama":
            models = client.get(f"{base_url}/api/ps").raise_for_status().json().get("models", [])
            if not models:
                return "no model loaded"
            return f"size_vram {sum(m.get('size_vram', 0) for m in models) / GIB:.2f} GiB"
        if p.kind == "vllm":
            text = client.get(f"{base_url}/metrics").raise_for_status().text
            for labels, value in KV_USAGE.findall(text):
                if f'model_name="{p.model}"' in labels:
                    return f"KV cache {float(value) * 100:.0f} % used"
            return "no vllm:kv_cache_usage_perc for its model"
        return "-"
    except httpx.HTTPError as exc:
        return f"unreachable ({type(exc).__name__})"


def pod_rows(stack: Stack, pods: list[Any], urls: dict[str, str], client: httpx.Client) -> list[tuple[str, ...]]:
    plan = planned(stack)
    rows = [("pod", "planned on", "runs on", "ready", "restarts", "planned GiB/GPU", "engine reports")]
    seen = set()
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        labels = pod.metadata.labels or {}
        deployment = labels.get("llm-infra/pod") or labels.get("app.kubernetes.io/instance", "")
        if pod.metadata.name in plan:  # a rank of a multi-node replica
            deployment = pod.metadata.name
        p = plan.get(deployment)
        statuses = pod.status.container_statuses or []
        ready = f"{sum(1 for c in statuses if c.ready)}/{len(pod.spec.containers)}"
        restarts = str(sum(c.restart_count for c in statuses))
        node = pod.spec.node_name or "(pending)"
        if p is None:
            rows.append((pod.metadata.name, "not in the plan", node, ready, restarts, "-", "-"))
            continue
        seen.add(deployment)
        where = f"{p.node}/{p.gpus}"
        moved = "" if node in (p.node, "(pending)") else " MOVED"
        usage = engine_usage(p, urls.get(p.service, _service_base(stack, p.service)), client)
        rows.append((pod.metadata.name, where, node + moved, ready, restarts, f"{p.vram_gib:.2f}" if p.vram_gib else "-", usage))
    for missing in sorted(set(plan) - seen):
        what = "reserved, no pod until its autoscaler starts one" if plan[missing].reserved else "no pod"
        rows.append((f"({missing}: {what})", f"{plan[missing].node}/{plan[missing].gpus}", "-", "0/0", "-", "-", "-"))
    return rows


def _service_base(stack: Stack, service: str) -> str:
    return stack.graph.endpoints[service].base_url


def load(stack_name: str, config: Path | None) -> Stack:
    values, secrets = stack_config(stack_name, config)
    return stack_from(raw_of(values), frozenset(secrets))


def core_api(api: str | None):
    from kubernetes import client, config

    if api:  # a given API server URL (kubectl proxy, or the tests' stand-in)
        conf = client.Configuration(host=api)
        return client.CoreV1Api(client.ApiClient(conf))
    config.load_kube_config()
    return client.CoreV1Api()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", default="dev")
    p.add_argument("--config", type=Path, help="stack file instead of Pulumi.<stack>.yaml")
    p.add_argument("--kube-api", help="API server URL (e.g. `kubectl proxy`'s http://127.0.0.1:8001); default: kubeconfig")
    p.add_argument("--service-url", action="append", default=[], metavar="SERVICE=URL",
                   help="reach a Service at URL (a port-forward) instead of its in-cluster name; repeatable")
    p.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args(argv)
    try:
        stack = load(a.stack, a.config)
        urls = dict(s.split("=", 1) for s in a.service_url)
        pods = core_api(a.kube_api).list_namespaced_pod(stack.config.namespace, label_selector="app.kubernetes.io/part-of=llm-infra",
                                                        _request_timeout=a.timeout).items
    except Exception as exc:  # config, kubeconfig or API errors: one line
        print(f"status: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 2
    with httpx.Client(timeout=a.timeout) as client:
        rows = pod_rows(stack, pods, urls, client)
    print(f"stack {a.stack}, namespace {stack.config.namespace}")
    print(text_table(rows, right=(3, 4, 5)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
