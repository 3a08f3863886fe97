"""Monitors, alerts, the dashboard and the autoscalers' queries: every PromQL expression parses and names only
series the engines export (catalog/metrics.yaml), the rules pass promtool, the objects match their CRDs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import promql_parser as pp
import pytest
import yaml

from stacks.model_catalog import exported_metrics
from stacks.observability import alert_rules, expressions, panels
from tests.conftest import run_raw, run_secret_raw, stack_of, stack_raw, variant
from tests.test_validate import STACKS
from tools.offline import ROOT

PROMTOOL = Path(ROOT) / ".tools" / "bin" / "promtool"


def metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node):
        if isinstance(node, pp.VectorSelector) and node.name:
            names.add(node.name)

    pp.walk(pp.parse(expr), pre_visit=visit)
    return names


def rendered(stack: str):
    raw = stack_raw(stack)
    return stack_of(raw), run_secret_raw(raw, ["hfToken"] if "hfToken" in raw else [])


@pytest.mark.parametrize("stack", STACKS)
def test_every_expression_parses_and_reads_only_exported_series(stack):
    s = stack_of(stack_raw(stack))
    exprs = expressions(s.config, s.plan, s.graph)
    assert exprs
    for expr in exprs:
        # each reads at least one series, except the plan's constant line next to each GPU
        assert metric_names(expr) or re.fullmatch(r"vector\(\d+\)", expr), expr
        assert metric_names(expr) <= exported_metrics(), (expr, metric_names(expr) - exported_metrics())


def test_the_name_check_catches_names_vllm_renamed_or_never_had():
    for stale in ("vllm:gpu_cache_usage_perc", "vllm:num_requests_swapped", "vllm:time_per_output_token_seconds_bucket",
                  "DCGM_FI_DEV_FB_TOTAL", "kube_endpoint_address_available"):
        assert stale not in exported_metrics()
        assert metric_names(f"max({stale})") - exported_metrics() == {stale}
    with pytest.raises(ValueError):
        pp.parse("sum(rate(vllm:generation_tokens_total[5m])")  # unbalanced: the parser rejects it


OPERATOR_ON = lambda r: r.update(monitoring={**r.get("monitoring", {}), "prometheusOperator": True})  # noqa: E731


@pytest.mark.parametrize("stack", STACKS)
def test_rules_pass_promtool(stack, tmp_path):
    assert PROMTOOL.exists(), "promtool is missing: `make test` builds it with Go (e2e/build-tools.sh promtool)"
    raw = variant(OPERATOR_ON, stack)  # dev runs without the operator; its rules are checked all the same
    run = run_secret_raw(raw, ["hfToken"] if "hfToken" in raw else [])
    rule = run.find("PrometheusRule", "llm-infra-alerts")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    out = subprocess.run([str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "FAILED" not in out.stderr, out.stdout + out.stderr  # lint findings exit 0: read them
    assert f"SUCCESS: {len(rule['spec']['groups'][0]['rules'])} rules found" in out.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"alert": "A", "expr": "sum(vllm:num_requests_waiting"}]}]}))
    assert subprocess.run([str(PROMTOOL), "check", "rules", str(broken)], capture_output=True, timeout=60).returncode != 0


def test_prod_alerts_cover_the_kv_cache_waiting_restarts_gpus_and_services():
    s = stack_of(stack_raw("prod"))
    rules = alert_rules(s.config, s.plan, s.graph)
    assert {r.alert for r in rules} == {"VllmKvCacheNearlyFull", "VllmRequestsWaiting", "LlmPodRestarting",
                                        "LlmServiceHasNoReadyPod", "GpuMemoryAbovePlan"}
    gpu = [r for r in rules if r.alert == "GpuMemoryAbovePlan"]
    assert len(gpu) == 4  # one per A100, at the plan's figure for it
    for r, g in zip(gpu, s.plan.gpus):
        assert r.expr == f'max(DCGM_FI_DEV_FB_USED{{Hostname="a100-node", gpu="{g.gpu.index}"}}) > {round(g.allocated_bytes / 2**20)}'
    services = {r.expr for r in rules if r.alert == "LlmServiceHasNoReadyPod"}
    assert 'sum(kube_deployment_status_replicas_available{namespace="llama-serve", deployment=~"vllm-llama-70b"}) == 0' in services
    # a rollout of the single 70B pod may rightly leave it without a ready pod for its whole start-up budget (3330 s)
    seventy = next(r for r in rules if r.alert == "LlmServiceHasNoReadyPod" and dict(r.labels)["service"] == "vllm-llama-70b")
    assert seventy.for_ == "3330s"
    stack_rule = next(r for r in rules if r.alert == "LlmServiceHasNoReadyPod" and dict(r.labels)["service"] == "llamastack-server")
    assert stack_rule.for_ == "300s"


def test_a_reserved_replica_never_counts_as_a_missing_pod():
    s = stack_of(stack_raw("lab"))
    multi = next(r for r in alert_rules(s.config, s.plan, s.graph) if "vllm-llama-8b-multi" in r.expr)
    assert 'deployment=~"vllm-llama-8b-multi"' in multi.expr  # -1 is reserved: 0 pods is its normal state


def test_a_service_monitor_per_vllm_model_selecting_its_service():
    s, run = rendered("prod")
    monitors = {o["metadata"]["name"]: o for o in run.objects() if o["kind"] == "ServiceMonitor"}
    assert sorted(monitors) == sorted(n for n, ep in s.graph.endpoints.items() if ep.kind == "vllm" and ep.alias_of is None)
    for name, m in monitors.items():
        svc = run.find("Service", name)
        assert m["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        assert m["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
        assert [p["name"] for p in svc["spec"]["ports"]] == ["http"]
        # no other Service of the stack matches (the alias Services of the adapter pool have their own instance)
        others = [o for o in run.objects() if o["kind"] == "Service" and o["metadata"]["name"] != name
                  and m["spec"]["selector"]["matchLabels"].items() <= o["metadata"]["labels"].items()]
        assert others == []


def test_the_dashboard_has_the_panels_and_the_plan_next_to_each_gpu():
    s, run = rendered("prod")
    cm = run.find("ConfigMap", "llm-infra-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(cm["data"]["llm-infra-llama-serve.json"])
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "model_name"]
    titles = [p["title"] for p in board["panels"]]
    assert titles == [p.title for p in panels(s.config, s.plan)] == [
        "Requests per second", "Running and waiting requests", "KV cache usage", "Time to first token (p50, p95)",
        "Generated tokens per second", "End-to-end request latency (p50, p95)", "GPU memory on a100-node, next to the plan (MiB)"]
    gpu = board["panels"][-1]
    plan_lines = {t["legendFormat"]: t["expr"] for t in gpu["targets"] if t["legendFormat"].endswith(" plan")}
    assert plan_lines == {f"a100-node/{g.gpu.index} plan": f"vector({round(g.allocated_bytes / 2**20)})" for g in s.plan.gpus}
    exprs = set(expressions(s.config, s.plan, s.graph))
    assert all(t["expr"] in exprs for p in board["panels"] for t in p["targets"])
    assert all(p["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for p in board["panels"])


def test_without_the_operator_only_annotations_and_without_dashboards_no_configmap():
    run = run_raw(variant(lambda r: r.update(monitoring={"prometheusOperator": False, "dashboards": False})))
    assert not [o for o in run.objects() if o["kind"] in ("ServiceMonitor", "PrometheusRule")
                or o["metadata"]["name"] == "llm-infra-dashboard"]


def test_selector_labels_reach_monitors_and_rules():
    run = run_secret_raw(variant(lambda r: r.update(monitoring={"selectorLabels": {"release": "kps"}}), "prod"), ["hfToken"])
    for o in run.objects():
        if o["kind"] in ("ServiceMonitor", "PrometheusRule"):
            assert o["metadata"]["labels"]["release"] == "kps"


def test_query_ids_never_run_out():
    from components.monitoring import ref_id

    assert [ref_id(i) for i in (0, 1, 25, 26, 27, 51, 52, 701, 702)] == ["A", "B", "Z", "AA", "AB", "AZ", "BA", "ZZ", "AAA"]
