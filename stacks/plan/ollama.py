"""The Ollama side of the plan: each pod as Ollama predicts it, and the adapter pool's two designs."""

from __future__ import annotations

from stacks.catalog import GIB, OLLAMA, HfModel
from stacks.config import Adapter, OllamaServer, StackConfig, VllmModel, key, node_of, servers
from stacks.config.pod_options import merged_options
from stacks.plan.model import (RESERVED_MARK, GpuPlan, GpuRef, NodePlan, OllamaWorkload, PodVram, Plan, PoolDesign,
                               servers_on, vllm_weights_bytes)
from stacks.model_catalog import hf_models, ollama_models
from stacks.vllm_memory import context_gib, rank_memory


RESERVED = RESERVED_MARK


def server_pods(server: OllamaServer) -> int:
    """Pods the plan places for a server: `autoscale.maxReplicas` when it scales, else `replicas`."""
    return server.autoscale.max_replicas if server.autoscale is not None else server.replicas


def pod_vram(cfg: StackConfig, server: OllamaServer, name: str, workload: str) -> PodVram:
    """VRAM of one Ollama pod, as Ollama predicts it plus the CUDA context."""
    model = ollama_models()[cfg.ollama.base_model]
    effective_context = server.context_length * server.parallel
    return PodVram(
        name=name,
        workload=workload,
        weights_bytes=model.file_bytes,
        kv_bytes=model.arch.kv_bytes_per_token_per_rank(1, OLLAMA.kv_bytes_per_element) * effective_context,
        surcharge_bytes=OLLAMA.surcharge_bytes(effective_context),
        cuda_context_bytes=round(cfg.plan.cuda_context_gib * GIB),
    )


def place_ollama(cfg: StackConfig, gpus: dict[tuple[str, int], GpuPlan], nodes: dict[str, NodePlan]) -> list[OllamaWorkload]:
    workloads: list[OllamaWorkload] = []
    for path, role, server in servers(cfg):
        assert cfg.ollama is not None
        node = node_of(cfg, server)
        assert node is not None  # parse_config checked it
        gpu_plan = gpus[(node.name, server.gpu)]
        adapter = server if isinstance(server, Adapter) else None
        deployment = "ollama-base" if adapter is None else f"ollama-adapter-{role}"
        count = server_pods(server)
        pods = tuple(
            pod_vram(cfg, server, (f"{deployment}#{r + 1}" if count > 1 else deployment) + (RESERVED if r >= server.replicas else ""),
                     deployment)
            for r in range(count)
        )
        gpu_plan.pods.extend(pods)
        node_plan = nodes[node.name]
        node_plan.cpu_requests += server.cpu * count
        node_plan.memory_requests_gib += server.memory_gib * count
        node_plan.pods.extend(p.name for p in pods)
        workloads.append(OllamaWorkload(role, path, server, adapter, cfg.ollama.base_model, node.name, gpu_plan.gpu, pods,
                                        cfg.plan.ollama_fit_target_mib))
    return workloads


def pool_designs(cfg: StackConfig, ollama: list[OllamaWorkload]) -> list[PoolDesign]:
    """Per GPU of the adapter pool: Ollama's pods (one per role, each with its own weights) against one
    vLLM server holding the base once, the adapters as LoRA slots, and the KV cache for the same slots."""
    assert cfg.ollama is not None
    pool = cfg.ollama.vllm
    hf = hf_models().get(pool.model)
    if hf is None:
        return []
    out = []
    for gpu in dict.fromkeys(w.gpu for w in ollama):
        on = [w for w in ollama if w.gpu == gpu]
        tokens = sum(w.server.replicas * w.server.parallel * w.server.context_length for w in on)
        adapters = tuple(w.role for w in on if w.adapter is not None)
        spec = VllmModel.model_validate({"model": pool.model, "maxModelLen": 256, "cpu": 1, "memoryGiB": 1,
                                         **({"quantization": pool.quantization} if pool.quantization else {})})
        out.append(PoolDesign(
            node=gpu.node, index=gpu.index, capacity_bytes=gpu.capacity_bytes,
            roles=tuple(w.role for w in on), adapters=adapters,
            slots=sum(w.server.replicas * w.server.parallel for w in on), tokens=tokens,
            max_context=max(w.server.context_length for w in on),
            ollama_bytes=sum(p.total_bytes for w in on for p in w.pods),
            vllm_weights_bytes=vllm_weights_bytes(spec, hf),
            vllm_lora_bytes=hf.arch.lora_bytes(pool.max_lora_rank) * len(adapters),
            vllm_kv_bytes=hf.arch.kv_bytes_per_token_per_rank(1, 2) * tokens,
            vllm_overhead_bytes=_design_overhead(cfg, hf, gpu, sum(w.server.replicas * w.server.parallel for w in on)),
        ))
    return out


def _design_overhead(cfg: StackConfig, hf: HfModel, gpu: GpuRef, slots: int) -> int:
    """Everything of the GPU's one vLLM server (maxNumSeqs = slots) but weights, LoRA slots and KV cache (stacks/vllm_memory.py)."""
    context = cfg.plan.vllm_context_gib if cfg.plan.vllm_context_gib is not None else context_gib(1, 1, hf.arch.moe)
    m = rank_memory(hf, 0, 1, 1.0, gpu.capacity_bytes, gpu.model, None, slots, round(context * GIB))
    return m.context_bytes + m.non_kv_bytes


def pool_server_key(d: PoolDesign, multi_node: bool) -> str:
    """The `ollama.engine: vllm` server holding the adapters of one GPU."""
    return f"adapters-{d.node}-gpu{d.index}" if multi_node else f"adapters-gpu{d.index}"


def adapter_pool_models(cfg: StackConfig, designs: list[PoolDesign]) -> dict[str, VllmModel]:
    """engine vllm: one vLLM server per GPU of the pool, the adapters on it as LoRA modules."""
    assert cfg.ollama is not None
    pool = cfg.ollama.vllm
    out = {}
    for d in designs:
        name = pool_server_key(d, len(cfg.nodes) > 1)
        out[name] = VllmModel.model_validate({
            "model": pool.model,
            "servedName": cfg.ollama.base_model.replace(":", "-"),
            "maxModelLen": d.max_context,
            "maxNumSeqs": d.slots,
            "gpuMemoryUtilization": pool.gpu_memory_utilization,
            "loraModules": {a: cfg.ollama.adapters[a].lora_dir or "" for a in d.adapters},
            "maxLoraRank": pool.max_lora_rank,
            "node": d.node,
            "gpus": [d.index],
            "cpu": pool.cpu,
            "memoryGiB": pool.memory_gib,
            **({"quantization": pool.quantization} if pool.quantization else {}),
            # The pod options of the roles it serves (config/pod_options.py refuses roles on one GPU that disagree).
            **merged_options([cfg.ollama.base if r == "base" else cfg.ollama.adapters[r] for r in d.roles]),
        })
    return out


def pool_concurrency_problems(plan: Plan, designs: list[PoolDesign]) -> list[str]:
    out = []
    for d in designs:
        w = next((w for w in plan.vllm if w.config_path == ("ollama", "vllm") and w.node == d.node and w.gpus[0].index == d.index), None)
        if w is None or not w.shares:
            continue
        need = w.kv_bytes_per_token_per_rank * d.tokens
        if w.kv_budget_bytes_per_rank < need:
            out.append(
                f"{key('ollama', 'vllm', 'gpuMemoryUtilization')}: the vLLM server on GPU {d.index} has {(w.kv_budget_bytes_per_rank) / GIB:.2f} GiB "
                f"of KV cache, but its roles ({', '.join(d.roles)}) hold {d.tokens} tokens at once ({(need) / GIB:.2f} GiB) with the Ollama "
                f"design's concurrency; raise gpuMemoryUtilization, set quantization fp8, or lower parallel/contextLength"
            )
    return out


def offload_problem(plan: Plan, g: GpuPlan, p: PodVram, where: str) -> str:
    free = g.free_at_load_bytes(p)
    room = free - g.fit_target_bytes
    if p.total_bytes > room:
        why = (f"it needs {p.total_bytes / GIB:.2f} GiB (Ollama's prediction {p.predicted_bytes / GIB:.2f} + CUDA context), more than "
               f"that less llama-server's fit target of {g.fit_target_bytes / 2**20:g} MiB ({room / GIB:.2f} GiB)")
        short = p.total_bytes - room
    else:
        why = (f"Ollama predicts {p.predicted_bytes / GIB:.2f} GiB, above 80 % of that ({OLLAMA.whole_load_fraction * free / GIB:.2f} GiB; "
               f"plan.ollamaWholeLoadRule)")
        short = p.predicted_bytes / OLLAMA.whole_load_fraction - free
    return (f"{where}: {p.name} would not load wholly on the GPU: loading last it sees {free / GIB:.2f} GiB free, and {why}; "
            f"it would offload layers to the CPU. Leave at least {short / GIB:.2f} GiB more free on this GPU [{servers_on(plan, g)}]")
