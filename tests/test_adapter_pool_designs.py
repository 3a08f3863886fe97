"""The adapter pool's two designs for the same adapters and concurrency: Ollama (a server and a copy
of the weights per role) and vLLM multi-LoRA (one server per GPU, one bf16 or fp8 copy, LoRA slots).

Hand figures (Ollama 0.32.15's estimate for Llama 3 8B; vLLM's calibrated terms as in test_plan_vllm):
  weights  8.03e9 x 2 B bf16; fp8: 8.03e9 x 1 B plus 1 B more for each of the embeddings' and the untied LM head's
           2 x 128256 x 4096 parameters (online fp8 keeps them 16 bit); overhead as vLLM 0.33 accounts for it (OVERHEAD below)
  LoRA     rank 16 on q,k,v,o,gate,up,down: 32 layers x 16 x (2x8192 + 2x5120 + 3x18432) x 2 B = 80 MiB per adapter
  KV       131,072 B per token x (replicas x parallel x contextLength summed over the GPU's roles)
"""

from __future__ import annotations

import json
import math

from tests.conftest import plan_of, run_secret_raw, stack_problems, stack_raw, variant

GiB = 2**30
LORA = 32 * 16 * (2 * 8192 + 2 * 5120 + 3 * 18432) * 2


def overhead(rows: int) -> int:
    """vLLM's accounting (stacks/vllm_memory.py, calibrated on startup logs), everything but weights, LoRA and KV: the
    context outside the share on one GPU (0.55 GiB); the profile peak, the larger of the forward pass (2048 tokens x 4096
    x 2 B x 18) and the sampler (min(2048, maxNumSeqs) rows x 128256 vocab x 4 B x 4, plus 0.05 GiB); non-torch memory
    (0.5 GiB at TP 1) and the CUDA graphs of a dense 8B model (1.15 GiB)."""
    peak = max(2048 * 4096 * 2 * 18, rows * 128256 * 4 * 4 + round(0.05 * GiB))
    return round(0.55 * GiB) + peak + GiB // 2 + round(1.15 * GiB)


OVERHEAD = overhead(14)  # GPU 0: base 2 + chatbot 12 slots = maxNumSeqs 14


def test_lora_slot_size():
    from stacks.model_catalog import hf_models

    arch = hf_models()["meta-llama/Meta-Llama-3-8B-Instruct"].arch
    assert arch.lora_bytes(16) == LORA == 80 * 2**20
    assert arch.lora_bytes(32) == 2 * LORA


def test_designs_compared_in_the_dev_plan():
    gpu0, gpu1 = plan_of(stack_raw("dev")).designs
    assert (gpu0.roles, gpu0.slots, gpu0.tokens) == (("base", "chatbot"), 2 + 12, 2 * 4096 + 12 * 2048)
    assert (gpu1.roles, gpu1.slots, gpu1.tokens) == (("code", "summarization"), 6 + 2, 6 * 4096 + 2 * 8192)
    assert gpu0.ollama_bytes == 2 * 4_661_211_424 + 4 * GiB + 2 * 768 * 2**20 + 2 * 483_183_821
    assert gpu0.vllm_bytes == 16_060_000_000 + LORA + 131_072 * 32768 + OVERHEAD
    assert f"{gpu0.ollama_bytes / GiB:.2f} {gpu0.vllm_bytes / GiB:.2f}" == "15.08 21.52"  # bf16 does not fit 20 GiB
    # GPU 1: 2 LoRA slots, 6 x 4096 + 2 x 8192 tokens of KV, overhead(8) == overhead(14) (the forward pass is the peak)
    assert f"{gpu1.ollama_bytes / GiB:.2f} {gpu1.vllm_bytes / GiB:.2f}" == "16.08 22.59"


def multi_lora(raw, quantization=None):
    raw["hfToken"] = "hf_x"
    raw["ollama"]["engine"] = "vllm"
    if quantization:
        raw["ollama"]["vllm"] = {"quantization": quantization}
    for name, a in raw["ollama"]["adapters"].items():
        a["loraDir"] = f"loras/{name}"


def gpu0_fp8_bytes() -> int:
    """GPU 0's fp8 multi-LoRA server: one fp8 copy (the linear layers 1 B per parameter, the embeddings and the untied LM
    head, 2 x 128256 vocab x 4096 hidden, in 16 bit: 1 B more each), one LoRA slot, 32768 tokens of KV, the engine's overhead."""
    return 8_030_000_000 + 2 * 128256 * 4096 + LORA + 4 * GiB + OVERHEAD


def test_fp8_multi_lora_design():
    plan = plan_of(variant(lambda r: multi_lora(r, "fp8")))
    gpu0 = plan.designs[0]
    assert gpu0.vllm_bytes == gpu0_fp8_bytes()
    assert f"{gpu0.vllm_bytes / GiB:.2f}" == "15.02"
    assert not plan.workloads  # no Ollama servers deployed
    assert [(w.deployment_name, w.gpus[0].index, w.spec.max_num_seqs, w.spec.max_model_len) for w in plan.vllm] == [
        ("vllm-adapters-gpu0", 0, 14, 4096), ("vllm-adapters-gpu1", 1, 8, 8192)]


def test_bf16_multi_lora_cannot_hold_the_same_concurrency():
    problems = stack_problems(variant(multi_lora))
    kv = math.ceil(0.9 * 20 * GiB) - 16_060_000_000 - (OVERHEAD - round(0.55 * GiB)) - LORA  # the context is outside the share
    assert f"{kv / GiB:.2f}" == "1.03"
    assert (
        f"llm-infra:ollama.vllm.gpuMemoryUtilization: the vLLM server on GPU 0 has {kv / GiB:.2f} GiB of KV cache, but its roles "
        "(base, chatbot) hold 32768 tokens at once (4.00 GiB) with the Ollama design's concurrency; raise gpuMemoryUtilization, "
        "set quantization fp8, or lower parallel/contextLength") in problems


def test_multi_lora_needs_peft_dirs():
    problems = stack_problems(variant(lambda r: (multi_lora(r, "fp8"), r["ollama"]["adapters"]["code"].pop("loraDir"))))
    assert problems == ["llm-infra:ollama.adapters.code.loraDir: ollama.engine vllm serves adapters as PEFT LoRA directories; "
                        "set loraDir (GGUF files are for Ollama)"]


def test_multi_lora_renders_vllm_servers_with_lora_modules():
    run = run_secret_raw(variant(lambda r: multi_lora(r, "fp8")), ["hfToken"])
    kinds = [o["kind"] + "/" + o["metadata"]["name"] for o in run.objects() if o["kind"] in ("Deployment", "Service")]
    assert kinds == ["Service/ollama-base", "Service/ollama-chatbot", "Service/ollama-code", "Service/ollama-summarization",
                     "Service/vllm-adapters-gpu0", "Service/vllm-adapters-gpu1",
                     "Deployment/vllm-adapters-gpu0", "Deployment/vllm-adapters-gpu1"]
    args = run.find("Deployment", "vllm-adapters-gpu1")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["meta-llama/Meta-Llama-3-8B-Instruct", "--served-model-name", "llama3-8b", "--tensor-parallel-size", "1",
                    "--max-model-len", "8192", "--gpu-memory-utilization", "0.9", "--max-num-seqs", "8", "--quantization", "fp8",
                    "--enable-lora", "--lora-modules", "code=/models/loras/code", "summarization=/models/loras/summarization",
                    "--max-loras", "2", "--max-lora-rank", "16"]
    assert json.loads(json.dumps(run.program["stack"].plan.to_dict()))["adapterPoolDesigns"][0]["vllmMultiLora"]["totalGiB"] == round(gpu0_fp8_bytes() / GiB, 3)


def test_multi_lora_keeps_the_seeds_task_urls():
    """ollama-<role>:11434 still resolves, to the vLLM server holding that role's adapter; the client sends the
    adapter's LoRA name (the base: the served name) to the OpenAI API under /v1."""
    run = run_secret_raw(variant(lambda r: multi_lora(r, "fp8")), ["hfToken"])
    server = {d: run.find("Deployment", d)["spec"]["template"]["metadata"]["labels"] for d in ("vllm-adapters-gpu0", "vllm-adapters-gpu1")}
    for role, gpu in (("base", 0), ("chatbot", 0), ("code", 1), ("summarization", 1)):
        svc = run.find("Service", f"ollama-{role}")["spec"]
        assert svc["ports"] == [{"name": "http", "port": 11434, "protocol": "TCP", "targetPort": "http"}]
        labels = server[f"vllm-adapters-gpu{gpu}"]
        assert all(labels[k] == v for k, v in svc["selector"].items())  # selects that GPU's server
        other = server[f"vllm-adapters-gpu{1 - gpu}"]
        assert not all(other.get(k) == v for k, v in svc["selector"].items())
    endpoints = run.program["topology"].endpoints
    assert endpoints["ollama-chatbot"] == "http://ollama-chatbot.llama3-multi-adapter:11434/v1"
    graph = run.program["stack"].graph
    assert graph.endpoints["ollama-chatbot"].models == ("chatbot",) and graph.endpoints["ollama-base"].models == ("llama3-8b",)
