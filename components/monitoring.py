"""Monitoring: a ServiceMonitor per vLLM model and a PrometheusRule with the alerts (Prometheus Operator,
`monitoring.coreos.com/v1`), and a Grafana dashboard ConfigMap for Grafana's dashboard sidecar.

What is scraped, charted and alerted on comes from stacks/observability.py (the graph and the plan);
the dashboard JSON is built with grafana-foundation-sdk, Grafana's own typed builders.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, QueryVariable
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.timeseries import Panel
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos, VariableRefresh, VariableSort
from pulumi_kubernetes.apiextensions import CustomResource

from components.labels import labels, meta, selector
from stacks.config import Monitoring
from stacks.names import ALERTS, DASHBOARD
from stacks.observability import AlertRule, PanelSpec

DASHBOARD_LABEL = {"grafana_dashboard": "1"}
"""What Grafana's dashboard sidecar loads (kube-prometheus-stack's default label and value)."""
SCRAPE_INTERVAL = "15s"


@dataclass(frozen=True)
class MonitoringArgs:
    namespace: str
    monitoring: Monitoring
    targets: list[str]
    """vLLM Services to scrape (their pods serve /metrics on the `http` port)."""
    panels: list[PanelSpec]
    rules: list[AlertRule]


def ref_id(i: int) -> str:
    """Grafana's query ids: A ... Z, AA, AB, ..."""
    letters = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        letters = chr(65 + r) + letters
    return letters


def dashboard_json(title: str, uid: str, panels: list[PanelSpec]) -> str:
    prom = DataSourceRef(type_val="prometheus", uid="${datasource}")
    board = (
        Dashboard(title).uid(uid).tags(["llm-infra", "vllm"]).refresh("30s").time("now-1h", "now").timezone("browser")
        .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(QueryVariable("model_name").label("Model").datasource(prom)
                       .query("label_values(vllm:num_requests_running, model_name)")
                       .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
                       .multi(True).include_all(True))
    )
    for i, spec in enumerate(panels):
        panel = (Panel().title(spec.title).description(f"Reads {spec.metrics}.").datasource(prom).unit(spec.unit).min(0)
                 .grid_pos(GridPos(h=8, w=12 if i < len(panels) - 1 or len(panels) % 2 == 0 else 24, x=12 * (i % 2), y=8 * (i // 2))))
        for i, q in enumerate(spec.queries):
            panel = panel.with_target(Dataquery().ref_id(ref_id(i)).expr(q.expr).legend_format(q.legend))
        board = board.with_panel(panel)
    return JSONEncoder(sort_keys=True, indent=2).encode(board.build())


class Observability(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-infra:monitoring:Observability", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        mon, ns = args.monitoring, args.namespace
        if mon.prometheus_operator:
            for svc in args.targets:
                CustomResource(
                    f"{name}-{svc}",
                    api_version="monitoring.coreos.com/v1",
                    kind="ServiceMonitor",
                    metadata=meta(svc, ns, {**labels("service-monitor", svc, "monitoring"), **mon.selector_labels}),
                    spec={
                        "selector": {"matchLabels": selector(labels("vllm", svc, "model"))},
                        "namespaceSelector": {"matchNames": [ns]},
                        # vLLM's /metrics is on its API port; --api-key guards /v1 only, so no credentials are needed.
                        "endpoints": [{"port": "http", "path": "/metrics", "interval": SCRAPE_INTERVAL}],
                    },
                    opts=child,
                )
            CustomResource(
                f"{name}-rules",
                api_version="monitoring.coreos.com/v1",
                kind="PrometheusRule",
                metadata=meta(ALERTS, ns, {**labels("prometheus-rule", ALERTS, "monitoring"), **mon.selector_labels}),
                spec={"groups": [{"name": f"llm-infra.{ns}", "rules": [
                    {"alert": r.alert, "expr": r.expr, "for": r.for_, "labels": {"severity": r.severity, **dict(r.labels)},
                     "annotations": {"summary": r.summary}} for r in args.rules]}]},
                opts=child,
            )
        if mon.dashboards:
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard",
                metadata=meta(DASHBOARD, ns, {**labels("grafana-dashboard", DASHBOARD, "monitoring"), **DASHBOARD_LABEL}),
                data={f"llm-infra-{ns}.json": dashboard_json(f"LLM serving ({ns})", f"llm-infra-{ns}"[:40], args.panels)},
                opts=child,
            )
        self.register_outputs({})
