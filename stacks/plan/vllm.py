"""The vLLM side of the plan: placing every replica on GPUs with room, and checking each as the engine would."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from stacks.catalog import GIB, VLLM
from stacks.config import Node, StackConfig, VllmModel, key
from stacks.config.vllm import hf_model
from stacks.plan.model import (RESERVED_MARK, GpuPlan, GpuRef, NodePlan, Plan, VllmRank, VllmShare, VllmWorkload,
                               gpu_capacity_bytes, listing, max_replicas, shm_gib)
from stacks.plan.fit_hints import Blame, blame_model, highest_utilization
from stacks.plan.multinode import place_group
from stacks.calibration import Measured, gpu_key, measured_for
from stacks.vllm_memory import RankMemory, batch_defaults, context_gib, kv_blocks, rank_memory


def _vllm_replicas(models: dict[str, tuple[tuple[str, ...], VllmModel]]) -> list[VllmWorkload]:
    """Every vLLM replica, biggest first (nodes, tensor parallel, then share of a GPU), so placement packs well."""
    out = [
        VllmWorkload(k, path, m, hf, r)
        for k, (path, m) in models.items()
        if (hf := hf_model(m)) is not None
        for r in range(max_replicas(m))
    ]
    return sorted(out, key=lambda w: (-w.spec.pipeline_parallel, -w.spec.tensor_parallel, -w.spec.gpu_memory_utilization,
                                      w.key, w.replica))


def _may_run(w: VllmWorkload, node: Node) -> bool:
    """The model's `node` and `pool` allow this node."""
    return w.spec.node in (None, node.name) and w.spec.pool in (None, node.pool)


@dataclass(frozen=True)
class VllmAllowances:
    """plan.vllmContextGiB (None: calibrated per model) and plan.vllmMarginGiB in bytes."""

    context_override: int | None
    margin_bytes: int

    def context(self, w: VllmWorkload, g: GpuPlan | None = None) -> int:
        if self.context_override is not None:
            return self.context_override
        measured = _measured(w, g) if g is not None else None
        if measured is not None:
            return round(measured.context_gib * GIB)
        return round(context_gib(w.spec.tensor_parallel, w.spec.pipeline_parallel, w.hf.arch.moe) * GIB)


def _measured(w: VllmWorkload, g: GpuPlan) -> Measured | None:
    """A team's own log of this model on this GPU model with these settings (calibration/local), if there is one."""
    tokens, seqs = batch_defaults(g.gpu.capacity_bytes, g.gpu.model)
    return measured_for(w.hf.repo, gpu_key(g.gpu), w.spec.tensor_parallel, w.spec.pipeline_parallel,
                        w.spec.max_num_batched_tokens or tokens, w.spec.max_num_seqs or seqs)


def _footprint(w: VllmWorkload, g: GpuPlan, allow: VllmAllowances) -> int:
    return math.ceil(w.spec.gpu_memory_utilization * g.gpu.capacity_bytes) + allow.context(w, g)


def _fit(w: VllmWorkload, node: Node, gpus: dict[str, list[GpuPlan]], pinned: list[int] | None,
         allow: VllmAllowances, exclusive: bool = False) -> list[GpuPlan] | None:
    """The GPUs of `node` this pod would take: the pinned ones, or the tightest that still have room for
    its footprint (share + context) and the GPU's margin (in exclusive mode, only GPUs nothing else uses)."""
    room = [g for g in gpus.get(node.name, ()) if not (exclusive and g.pods) and not _held_whole(g)
            and g.free_bytes - allow.margin_bytes >= _footprint(w, g, allow)]
    if pinned is not None:
        chosen = [g for g in room if g.gpu.index in pinned]
        return chosen if len(chosen) == len(pinned) else None
    room.sort(key=lambda g: (g.free_bytes - _footprint(w, g, allow), g.gpu.index))
    return room[: w.spec.tensor_parallel] if len(room) >= w.spec.tensor_parallel else None


def _held_whole(g: GpuPlan) -> bool:
    """A rank of a multi-node replica holds the GPU: nothing else goes on it."""
    return any(isinstance(p, VllmShare) and p.exclusive for p in g.pods)


def _rank_memory(w: VllmWorkload, g: GpuPlan, allow: VllmAllowances, stage: int = 0) -> RankMemory:
    loras = w.spec.max_loras or len(w.spec.lora_modules)
    lora = w.hf.arch.lora_bytes(w.spec.max_lora_rank or VLLM.default_max_lora_rank) * loras if loras else 0
    return rank_memory(w.hf, w.stage_weights_bytes(stage), w.spec.tensor_parallel, w.spec.gpu_memory_utilization,
                       g.gpu.capacity_bytes, g.gpu.model, w.spec.max_num_batched_tokens, w.spec.max_num_seqs,
                       allow.context(w, g), lora, last_stage=stage == w.spec.pipeline_parallel - 1, pp=w.spec.pipeline_parallel,
                       measured=_measured(w, g))


@dataclass
class _Placement:
    """One pass of placement: the replicas placed, those with no room, and the multi-node groups refused."""

    placed: list[VllmWorkload]
    unplaced: list[VllmWorkload]
    refused: dict[tuple, list[str]]
    """One problem per model and shape: the first refusal's text, then the names of the others refused alike."""
    refused_groups: list[VllmWorkload]
    """The multi-node replicas refused."""


def place_vllm(cfg: StackConfig, plan: Plan, gpus: dict[tuple[str, int], GpuPlan], nodes: dict[str, NodePlan],
                models: dict[str, tuple[tuple[str, ...], VllmModel]]) -> list[str]:
    """Place every replica; the Deployments (or LeaderWorkerSets) left without room are returned, their problems in
    plan.problems. When a running replica (not one reserved for the autoscaler) has no room, one model is placed last: of
    those that leave every other model placed, the one that leaves out no autoscaler's reserve, then the least memory
    (stacks/plan/fit_hints.py), so the failure names it, not a model its size pushed out."""
    override = cfg.plan.vllm_context_gib
    allow = VllmAllowances(None if override is None else round(override * GIB), round(cfg.plan.vllm_margin_gib * GIB))
    plan.vllm_margin_bytes = allow.margin_bytes
    plan.vllm_context_override = override is not None
    before = _held(gpus, nodes)
    done = _place(cfg, _vllm_replicas(models), gpus, nodes, allow)
    blame = None
    if any(not w.reserved for w in done.unplaced):  # only the autoscaler's reserve left out: maxReplicas says it
        def last(k: str) -> list[VllmWorkload]:
            replicas = _vllm_replicas(models)
            return [w for w in replicas if w.key != k] + [w for w in replicas if w.key == k]

        def planned_with_last(k: str) -> tuple[int, int] | None:
            """(minus the reserved replicas left out, bytes planned), if every other model is placed:
            the autoscaler's reserve of a model already planned is not given up for another model's replicas."""
            trial_gpus, trial_nodes = _copies(gpus, nodes, before)
            trial = _place(cfg, last(k), trial_gpus, trial_nodes, allow)
            left = trial.unplaced + trial.refused_groups
            if any(w.key != k for w in left):
                return None
            return -sum(w.reserved for w in left), sum(g.allocated_bytes for g in trial_gpus.values())

        blame = blame_model(list(models), planned_with_last)
        if blame is not None:
            _restore(gpus, nodes, before)
            done = _place(cfg, last(blame.key), gpus, nodes, allow)
    for first, *more in done.refused.values():  # one problem per model
        plan.problems.append(first + (f"; the same for {listing(more)}" if more else ""))
    plan.vllm.extend(done.placed)
    plan.vllm.sort(key=lambda w: (w.key, w.replica))
    for w in plan.vllm:
        # A GPU shared with another server: the KV size is pinned (--kv-cache-memory-bytes), exactly what the
        # plan computed, so start order and neighbours cannot change it. Alone on its GPUs, vLLM profiles, and
        # the plan counts on the KV cache less the margin its estimates may be off by.
        _size_kv(w, gpus, allow)
        plan.problems += _vllm_share_problems(w)
    if done.unplaced:
        plan.problems += _unplaced_problems(cfg, done.unplaced, gpus, nodes, allow, blame)
    return list(dict.fromkeys(w.deployment_name for w in done.unplaced + done.refused_groups))


def _size_kv(w: VllmWorkload, gpus: dict[tuple[str, int], GpuPlan], allow: VllmAllowances) -> None:
    """Pinned or profiled, the margin, and the KV blocks of a placed replica."""
    w.pinned = any(len(gpus[(r.node, ref.index)].pods) > 1 for r in w.ranks for ref in r.gpus)
    w.margin_bytes = 0 if w.pinned else allow.margin_bytes
    kv = [s.kv_bytes - w.margin_bytes for s in w.all_shares]
    per_token = [w.kv_bytes_per_token_of(r.rank) for r in w.ranks for _ in r.shares]
    w.blocks = kv_blocks(kv, per_token, w.spec.max_model_len)


def _held(gpus: dict[tuple[str, int], GpuPlan], nodes: dict[str, NodePlan]) -> tuple[dict, dict]:
    """What the GPUs and nodes hold before the vLLM replicas (the Ollama pods): to try placements against, and go back to."""
    return ({k: list(g.pods) for k, g in gpus.items()},
            {k: (n.cpu_requests, n.memory_requests_gib, list(n.pods)) for k, n in nodes.items()})


def _copies(gpus: dict[tuple[str, int], GpuPlan], nodes: dict[str, NodePlan], held: tuple[dict, dict]) -> tuple[dict, dict]:
    pods, requests = held
    return ({k: GpuPlan(g.gpu, list(pods[k]), g.fit_target_bytes, g.whole_load_rule) for k, g in gpus.items()},
            {k: NodePlan(n.node, requests[k][0], requests[k][1], list(requests[k][2])) for k, n in nodes.items()})


def _restore(gpus: dict[tuple[str, int], GpuPlan], nodes: dict[str, NodePlan], held: tuple[dict, dict]) -> None:
    """Back to what `_held` saw, in place (the plan's lists hold these very objects)."""
    pods, requests = held
    for k, g in gpus.items():
        g.pods[:] = pods[k]
    for k, n in nodes.items():
        n.cpu_requests, n.memory_requests_gib, n.pods[:] = requests[k][0], requests[k][1], requests[k][2]


def _place(cfg: StackConfig, replicas: list[VllmWorkload], gpus: dict[tuple[str, int], GpuPlan], nodes: dict[str, NodePlan],
           allow: VllmAllowances) -> _Placement:
    """Place `replicas` in their order, committing each to `gpus` and `nodes`."""
    done = _Placement([], [], {}, [])
    exclusive = cfg.gpu_sharing.mode == "exclusive"
    by_node: dict[str, list[GpuPlan]] = {}
    for (n, _), g in gpus.items():  # once: every placement then looks at one node's GPUs, not the fleet's
        by_node.setdefault(n, []).append(g)
    # First fit, in config order, kept linear for fleets: the nodes a model may use are listed once per (node, pool), and
    # replicas of one shape (same nodes, GPUs, share) resume where the last one landed. Room only shrinks as pods are
    # placed, so a node that could not take a shape before cannot take it later: the cursor skips only such nodes.
    allowed: dict[tuple[str | None, str | None], list[Node]] = {}
    cursor: dict[tuple, int] = {}
    refused = done.refused
    host_network: set[str] = set()
    """Nodes with a rank on the host's network: its API and master ports are the node's, so one such rank per node."""
    # GPUs a model is pinned to (`gpus`, the adapter pool's servers): a group, placed first, must leave them alone.
    pinned = {(w.spec.node or cfg.nodes[0].name, i) for w in replicas if w.spec.gpus for i in w.spec.gpus}
    for w in replicas:
        nodes_of = allowed.get((w.spec.node, w.spec.pool))
        if nodes_of is None:
            nodes_of = allowed[(w.spec.node, w.spec.pool)] = [n for n in cfg.nodes if _may_run(w, n)]
        shape = (w.spec.node, w.spec.pool, w.spec.pipeline_parallel, w.spec.tensor_parallel, w.spec.gpu_memory_utilization,
                 w.spec.multi_node.host_network)
        if w.multi_node:
            if cursor.get(shape) == len(nodes_of):  # the nodes that refused one of this shape refuse the others too
                if (*shape, w.key) in refused:
                    refused[(*shape, w.key)].append(w.deployment_name)
                else:
                    refused[(*shape, w.key)] = [_no_node_again(w)]
                done.refused_groups.append(w)
                continue
            # Every rank on a node of its own, or the whole group is refused (a partial group serves nothing).
            avoid = host_network if w.spec.multi_node.host_network else set()
            group = place_group(w, nodes_of, cursor.get(shape, 0), by_node, lambda x, g: _footprint(x, g, allow),
                                allow.margin_bytes, avoid, pinned)
            if isinstance(group, str):
                refused[(*shape, w.key)] = [group]
                done.refused_groups.append(w)
                cursor[shape] = len(nodes_of)
                continue
            cursor[shape], chosen_ranks = group
            if w.spec.multi_node.host_network:
                host_network.update(node for node, _ in chosen_ranks)
            _commit(w, chosen_ranks, nodes, allow)
            done.placed.append(w)
            continue
        start = cursor.get(shape, 0) if w.spec.gpus is None else 0
        placed = next(((i, n, f) for i, n in enumerate(nodes_of[start:], start)
                       if (f := _fit(w, n, by_node, w.spec.gpus, allow, exclusive)) is not None), None)
        if w.spec.gpus is None:
            cursor[shape] = placed[0] if placed else len(nodes_of)
        if placed is None:
            done.unplaced.append(w)
            continue
        _commit(w, [(placed[1].name, placed[2])], nodes, allow)
        done.placed.append(w)
    return done


def _commit(w: VllmWorkload, chosen: list[tuple[str, list[GpuPlan]]], nodes: dict[str, NodePlan], allow: VllmAllowances) -> None:
    """Put each rank's shares on its GPUs and its requests on its node; the leader's placement is the workload's own."""
    ranks = []
    for stage, (node, gpu_plans) in enumerate(chosen):
        pod = w.pod_name(stage) if w.multi_node else w.deployment_name
        shares = []
        for g in sorted(gpu_plans, key=lambda g: g.gpu.index):
            share = VllmShare(pod + (RESERVED_MARK if w.reserved else ""), w.deployment_name, _rank_memory(w, g, allow, stage),
                              exclusive=w.multi_node)
            g.pods.append(share)
            shares.append(share)
        refs = tuple(sorted((g.gpu for g in gpu_plans), key=lambda r: r.index))
        ranks.append(VllmRank(stage, node, refs, tuple(shares), w.stages[stage], pod))
        n = nodes[node]
        n.cpu_requests += w.spec.cpu
        n.memory_requests_gib += w.spec.memory_gib + shm_gib(w.spec)
        n.pods.append(pod)
    w.ranks = tuple(ranks)


def _vllm_share_problems(w: VllmWorkload) -> list[str]:
    at = lambda *k: key(*w.config_path, *k)  # noqa: E731
    # The tightest GPU of any rank (a multi-node replica's last stage also holds the sampler's profile run).
    rank, s = min(((r, x) for r in w.ranks for x in r.shares), key=lambda rx: rx[1].kv_bytes)
    m = s.memory
    util = w.spec.gpu_memory_utilization
    pod = rank.pod if w.multi_node else w.deployment_name
    if m.kv_bytes <= 0:
        whole = (f"of stage {rank.rank + 1}'s {w.stage_weights_bytes(rank.rank) / GIB:.2f} GiB (layers {rank.layers[0]}-"
                 f"{rank.layers[1] - 1})" if w.multi_node else f"of {(w.weights_bytes) / GIB:.2f} GiB")
        return [
            f"{at('gpuMemoryUtilization')}: {pod} does not fit its share of a GPU: {util:g} x "
            f"{(m.share_bytes / util) / GIB:.2f} GiB = {(m.share_bytes) / GIB:.2f} GiB, but weights need {(m.weights_bytes) / GIB:.2f} GiB "
            f"per GPU ({whole} over tensorParallel {w.spec.tensor_parallel}) + "
            f"{(m.non_kv_bytes - m.weights_bytes) / GIB:.2f} GiB profile peak, non-torch memory and CUDA graphs; "
            f"raise gpuMemoryUtilization or tensorParallel{' or pipelineParallel' if w.multi_node else ''}, or quantize"
        ]
    b = w.blocks
    assert b is not None
    if b.usable_blocks < b.blocks_per_sequence:
        # The rank with the fewest blocks sets the count (stages differ in layers, so in bytes per block).
        rank, s = min(((r, x) for r in w.ranks for x in r.shares),
                      key=lambda rx: (rx[1].kv_bytes - w.margin_bytes) // (VLLM.block_size * w.kv_bytes_per_token_of(rx[0].rank)))
        pod = rank.pod if w.multi_node else w.deployment_name
        how = "pinned" if w.pinned else f"profiled, less the {w.margin_bytes / GIB:.2f} GiB margin"
        return [
            f"{at('maxModelLen')}: {pod}'s KV cache ({(s.kv_bytes) / GIB:.2f} GiB per GPU, {how}) holds "
            f"{b.usable_blocks} blocks of {VLLM.block_size} tokens after the null block, {b.tokens} tokens: less than one "
            f"{w.spec.max_model_len}-token sequence ({b.blocks_per_sequence} blocks); vLLM would refuse to start. "
            f"Use maxModelLen <= {b.tokens}, or raise gpuMemoryUtilization / tensorParallel"
            f"{' / pipelineParallel' if w.multi_node else ''}, or set kvCacheDtype fp8"
        ]
    return []


def _unplaced_problems(cfg: StackConfig, unplaced: list[VllmWorkload], gpus: dict[tuple[str, int], GpuPlan],
                       nodes: dict[str, NodePlan], allow: VllmAllowances, blame: Blame | None = None) -> list[str]:
    """Name each pod that has no room, the free memory of every GPU it may use, what lower share would place it, and
    what the node would need to place them all."""
    out = []
    by_model: dict[str, list[VllmWorkload]] = {}
    for w in unplaced:
        by_model.setdefault(w.key, []).append(w)
    for group in by_model.values():
        w = group[0]
        reserved = [x for x in group if x.reserved]
        if reserved and len(reserved) == len(group):
            # The model's own replicas fit; the autoscaler's do not: name maxReplicas, and how many the GPUs hold.
            fit = w.spec.replicas + (w.spec.autoscale.max_replicas - w.spec.replicas - len(reserved))  # type: ignore[union-attr]
            node = next(n for n in cfg.nodes if _may_run(w, n))
            free = ", ".join(f"{g.gpu.index}: {g.free_bytes / GIB:.2f}{_holders(g)}" for (n, _), g in gpus.items() if n == node.name)
            out.append(f"{key(*w.config_path, 'autoscale', 'maxReplicas')}: the GPUs hold {fit} replicas of {w.service_name}, "
                       f"not {w.spec.autoscale.max_replicas}: no room to reserve {listing([x.deployment_name for x in reserved])}; "  # type: ignore[union-attr]
                       f"use maxReplicas <= {fit}, or free GPU memory (free GiB per GPU on node {node.name}: {free})")
            continue
        node = next(n for n in cfg.nodes if _may_run(w, n))
        where = "its pinned GPUs" if w.spec.gpus else f"{w.spec.tensor_parallel} GPU(s) of one node"
        need = w.spec.gpu_memory_utilization * gpu_capacity_bytes(node.gpus[0]) + allow.context(w) if node.gpus else 0
        # Every replica the model places counts, the reserved ones (up to autoscale.maxReplicas) too.
        total, held = max_replicas(w.spec), len(reserved)
        count = (f" ({len(group)} of its {total} replicas{f', {held} of them reserved for autoscale' if held else ''})"
                 if len(group) > 1 else "")
        out.append(
            f"{key(*w.config_path)}: no room for {listing([x.deployment_name for x in group])}{count}: each needs "
            f"{w.spec.gpu_memory_utilization:g} of {where} plus its {allow.context(w) / GIB:.2f} GiB context "
            f"({need / GIB:.2f} GiB each), and every GPU keeps a {allow.margin_bytes / GIB:.2f} GiB margin; "
            f"{_free_text(cfg, w, gpus)}{_lower_text(cfg, group, gpus, nodes, allow)}{_blame_text(blame, w.key)}"
        )
    # How many more GPUs like the node's largest would place what is left (same packing rule), on the first node the
    # first of them may use (its pool's, in a fleet).
    index, node = next(((i, n) for i, n in enumerate(cfg.nodes) if _may_run(unplaced[0], n)), (0, cfg.nodes[0]))
    there = [w for w in unplaced if _may_run(w, node)]  # the others could not go there however many GPUs it had
    if node.gpus and not any(w.spec.gpus for w in there):
        template = max(node.gpus, key=gpu_capacity_bytes)
        capacity = gpu_capacity_bytes(template)
        for extra in range(1, 33):
            trial = {k: GpuPlan(g.gpu, list(g.pods), g.fit_target_bytes, g.whole_load_rule) for k, g in gpus.items()
                     if k[0] == node.name}
            for i in range(extra):
                ref = GpuRef(node.name, 1000 + i, capacity, None, None, (), template.model or "")
                trial[(node.name, 1000 + i)] = GpuPlan(ref)
            if all(_take(w, node, trial, allow, cfg.gpu_sharing.mode == "exclusive") for w in there):
                out.append(
                    f"{key('nodes', index, 'gpus')}: to place {listing([w.deployment_name for w in there])}, node {node.name} needs "
                    f"{extra} more GPU(s) of "
                    f"{capacity / GIB:.2f} GiB (like its GPU {template.index}), or lower gpuMemoryUtilization / replicas"
                )
                break
    return out


def _free_text(cfg: StackConfig, w: VllmWorkload, gpus: dict[tuple[str, int], GpuPlan], most: int = 4) -> str:
    """The free memory of every GPU on the nodes the model may use (the first `most` of them)."""
    allowed = [n for n in cfg.nodes if _may_run(w, n)]
    parts = []
    for node in allowed[:most]:
        runs: list[list] = []  # GPUs in a row with the same free memory and holders: one entry
        for (n, _), g in gpus.items():
            if n != node.name:
                continue
            free, held = f"{g.free_bytes / GIB:.2f}", _holders(g)
            if runs and runs[-1][2:] == [free, held] and runs[-1][1] == g.gpu.index - 1:
                runs[-1][1] = g.gpu.index
            else:
                runs.append([g.gpu.index, g.gpu.index, free, held])
        free = ", ".join(f"{first}: {f}{h}" if first == last else f"{first}-{last}: {f} each{h}" for first, last, f, h in runs)
        parts.append(f"node {node.name}: {free or 'no GPUs'}")
    more = f"; and {len(allowed) - most} more nodes" if len(allowed) > most else ""
    return f"free GiB per GPU on {'; '.join(parts)}{more}"


def _lower_text(cfg: StackConfig, group: list[VllmWorkload], gpus: dict[tuple[str, int], GpuPlan],
                nodes: dict[str, NodePlan], allow: VllmAllowances) -> str:
    """Which GPUs would take the replicas with a lower gpuMemoryUtilization, if any share below the model's own places
    them and still starts them (stacks/plan/fit_hints.py)."""
    util = group[0].spec.gpu_memory_utilization
    held = _held(gpus, nodes)

    def trial(u: float) -> list[VllmWorkload] | None:
        trial_gpus, trial_nodes = _copies(gpus, nodes, held)
        lowered = [dataclasses.replace(w, spec=w.spec.model_copy(update={"gpu_memory_utilization": u}), ranks=(), blocks=None)
                   for w in group]
        done = _place(cfg, lowered, trial_gpus, trial_nodes, allow)
        if done.unplaced or done.refused:
            return None
        for w in done.placed:
            _size_kv(w, trial_gpus, allow)
        return done.placed

    lower = highest_utilization(util, trial, lambda placed: not any(_vllm_share_problems(w) for w in placed))
    if lower is None:
        return ""
    u = lower.utilization
    spots = listing([f"{w.deployment_name} on GPU {','.join(str(g.index) for g in w.gpus)} of node {w.node}" for w in lower.placed])
    seqs = min(w.max_full_context_seqs for w in lower.placed)
    return (f"; at gpuMemoryUtilization {u:.2f} ({util - u:.2f} less) {'it' if len(group) == 1 else 'they'} would fit: "
            f"{spots} (a KV cache for {seqs} sequences of {group[0].spec.max_model_len} tokens at once{' each' if len(group) > 1 else ''})")


def _blame_text(blame: Blame | None, model: str) -> str:
    """The other models whose absence would make room as well (fit_hints.blame_model): which one is new, the plan
    cannot know."""
    if blame is None or blame.key != model or not blame.others:
        return ""
    return f"; every other model fits without it (so would the rest without one of {listing(list(blame.others))} instead)"


def _holders(g: GpuPlan) -> str:
    """Who holds a GPU, so a failure points at what took the room (the model just added, often)."""
    names = list(dict.fromkeys(p.workload for p in g.pods))
    if _held_whole(g):
        return f" (held whole by {names[0]}, a multi-node replica)"
    return f" (held by {listing(names, 3)})" if names else ""


def _no_node_again(w: VllmWorkload) -> str:
    """A replica refused because an earlier one of its shape found no nodes left (the figures are in that one's problem)."""
    return (f"{key(*w.config_path, 'pipelineParallel')}: no nodes for {w.deployment_name}: every node of "
            f"{'pool ' + w.spec.pool if w.spec.pool else 'the stack'} that could take a rank of it is taken")


def _take(w: VllmWorkload, node: Node, gpus: dict[tuple[str, int], GpuPlan], allow: VllmAllowances, exclusive: bool) -> bool:
    chosen = _fit(w, node, {node.name: [g for (n, _), g in gpus.items() if n == node.name]}, None, allow, exclusive)
    for g in chosen or []:
        g.pods.append(VllmShare(w.deployment_name, w.deployment_name, _rank_memory(w, g, allow)))
    return chosen is not None
