"""Offline render: run the program under mocks and write manifests.yaml + plan.json.

    python -m tools.render --stack dev [--config Pulumi.dev.yaml] [--out build/dev]

An invalid config prints its problems and exits 2 without writing anything.
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
from stacks.graph import format_routes
from stacks.plan import format_table
from tools.offline import ROOT, StackFileError, run_stack


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", default="dev")
    p.add_argument("--config", type=Path, help="stack file to use instead of Pulumi.<stack>.yaml")
    p.add_argument("--out", type=Path, help="output directory (default build/<stack>)")
    a = p.parse_args(argv)
    out = a.out or ROOT / "build" / a.stack
    started = time.perf_counter()
    try:
        run = run_stack(a.stack, a.config)
    except (InvalidStack, StackFileError) as exc:
        print(f"render {a.stack}: {exc}", file=sys.stderr)
        print("nothing was written.", file=sys.stderr)
        return 2
    objects = run.objects()
    plan = run.program["stack"].plan
    out.mkdir(parents=True, exist_ok=True)
    manifests = out / "manifests.yaml"
    manifests.write_text(yaml.safe_dump_all(objects, sort_keys=False, width=120))
    (out / "plan.json").write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
    print(format_table(plan))
    routes = format_routes(run.program["stack"].graph)
    if routes:
        print("\n" + routes)
    kinds: dict[str, int] = {}
    for o in objects:
        kinds[o["kind"]] = kinds.get(o["kind"], 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in kinds.items())
    print(f"\nwrote {manifests} ({len(objects)} objects: {summary}) and {out / 'plan.json'} "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the mocks' event loop, already finished, otherwise prints a
    # harmless "Exception ignored in BaseEventLoop.__del__" traceback at exit.
    os._exit(code)
