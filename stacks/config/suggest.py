""""Did you mean": the known name nearest to a misspelt one (difflib's ratio, without regard to case)."""

from __future__ import annotations

import difflib
from typing import Iterable

REPO_CUTOFF = 0.85
"""Repo ids share long prefixes (`meta-llama/Llama-3.1-`): only a near copy is a likely typo."""


def close_match(word: str, known: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The known name most like `word` (case aside) if it is at least `cutoff` alike, else None."""
    by_lower: dict[str, str] = {}
    for k in known:
        by_lower.setdefault(k.lower(), k)
    hit = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=cutoff)
    return by_lower[hit[0]] if hit and by_lower[hit[0]] != word else None


def did_you_mean(word: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """` (did you mean 'x'?)`, or nothing when no known name is close."""
    close = close_match(word, known, cutoff)
    return f" (did you mean {close!r}?)" if close else ""
