"""Checks of the raw config, before any model reads it: what no key may hold.

- Control and format characters in any string or key (`name\\n`, a zero-width space, a bidi override): they reach object
  names, labels, annotations, arguments, paths and URLs, where they either break the object or hide what it says. Only a
  free-text `description` may hold line breaks, tabs and the zero-width joiner of emoji sequences.
- Numbers that are not finite (`.inf`, `.nan`, `1e400`) or lie past what Kubernetes and the engines store (int64, the
  range of Go's integers and of Kubernetes' int64 fields).
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any

from stacks.config.base import key

INT64 = 2**63 - 1
FREE_TEXT = frozenset({"description"})
"""Keys whose value is prose for people: line breaks and tabs allowed."""


def _bad_char(text: str, free_text: bool) -> str | None:
    for i, ch in enumerate(text):
        if free_text and ch in "\r\n\t\u200d":  # line breaks, tabs, and the joiner inside emoji sequences
            continue
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            return f"U+{ord(ch):04X} ({unicodedata.name(ch, 'control character')}) at position {i}"
    return None


def raw_problems(raw: dict[str, Any]) -> list[str]:
    """Every key path holding a control character or an out-of-range number (values are never echoed: some are secrets)."""
    out: list[str] = []

    def walk(value: Any, path: tuple[str | int, ...]) -> None:
        at = key(*path) if path else "llm-infra:<root>"
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str):
                    bad = _bad_char(k, False)
                    if bad:
                        out.append(f"{key(*path, k.encode('unicode_escape').decode())}: the key holds {bad}; type it again "
                                   "without it (control and invisible characters end up in object names and arguments)")
                        continue
                walk(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i))
        elif isinstance(value, str):
            bad = _bad_char(value, bool(path) and path[-1] in FREE_TEXT)
            if bad:
                out.append(f"{at}: the value holds {bad}; remove it (a trailing newline from `echo` or a paste is the usual "
                           "cause: `pulumi config set` without it, or `echo -n`)")
        elif isinstance(value, bool) or value is None:
            return
        elif isinstance(value, float) and not math.isfinite(value):
            out.append(f"{at}: {value} is not a finite number; give a number")
        elif isinstance(value, int) and abs(value) > INT64:
            out.append(f"{at}: {value:.3g} is past the 64-bit integers Kubernetes and the engines store; give a sensible number")

    walk(raw, ())
    return out
