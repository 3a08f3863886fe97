"""`make e2e`: every stack through the real Pulumi CLI, engine and pulumi-kubernetes provider against a real
Kubernetes 1.34 control plane on 127.0.0.1 (e2e/cluster.py), as a user runs it.

    python -m e2e.run [--stack dev --stack prod ...] [--keep]

Per stack, on a cluster of its own: its nodes as KWOK nodes and the add-ons it expects (e2e/addons.py); a local file
backend and the passphrase secrets provider; `pulumi stack init`; `pulumi config set --secret` of every secret the
stack needs, with a canary value; preview; up; the checks below; `preview --expect-no-changes`; the changes users
make (e2e/changes.py), each one `pulumi up` that must complete and leave nothing to change; then `destroy`. The
canary must appear in no state export, output or log. Exit status 1 on the first failure, with the failing step.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes.config import kube_config
from pulumi import automation as auto

from e2e import addons, changes, checks
from e2e.cluster import Cluster, stop_tools
from stacks import yaml_file
from stacks.config import GpuSharing, Node
from stacks.loader import missing_secrets
from stacks.plan import text_table
from tools import preview as driver
from tools.offline import stack_config

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "e2e"
STACKS = ("dev", "prod", "lab", "scale")


class StepFailed(Exception):
    pass


@dataclass
class StackRun:
    """One stack's e2e run: its cluster, its project copy and its Pulumi stack."""

    name: str
    work: Path
    cluster: Cluster
    stack: auto.Stack
    canaries: dict[str, str]
    log: list[str] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        config, _ = stack_config(self.name, self.stack_file)
        return config.get("llm-infra:namespace", "")

    @property
    def stack_file(self) -> Path:
        return self.work / "project" / f"Pulumi.{self.name}.yaml"

    def say(self, line: str) -> None:
        print(f"[{self.name}] {line}", flush=True)

    def output(self, line: str) -> None:
        self.log.append(line)

    def step(self, what: str, fn: Callable[[], object]) -> object:
        self.say(f"{what} ...")
        start = time.monotonic()
        try:
            result = fn()
        except auto.errors.CommandError as exc:
            raise StepFailed(f"{self.name}: {what} failed:\n{exc}") from None
        finally:
            self.cluster.check_alive()
        took = time.monotonic() - start
        self.timings.append((what, took))
        self.say(f"{what}: done in {took:.1f} s")
        return result

    def preview(self, what: str = "pulumi preview", expect_no_changes: bool = False) -> auto.PreviewResult:
        return self.step(what, lambda: driver.preview(self.stack, expect_no_changes, self.output))  # type: ignore[return-value]

    def up(self, what: str = "pulumi up") -> auto.UpResult:
        """`pulumi up`, watched: a pod the scheduler keeps refusing ends it at once with the scheduler's reason, instead
        of `pulumi up` waiting out the Deployment's start-up budget (an hour for a 70B)."""
        refused: list[str] = []
        done = threading.Event()

        def watch() -> None:
            while not done.wait(5):
                try:
                    refused.extend(checks.unschedulable(self.namespace))
                except Exception:  # noqa: BLE001  (the API may be busy; the next poll tells)
                    continue
                if refused:
                    stop_tools(self.work / "pulumi-home")  # the CLI and its plugins: the up fails now
                    return
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            return self.step(what, lambda: self.stack.up(on_output=self.output, color="never"))  # type: ignore[return-value]
        except StepFailed:
            if refused:
                raise StepFailed(f"{self.name}: {what}: pods the scheduler refuses:\n  " + "\n  ".join(refused)) from None
            raise
        finally:
            done.set()

    def edit(self, change: Callable[[dict], None]) -> None:
        """Edit the stack file as a user would (the CLI keeps the secrets and the salt it wrote there)."""
        data = yaml_file.load_stack_file(self.stack_file)
        raw = {k.split(":", 1)[1]: v for k, v in data["config"].items() if k.startswith("llm-infra:")}
        change(raw)
        data["config"] = {**{k: v for k, v in data["config"].items() if not k.startswith("llm-infra:")},
                          **{f"llm-infra:{k}": v for k, v in raw.items()}}
        self.stack_file.write_text(yaml.safe_dump(data, sort_keys=False))


def canary(key: str) -> str:
    value = f"e2e-canary-{key}-{secrets.token_hex(16)}"
    return f"hf_{value}" if key == "hfToken" else value


def start(name: str) -> StackRun:
    work = BUILD / name
    Cluster(work / "cluster").stop_kept()
    shutil.rmtree(work, ignore_errors=True)
    (work / "project").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", work / "project" / "Pulumi.yaml")
    shutil.copy(ROOT / f"Pulumi.{name}.yaml", work / "project" / f"Pulumi.{name}.yaml")
    raw_file = yaml_file.load_stack_file(ROOT / f"Pulumi.{name}.yaml")["config"]
    nodes = [Node.model_validate(n) for n in raw_file["llm-infra:nodes"]]
    sharing = GpuSharing.model_validate(raw_file.get("llm-infra:gpuSharing", {}))

    cluster = Cluster(work / "cluster", pulumi_home=work / "pulumi-home").start()
    print(f"[{name}] control plane up on 127.0.0.1:{cluster.api_port}", flush=True)
    made = addons.install(cluster.kubeconfig, nodes, sharing)
    models = (raw_file.get("llm-infra:vllm") or {}).get("models", {})
    if any(int(m.get("pipelineParallel", 1)) > 1 for m in models.values()):
        made += addons.start_lws(cluster, cluster.kubeconfig)
    for line in made:
        print(f"[{name}]   {line[:140]}", flush=True)
    (work / "state").mkdir()
    env = {
        "PULUMI_BACKEND_URL": f"file://{work / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": secrets.token_hex(16),
        "PULUMI_HOME": str(work / "pulumi-home"),
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    os.environ["KUBECONFIG"] = env["KUBECONFIG"]  # for this process's own checks (e2e/checks.py, tools/status.py)
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = env["KUBECONFIG"]  # read once, when the client was imported
    stack = driver.open_stack(name, work / "project", env, create=True, secrets_provider="passphrase")
    config, secret_keys = stack_config(name, work / "project" / f"Pulumi.{name}.yaml", placeholders=False)
    raw = {k.split(":", 1)[1]: json.loads(v) if v[:1] in "{[" else v for k, v in config.items() if k.startswith("llm-infra:")}
    canaries = {k: canary(k) for k in missing_secrets(raw, frozenset(secret_keys))}
    run = StackRun(name, work, cluster, stack, canaries)
    for key, value in canaries.items():
        run.step(f"pulumi config set --secret {key}", lambda: stack.set_config(f"llm-infra:{key}", auto.ConfigValue(value, secret=True)))
    return run


def run_stack(name: str, keep: bool) -> StackRun:
    run = start(name)
    try:
        run.preview()
        run.up()
        checks.converged(run)
        run.preview("pulumi preview --expect-no-changes", expect_no_changes=True)
        for change in changes.plan_for(run):
            before = change.apply(run)
            run.up(f"pulumi up: {change.what}")
            checks.converged(run, quiet=True)
            run.say(f"  {change.verify(run, before)}")
            run.preview(f"pulumi preview --expect-no-changes after: {change.what}", expect_no_changes=True)
        pvs = checks.cache_volumes()
        run.step("pulumi destroy", lambda: run.stack.destroy(on_output=run.output, color="never"))
        run.up("pulumi up after destroy")
        checks.converged(run, quiet=True)
        checks.same_volumes(run, pvs)
        checks.no_canary(run)
        if not keep:
            run.step("pulumi destroy", lambda: run.stack.destroy(on_output=run.output, color="never"))
    finally:
        (run.work / "pulumi-output.log").write_text("\n".join(run.log))
        if keep:
            run.cluster.detach()
            print(f"[{name}] the cluster keeps running: KUBECONFIG={run.cluster.kubeconfig}; "
                  f"stop it with: kill $(cut -d' ' -f1 {run.cluster.workdir / 'pids'})")
        else:
            run.cluster.stop()
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stack", action="append", choices=STACKS, help="repeatable; default: all four")
    p.add_argument("--keep", action="store_true", help="leave the last stack's cluster running (KUBECONFIG printed)")
    a = p.parse_args(argv)
    total = time.monotonic()
    runs = []
    names = a.stack or list(STACKS)
    for name in names:
        try:
            runs.append(run_stack(name, a.keep and name == names[-1]))
        except (StepFailed, checks.CheckFailed) as exc:
            print(f"\nFAILED {exc}\n(logs: {BUILD / name})", file=sys.stderr)
            return 1
    print(f"\ne2e: {len(runs)} stacks in {time.monotonic() - total:.0f} s")
    rows = [("stack", "steps", "first up s", "changes", "all steps s", "slowest step")]
    for r in runs:
        first = next(t for what, t in r.timings if what == "pulumi up")
        slowest = max(r.timings, key=lambda x: x[1])
        changes = sum(1 for what, _ in r.timings if what.startswith("pulumi up: "))
        rows.append((r.name, str(len(r.timings)), f"{first:.0f}", str(changes), f"{sum(t for _, t in r.timings):.0f}",
                     f"{slowest[0]} ({slowest[1]:.0f} s)"))
    print(text_table(rows, right=(1, 2, 3, 4)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
