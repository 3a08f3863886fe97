"""What a failed vLLM placement tells the user: which model to leave out, and at what lower gpuMemoryUtilization it fits.

Pure search over trial placements the caller runs (stacks/plan/vllm.py owns placing); nothing here changes a plan.

- `blame_model`: replicas are placed biggest first, so a model added to a full plan often pushes out a smaller one that
  fitted before, and the failure named that one. The model to name is one that, placed after all the others, leaves every
  other placed; of those, the one that takes no model's autoscaler reserve (room a plan that fitted held already), then
  the one that keeps the most memory planned (the smallest loss: one replica too many is named as that, not a whole
  other model), then the later in the config. It is searched only when a
  running replica has no room: the autoscaler's reserve alone is maxReplicas' problem. The other models that would do
  are named too, since which one is new cannot be known: Pulumi hands structured config over as JSON with its keys
  sorted (pulumi sdk v3.274.1 go/common/resource/config/object.go marshalObjectValue builds a Go map, which
  encoding/json writes sorted), so under `pulumi` the file's order is lost.
- `highest_utilization`: the largest gpuMemoryUtilization, in hundredths below the model's own, at which its replicas are
  placed; it counts only if they would then start (weights fit their share, one maxModelLen sequence fits the KV cache).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

MAX_TRIALS = 64
"""Models at most for the leave-one-out search (each trial places the whole stack once)."""


@dataclass(frozen=True)
class Blame:
    key: str
    """The model placed last, and named by the failure."""
    others: tuple[str, ...]
    """Other models that, placed last, would also leave the rest placed."""


def blame_model(keys: list[str], planned_with_last: Callable[[str], tuple[int, ...] | None]) -> Blame | None:
    """The model to place last: `planned_with_last(k)` places every other model, then k, and scores that (a tuple, higher
    is better), or None if a model other than k has no room. None when no model does (or the stack has too many)."""
    if len(keys) > MAX_TRIALS:
        return None
    kept = {k: b for k in keys if (b := planned_with_last(k)) is not None}
    if not kept:
        return None
    order = {k: i for i, k in enumerate(keys)}
    best = max(kept, key=lambda k: (kept[k], order[k]))
    return Blame(best, tuple(sorted(k for k in kept if k != best)))


@dataclass(frozen=True)
class LowerUtilization(Generic[T]):
    utilization: float
    placed: T


def highest_utilization(current: float, trial: Callable[[float], T | None],
                        starts: Callable[[T], bool]) -> LowerUtilization[T] | None:
    """Binary search over hundredths below `current`: room only grows as the share shrinks, and what the engine needs
    (weights, one sequence) only fits less well, so the highest share with room is the one to check."""
    lo, hi = 1, math.ceil(current * 100 - 1e-9) - 1  # the highest hundredth below the model's own share
    best: T | None = None
    found = 0
    while lo <= hi:
        mid = (lo + hi) // 2
        placed = trial(mid / 100)
        if placed is not None:
            best, found, lo = placed, mid, mid + 1
        else:
            hi = mid - 1
    if best is None or not starts(best):
        return None
    return LowerUtilization(found / 100, best)
