"""vLLM plan figures against hand computation (KV per token = 2 x layers x KV heads x head dim x dtype bytes).

  weights       parameters x 2 B (bf16), split over tensor-parallel ranks
  activations   max-num-batched-tokens (2048 default) x hidden x 2 B x 16 (estimate)
  runtime       plan.vllmRuntimeGiB, 1 GiB per GPU (estimate)
  KV per token  2 x layers x (kv_heads / TP) x head_dim x 2 B; MLA: layers x 576 x 2 B, not split
  KV budget     gpuMemoryUtilization x capacity - weights - activations - runtime
"""

from __future__ import annotations

from tests.conftest import plan_of, stack_problems, stack_raw, variant

GiB = 2**30


def test_prod_70b_figures():
    plan = plan_of(stack_raw("prod"))
    w = next(x for x in plan.vllm if x.key == "llama-70b")
    assert [g.index for g in w.gpus] == [0, 1, 2, 3]
    share = w.shares[0]
    assert share.weights_bytes == 35_300_000_000  # 70.6e9 x 2 B / 4
    assert share.activation_bytes == 2048 * 8192 * 2 * 16 == GiB // 2
    assert share.runtime_bytes == GiB
    assert share.total_bytes == round(0.58 * 80 * GiB)
    kv = round(0.58 * 80 * GiB) - 35_300_000_000 - GiB // 2 - GiB
    assert share.kv_bytes == kv and f"{kv / GiB:.2f}" == "12.02"
    assert w.kv_bytes_per_token_per_rank == 2 * 80 * (8 // 4) * 128 * 2 == 80 * 1024
    one_seq = 128_000 * 80 * 1024  # 9.77 GiB per GPU: the seed's 128k context fits once
    assert w.max_full_context_seqs == kv // one_seq == 1


def test_prod_places_everything_with_zero_over_commit():
    plan = plan_of(stack_raw("prod"))
    for g in plan.gpus:
        assert g.allocated_bytes == round(0.58 * 80 * GiB) + round(0.37 * 80 * GiB) <= 80 * GiB
    small = {w.key: w.gpus[0].index for w in plan.vllm if w.spec.tensor_parallel == 1}
    assert sorted(small.values()) == [0, 1, 2, 3]  # one small model beside the 70B on each GPU
    granite = next(x for x in plan.vllm if x.key == "granite-8b")
    assert granite.kv_bytes_per_token_per_rank == 2 * 40 * 8 * 128 * 2 == 160 * 1024


def test_lab_places_everything_on_four_l40s():
    plan = plan_of(stack_raw("lab"))
    assert len(plan.gpus) == 4 and all(g.pods for g in plan.gpus)
    assert all(g.allocated_bytes <= g.gpu.capacity_bytes for g in plan.gpus)
    seqs = {w.deployment_name: w.max_full_context_seqs for w in plan.vllm}
    assert seqs == {"vllm-deepseek-coder": 5, "vllm-llama-3b-awq": 2, "vllm-llama-8b": 2,
                    "vllm-llama-8b-multi-0": 4, "vllm-llama-8b-multi-1": 4, "vllm-mixtral": 5}
    multi = [w for w in plan.vllm if w.key == "llama-8b-multi"]
    assert [w.replica for w in multi] == [0, 1]


def test_mla_kv_is_not_split_by_tensor_parallel():
    plan = plan_of(variant(lambda r: r["vllm"]["models"]["deepseek-coder"].update(tensorParallel=2, gpuMemoryUtilization=0.5), "lab"))
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
                                  "0.9 x 80.00 GiB = 72.00 GiB, but weights need 131.50 GiB per GPU")


def test_kv_budget_smaller_than_one_sequence():
    problems = stack_problems(variant(lambda r: r["vllm"]["models"]["llama-70b"].update(gpuMemoryUtilization=0.5), "prod"))
    kv = round(0.5 * 80 * GiB) - 35_300_000_000 - GiB // 2 - GiB
    assert problems == [
        f"llm-infra:vllm.models.llama-70b.maxModelLen: vllm-llama-70b's KV cache ({kv / GiB:.2f} GiB per GPU) holds "
        f"{kv // (80 * 1024)} tokens, less than one 128000-token sequence (9.77 GiB); vLLM would refuse to start. "
        f"Use maxModelLen <= {kv // (80 * 1024)}, or raise gpuMemoryUtilization / tensorParallel, or set kvCacheDtype fp8"
    ]


def test_servers_sharing_a_gpu_must_fit_their_fractions():
    def edit(r):
        r["vllm"]["models"]["llama-8b"]["gpus"] = [0]
        r["vllm"]["models"]["deepseek-coder"]["gpus"] = [0]  # 0.9 + 0.6 of one GPU

    problems = stack_problems(variant(edit, "lab"))
    assert problems == ["llm-infra:vllm.models.llama-8b: no room for vllm-llama-8b: it needs 0.6 of its pinned GPUs; "
                        "free GiB per GPU on node l40-node: 0: 4.50, 1: 9.00, 2: 4.50, 3: 33.75"]


def test_plan_names_what_more_the_node_needs():
    problems = stack_problems(variant(lambda r: r["vllm"]["models"]["llama-8b-multi"].update(replicas=3), "lab"))
    assert problems[0].startswith("llm-infra:vllm.models.llama-8b-multi: no room for vllm-llama-8b-multi-2: it needs 0.45 of 1 GPU(s) of one node")
    assert problems[1] == ("llm-infra:nodes[0].gpus: to place everything, node l40-node needs 1 more GPU(s) of 45 GiB "
                           "(like its GPU 0), or lower gpuMemoryUtilization / replicas")


def test_plan_json_reports_vllm_concurrency():
    d = plan_of(stack_raw("prod")).to_dict()
    row = next(x for x in d["vllm"] if x["model"] == "llama-70b")
    assert (row["tensorParallel"], row["maxModelLen"], row["kvPerTokenPerGpuKiB"], row["maxConcurrentSeqsAtFullContext"]) == (4, 128000, 80.0, 1)
    pod = d["gpus"][0]["pods"][0]
    assert pod["engine"] == "vllm" and pod["gpuMemoryUtilization"] == 0.58
