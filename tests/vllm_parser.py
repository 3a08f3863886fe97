"""`vllm serve`'s command line as vLLM 0.33.0's own parser reads it, rebuilt from catalog/vllm-flags.json.

The file is written by tools/vllm_flags.py from the real parser (vllm.entrypoints.cli.serve, CPU-only import); installing
vLLM and its torch in `make test` would take minutes and gigabytes, so the tests parse with argparse built from that list:
every option string vLLM accepts, how many values it takes, int/float types and choices. Abbreviations are refused
(vLLM allows them; a rendered command line should never rely on one).
"""

from __future__ import annotations

import argparse
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

FLAGS = Path(__file__).resolve().parent.parent / "catalog" / "vllm-flags.json"
TYPES = {"int": int, "float": float, "str": str}


class Refused(ValueError):
    """vLLM's parser would exit with this message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits; the tests want the message
        raise Refused(message)


@cache
def catalog() -> dict[str, Any]:
    return json.loads(FLAGS.read_text())


@cache
def parser() -> _Parser:
    p = _Parser(prog="vllm serve", add_help=False, allow_abbrev=False)
    for o in catalog()["options"]:
        if "positional" in o:
            p.add_argument(o["positional"], nargs=o["nargs"])
            continue
        strings = o["strings"]
        dest = max(strings, key=len).lstrip("-").replace("-", "_")
        if o["nargs"] == 0:
            p.add_argument(*strings, dest=dest, action="store_true")
            continue
        kind = TYPES.get(o["type"] or "str", str)
        choices = [kind(c) for c in o["choices"]] if o["choices"] else None
        kw: dict[str, Any] = {"dest": dest, "type": kind, "choices": choices}
        if o["nargs"] is not None:
            kw["nargs"] = o["nargs"]
        p.add_argument(*strings, **kw)
    return p


def parse(args: list[str]) -> argparse.Namespace:
    """The namespace vLLM's parser would give (underscores in dests), or Refused."""
    return parser().parse_args(args)


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """What the kubelet passes: `$(VAR)` replaced from the container's environment (unknown names are left as they are)."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in args]


def known(flag: str) -> bool:
    return any(flag in o.get("strings", ()) for o in catalog()["options"])
