"""Monitoring: where Prometheus is, which objects tell it what to scrape and alert on, and the dashboard."""

from __future__ import annotations

from pydantic import Field, field_validator

from stacks.config.base import DNS_LABEL, _Model
from stacks.config.urls import url_problem


class Monitoring(_Model):
    namespace: str = Field(default="monitoring", pattern=DNS_LABEL)
    """Namespace of Prometheus (and Grafana): the network policies let it scrape vLLM's `/metrics` from there."""
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    """Prometheus' query URL, which KEDA's scalers ask (`prometheus-operated` is the Service the Prometheus Operator makes):
    http(s), an ASCII host, no user name or password (it would stand in plain text in every ScaledObject), no query or
    fragment (KEDA appends `/api/v1/query?...`)."""
    prometheus_operator: bool = True
    """The Prometheus Operator is installed: a ServiceMonitor per vLLM model and a PrometheusRule with the alerts. Without it,
    only the `prometheus.io/*` scrape annotations (which a plain Prometheus's kubernetes_sd relabelling reads)."""
    selector_labels: dict[str, str] = {}
    """Labels the Prometheus resource selects monitors and rules by (kube-prometheus-stack: `release: <its Helm release>`)."""
    dashboards: bool = True
    """A Grafana dashboard ConfigMap (label `grafana_dashboard: "1"`, which Grafana's dashboard sidecar loads)."""
    gpu_metrics: bool = True
    """The NVIDIA DCGM exporter runs (the GPU operator installs it): GPU memory panels and the GPU-memory-above-plan alert."""

    @field_validator("prometheus_url")
    @classmethod
    def _url(cls, v: str) -> str:
        problem = url_problem(v, "the KEDA ScaledObjects' serverAddress")
        if problem:
            raise ValueError(problem)
        return v
