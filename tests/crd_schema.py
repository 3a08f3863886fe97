"""Validate a custom resource against the openAPIV3Schema of its published CRD (shipped under tests/schemas).

Strict like kubernetes-validate's strict mode: a property the schema does not declare is an error (the API
server would prune it silently, so a misspelt field would be lost without a word).
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMAS = Path(__file__).parent / "schemas"
CRD_FILES = {
    ("traefik.io/v1alpha1", "Middleware"): "traefik.io_middlewares.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): "leaderworkerset.x-k8s.io_leaderworkersets.yaml",
}


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@cache
def schema_for(api_version: str, kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((SCHEMAS / CRD_FILES[(api_version, kind)]).read_text())
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    v = next(v for v in crd["spec"]["versions"] if v["name"] == version and v["served"])
    schema = _strict(copy.deepcopy(v["schema"]["openAPIV3Schema"]))
    # apiVersion/kind/metadata are the API server's: check the custom part.
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def crd_errors(obj: dict[str, Any]) -> list[str]:
    """Every schema violation of a custom resource, as `path: message`."""
    validator = jsonschema.Draft7Validator(schema_for(obj["apiVersion"], obj["kind"]))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)]


def is_crd(obj: dict[str, Any]) -> bool:
    return (obj["apiVersion"], obj["kind"]) in CRD_FILES
