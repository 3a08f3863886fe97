"""The plan's numbers against figures computed by hand from the engines' formulas.

Hand figures (Ollama 0.32.15 llm/llama_server.go and server/sched.go):
  llama3:8b weights file          4,661,211,424 B
  KV cache, f16                   2 x 32 layers x 8 kv-heads x 128 x 2 B = 131,072 B per token
  batch surcharge                 768 MiB when context x parallel > 4096; 2 GiB when > 32768
  CUDA context (plan.cudaContextGiB default) 0.45 GiB = 483,183,821 B
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import stack_of, plan_of, problems_of, stack_raw, variant
from tools.offline import ROOT

GiB = 2**30
WEIGHTS = 4_661_211_424
KV_PER_TOKEN = 131_072
MEDIUM = 768 * 2**20
LARGE = 2 * GiB
CUDA = 483_183_821


def pods_by_name(plan):
    return {p.name: (g, p) for g in plan.gpus for p in g.pods}


def test_dev_pod_figures_match_hand_computation():
    plan = stack_of(stack_raw("dev")).plan
    pods = pods_by_name(plan)
    # chatbot: 1 pod x 12 slots x 2048 tokens = 24,576 tokens -> 3 GiB KV, medium batch.
    _, chat = pods["ollama-adapter-chatbot"]
    assert chat.weights_bytes == WEIGHTS
    assert chat.kv_bytes == KV_PER_TOKEN * 2048 * 12 == 3 * GiB
    assert chat.surcharge_bytes == MEDIUM
    assert chat.total_bytes == WEIGHTS + 3 * GiB + MEDIUM + CUDA
    # base: 2 slots x 4096 = 8192 tokens -> 1 GiB; summarization: 2 x 8192 = 16,384 -> 2 GiB.
    assert pods["ollama-base"][1].kv_bytes == 1 * GiB
    assert pods["ollama-adapter-summarization"][1].kv_bytes == 2 * GiB
    assert pods["ollama-adapter-code"][1].kv_bytes == 3 * GiB


def test_dev_gpu_sums_and_headroom():
    plan = stack_of(stack_raw("dev")).plan
    gpu0, gpu1 = plan.gpus
    assert [p.name for p in gpu0.pods] == ["ollama-base", "ollama-adapter-chatbot"]
    assert [p.name for p in gpu1.pods] == ["ollama-adapter-code", "ollama-adapter-summarization"]
    assert gpu0.allocated_bytes == 2 * WEIGHTS + (1 + 3) * GiB + 2 * MEDIUM + 2 * CUDA  # 15.08 GiB
    assert gpu1.allocated_bytes == 2 * WEIGHTS + (3 + 2) * GiB + 2 * MEDIUM + 2 * CUDA  # 16.08 GiB
    assert round(gpu0.allocated_bytes / GiB, 2) == 15.08 and round(gpu1.allocated_bytes / GiB, 2) == 16.08
    # Every pod loads wholly even when it loads last: 80 % of what the others leave free covers it.
    chat = gpu0.pods[1]
    assert gpu0.free_at_load_bytes(chat) == 20 * GiB - (WEIGHTS + GiB + MEDIUM + CUDA)
    assert all(g.loads_whole(p) for g in plan.gpus for p in g.pods)


def test_dev_keeps_seed_roles_gpus_and_concurrency():
    """Seed 000: base + chatbot on GPU 0, code + summarization on GPU 1; slots per task 2/12/6/2."""
    plan = stack_of(stack_raw("dev")).plan
    slots = {w.role: w.server.replicas * w.server.parallel for w in plan.workloads}
    gpus = {w.role: w.gpu.index for w in plan.workloads}
    assert slots == {"base": 1 * 2, "chatbot": 3 * 4, "code": 2 * 3, "summarization": 1 * 2}
    assert gpus == {"base": 0, "chatbot": 0, "code": 1, "summarization": 1}


def seed_literal_layout(raw):
    """Seed 000/001 as written: 7 pods, the seed's NUM_PARALLEL, Ollama's default 4096 context (<23 GiB)."""
    o = raw["ollama"]
    for role, replicas, parallel in (("chatbot", 3, 4), ("code", 2, 3), ("summarization", 1, 2)):
        o["adapters"][role].update(replicas=replicas, parallel=parallel, contextLength=4096, cpu=2, memoryGiB=8)
    o["base"].update(replicas=1, parallel=2, contextLength=4096, cpu=2, memoryGiB=8)


def test_seed_literal_layout_is_over_committed_with_its_figure():
    problems = problems_of(variant(seed_literal_layout))
    # GPU 0: base (4096 x 2 = 8192 tokens: 1 GiB KV) + 3 chatbot pods (4096 x 4 = 16,384: 2 GiB KV), all medium batch.
    gpu0 = (WEIGHTS + 1 * GiB + MEDIUM + CUDA) + 3 * (WEIGHTS + 2 * GiB + MEDIUM + CUDA)
    assert f"{gpu0 / GiB:.2f}" == "29.16"
    over0 = next(p for p in problems if p.startswith("llm-infra:nodes[0].gpus[0] (GPU 0 on node workstation): over-committed"))
    assert "4 pods need 29.16 GiB of its 20.00 GiB (9.16 GiB too much)" in over0
    assert "ollama-adapter-chatbot#3 7.54 (weights 4.34 + KV 2.00 + overhead 1.20)" in over0
    assert "llm-infra:ollama.base.gpu, llm-infra:ollama.adapters.chatbot.gpu" in over0
    # GPU 1: 2 code pods (4096 x 3 = 12,288: 1.5 GiB KV) + summarization (8192: 1 GiB), all medium batch.
    gpu1 = 2 * (WEIGHTS + GiB * 3 // 2 + MEDIUM + CUDA) + (WEIGHTS + GiB + MEDIUM + CUDA)
    assert f"{gpu1 / GiB:.2f}" == "20.62"
    assert any("(GPU 1 on node workstation): over-committed: 3 pods need 20.62 GiB of its 20.00 GiB" in p for p in problems)
    # The seed's CPU/RAM matrix itself fits: 7 x 2 cores, 7 x 8 GiB = 14 / 56 of 16 - 2 / 64 - 8.
    assert not any("CPU" in p or "RAM" in p for p in problems)


def test_brim_full_gpu_fails_llama_servers_fit():
    """Fits in capacity (19.33 of 20 GiB), but the chatbot pod would spill onto the CPU if it loads last: pinned to
    one GPU, llama-server --fit keeps its allocation within free memory minus its 1024 MiB target."""

    def edit(r):
        r["ollama"]["adapters"]["chatbot"]["contextLength"] = 4096  # 49,152 tokens: 6 GiB KV, large batch

    problems = problems_of(variant(edit))
    chat_total = WEIGHTS + 6 * GiB + LARGE + CUDA
    base_total = WEIGHTS + GiB + MEDIUM + CUDA
    assert chat_total + base_total < 20 * GiB  # no over-commit
    free = 20 * GiB - base_total
    assert len(problems) == 2  # whichever loads last spills: both pods are named
    base, chat = problems
    assert chat.startswith("llm-infra:nodes[0].gpus[0] (GPU 0 on node workstation): ollama-adapter-chatbot would not load wholly")
    assert (f"sees {free / GiB:.2f} GiB free, and it needs {chat_total / GiB:.2f} GiB (Ollama's prediction "
            f"{(chat_total - CUDA) / GiB:.2f} + CUDA context), more than that less llama-server's fit target of 1024 MiB "
            f"({(free - 2**30) / GiB:.2f} GiB)") in chat
    assert f"Leave at least {(chat_total - free + 2**30) / GiB:.2f} GiB more free" in chat
    assert "sees 7.21 GiB free, and it needs 6.54 GiB" in base


def test_whole_load_rule_is_an_opt_in_policy():
    """Ollama's 80 % rule (it applies it only when a server sees several GPUs) can be required as a stricter policy."""
    def edit(r, rule):
        r["plan"] = {"ollamaWholeLoadRule": rule, "ollamaFitTargetMiB": 0}
        r["ollama"]["adapters"]["chatbot"]["contextLength"] = 4096

    # With no fit target the 4096-context chatbot fits; only the 80 % policy refuses it.
    assert all(g.loads_whole(p) for g in plan_of(variant(lambda r: edit(r, False))).gpus for p in g.pods)
    strict = problems_of(variant(lambda r: edit(r, True)))
    assert any("ollama-adapter-chatbot would not load wholly" in p and "above 80 % of that" in p
               and "plan.ollamaWholeLoadRule" in p for p in strict)


def test_pods_get_the_fit_target_the_plan_checked(dev_run):
    env = {e["name"]: e.get("value") for e in dev_run.find("Deployment", "ollama-base")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LLAMA_ARG_FIT_TARGET"] == "1024"


def test_exclusive_mode_rejects_sharing_a_gpu():
    problems = problems_of(variant(lambda r: r["gpuSharing"].update(mode="exclusive")))
    assert any("gpuSharing.mode exclusive gives each pod a whole GPU, but 2 pods are planned on it "
               "(ollama-base, ollama-adapter-chatbot)" in p for p in problems)


def test_cpu_and_ram_over_node_allocatable():
    def edit(r):
        r["ollama"]["adapters"]["chatbot"].update(cpu=8, memoryGiB=30)

    problems = problems_of(variant(edit))
    assert "llm-infra:nodes[0] (node workstation): pods request 15 CPU but the node has 14 after its reserve of 2; " \
           "lower cpu or replicas of its pods (ollama-base, ollama-adapter-chatbot, ollama-adapter-code, " \
           "ollama-adapter-summarization)" in problems
    assert not any("RAM" in p for p in problems)  # 8 + 30 + 10 + 8 = 56 GiB: exactly the allocatable RAM


def test_cuda_context_is_configurable():
    plan = stack_of(variant(lambda r: r.update(plan={"cudaContextGiB": 0}))).plan
    assert plan.gpus[0].allocated_bytes == 2 * WEIGHTS + 4 * GiB + 2 * MEDIUM


def test_render_writes_plan_json_with_the_same_figures(tmp_path):
    out = tmp_path / "dev"
    proc = subprocess.run([sys.executable, "-m", "tools.render", "--stack", "dev", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    plan = json.loads((out / "plan.json").read_text())
    gpu0 = plan["gpus"][0]
    assert (gpu0["node"], gpu0["index"], gpu0["capacityGiB"], gpu0["allocatedGiB"]) == ("workstation", 0, 20.0, 15.082)
    chat = gpu0["pods"][1]
    assert chat == {**chat, "name": "ollama-adapter-chatbot", "weightsGiB": 4.341, "kvCacheGiB": 3.0,
                    "overheadGiB": 1.2, "totalGiB": 8.541}
    node = plan["nodes"][0]
    assert node["cpu"] == {"capacity": 16, "reserve": 2, "allocatable": 14, "requests": 11}
    assert node["memoryGiB"] == {"capacity": 64, "reserve": 8, "allocatable": 56, "requests": 36}
    # The table a person reads carries the same numbers.
    assert "ollama-adapter-chatbot" in proc.stdout and "15.08      of 20.00" in proc.stdout
    assert (out / "manifests.yaml").read_text().count("kind: Deployment") == 4


def test_example_of_the_seed_layout_is_rejected_by_the_renderer(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.render", "--stack", "seed", "--config", "examples/seed-literal.yaml",
                           "--out", str(tmp_path / "seed")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "4 pods need 29.16 GiB of its 20.00 GiB (9.16 GiB too much)" in proc.stderr
    assert "3 pods need 20.62 GiB of its 20.00 GiB (0.62 GiB too much)" in proc.stderr
    assert not (tmp_path / "seed").exists()
