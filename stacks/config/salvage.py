"""Every problem in one run: the checks that still run when the schema refuses part of the config.

When the stack config fails validation, `salvaged_problems` takes out what the schema refused, a leaf at a time (an
unknown key, a bad value: the field's default then stands in), or the smallest whole entry around a required field
(a `vllm.models` / `ollama.adapters` / `agents` entry, an object field; a list is taken out whole, so no index
shifts). A `vllm.models` entry taken out is replaced by a stand-in of the same key (agents and Llama Stack refer to
models by key), holding its repo if that is the catalog's. What is left is validated again, a few rounds at most, and
the cross-field checks run on it. Of their problems it keeps those that do not rest on what was taken out: none under a
removed key, none that mentions one, none that names a removed entry as missing (`'x' is not a vllm.models key`). A
model whose entry was taken out still gets its catalog check from its raw value, so a misspelt repo or Ollama tag is
reported with a key typo in the same run.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Callable

from pydantic import ValidationError

from stacks.config.base import PROJECT, key

Path = tuple[str | int, ...]
ROUNDS = 8
"""Validation rounds at most: each takes out one level more (a leaf, then its entry, then the entry's owner)."""


def salvaged_problems(raw: dict[str, Any], found: list[str], validate: Callable[[dict[str, Any]], Any],
                      cross: Callable[[Any], list[str]], removed: list[Path]) -> list[str]:
    """The problems, besides `found` (schema and raw ones), that the parts of `raw` which validate still show.
    `removed`: keys already out of `raw` (empty values)."""
    cfg, taken, stand_ins = salvage(raw, validate)
    removed = removed + taken
    out = kept(cross(cfg), removed) if cfg is not None else []
    out += raw_entry_problems(raw, cfg, found, stand_ins)
    return [p for p in dict.fromkeys(out) if p not in found]


def salvage(raw: dict[str, Any], validate: Callable[[dict[str, Any]], Any]) -> tuple[Any | None, list[Path], set[str]]:
    """The config validated with what the schema refuses taken out (None if a required top-level key had to go: nodes),
    the paths taken out, and the `vllm.models` keys that hold a stand-in."""
    doc = copy.deepcopy(raw)
    removed: list[Path] = []
    stand_ins: set[str] = set()
    for _ in range(ROUNDS):
        try:
            return validate(doc), removed, stand_ins
        except ValidationError as exc:
            targets = {_target(doc, tuple(e["loc"]), e["type"]) for e in exc.errors()}
        if () in targets:
            return None, removed, stand_ins
        for path in sorted(targets, key=len, reverse=True):
            _delete(doc, path)
            removed.append(path)
            models = doc.get("vllm", {}).get("models") if isinstance(doc.get("vllm"), dict) else None
            if len(path) == 3 and path[:2] == ("vllm", "models") and isinstance(models, dict) and path[2] not in stand_ins:
                models[path[2]] = _stand_in(raw["vllm"]["models"][path[2]])
                stand_ins.add(str(path[2]))
    return None, removed, stand_ins


def _stand_in(entry: Any) -> dict[str, Any]:
    """A valid `vllm.models` entry in place of a refused one: its repo if the catalog has it (a Llama Guard stays one),
    else a name no catalog holds, whose problems are never reported (its key is a removed one)."""
    from stacks.model_catalog import hf_models

    repo = entry.get("model") if isinstance(entry, dict) else None
    return {"model": repo if isinstance(repo, str) and repo in hf_models() else "stand-in/refused-entry",
            "maxModelLen": 256, "cpu": 1, "memoryGiB": 1}


def _target(doc: Any, loc: Path, kind: str) -> Path:
    """What to take out for one error: the refused leaf, or for a missing key its owner; never a list item alone."""
    if kind == "missing":
        loc = loc[:-1]
    path: list[str | int] = []
    node = doc
    for part in loc:  # the part of `loc` that exists (pydantic adds union member tags that are not keys)
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            break
        path.append(part)
    while path and isinstance(path[-1], int):  # the whole list, so the indexes of the other items stay
        path = path[:-1]
    return tuple(path)


def _delete(doc: Any, path: Path) -> None:
    node = doc
    for part in path[:-1]:
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _dotted(path: Path) -> str:
    return key(*path).removeprefix(f"{PROJECT}:")


def kept(problems: list[str], removed: list[Path]) -> list[str]:
    """The cross-field problems that do not rest on a removed key (see the module's docstring)."""
    if not removed:
        return problems
    keys = [key(*p) for p in removed]
    mentions = re.compile("|".join(rf"(?<![\w-]){re.escape(_dotted(p))}(?![\w-])" for p in removed))
    names = {p[2] for p in removed if len(p) == 3 and p[:2] == ("vllm", "models")}  # entries others refer to by key
    served = any(p[0] in ("vllm", "ollama") for p in removed)
    out = []
    for problem in problems:
        at = problem.split(": ", 1)[0]
        if any(at == k or at.startswith((k + ".", k + "[")) for k in keys):
            continue
        if mentions.search(problem.split(": ", 1)[-1]):
            continue
        if any(f"{n!r} is not a" in problem for n in names):
            continue
        if served and "the stack serves nothing" in problem:
            continue
        out.append(problem)
    return out


def raw_entry_problems(raw: dict[str, Any], cfg: Any | None, found: list[str], stand_ins: set[str]) -> list[str]:
    """Catalog checks of the models the salvaged config lacks, from their raw values (each a string the schema did not
    refuse): the misspelt repo or tag is reported whatever else is wrong with its entry."""
    from stacks.config.ollama import base_model_problem
    from stacks.config.vllm import catalog_problem
    from stacks.model_catalog import hf_models, ollama_models

    refused = {p.split(": ", 1)[0] for p in found}
    out = []
    vllm = raw.get("vllm")
    models = vllm.get("models") if isinstance(vllm, dict) else None
    have = cfg.vllm.models if cfg is not None and cfg.vllm is not None else {}
    for name, entry in (models or {}).items() if isinstance(models, dict) else ():
        if (name in have and name not in stand_ins) or not isinstance(entry, dict) or "arch" in entry:
            continue
        repo = entry.get("model")
        if isinstance(repo, str) and repo not in hf_models() and key("vllm", "models", name, "model") not in refused:
            out.append(catalog_problem(name, repo))
    ollama = raw.get("ollama")
    if isinstance(ollama, dict) and (cfg is None or cfg.ollama is None):
        tag = ollama.get("baseModel")
        if isinstance(tag, str) and tag not in ollama_models() and key("ollama", "baseModel") not in refused:
            out.append(base_model_problem(tag))
    return out
