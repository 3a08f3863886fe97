"""`pulumi preview` of a stack, the one way the pull-request workflow and `make e2e` run it.

    python -m tools.preview --stack prod [--expect-no-changes] [--work-dir DIR]

It drives the real Pulumi CLI (`pulumi stack init`, `config set --secret`, `preview`, `up`, `destroy`) through the
Automation API (pulumi.automation, the SDK this program pins). The program is run in this process by the SDK's own
language runtime server, which the CLI reaches with `--client`, instead of by the `pulumi-language-python` plugin: the
same `__main__.py`, config, engine, state and provider plugin as `pulumi preview` in a shell. Where `.tools/bin/pulumi`
exists (built by e2e/build-tools.sh) it is used, otherwise the `pulumi` on PATH.

The backend and secrets are the environment's (PULUMI_BACKEND_URL, PULUMI_ACCESS_TOKEN, PULUMI_CONFIG_PASSPHRASE);
the cluster is the `kubernetes:` config's or KUBECONFIG's.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from pulumi import automation as auto

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"


def program() -> None:
    """The project's own entry point, as the language host would run it."""
    runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What every CLI call gets: no update check, and where e2e/build-tools.sh built the tools, those first on PATH (the
    provider is an ambient plugin there) and no plugin downloads (nothing is fetched that the project did not pin).
    Without them (the pull-request workflow's preview) the CLI installs the provider the SDK asks for, as it does for
    `pulumi preview`."""
    env = {"PULUMI_SKIP_UPDATE_CHECK": "true"}
    if (TOOLS / "bin" / "pulumi-resource-kubernetes").exists():
        env.update(PATH=f"{TOOLS / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true")
    return {**env, **(extra or {})}


def open_stack(name: str, work_dir: Path, env: Mapping[str, str] | None = None, create: bool = False,
               secrets_provider: str | None = None) -> auto.Stack:
    """The stack of the project in `work_dir` (its Pulumi.yaml and Pulumi.<name>.yaml), created if asked."""
    command = auto.PulumiCommand(root=str(TOOLS)) if (TOOLS / "bin" / "pulumi").exists() else None
    ws = auto.LocalWorkspace(work_dir=str(work_dir), program=program, env_vars=cli_env(env), pulumi_command=command,
                             secrets_provider=secrets_provider)
    if create:
        return auto.Stack.create(name, ws)
    return auto.Stack.select(name, ws)


def preview(stack: auto.Stack, expect_no_changes: bool = False, on_output: Callable[[str], None] = print) -> auto.PreviewResult:
    return stack.preview(expect_no_changes=expect_no_changes, on_output=on_output, diff=True, color="never")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stack", required=True)
    p.add_argument("--work-dir", type=Path, default=ROOT, help="the project folder (Pulumi.yaml and the stack file)")
    p.add_argument("--expect-no-changes", action="store_true", help="fail if the preview plans any change")
    a = p.parse_args(argv)
    try:
        result = preview(open_stack(a.stack, a.work_dir), a.expect_no_changes)
    except auto.errors.CommandError as exc:
        print(f"pulumi preview of stack {a.stack} failed:\n{exc}", file=sys.stderr)
        return 1
    print(f"stack {a.stack}: {dict(sorted(result.change_summary.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
