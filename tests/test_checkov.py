"""checkov over every stack's render: zero failed checks outside tests/checkov-allowlist.yaml, each allowed
failure only on the pods its entry names. checkov runs from its own venv (.venv-checkov, made by `make test`)."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_secret_raw, stack_raw
from tests.test_validate import STACKS
from tools.offline import ROOT

CHECKOV = Path(ROOT) / ".venv-checkov" / "bin" / "checkov"
ALLOW = yaml.safe_load((Path(__file__).parent / "checkov-allowlist.yaml").read_text())
VERSION = "3.3.30"


def checkov(directory: Path) -> dict[str, Any]:
    assert CHECKOV.exists(), "checkov is missing: `make test` installs it into .venv-checkov (requirements-checkov.txt)"
    out = subprocess.run([str(CHECKOV), "-d", str(directory), "--framework", "kubernetes", "--skip-download", "-o", "json"],
                         capture_output=True, text=True, timeout=300)
    report = json.loads(out.stdout)
    return report[0] if isinstance(report, list) else report


def pod_sets(objects: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The `pods` sets of the allow-list, from the rendered Deployments."""
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    sets: dict[str, set[str]] = {"all": set(), "gpu": set(), "api-key-env": set()}
    for d in deployments:
        ref = f"Deployment.{d['metadata']['namespace']}.{d['metadata']['name']}"
        spec = d["spec"]["template"]["spec"]
        sets["all"].add(ref)
        limits = [c.get("resources", {}).get("limits", {}) for c in spec["containers"]]
        if spec.get("runtimeClassName") == "nvidia" or spec.get("resourceClaims") or any("nvidia.com/gpu" in lim for lim in limits):
            sets["gpu"].add(ref)
        env = [e for c in spec["containers"] for e in c.get("env", [])]
        if any(((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") == "llm-infra-api-key" for e in env):
            sets["api-key-env"].add(ref)
    return sets


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """checkov's report and the rendered objects of every stack (the three checkov runs in parallel)."""
    jobs = {}
    for stack in STACKS:
        raw = stack_raw(stack)
        objects = run_secret_raw(raw, ["hfToken"] if "hfToken" in raw else []).objects()
        d = tmp_path_factory.mktemp(stack)
        (d / "manifests.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
        jobs[stack] = (d, objects)
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = dict(zip(jobs, pool.map(lambda s: checkov(jobs[s][0]), jobs)))
    return {s: (results[s], jobs[s][1]) for s in jobs}


@pytest.mark.parametrize("stack", STACKS)
def test_checkov_fails_nothing_outside_the_allow_list(reports, stack):
    report, objects = reports[stack]
    assert report["summary"]["checkov_version"] == VERSION and report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 300  # it really looked: every object, every check
    sets = pod_sets(objects)
    unexpected = [f"{f['check_id']} {f['check_name']} on {f['resource']}" for f in report["results"]["failed_checks"]
                  if f["check_id"] not in ALLOW or f["resource"] not in sets[ALLOW[f["check_id"]]["pods"]]]
    assert unexpected == []


def test_every_allow_list_entry_has_a_reason_and_is_still_needed(reports):
    failed = {f["check_id"] for report, _ in reports.values() for f in report["results"]["failed_checks"]}
    for check_id, entry in ALLOW.items():
        assert len(entry["reason"]) > 80 and entry["pods"] in ("all", "gpu", "api-key-env"), check_id
        assert check_id in failed, f"{check_id} no longer fails anywhere: remove it from the allow-list"


def test_checkov_catches_a_root_container(tmp_path):
    """The gate can fail: a container running as root (and privileged) is reported."""
    objects = run_secret_raw(stack_raw("dev"), []).objects()
    d = next(o for o in objects if o["kind"] == "Deployment")
    d["spec"]["template"]["spec"]["securityContext"].update(runAsUser=0, runAsNonRoot=False)
    d["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(privileged=True, runAsNonRoot=False)
    (tmp_path / "manifests.yaml").write_text(yaml.safe_dump_all([d], sort_keys=False))
    failed = {f["check_id"] for f in checkov(tmp_path)["results"]["failed_checks"]}
    assert {"CKV_K8S_16", "CKV_K8S_23"} <= failed  # privileged, root
