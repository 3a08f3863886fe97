"""The pull-request workflow: actionlint over it (and proof the check can fail), what it runs, and the program's own
provider following the stack's `kubernetes:` settings."""

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
    broken.write_text((ROOT / ".github/workflows/pull-request.yml").read_text().replace("runs-on:", "run-on:", 1))
    result = lint(broken)
    assert result.returncode == 1 and "run-on" in result.stdout


def test_the_workflow_tests_renders_runs_the_real_engine_and_previews_every_stack():
    flow = yaml.safe_load((ROOT / ".github/workflows/pull-request.yml").read_text())
    test_steps = flow["jobs"]["test"]["steps"]
    runs = " ".join(s.get("run", "") for s in test_steps)
    assert "make test" in runs and "make render" in runs
    assert "for stack in " + " ".join(sorted(STACKS, key=["dev", "prod", "lab", "scale"].index)) in runs
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") and s["with"]["path"] == "build/" for s in test_steps)
    # make e2e needs no secret: the real engine runs for pull requests from forks too.
    e2e = flow["jobs"]["e2e"]
    assert [s["run"] for s in e2e["steps"] if "run" in s] == ["make e2e"] and "secrets" not in yaml.safe_dump(e2e)
    preview = flow["jobs"]["preview"]
    assert sorted(preview["strategy"]["matrix"]["stack"]) == sorted(STACKS)
    assert preview["if"] == "github.event.pull_request.head.repo.full_name == github.repository"  # forks get no secrets
    assert preview["concurrency"] == {"group": "pulumi-preview-${{ matrix.stack }}", "cancel-in-progress": False}
    step = next(s for s in preview["steps"] if s.get("name") == "pulumi preview")
    # The same script make e2e previews with (e2e/run.py imports it), never render mode against a stack with state.
    assert '.venv/bin/python -m tools.preview --stack "$STACK"' in step["run"] and step["shell"] == "bash"
    assert "renderYamlToDirectory" not in (ROOT / ".github/workflows/pull-request.yml").read_text()
    assert "from tools import preview as driver" in (ROOT / "e2e" / "run.py").read_text()


def test_render_to_directory_reaches_the_programs_own_provider():
    """A preview with kubernetes:renderYamlToDirectory (no cluster) renders with the program's own provider too."""
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
