"""Offline render: run the program under mocks and write manifests.yaml + plan.json.

    python -m tools.render --stack dev [--config Pulumi.dev.yaml] [--out build/dev]

Without --stack the stack is named after --config (`Pulumi.x.yaml` or `x.yaml` -> x), else dev; the
output goes to build/<stack>. Secrets are left out of manifests.yaml (a render never holds one): the
renderer prints the `kubectl create secret` line for each. An invalid config prints its problems and
exits 2 without writing anything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

from stacks.loader import InvalidStack
from stacks.edge import AUTH_SECRET, format_edge
from stacks.graph import format_routes
from stacks.plan import Plan, format_table, listing
from tools.addons import format_addons
from tools.offline import ROOT, StackFileError, run_stack, stack_config
from tools.plan_picture import plan_svg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", help="stack name (default: from --config's file name, else dev)")
    p.add_argument("--config", type=Path, help="stack file to use instead of Pulumi.<stack>.yaml")
    p.add_argument("--out", type=Path, help="output directory (default build/<stack>)")
    a = p.parse_args(argv)
    a.stack = a.stack or (stack_name(a.config) if a.config else "dev")
    out = a.out or ROOT / "build" / a.stack
    started = time.perf_counter()
    print(f"render {a.stack}: checking the config and the plan, then registering the objects under mocks ...",
          file=sys.stderr, flush=True)
    try:
        run = run_stack(a.stack, a.config)
    except (InvalidStack, StackFileError) as exc:
        if isinstance(exc, InvalidStack) and exc.plan is not None:
            print(failed_plan_table(exc.plan, exc.unplaced), flush=True)
        print(f"render {a.stack}: {exc}", file=sys.stderr)
        print("nothing was written.", file=sys.stderr)
        return 2
    objects = [o for o in run.objects() if o["kind"] != "Secret"]
    secrets = [o for o in run.objects() if o["kind"] == "Secret"]
    plan = run.program["stack"].plan
    out.mkdir(parents=True, exist_ok=True)
    manifests = out / "manifests.yaml"
    manifests.write_text(yaml.safe_dump_all(objects, sort_keys=False, width=120))
    (out / "plan.json").write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
    (out / "plan.svg").write_text(plan_svg(plan, f"GPU plan of stack {a.stack}"))
    print(format_table(plan))
    edge = format_edge(run.program["stack"].config, list(run.program["stack"].routes))
    if edge:
        print("\n" + edge)
    routes = format_routes(run.program["stack"].graph)
    if routes:
        print("\n" + routes)
    kinds: dict[str, int] = {}
    for o in objects:
        kinds[o["kind"]] = kinds.get(o["kind"], 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in kinds.items())
    print(f"\nwrote {manifests} ({len(objects)} objects: {summary}), {out / 'plan.json'} and {out / 'plan.svg'} "
          f"in {time.perf_counter() - started:.1f} s")
    print("\n" + format_addons(run.program["stack"].config, plan, kinds))
    _, stored = stack_config(a.stack, a.config, placeholders=False)
    _, needed = stack_config(a.stack, a.config)
    for key in sorted(set(needed) - set(stored)):
        short = key.split(":", 1)[1]
        value = '"$(openssl rand -hex 32)"' if short == "apiKey" else "hf_..."
        print(f"\n{key} is not set (rendered with a placeholder); before `pulumi up`: "
              f"pulumi config set --secret {short} {value} --stack {a.stack}")
    if secrets:
        print("\nSecrets are not in manifests.yaml; before `kubectl apply -f`, create them (pulumi up does this itself):")
        for s in secrets:
            keys = " ".join(f'--from-literal={k}="${shell_var(k)}"' for k in sorted(s.get("stringData") or s.get("data") or {}))
            print(f"  kubectl -n {s['metadata']['namespace']} create secret generic {s['metadata']['name']} {keys}")
            if s["metadata"]["name"] == AUTH_SECRET:
                print("    (AUTH: the htpasswd line of the API key, e.g. AUTH=\"$(htpasswd -nbB <ingress.auth.user> \"$API_KEY\")\")")
    return 0


def failed_plan_table(plan: Plan, unplaced: tuple[str, ...]) -> str:
    """The tables of a plan that failed: what was placed, then the vLLM pods that have no room (the errors follow)."""
    head = "The plan failed; this is what was placed (the errors below say what does not fit)."
    gpus, _, rest = format_table(plan).partition("\n\n")  # the GPU table, then the node, pool and vLLM tables
    mark = [f"  NOT PLACED (no room): {listing(list(unplaced), 8)}"] if unplaced else []
    return "\n".join([head, gpus, *mark, "", rest]) + "\n"


def shell_var(key: str) -> str:
    """A shell variable for a Secret key (`api-key` -> `API_KEY`, `HF_TOKEN` stays)."""
    return "".join(c if c.isalnum() else "_" for c in key).upper()


def stack_name(config: Path) -> str:
    """`Pulumi.x.yaml` -> x, `x.yaml` -> x."""
    name = config.name.removesuffix(".yaml").removesuffix(".yml")
    return name.removeprefix("Pulumi.") or "dev"


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the mocks' event loop, already finished, otherwise prints a
    # harmless "Exception ignored in BaseEventLoop.__del__" traceback at exit.
    os._exit(code)
