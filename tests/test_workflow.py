"""The pull-request workflow: actionlint over it (and proof the check can fail), what it runs, and the program's own
provider following the stack's `kubernetes:` settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from stacks.loader import RENDER_KEY
from tests.test_observability import PROMTOOL
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


def test_the_jobs_that_build_go_tools_set_up_go_first():
    """make test builds promtool and make e2e the cluster's tools from their modules in e2e/go (ubuntu-latest has no
    Debian 12 package to unpack promtool from): each job sets up a Go that every pinned module's `go` line accepts."""
    flow = yaml.safe_load((ROOT / ".github/workflows/pull-request.yml").read_text())
    wanted = max(tuple(map(int, line.split()[1].split(".")[:2])) for path in (ROOT / "e2e" / "go").glob("*/go.mod")
                 for line in path.read_text().splitlines() if line.startswith("go "))
    for job, target, sums in (("test", "make test", "e2e/go/promtool/go.sum"), ("e2e", "make e2e", "e2e/go/*/go.sum")):
        steps = flow["jobs"][job]["steps"]
        setup = [i for i, s in enumerate(steps) if s.get("uses", "").startswith("actions/setup-go@")]
        assert setup and setup[0] < next(i for i, s in enumerate(steps) if s.get("run") == target), job
        given = steps[setup[0]]["with"]
        assert tuple(map(int, given["go-version"].split("."))) >= wanted and given["cache-dependency-path"] == sums, job
    makefile = (ROOT / "Makefile").read_text()
    assert "apt-get" not in makefile and "\t@bash e2e/build-tools.sh promtool " in makefile
    assert f"PROMTOOL := {PROMTOOL.relative_to(ROOT)}\n" in makefile  # the path the alert-rule test runs


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
