"""Placing a model larger than a node: each pipeline stage (rank) on a node of its own, on GPUs nothing else uses.

vLLM 0.33 runs a replica of `tensorParallel` x `pipelineParallel` GPUs as `--nnodes pipelineParallel` processes groups,
`tensorParallel` GPUs on each node (world size TP x PP must divide by nnodes: vllm/engine/arg_utils.py). The plan puts
rank r (stage r's layers) on the first node, in config order, that the model may use (`pool`), that holds no other rank
of the group and that has `tensorParallel` GPUs with no other pod on them and room for the footprint. If any rank has
no such node, the whole group is refused with the figures: a group missing a rank serves nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from stacks.catalog import GIB
from stacks.config import Node, key
from stacks.plan.model import GpuPlan, VllmWorkload, listing


def place_group(w: VllmWorkload, allowed: list[Node], start: int, by_node: dict[str, list[GpuPlan]],
                footprint: Callable[[VllmWorkload, GpuPlan], int], margin: int, avoid: set[str],
                pinned: set[tuple[str, int]]) -> tuple[int, list[tuple[str, list[GpuPlan]]]] | str:
    """(index in `allowed` of the leader's node, (node, GPUs) for every rank, leader first), among the nodes the model may
    use from `start` on (those before it could not take a rank of this shape) and not in `avoid`, on GPUs no model is
    pinned to (`pinned`: (node, index)); or why a rank has no node to land on."""
    tp, pp = w.spec.tensor_parallel, w.spec.pipeline_parallel
    chosen: list[tuple[str, list[GpuPlan]]] = []
    first = start
    for stage in range(pp):
        placed = None
        for i in range(start, len(allowed)):
            n = allowed[i]
            if n.name in avoid or any(n.name == m for m, _ in chosen):
                continue
            free = _free(w, n.name, by_node, footprint, margin, pinned)
            if len(free) >= tp:
                placed = (n.name, sorted(free, key=lambda g: g.gpu.index)[:tp])
                first = i if stage == 0 else first
                break
        if placed is None:
            return _no_node(w, stage, chosen, allowed, by_node, footprint, margin, avoid, pinned)
        chosen.append(placed)
    return first, chosen


def _free(w: VllmWorkload, node: str, by_node: dict[str, list[GpuPlan]], footprint: Callable[[VllmWorkload, GpuPlan], int],
          margin: int, pinned: set[tuple[str, int]]) -> list[GpuPlan]:
    """The node's GPUs a rank of `w` could have: no pod on them, no model pinned to them, room for its footprint."""
    return [g for g in by_node.get(node, ()) if not g.pods and (node, g.gpu.index) not in pinned
            and g.free_bytes - margin >= footprint(w, g)]


def _no_node(w: VllmWorkload, stage: int, chosen: list[tuple[str, list[GpuPlan]]], allowed: list[Node],
             by_node: dict[str, list[GpuPlan]], footprint: Callable[[VllmWorkload, GpuPlan], int], margin: int,
             avoid: set[str], pinned: set[tuple[str, int]]) -> str:
    tp, pp = w.spec.tensor_parallel, w.spec.pipeline_parallel
    first, last = w.stages[stage]
    where = f"pool {w.spec.pool}" if w.spec.pool else "the stack"
    need = max((footprint(w, gs[0]) + margin for n in allowed if (gs := by_node.get(n.name))), default=0)
    rank_on = {m: i for i, (m, _) in enumerate(chosen)}
    free = []
    for n in allowed:
        gs = by_node.get(n.name, [])
        if n.name in rank_on:
            free.append(f"{n.name} has rank {rank_on[n.name]}")
            continue
        if n.name in avoid:
            free.append(f"{n.name} has another group's rank on the host network")
            continue
        free.append(f"{n.name} {len(_free(w, n.name, by_node, footprint, margin, pinned))} of {len(gs)}")
    placed = "; ".join(f"rank {i} on {m}" for i, (m, _) in enumerate(chosen))
    return (
        f"{key(*w.config_path, 'pipelineParallel')}: no node for rank {stage} of {w.deployment_name} (stage {stage + 1} of {pp}, "
        f"layers {first}-{last - 1}): each of its {pp} ranks needs a node of its own in {where} with {tp} GPUs that no other pod "
        f"uses and no model is pinned to, each with {need / GIB:.2f} GiB free ({w.spec.gpu_memory_utilization:g} of the GPU + context + the "
        f"{margin / GIB:.2f} GiB margin){'; ' + placed if placed else ''}. Free GPUs that fit, per node of {where}: "
        f"{listing(free, 8)}; add nodes{' to the pool' if w.spec.pool else ''}, or lower pipelineParallel, tensorParallel "
        "or replicas; the whole group is refused (a group missing a rank serves nothing)"
    )
