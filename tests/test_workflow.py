"""The pull-request workflow: actionlint over it (and proof the check can fail), what it runs, and the
render-to-directory mode its preview falls back to without a kubeconfig."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from stacks.loader import RENDER_KEY
from tests.test_validate import STACKS
from tools.offline import ROOT, run_program, stack_config

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = str(Path(sys.executable).parent / "actionlint")


def lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ACTIONLINT, "-no-color", str(path)], capture_output=True, text=True, timeout=60)


def test_actionlint_passes_every_workflow():
    assert WORKFLOWS
    for path in WORKFLOWS:
        result = lint(path)
        assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_mistake(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text((ROOT / ".github/workflows/pull-request.yml").read_text().replace("stack-name:", "stack_name:"))
    result = lint(broken)
    assert result.returncode == 1 and "stack_name" in result.stdout


def test_the_workflow_tests_renders_and_previews_every_stack():
    flow = yaml.safe_load((ROOT / ".github/workflows/pull-request.yml").read_text())
    test_steps = flow["jobs"]["test"]["steps"]
    runs = " ".join(s.get("run", "") for s in test_steps)
    assert "make test" in runs and "make render" in runs
    assert "for stack in " + " ".join(sorted(STACKS, key=["dev", "prod", "lab", "scale"].index)) in runs
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") and s["with"]["path"] == "build/" for s in test_steps)
    preview = flow["jobs"]["preview"]
    assert sorted(preview["strategy"]["matrix"]["stack"]) == sorted(STACKS)
    step = next(s for s in preview["steps"] if s.get("with", {}).get("command") == "preview")
    assert step["uses"].startswith("pulumi/actions@") and step["with"]["comment-on-pr"] is True
    fallback = next(s["run"] for s in preview["steps"] if "KUBECONFIG_CONTENT" in s.get("run", ""))
    assert f"pulumi config set --stack \"$STACK\" {RENDER_KEY}" in fallback


def test_render_to_directory_reaches_the_programs_own_provider():
    """With no cluster the default provider renders (it reads kubernetes:renderYamlToDirectory itself); the
    program's adopting provider must too, or the preview would still call a cluster."""
    config, secrets = stack_config("dev")
    config[RENDER_KEY] = "build/preview-dev"
    run = run_program(config, secrets)
    providers = [r.inputs for r in run.resources if r.typ == "pulumi:providers:kubernetes"]
    assert providers == [{"renderYamlToDirectory": "build/preview-dev", "upsertExistingObjects": "true"}]


def test_the_programs_provider_reaches_the_cluster_the_stack_names():
    """An explicit provider reads no `kubernetes:` stack config: without these the model cache (on the adopting
    provider) would land on the kubeconfig's current context while everything else follows kubernetes:context."""
    config, secrets = stack_config("dev")
    config.update({"kubernetes:context": "gpu-cluster", "kubernetes:kubeconfig": "/etc/llm/kubeconfig",
                   "kubernetes:enableServerSideApply": "true", "kubernetes:unknownKey": "x"})
    run = run_program(config, secrets)
    providers = [r.inputs for r in run.resources if r.typ == "pulumi:providers:kubernetes"]
    assert providers == [{"context": "gpu-cluster", "kubeconfig": "/etc/llm/kubeconfig", "enableServerSideApply": "true",
                          "upsertExistingObjects": "true"}]
