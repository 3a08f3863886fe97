"""Write catalog/vllm-flags.json from vLLM's own `vllm serve` parser: every option string it accepts, whether it takes a
value (and how many), its type and choices.

Run with a Python where `import vllm` works (no GPU needed; VLLM_TARGET_DEVICE=cpu):
    VLLM_TARGET_DEVICE=cpu <python with vllm==0.33.0> tools/vllm_flags.py
The parser is built as `vllm` itself builds it (vllm/entrypoints/cli/main.py: a FlexibleArgumentParser, its subparsers,
ServeSubcommand().subparser_init). The tests rebuild an argparse parser from the file and parse every command line the
stacks render (tests/vllm_parser.py). With `--check build/<stack>/manifests.yaml ...` it parses every vLLM container of
rendered manifests with the real parser instead, as the kubelet would pass them (LeaderWorkerSet's variables expanded),
and runs vLLM's own checks of the parsed arguments (validate_parsed_serve_args, EngineArgs.from_cli_args).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")  # vLLM's platform detection needs it without a GPU; the options are the same
OUT = Path(__file__).resolve().parent.parent / "catalog" / "vllm-flags.json"
SIMPLE_TYPES = ("int", "float", "str")


def serve_parser():
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    top = FlexibleArgumentParser(description="vLLM CLI")
    return ServeSubcommand().subparser_init(top.add_subparsers(required=False, dest="subparser"))


def describe(parser) -> list[dict]:
    strings: dict[int, list[str]] = {}
    for opt, action in parser._option_string_actions.items():
        strings.setdefault(id(action), []).append(opt)
    out = []
    for a in parser._actions:
        if not a.option_strings:
            out.append({"positional": a.dest, "nargs": a.nargs})
            continue
        name = None if a.type is None else getattr(a.type, "__name__", "other")
        out.append({
            "strings": sorted(strings[id(a)]),
            "nargs": 0 if a.nargs == 0 else a.nargs,
            "type": name if name in SIMPLE_TYPES or name is None else "other",
            "choices": None if a.choices is None else sorted(str(c) for c in a.choices),
        })
    return sorted(out, key=lambda e: e.get("strings", [""])[0])


def check(paths: list[str]) -> int:
    """Parse every vLLM command line of rendered manifests with vLLM's parser; print one line each; 1 if any is refused."""
    import re

    import yaml
    from vllm.engine.arg_utils import EngineArgs
    from vllm.entrypoints.common.cli_args import validate_parsed_serve_args

    bad = 0
    for path in paths:
        for o in (d for d in yaml.safe_load_all(Path(path).read_text()) if d):
            pods = []
            if o["kind"] == "Deployment":
                pods.append((o["metadata"]["name"], o["spec"]["template"]["spec"], {}))
            elif o["kind"] == "LeaderWorkerSet":
                name, lwt = o["metadata"]["name"], o["spec"]["leaderWorkerTemplate"]
                env = {"LWS_LEADER_ADDRESS": f"{name}-0.{name}.{o['metadata']['namespace']}", "LWS_GROUP_SIZE": str(lwt["size"])}
                pods.append((f"{name}-0", lwt["leaderTemplate"]["spec"], {**env, "LWS_WORKER_INDEX": "0"}))
                pods += [(f"{name}-0-{i}", lwt["workerTemplate"]["spec"], {**env, "LWS_WORKER_INDEX": str(i)})
                         for i in range(1, lwt["size"])]
            for pod, spec, env in pods:
                for c in spec["containers"]:
                    if c["name"] != "vllm":
                        continue
                    args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in c["args"]]
                    try:
                        ns = serve_parser().parse_args(args)
                        validate_parsed_serve_args(ns)
                        e = EngineArgs.from_cli_args(ns)
                        print(f"ok       {pod}: tp={e.tensor_parallel_size} pp={e.pipeline_parallel_size} nnodes={e.nnodes} "
                              f"node_rank={e.node_rank} headless={getattr(ns, 'headless', False)}")
                    except (SystemExit, Exception) as exc:  # argparse exits; vLLM's checks raise
                        bad += 1
                        print(f"REFUSED  {pod}: {exc!r}")
    return 1 if bad else 0


def main() -> None:
    if sys.argv[1:2] == ["--check"]:
        sys.exit(check(sys.argv[2:]))
    import vllm

    data = {"vllm": vllm.__version__, "source": "vllm.entrypoints.cli.serve.ServeSubcommand.subparser_init, built by "
            "tools/vllm_flags.py", "options": describe(serve_parser())}
    options = data.pop("options")
    rows = ",\n".join("  " + json.dumps(o, sort_keys=True) for o in options)
    head = json.dumps(data, sort_keys=True)[:-1]
    OUT.write_text(f'{head}, "options": [\n{rows}\n]}}\n')
    print(f"vllm {vllm.__version__}: {len(options)} options -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
