"""Generate the config docs from the pydantic models, so docs and code cannot drift.

    python -m tools.gen_docs --write   # rewrite Pulumi.yaml's config: block, docs/config-reference.md's table, the plan
                                       # tables docs/stacks.md quotes and the plan pictures
    python -m tools.gen_docs --check   # exit 1 if any is stale (the tests do this too)
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from stacks.config import StackConfig
from tools.offline import ROOT

PULUMI_MARK = ("# Generated from stacks/config.py by `make docs`. Only keys with a default are declared: the Pulumi CLI requires\n"
               "# a declared key without one in every stack. Every key is in docs/config-reference.md, checked by the program.")
BEGIN, END = "<!-- config-reference:begin (make docs) -->", "<!-- config-reference:end -->"


def _unwrap(tp: Any) -> tuple[Any, str]:
    """(inner model or type, container suffix) for list[...] / dict[...] / Optional[...]."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
        return tp, ""
    if origin is list:
        inner, suffix = _unwrap(typing.get_args(tp)[0])
        return inner, "[]" + suffix
    if origin is dict:
        inner, suffix = _unwrap(typing.get_args(tp)[1])
        return inner, ".<name>" + suffix
    return tp, ""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:  # a constrained type (Annotated[str, Field(pattern=...)]): its base type
        return _type_name(typing.get_args(tp)[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"map of {_type_name(typing.get_args(tp)[1])}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "object"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(tp, str(tp))


def rows(model: type[BaseModel] = StackConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    out = []
    for name, f in model.model_fields.items():
        k = f"{prefix}{f.alias or name}"
        if f.is_required():
            default = "required"
        elif f.default is PydanticUndefined or isinstance(f.default, BaseModel) or f.default in ({}, []):
            default = "see below" if isinstance(f.default, BaseModel) else ("empty" if f.default in ({}, []) else "")
        else:
            default = "none" if f.default is None else f"`{f.default}`"
        out.append((k, _type_name(f.annotation), default, (f.description or "").replace("|", "\\|")))
        inner, suffix = _unwrap(f.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            out += rows(inner, f"{k}{suffix}.")
    return out


def readme_table() -> str:
    lines = ["| key (`llm-infra:` ...) | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {t} | {d} | {m} |" for k, t, d, m in rows()]
    return "\n".join(lines)


def pulumi_config_block() -> dict[str, Any]:
    """Pulumi.yaml `config:`: only the keys with a CLI type (string) and a default. The CLI treats a declared key
    without a default as required in every stack ("Stack 'dev' is missing configuration values", pulumi
    pkg/v3/cmd/pulumi/config: validateStackConfigAndApplyProjectConfig), so the others are documented in the README only."""
    block: dict[str, Any] = {}
    for name, f in StackConfig.model_fields.items():
        if f.annotation is str and isinstance(f.default, str):
            block[f.alias or name] = {"type": "string", "default": f.default, "description": f.description}
    return block


def rendered_pulumi_yaml() -> str:
    text = (ROOT / "Pulumi.yaml").read_text()
    head = text.split(PULUMI_MARK, 1)[0].split("\nconfig:", 1)[0].rstrip("\n")
    body = yaml.safe_dump({"config": pulumi_config_block()}, sort_keys=False, width=120)
    return f"{head}\n{PULUMI_MARK}\n{body}"


REFERENCE = ROOT / "docs" / "config-reference.md"
STACKS_DOC = ROOT / "docs" / "stacks.md"
PLAN_EXCERPTS = {"prod": ("GPU plan", "vLLM ("), "lab": ("GPU plan", "vLLM ("), "scale": ("vLLM (", "pool ")}
"""The tables of `make render` that docs/stacks.md quotes, per stack: generated, so every figure is the code's."""


def _fill(text: str, begin: str, end: str, body: str) -> str:
    before, rest = text.split(begin, 1)
    _, after = rest.split(end, 1)
    return f"{before}{begin}\n{body}\n{end}{after}"


def rendered_reference() -> str:
    return _fill(REFERENCE.read_text(), BEGIN, END, readme_table())


def plan_excerpt(stack: str) -> str:
    """The tables of the stack's `make render` output that start with the excerpt's headings, as a text block."""
    from stacks.plan.report import format_table

    blocks = format_table(_plan(stack)).split("\n\n")
    keep = [b.strip("\n") for b in blocks if b.lstrip().startswith(PLAN_EXCERPTS[stack])]
    return "```text\n" + "\n\n".join(keep) + "\n```"


def rendered_stacks_doc() -> str:
    text = STACKS_DOC.read_text()
    for stack in PLAN_EXCERPTS:
        text = _fill(text, f"<!-- plan:{stack}:begin (make docs) -->", f"<!-- plan:{stack}:end -->", plan_excerpt(stack))
    return text


def _plan(stack: str):
    from tools.status import load

    return load(stack, None).plan


PICTURE_STACKS = ("dev", "prod")


def plan_pictures() -> dict:
    """docs/plan-<stack>.svg, the pictures the README shows: the plans of the shipped stack files."""
    from tools.plan_picture import plan_svg

    out = {}
    for stack in PICTURE_STACKS:
        out[ROOT / "docs" / f"plan-{stack}.svg"] = plan_svg(_plan(stack), f"GPU plan of stack {stack}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true")
    g.add_argument("--check", action="store_true")
    a = p.parse_args(argv)
    want = {ROOT / "Pulumi.yaml": rendered_pulumi_yaml(), REFERENCE: rendered_reference(), STACKS_DOC: rendered_stacks_doc(),
            **plan_pictures()}
    stale = [path for path, text in want.items() if not path.is_file() or path.read_text() != text]
    if a.write:
        for path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(want[path])
            print(f"updated {path.name}")
        return 0
    for path in stale:
        print(f"{path.name} is stale: run make docs", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
