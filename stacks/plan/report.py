"""The plan as text tables a person can read (printed by `make render`)."""

from __future__ import annotations

from stacks.calibration import entries
from stacks.catalog import GIB
from stacks.plan.model import NO_POOL, Plan, VllmShare


def format_table(plan: Plan) -> str:
    """The plan as text tables a person can read."""
    rows = [("GPU", "pod", "weights", "KV cache", "overhead", "total", "free at load", "whole")]
    for g in plan.gpus:
        label = f"{g.gpu.node}/{g.gpu.index}"
        for p in g.pods:
            rows.append((
                label, p.name, f"{(p.weights_bytes) / GIB:.2f}", f"{(p.kv_bytes) / GIB:.2f}", f"{(p.overhead_bytes) / GIB:.2f}",
                f"{(p.total_bytes) / GIB:.2f}",
                *(("-", "-") if isinstance(p, VllmShare) else (f"{(g.free_at_load_bytes(p)) / GIB:.2f}", "yes" if g.loads_whole(p) else "NO")),
            ))
        rows.append((label, "= allocated / capacity", "", "", "", f"{(g.allocated_bytes) / GIB:.2f}", f"of {(g.gpu.capacity_bytes) / GIB:.2f}", ""))
    out = [f"GPU plan (GiB; gpuSharing.mode={plan.mode})", text_table(rows)]
    if plan.workloads:
        rule = " and Ollama's 80 % rule (plan.ollamaWholeLoadRule)" if any(g.whole_load_rule for g in plan.gpus) else ""
        spills = any(not g.loads_whole(p) for g in plan.gpus for p in g.pods if not isinstance(p, VllmShare))
        out += ["  free at load: what an Ollama pod sees free if it loads after every other pod on its GPU",
                f"  whole: it then loads every layer on the GPU (llama-server --fit: its total within free at load less "
                f"{plan.gpus[0].fit_target_bytes / 2**20:g} MiB{rule})" + ("; NO: it would spill layers to the CPU" if spills else "")]
    out.append("")
    rows = [("node", "CPU requested", "CPU allocatable", "RAM requested GiB", "RAM allocatable GiB", "pods")]
    for n in plan.nodes:
        rows.append((n.node.name, f"{n.cpu_requests:.2f}", f"{n.cpu_allocatable:.2f}", f"{n.memory_requests_gib:.2f}",
                     f"{n.memory_allocatable_gib:.2f}", str(len(n.pods))))
    out += ["Node plan", text_table(rows, left=1)]
    pools = plan.pools()
    if len(plan.nodes) > 1 or any(p.name != NO_POOL for p in pools):
        rows = [("pool", "nodes", "GPUs", "GPUs in use", "capacity GiB", "planned GiB", "reserved GiB", "free GiB")]
        for p in pools:
            rows.append((p.name, str(p.nodes), str(p.gpus), str(p.gpus_used), f"{p.capacity_bytes / GIB:.2f}",
                         f"{p.allocated_bytes / GIB:.2f}", f"{p.reserved_bytes / GIB:.2f}", f"{p.free_bytes / GIB:.2f}"))
        out += ["", "Pools (planned includes reserved)", text_table(rows, left=1)]
    if plan.vllm:
        rows = [("vLLM pod", "GPUs", "TP", "layers", "util", "weights/GPU", "KV/GPU", "KV", "KV/token/GPU", "blocks", "maxModelLen",
                 "seqs at full len")]
        for w in plan.vllm:
            for r in w.ranks:  # one row per node a replica runs on
                layers = f"{r.layers[0]}-{r.layers[1] - 1}"
                rows.append((
                    (r.pod if w.multi_node else w.deployment_name) + (" (reserved)" if w.reserved else ""),
                    f"{r.node}/{','.join(str(g.index) for g in r.gpus)}", str(w.spec.tensor_parallel), layers,
                    f"{w.spec.gpu_memory_utilization:.2f}", f"{r.shares[0].weights_bytes / GIB:.2f}",
                    f"{min(x.kv_bytes for x in r.shares) / GIB:.2f}", "pinned" if w.pinned else f"profiled -{w.margin_bytes / GIB:.2f}",
                    f"{w.kv_bytes_per_token_of(r.rank) / 1024:g} KiB", str(w.blocks.usable_blocks if w.blocks else 0),
                    str(w.spec.max_model_len), str(w.max_full_context_seqs),
                ))
        kv = [text for text, used in (("pinned = --kv-cache-memory-bytes on a shared GPU", any(w.pinned for w in plan.vllm)),
                                      ("profiled = vLLM measures, the plan counts the margin off", not all(w.pinned for w in plan.vllm)))
              if used]  # the legend of the KV column: only the kinds the table shows
        out += ["", "vLLM (GiB per GPU as vLLM 0.33 accounts for it; KV " + ", ".join(kv) + "; blocks of 16 tokens after the null block; "
                "seqs at full len = maxModelLen-token sequences the blocks hold at once)", text_table(rows),
                "  overhead above = context outside the share + profile peak + non-torch + CUDA graphs: calibrated on "
                f"{len(entries())} published vLLM startup logs (calibration/vllm-startup-logs.yaml; `make calibrate` "
                "compares, `make calibrate LOG=<your log>` on your GPUs)"
                + ("; context from plan.vllmContextGiB" if plan.vllm_context_override else "")]
        measured = sorted({(w.deployment_name, s.memory.measured_by) for w in plan.vllm for s in w.all_shares if s.memory.measured_by})
        out += [f"  {name}: context, profile peak, non-torch and CUDA graphs as your own log measured them ({src})"
                for name, src in measured]
        groups = [w for w in plan.vllm if w.multi_node]
        if groups:
            out.append("  multi-node: a replica's ranks are pipeline stages on nodes of their own (a LeaderWorkerSet: rank 0 "
                       "serves the API, the others run headless); every rank holds the same number of KV blocks (the smallest)")
        reserved = [w for w in plan.vllm if w.reserved]
        if reserved:
            out.append(f"  reserved: {len(reserved)} replica(s) up to autoscale.maxReplicas, placed and counted above but started "
                       "only by the autoscaler (0 pods until requests wait)")
    if plan.designs:
        rows = [("GPU", "roles", "slots", "KV tokens", "Ollama pods", "vLLM multi-LoRA", "(weights", "LoRA", "KV", "overhead)", "capacity")]
        mark = lambda b, cap: f"{b / GIB:.2f}" + ("" if b <= cap else " !")  # noqa: E731
        for d in plan.designs:
            rows.append((
                f"{d.node}/{d.index}", "+".join(d.roles), str(d.slots), str(d.tokens), mark(d.ollama_bytes, d.capacity_bytes),
                mark(d.vllm_bytes, d.capacity_bytes), f"{(d.vllm_weights_bytes) / GIB:.2f}", f"{(d.vllm_lora_bytes) / GIB:.2f}",
                f"{(d.vllm_kv_bytes) / GIB:.2f}", f"{(d.vllm_overhead_bytes) / GIB:.2f}", f"{(d.capacity_bytes) / GIB:.2f}",
            ))
        out += ["", f"Adapter pool designs (GiB; same adapters and concurrency; deployed: ollama.engine={plan.engine})", text_table(rows)]
        if any(cell.endswith(" !") for row in rows for cell in row):  # the legend only where the table marks a design
            out.append("  ! = does not fit the GPU's capacity")
    return "\n".join(out)


def text_table(rows: list[tuple[str, ...]], left: int = 2, right: tuple[int, ...] | None = None) -> str:
    """Rows as aligned columns, the header underlined; the first `left` columns left-aligned, the rest right
    (or, with `right`, exactly those columns right-aligned)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    rjust = set(right) if right is not None else set(range(left, len(widths)))
    lines = ["  ".join(c.rjust(w) if i in rjust else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
