"""vLLM plan figures against hand computation from vLLM 0.33.0's own accounting (stacks/vllm_memory.py).

Per rank, on a GPU whose total is what CUDA reports (A100-80GB: 81049 MiB; L40: 44.40 GiB), with the terms calibrated
on published vLLM startup logs (calibration/vllm-startup-logs.yaml, stacks/catalog.py VllmEngine):
  outside the share  context 0.55 GiB on one GPU, 1.6 GiB with TP or PP >= 2 (2.1 for an MoE model across GPUs)
  share              ceil(total x gpuMemoryUtilization)                 (v1/worker/utils.py:724)
  weights            parameters x 2 B (bf16), / tensor parallel
  profile peak       the larger of the forward pass, max_num_batched_tokens (2048 on A100/L40) x hidden x 2 B x 18,
                     and the sampler, min(tokens, max_num_seqs (256)) x vocab x 4 B x 4 + 0.05 GiB;
                     MoE models (arch experts > 0) 0.35 GiB x tokens / 8192 more
  non-torch          0.5 GiB at TP 1, 2.15 GiB at TP 2, 2.25 GiB at TP 4
  CUDA graphs        1.15 GiB dense up to 30 B parameters, 1.9 GiB dense above, 1.6 GiB MoE
  KV                 share - all of the above inside it
  blocks             KV // (16 x KV/token/rank); minus 1 null block; a sequence needs ceil(maxModelLen / 16)
  profiled (alone)   KV less plan.vllmMarginGiB (1 GiB) before cutting blocks; pinned (shared GPU): exact
"""

from __future__ import annotations

import math

from tests.conftest import plan_of, stack_problems, stack_raw, variant

GiB = 2**30
A100 = 81049 * 2**20
L40 = round(44.40 * GiB)


def engine_kv(total, util, weights, tp, hidden, vocab, kv_per_token, max_len, pinned, tokens=2048, seqs=256,
              graphs_gib=1.15, moe=False):
    """(KV bytes per rank, full-length sequences) by hand, from the engine's terms. `graphs_gib`: the CUDA graphs (1.15
    dense <= 30 B, 1.9 dense above, 1.6 MoE); `moe`: the MoE model's extra profile peak."""
    share = math.ceil(total * util)
    peak = max(tokens * hidden * 2 * 18, min(tokens, seqs) * vocab * 4 * 4 + round(0.05 * GiB))
    if moe:
        peak += round(0.35 * GiB * tokens / 8192)
    non_torch = {1: GiB // 2, 2: round(2.15 * GiB), 4: round(2.25 * GiB)}[tp]
    kv = share - math.ceil(weights / tp) - peak - non_torch - round(graphs_gib * GiB)
    blocks = (kv - (0 if pinned else GiB)) // (16 * kv_per_token)
    return kv, (blocks - 1) // math.ceil(max_len / 16)


PROD = {  # pod: (util, parameters, tp, hidden, vocab, KV bytes/token/rank, maxModelLen, CUDA graphs GiB) - all pinned
    "vllm-llama-70b": (0.60, 70.6e9, 4, 8192, 128256, 2 * 80 * 2 * 128 * 2, 128000, 1.9),  # dense above 30 B
    "vllm-llama-guard": (0.35, 8.03e9, 1, 4096, 128256, 2 * 32 * 8 * 128 * 2, 8192, 1.15),
    "vllm-llama-3b": (0.35, 3.21e9, 1, 3072, 128256, 2 * 28 * 8 * 128 * 2, 32768, 1.15),
    "vllm-granite-8b": (0.35, 8.1e9, 1, 4096, 49155, 2 * 40 * 8 * 128 * 2, 32768, 1.15),
    "vllm-watt-8b": (0.35, 8.03e9, 1, 4096, 128256, 2 * 32 * 8 * 128 * 2, 32768, 1.15),
}


def test_prod_kv_and_sequences_match_the_engines_accounting():
    plan = plan_of(stack_raw("prod"))
    for w in plan.vllm:
        util, params, tp, hidden, vocab, per_token, max_len, graphs = PROD[w.deployment_name]
        kv, seqs = engine_kv(A100, util, round(params * 2), tp, hidden, vocab, per_token, max_len, pinned=True, graphs_gib=graphs)
        assert w.pinned and w.kv_budget_bytes_per_rank == kv, w.deployment_name
        assert w.max_full_context_seqs == seqs, w.deployment_name
        assert w.pinned_kv_bytes == kv // (16 * per_token) * 16 * per_token  # whole blocks
    seqs = {w.deployment_name: w.max_full_context_seqs for w in plan.vllm}
    assert seqs == {"vllm-granite-8b": 2, "vllm-llama-3b": 5, "vllm-llama-70b": 1, "vllm-llama-guard": 10, "vllm-watt-8b": 2}


def test_prod_70b_keeps_128k_only_with_the_larger_share():
    w = next(x for x in plan_of(stack_raw("prod")).vllm if x.key == "llama-70b")
    kv = w.kv_budget_bytes_per_rank
    assert f"{kv / GiB:.2f}" == "9.90" and kv // (16 * 80 * 1024) - 1 >= 8000  # 128000 tokens = 8000 blocks (8110 held)
    problems = stack_problems(variant(lambda r: r["vllm"]["models"]["llama-70b"].update(gpuMemoryUtilization=0.58), "prod"))
    kv58, _ = engine_kv(A100, 0.58, 141_200_000_000, 4, 8192, 128256, 80 * 1024, 128000, pinned=True, graphs_gib=1.9)
    usable = kv58 // (16 * 80 * 1024) - 1
    assert problems == [
        f"llm-infra:vllm.models.llama-70b.maxModelLen: vllm-llama-70b's KV cache ({kv58 / GiB:.2f} GiB per GPU, pinned) holds "
        f"{usable} blocks of 16 tokens after the null block, {usable * 16} tokens: less than one 128000-token sequence "
        f"(8000 blocks); vLLM would refuse to start. Use maxModelLen <= {usable * 16}, or raise gpuMemoryUtilization / "
        f"tensorParallel, or set kvCacheDtype fp8"]
    assert f"{kv58 / GiB:.2f}" == "8.32" and usable * 16 == 109008


def test_prod_footprints_and_margin_fit_every_gpu():
    plan = plan_of(stack_raw("prod"))
    for g in plan.gpus:
        # two shares + two contexts: the 70B's across 4 GPUs (1.6 GiB), the small model's on one GPU (0.55 GiB)
        footprint = math.ceil(0.60 * A100) + math.ceil(0.35 * A100) + round(1.6 * GiB) + round(0.55 * GiB)
        assert g.allocated_bytes == footprint and footprint + GiB <= A100 == g.gpu.capacity_bytes
    small = {w.key: w.gpus[0].index for w in plan.vllm if w.spec.tensor_parallel == 1}
    assert sorted(small.values()) == [0, 1, 2, 3]  # one small model beside the 70B on each GPU


def test_lab_kv_and_sequences_match_the_engines_accounting():
    plan = plan_of(stack_raw("lab"))
    dense, moe = {"graphs_gib": 1.15}, {"graphs_gib": 1.6, "moe": True}  # DeepSeek-V2-Lite: 64 experts, Mixtral: 8
    lab = {  # pod: util, weights bytes, hidden, vocab, KV/token, maxModelLen, pinned, MoE or dense terms
        "vllm-deepseek-coder": (0.9, 31_400_000_000, 2048, 102400, 27 * 576 * 2, 65536, False, moe),
        "vllm-mixtral": (0.8, round(0.27e9 * 2 + (46.7e9 - 0.27e9) * (0.5 + 2.5 / 128)), 4096, 32000, 131072, 16384, False, moe),
        "vllm-llama-8b": (0.6, 16_060_000_000, 4096, 128256, 131072, 32768, True, dense),
        "vllm-llama-3b-awq": (0.25, round(0.39e9 * 2 + (3.21e9 - 0.39e9) * (0.5 + 2.5 / 128)), 3072, 128256, 114688, 32768, True, dense),
        "vllm-llama-8b-multi": (0.45, 16_060_000_000, 4096, 128256, 131072, 8192, True, dense),
        "vllm-llama-8b-multi-1": (0.45, 16_060_000_000, 4096, 128256, 131072, 8192, True, dense),
    }
    for w in plan.vllm:
        util, weights, hidden, vocab, per_token, max_len, pinned, terms = lab[w.deployment_name]
        kv, seqs = engine_kv(L40, util, weights, 1, hidden, vocab, per_token, max_len, pinned, **terms)
        assert (w.kv_budget_bytes_per_rank, w.max_full_context_seqs, w.pinned) == (kv, seqs, pinned), w.deployment_name
    seqs = {w.deployment_name: w.max_full_context_seqs for w in plan.vllm}
    assert seqs == {"vllm-deepseek-coder": 3, "vllm-llama-3b-awq": 1, "vllm-llama-8b": 2,
                    "vllm-llama-8b-multi": 2, "vllm-llama-8b-multi-1": 2, "vllm-mixtral": 4}
    assert all(g.allocated_bytes + GiB <= g.gpu.capacity_bytes for g in plan.gpus)


def test_pinned_budgets_make_the_plan_independent_of_start_order():
    """Two servers sharing a GPU: each renders --kv-cache-memory-bytes (its KV no longer depends on what the
    other holds when it profiles) and a utilization whose start check (free >= share) holds whichever starts
    first, because both footprints and the margin fit the GPU."""
    plan = plan_of(stack_raw("lab"))
    a, b = (w for w in plan.vllm if w.key == "llama-8b-multi")
    gpu = next(g for g in plan.gpus if g.gpu.index == a.gpus[0].index)
    assert a.pinned and b.pinned and a.gpus == b.gpus
    for first, second in ((a, b), (b, a)):
        free_when_second_starts = gpu.gpu.capacity_bytes - first.shares[0].total_bytes - second.shares[0].memory.context_bytes
        assert free_when_second_starts >= second.shares[0].memory.share_bytes
    alone = next(w for w in plan.vllm if w.key == "mixtral")
    assert not alone.pinned and alone.pinned_kv_bytes is None


def test_mla_kv_is_not_split_by_tensor_parallel():
    # Calibrated terms: at TP 2 this MoE model's context outside the share is 2.1 GiB (was 0.5), so at 0.5 of each GPU it
    # no longer leaves a 0.45 llama-8b-multi replica room beside it (20.10 GiB free, 20.53 needed plus the 1 GiB margin);
    # at 0.46 it does, and its pinned KV cache (1.52 GiB per GPU) holds 52592 tokens: maxModelLen 49152 instead of 65536.
    plan = plan_of(variant(lambda r: r["vllm"]["models"]["deepseek-coder"].update(
        tensorParallel=2, gpuMemoryUtilization=0.46, maxModelLen=49152), "lab"))
    w = next(x for x in plan.vllm if x.key == "deepseek-coder")
    assert w.kv_bytes_per_token_per_rank == 27 * 576 * 2 == 31_104
    assert w.shares[0].weights_bytes == 15_700_000_000  # 15.7e9 x 2 B / 2


def test_awq_weights_estimate():
    plan = plan_of(stack_raw("lab"))
    mixtral = next(x for x in plan.vllm if x.key == "mixtral")
    # 0.27e9 unquantized x 2 B + 46.43e9 x (0.5 + 2.5/128) B
    assert mixtral.weights_bytes == round(0.27e9 * 2 + (46.7e9 - 0.27e9) * (0.5 + 2.5 / 128))
    assert f"{mixtral.weights_bytes / GiB:.2f}" == "22.97"


def test_tp_must_divide_attention_heads():
    problems = stack_problems(variant(lambda r: r["vllm"]["models"]["llama-70b"].update(tensorParallel=3), "prod"))
    assert problems[0] == "llm-infra:vllm.models.llama-70b.tensorParallel: 3 does not divide 64 attention heads; use 1, 2, 4, 8, 16"


def test_max_model_len_above_trained_context():
    problems = stack_problems(variant(lambda r: r["vllm"]["models"]["watt-8b"].update(maxModelLen=65536), "prod"))
    assert problems == ["llm-infra:vllm.models.watt-8b.maxModelLen: 65536 is above watt-ai/watt-tool-8B's trained context of 32768; use at most 32768"]


def test_weights_that_do_not_fit_their_share():
    def edit(r):
        r["vllm"]["models"] = {"llama-70b": dict(r["vllm"]["models"]["llama-70b"], tensorParallel=1, gpuMemoryUtilization=0.9)}
        r.pop("llamaStack"), r.pop("agents")

    problems = stack_problems(variant(edit, "prod"))
    assert len(problems) == 1
    assert problems[0].startswith("llm-infra:vllm.models.llama-70b.gpuMemoryUtilization: vllm-llama-70b does not fit its share of a GPU: "
                                  f"0.9 x {A100 / GiB:.2f} GiB = {math.ceil(0.9 * A100) / GiB:.2f} GiB, but weights need 131.50 GiB per GPU")
    assert f"{math.ceil(0.9 * A100) / GiB:.2f}" == "71.23"


def test_servers_sharing_a_gpu_must_fit_their_fractions():
    def edit(r):
        r["vllm"]["models"]["llama-8b"]["gpus"] = [0]
        r["vllm"]["models"]["deepseek-coder"]["gpus"] = [0]  # 0.9 + 0.6 of one GPU

    problems = stack_problems(variant(edit, "lab"))
    # deepseek 0.9 alone on GPU 0, mixtral 0.8 on 1, the two 0.45 replicas on 2, the 0.25 AWQ model on 3
    # each server on one GPU: its context outside the share is 0.55 GiB (MoE or dense alike)
    ctx = round(0.55 * GiB)
    free = [L40 - math.ceil(0.9 * L40) - ctx, L40 - math.ceil(0.8 * L40) - ctx,
            L40 - 2 * math.ceil(0.45 * L40) - 2 * ctx, L40 - math.ceil(0.25 * L40) - ctx]
    assert [f"{f / GiB:.2f}" for f in free] == ["3.89", "8.33", "3.34", "32.75"]
    assert f"{(0.6 * L40 + ctx) / GiB:.2f}" == "27.19"
    assert problems == ["llm-infra:vllm.models.llama-8b: no room for vllm-llama-8b: each needs 0.6 of its pinned GPUs plus its "
                        f"0.55 GiB context ({(0.6 * L40 + ctx) / GiB:.2f} GiB each), and every GPU keeps a 1.00 GiB margin; "
                        "free GiB per GPU on node l40-node: 0: 3.89 (held by vllm-deepseek-coder), 1: 8.33 (held by vllm-mixtral), "
                        "2: 3.34 (held by vllm-llama-8b-multi, vllm-llama-8b-multi-1), 3: 32.75 (held by vllm-llama-3b-awq)"]


def test_plan_names_what_more_the_node_needs():
    problems = stack_problems(variant(lambda r: (r["vllm"]["models"]["llama-8b-multi"].update(replicas=3),
                                                 r["vllm"]["models"]["llama-8b-multi"].pop("autoscale")), "lab"))
    assert problems[0].startswith("llm-infra:vllm.models.llama-8b-multi: no room for vllm-llama-8b-multi-2: each needs 0.45 of 1 GPU(s) of one node")
    assert problems[1] == ("llm-infra:nodes[0].gpus: to place vllm-llama-8b-multi-2, node l40-node needs 1 more GPU(s) of 44.40 GiB "
                           "(like its GPU 0), or lower gpuMemoryUtilization / replicas")


def test_in_a_fleet_the_node_that_needs_more_gpus_is_the_model_s_pool_s():
    """The hint names the node the model may use (its pool's first) and its own config key, not the stack's first node."""
    problems = stack_problems(variant(lambda r: r["vllm"]["models"]["llama-8b"]["autoscale"].update(maxReplicas=14), "scale"))
    assert problems[-1] == ("llm-infra:nodes[2].gpus: to place vllm-llama-8b-12, vllm-llama-8b-13, node l40s-1 needs 2 more "
                            "GPU(s) of 44.42 GiB (like its GPU 0), or lower gpuMemoryUtilization / replicas")


def test_plan_json_reports_vllm_concurrency():
    d = plan_of(stack_raw("prod")).to_dict()
    row = next(x for x in d["vllm"] if x["model"] == "llama-70b")
    assert (row["tensorParallel"], row["maxModelLen"], row["kvPerTokenPerGpuKiB"], row["maxConcurrentSeqsAtFullContext"]) == (4, 128000, 80.0, 1)
    pod = d["gpus"][0]["pods"][0]
    # the 70B over 4 GPUs (dense): the calibrated context with NCCL, 1.6 GiB
    assert pod["engine"] == "vllm" and pod["gpuMemoryUtilization"] == 0.6 and pod["contextGiB"] == 1.6


# Qwen/Qwen2.5-7B-Instruct config.json: hidden_size 3584, num_hidden_layers 28, num_attention_heads 28,
# num_key_value_heads 4 (head_dim 3584 / 28 = 128), intermediate_size 18944, vocab_size 152064,
# max_position_embeddings 32768; 7.61 B parameters (model card).
QWEN25_7B = {"parametersB": 7.61, "layers": 28, "attentionHeads": 28, "kvHeads": 4, "headDim": 128, "hidden": 3584,
             "maxPosition": 32768, "vocab": 152064, "ffn": 18944}


def with_qwen(r, **arch):
    """lab: Qwen2.5 7B alone on GPU 3 in place of the 3B AWQ and the two-replica 8B, described inline (not in the catalog)."""
    r["vllm"]["models"].pop("llama-3b-awq")
    r["vllm"]["models"].pop("llama-8b-multi")
    r["vllm"]["models"]["qwen-7b"] = {"model": "Qwen/Qwen2.5-7B-Instruct", "arch": {**QWEN25_7B, **arch}, "maxModelLen": 32768,
                                      "gpuMemoryUtilization": 0.9, "gpus": [3], "cpu": 4, "memoryGiB": 16}


def test_a_model_described_inline_is_planned_with_its_architectures_kv():
    plan = plan_of(variant(with_qwen, "lab"))
    w = next(x for x in plan.vllm if x.key == "qwen-7b")
    assert w.kv_bytes_per_token_per_rank == 2 * 28 * 4 * 128 * 2 == 56 * 1024  # GQA: 4 KV heads
    kv, seqs = engine_kv(L40, 0.9, round(7.61e9 * 2), 1, 3584, 152064, 56 * 1024, 32768, pinned=False)  # dense 7.6 B
    assert (w.kv_budget_bytes_per_rank, w.max_full_context_seqs, w.pinned) == (kv, seqs, False)
    assert f"{kv / GiB:.2f}" == "23.51"
    assert seqs == 12  # ~22.5 GiB of KV (less the 1 GiB margin) / 1.75 GiB per 32768-token sequence


def test_a_model_neither_in_the_catalog_nor_described_names_both_ways():
    problems = stack_problems(variant(lambda r: (with_qwen(r), r["vllm"]["models"]["qwen-7b"].pop("arch")), "lab"))
    assert problems[0].startswith("llm-infra:vllm.models.qwen-7b.model: 'Qwen/Qwen2.5-7B-Instruct' is not in the model catalog (")
    assert "add it with `make catalog MODEL=Qwen/Qwen2.5-7B-Instruct`, or describe it with an arch block from its config.json " \
           "(llm-infra:vllm.models.qwen-7b.arch: parametersB" in problems[0]


def test_an_inline_architecture_is_checked_like_a_catalog_one():
    problems = stack_problems(variant(lambda r: (with_qwen(r), r["vllm"]["models"]["qwen-7b"].update(tensorParallel=3, gpus=[1, 2, 3])), "lab"))
    assert "llm-infra:vllm.models.qwen-7b.tensorParallel: 3 does not divide 28 attention heads; use 1, 2, 4" in problems
    problems = stack_problems(variant(lambda r: (with_qwen(r), r["vllm"]["models"]["qwen-7b"].update(maxModelLen=65536)), "lab"))
    assert "llm-infra:vllm.models.qwen-7b.maxModelLen: 65536 is above Qwen/Qwen2.5-7B-Instruct's trained context of 32768; use at most 32768" in problems


def test_autoscale_reserves_room_for_every_replica_up_to_the_maximum():
    plan = plan_of(stack_raw("lab"))
    multi = [w for w in plan.vllm if w.key == "llama-8b-multi"]
    assert [(w.deployment_name, w.reserved) for w in multi] == [("vllm-llama-8b-multi", False), ("vllm-llama-8b-multi-1", True)]
    # the reserved replica holds its GPU share in the plan like a running one
    gpu3 = next(g for g in plan.gpus if g.gpu.index == 3)
    assert [p.name for p in gpu3.pods] == ["vllm-llama-8b-multi", "vllm-llama-8b-multi-1 (reserved)"]
    assert gpu3.allocated_bytes + plan.vllm_margin_bytes <= gpu3.gpu.capacity_bytes
    assert next(x for x in plan.to_dict()["vllm"] if x["deployment"] == "vllm-llama-8b-multi-1")["reserved"] is True


def test_a_max_replicas_with_no_room_is_refused_naming_the_key():
    problems = stack_problems(variant(lambda r: r["vllm"]["models"]["llama-8b-multi"]["autoscale"].update(maxReplicas=4), "lab"))
    assert problems[0].startswith(
        "llm-infra:vllm.models.llama-8b-multi.autoscale.maxReplicas: the GPUs hold 2 replicas of vllm-llama-8b-multi, not 4: "
        "no room to reserve vllm-llama-8b-multi-2, vllm-llama-8b-multi-3; use maxReplicas <= 2")
    below = stack_problems(variant(lambda r: r["vllm"]["models"]["llama-8b-multi"]["autoscale"].update(maxReplicas=1), "lab"))
    assert below[0].startswith("llm-infra:vllm.models.llama-8b-multi.autoscale.maxReplicas: Input should be greater than or equal to 2")


def fleet(nodes: int, models: int) -> dict:
    """tools/bench.py's fleet as a raw stack. Its `small` pool's servers take 0.12 of their 44 GiB GPU: with the
    calibrated terms a 3B AWQ server at 0.11 would keep 0.56 GiB of KV (4.84 GiB share - 2.09 weights - 0.54 sampler peak
    (256 x 128256 x 4 B x 4 + 0.05 GiB) - 0.5 non-torch - 1.15 CUDA graphs), less than its one 8192-token sequence
    (8192 x 112 KiB = 0.875 GiB); at 0.12 it keeps 1.00 GiB, and a GPU holds 7 of them (7 x (5.28 + 0.55 context) + 1
    margin <= 44)."""
    import json as json_

    from tools.bench import fleet_config

    raw = {k.split(":", 1)[1]: json_.loads(v) if v[:1] in "{[" else v for k, v in fleet_config(nodes, models).items()}
    assert {m["gpuMemoryUtilization"] for m in raw["vllm"]["models"].values() if m.get("pool") == "small"} == {0.12}
    return raw


def test_a_fleet_in_pools_places_each_model_in_its_pool_and_sums_each_pool():
    raw = fleet(10, 40)
    plan = plan_of(raw)
    pool_of = {n["name"]: n["pool"] for n in raw["nodes"]}
    for w in plan.vllm:
        assert all(pool_of[r.node] == w.spec.pool for r in w.ranks), w.deployment_name
    (x,) = [w for w in plan.vllm if w.multi_node]  # 2 xl nodes: one model over both
    assert sorted(r.node for r in x.ranks) == ["gpu-000", "gpu-001"] and all(len(r.gpus) == 8 for r in x.ranks)
    pools = {p.name: p for p in plan.pools()}
    assert sorted(pools) == ["big", "small", "xl"] and [(pools[p].nodes, pools[p].gpus) for p in ("xl", "big", "small")] == [
        (2, 16), (4, 32), (4, 32)]
    assert pools["xl"].gpus_used == 16
    for name, p in pools.items():
        gpus = [g for g in plan.gpus if pool_of[g.gpu.node] == name]
        assert p.allocated_bytes == sum(g.allocated_bytes for g in gpus)
        assert p.gpus_used == sum(1 for g in gpus if g.pods) and p.free_bytes == p.capacity_bytes - p.allocated_bytes
    assert [d["pool"] for d in plan.to_dict()["pools"]] == ["xl", "big", "small"]


def test_reserved_room_is_summed_per_pool():
    plan = plan_of(stack_raw("lab"))
    (pool,) = plan.pools()
    # vllm-llama-8b-multi-1: its share and its one-GPU context, ceil(0.45 x 44.40 GiB) + 0.55 GiB
    assert pool.reserved_bytes == math.ceil(0.45 * L40) + round(0.55 * GiB)
    assert pool.name == "(no pool)" and round(pool.reserved_bytes / 2**30, 2) == 20.53


def test_pool_mistakes_name_the_key():
    problems = stack_problems(variant(lambda r: r["vllm"]["models"]["mixtral"].update(pool="big"), "lab"))
    assert problems[0] == "llm-infra:vllm.models.mixtral.pool: no node pool 'big'; pools are: none (set nodes[].pool)"
    both = stack_problems(variant(lambda r: (r["nodes"][0].update(pool="l40"),
                                             r["vllm"]["models"]["mixtral"].update(pool="a100", node="l40-node")), "lab"))
    assert "llm-infra:vllm.models.mixtral.pool: no node pool 'a100'; pools are: l40" in both
    assert "llm-infra:vllm.models.mixtral.pool: node 'l40-node' is not in pool 'a100'; set one of node or pool" in both


def test_placing_a_fleet_stays_linear_in_nodes_and_models(monkeypatch):
    """Counted, not timed: the GPUs examined (a footprint compared with a GPU's room, by single-node and multi-node
    placement alike) for a fleet 4x as large in nodes and models grow 4x, not 16x."""
    import stacks.plan.vllm as placement

    calls = [0]
    footprint = placement._footprint

    def counting(*a, **k):
        calls[0] += 1
        return footprint(*a, **k)

    monkeypatch.setattr(placement, "_footprint", counting)
    counts = []
    for nodes, models in ((40, 200), (160, 800)):
        calls[0] = 0
        plan = plan_of(fleet(nodes, models))
        assert sum(1 for w in plan.vllm if w.multi_node) == nodes // 10
        counts.append(calls[0])
    assert counts[1] <= 4.5 * counts[0], counts
