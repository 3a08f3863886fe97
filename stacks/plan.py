"""The GPU / CPU / RAM plan: pure Python, no Pulumi.

For every pod the plan computes the VRAM Ollama itself predicts (weights file + f16 KV cache for
contextLength x parallel tokens + the batch surcharge for that effective context), adds the CUDA
context the estimate leaves out, sums the pods per physical GPU and checks:

- capacity: the pods on a GPU fit in its memory;
- whole load: each pod, loading last, still sees its prediction within 80 % of the memory left
  free (Ollama's whole-load rule; otherwise layers silently spill onto the CPU);
- exclusive mode: one GPU pod per GPU;
- CPU and RAM requests against each node minus its reserve.

Any failure raises ConfigError with the figures; the renderer writes nothing then.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import math

from stacks.catalog import GIB, GPU_MODELS, HF_MODELS, OLLAMA, OLLAMA_MODELS, VLLM, HfModel
from stacks.config import Adapter, Gpu, Node, OllamaServer, StackConfig, VllmModel, key, node_of, servers
from stacks.config.vllm import hf_model
from stacks.errors import ConfigError
from stacks.vllm_memory import KvBlocks, RankMemory, kv_blocks, rank_memory

LLAMA_STACK_NAME = "llamastack-server"
"""Deployment and Service of Llama Stack: seed 004's agents default to http://llamastack-server.<namespace>:8321."""


@dataclass(frozen=True)
class GpuRef:
    """One physical GPU as the plan and the components address it."""

    node: str
    index: int
    capacity_bytes: int
    uuid: str | None
    pci_bus_id: str | None
    config_path: tuple[str | int, ...]
    model: str = ""
    """Catalog GPU model, if given (vLLM's batch defaults depend on it)."""

    @property
    def claim_name(self) -> str:
        """Name of the ResourceClaim for this GPU in `dra` mode."""
        return f"{self.node}-gpu-{self.index}"


@dataclass(frozen=True)
class PodVram:
    name: str
    workload: str
    weights_bytes: int
    kv_bytes: int
    surcharge_bytes: int
    cuda_context_bytes: int

    @property
    def predicted_bytes(self) -> int:
        """What Ollama predicts for the load (PredictServerVRAM + batch surcharge)."""
        return self.weights_bytes + self.kv_bytes + self.surcharge_bytes

    @property
    def overhead_bytes(self) -> int:
        return self.surcharge_bytes + self.cuda_context_bytes

    @property
    def total_bytes(self) -> int:
        return self.predicted_bytes + self.cuda_context_bytes


@dataclass(frozen=True)
class VllmShare:
    """What one vLLM pod takes of one of its GPUs, as the engine accounts for it (stacks/vllm_memory.py):
    the context outside its share, and inside the share weights, the profile peak, non-torch memory,
    CUDA graphs, LoRA slots and the KV cache that is left."""

    name: str
    workload: str
    memory: RankMemory

    @property
    def weights_bytes(self) -> int:
        return self.memory.weights_bytes

    @property
    def kv_bytes(self) -> int:
        return self.memory.kv_bytes

    @property
    def overhead_bytes(self) -> int:
        """Everything but weights and KV cache, the context outside the share included."""
        return self.memory.context_bytes + self.memory.non_kv_bytes - self.memory.weights_bytes

    @property
    def total_bytes(self) -> int:
        return self.memory.footprint_bytes


@dataclass
class VllmWorkload:
    """One vLLM pod (a replica of a model) and where the plan put it."""

    key: str
    config_path: tuple[str, ...]
    spec: VllmModel
    hf: HfModel
    replica: int
    node: str = ""
    gpus: tuple[GpuRef, ...] = ()
    shares: tuple[VllmShare, ...] = ()
    blocks: KvBlocks | None = None
    """The KV cache in engine blocks (minimum over ranks; profiled caches less the margin)."""
    pinned: bool = False
    """A GPU of this pod is shared: its KV cache is pinned with --kv-cache-memory-bytes."""
    margin_bytes: int = 0
    """Taken off a profiled KV cache (0 when pinned: the engine then takes exactly the pinned size)."""

    @property
    def deployment_name(self) -> str:
        return f"vllm-{self.key}" if self.spec.replicas == 1 else f"vllm-{self.key}-{self.replica}"

    @property
    def service_name(self) -> str:
        return f"vllm-{self.key}"

    @property
    def served_name(self) -> str:
        return self.spec.served_name or self.key

    @property
    def weights_bytes(self) -> int:
        """The whole checkpoint in GPU memory (all ranks)."""
        return vllm_weights_bytes(self.spec, self.hf)

    @property
    def kv_bytes_per_token_per_rank(self) -> int:
        kv_dtype = 1 if self.spec.kv_cache_dtype.startswith("fp8") else dtype_bytes(self.spec.dtype)
        return self.hf.arch.kv_bytes_per_token_per_rank(self.spec.tensor_parallel, kv_dtype)

    @property
    def kv_budget_bytes_per_rank(self) -> int:
        return min(s.kv_bytes for s in self.shares)

    @property
    def max_full_context_seqs(self) -> int:
        """Sequences of maxModelLen tokens the engine's KV blocks hold at once."""
        return self.blocks.full_length_sequences if self.blocks is not None else 0

    @property
    def pinned_kv_bytes(self) -> int | None:
        """--kv-cache-memory-bytes for a pod on a shared GPU (whole blocks), else None."""
        return self.blocks.pinned_bytes if self.pinned and self.blocks is not None else None


def dtype_bytes(dtype: str) -> int:
    return 4 if dtype in ("float", "float32") else 2


def vllm_weights_bytes(spec: VllmModel, hf: HfModel) -> int:
    params = hf.arch.parameters_b * 1e9
    if hf.quant_bits == 4:
        unq = hf.unquantized_parameters_b * 1e9
        return round(unq * 2 + (params - unq) * VLLM.four_bit_bytes_per_parameter)
    if spec.quantization is not None and spec.quantization.startswith("fp8"):
        return round(params)
    return round(params * dtype_bytes(spec.dtype))


@dataclass(frozen=True)
class OllamaWorkload:
    """One Ollama server (Deployment + Service) with everything the components need to render it."""

    role: str
    config_path: tuple[str, ...]
    server: OllamaServer
    adapter: Adapter | None
    base_model: str
    node: str
    gpu: GpuRef
    pods: tuple[PodVram, ...]
    fit_target_mib: int = OLLAMA.fit_target_mib
    """LLAMA_ARG_FIT_TARGET the pods get (plan.ollamaFitTargetMiB), so llama-server keeps what the plan checked."""

    @property
    def deployment_name(self) -> str:
        return "ollama-base" if self.adapter is None else f"ollama-adapter-{self.role}"

    @property
    def service_name(self) -> str:
        return f"ollama-{self.role}"

    @property
    def model_name(self) -> str:
        """The Ollama model this server answers for: the base tag, or the adapter's name."""
        return self.base_model if self.adapter is None else self.role


@dataclass
class GpuPlan:
    gpu: GpuRef
    pods: list[PodVram | VllmShare] = field(default_factory=list)
    fit_target_bytes: int = 0
    """plan.ollamaFitTargetMiB: llama-server's --fit keeps this much free."""
    whole_load_rule: bool = False
    """plan.ollamaWholeLoadRule: also apply Ollama's 80 % rule."""

    @property
    def allocated_bytes(self) -> int:
        return sum(p.total_bytes for p in self.pods)

    @property
    def free_bytes(self) -> int:
        return self.gpu.capacity_bytes - self.allocated_bytes

    def free_at_load_bytes(self, pod: PodVram) -> int:
        """Memory free when `pod` loads last: capacity minus every other pod's use."""
        return self.gpu.capacity_bytes - (self.allocated_bytes - pod.total_bytes)

    def loads_whole(self, pod: PodVram | VllmShare) -> bool:
        """An Ollama pod, loading last, gets every layer on the GPU: pinned to one GPU, llama-server --fit places all
        layers when its allocation (weights, KV, compute, CUDA context) stays within free memory minus the fit target;
        with plan.ollamaWholeLoadRule, Ollama's 80 % rule must hold too. A vLLM server gets its share or does not start."""
        if isinstance(pod, VllmShare):
            return True
        free = self.free_at_load_bytes(pod)
        fits = pod.total_bytes <= free - self.fit_target_bytes
        return fits and (not self.whole_load_rule or pod.predicted_bytes <= OLLAMA.whole_load_fraction * free)


@dataclass
class NodePlan:
    node: Node
    cpu_requests: float = 0.0
    memory_requests_gib: float = 0.0
    pods: list[str] = field(default_factory=list)

    @property
    def cpu_allocatable(self) -> float:
        return self.node.cpu - self.node.reserve.cpu

    @property
    def memory_allocatable_gib(self) -> float:
        return self.node.memory_gib - self.node.reserve.memory_gib


@dataclass
class Plan:
    mode: str
    workloads: list[OllamaWorkload]
    gpus: list[GpuPlan]
    nodes: list[NodePlan]
    vllm: list[VllmWorkload] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    designs: list[PoolDesign] = field(default_factory=list)
    engine: str = "ollama"
    """How the adapter pool is deployed (ollama.engine)."""
    vllm_margin_bytes: int = 0
    """plan.vllmMarginGiB: kept free on every GPU a vLLM server uses."""

    def used_gpus(self) -> list[GpuPlan]:
        return [g for g in self.gpus if g.pods]

    def to_dict(self) -> dict:
        return {
            "gpuSharing": self.mode,
            "gpus": [
                {
                    "node": g.gpu.node,
                    "index": g.gpu.index,
                    "capacityGiB": gib(g.gpu.capacity_bytes),
                    "allocatedGiB": gib(g.allocated_bytes),
                    "freeGiB": gib(g.free_bytes),
                    "pods": [
                        {
                            "name": p.name,
                            "workload": p.workload,
                            "engine": "vllm" if isinstance(p, VllmShare) else "ollama",
                            "weightsGiB": gib(p.weights_bytes),
                            "kvCacheGiB": gib(p.kv_bytes),
                            "overheadGiB": gib(p.overhead_bytes),
                            "totalGiB": gib(p.total_bytes),
                            **(
                                {"gpuMemoryUtilization": round(p.memory.share_bytes / g.gpu.capacity_bytes, 4),
                                 "contextGiB": gib(p.memory.context_bytes)}
                                if isinstance(p, VllmShare)
                                else {
                                    "predictedGiB": gib(p.predicted_bytes),
                                    "freeAtLoadGiB": gib(g.free_at_load_bytes(p)),
                                    "loadsWhole": g.loads_whole(p),
                                }
                            ),
                        }
                        for p in g.pods
                    ],
                }
                for g in self.gpus
            ],
            "nodes": [
                {
                    "name": n.node.name,
                    "cpu": {
                        "capacity": n.node.cpu,
                        "reserve": n.node.reserve.cpu,
                        "allocatable": n.cpu_allocatable,
                        "requests": round(n.cpu_requests, 3),
                    },
                    "memoryGiB": {
                        "capacity": n.node.memory_gib,
                        "reserve": n.node.reserve.memory_gib,
                        "allocatable": n.memory_allocatable_gib,
                        "requests": round(n.memory_requests_gib, 3),
                    },
                    "pods": n.pods,
                }
                for n in self.nodes
            ],
            "vllm": [
                {
                    "model": w.key,
                    "replica": w.replica,
                    "deployment": w.deployment_name,
                    "repo": w.hf.repo,
                    "servedName": w.served_name,
                    "node": w.node,
                    "gpus": [g.index for g in w.gpus],
                    "tensorParallel": w.spec.tensor_parallel,
                    "gpuMemoryUtilization": w.spec.gpu_memory_utilization,
                    "maxModelLen": w.spec.max_model_len,
                    "weightsGiB": gib(w.weights_bytes),
                    "weightsPerGpuGiB": gib(w.shares[0].weights_bytes) if w.shares else None,
                    "kvPerTokenPerGpuKiB": round(w.kv_bytes_per_token_per_rank / 1024, 3),
                    "kvCachePerGpuGiB": gib(w.kv_budget_bytes_per_rank) if w.shares else None,
                    "kvCacheMemoryBytes": w.pinned_kv_bytes,
                    "kvBlocks": w.blocks.usable_blocks if w.blocks else None,
                    "maxConcurrentSeqsAtFullContext": w.max_full_context_seqs if w.shares else None,
                }
                for w in self.vllm
            ],
            "adapterPoolDesigns": [
                {
                    "node": d.node, "index": d.index, "capacityGiB": gib(d.capacity_bytes), "roles": list(d.roles),
                    "slots": d.slots, "kvTokens": d.tokens,
                    "ollama": {"totalGiB": gib(d.ollama_bytes)},
                    "vllmMultiLora": {
                        "weightsGiB": gib(d.vllm_weights_bytes), "loraGiB": gib(d.vllm_lora_bytes), "kvCacheGiB": gib(d.vllm_kv_bytes),
                        "overheadGiB": gib(d.vllm_overhead_bytes), "totalGiB": gib(d.vllm_bytes),
                    },
                }
                for d in self.designs
            ],
        }


def gib(n: int | float) -> float:
    return round(n / GIB, 3)


def pod_vram(cfg: StackConfig, server: OllamaServer, name: str, workload: str) -> PodVram:
    """VRAM of one Ollama pod, as Ollama predicts it plus the CUDA context."""
    model = OLLAMA_MODELS[cfg.ollama.base_model]
    effective_context = server.context_length * server.parallel
    return PodVram(
        name=name,
        workload=workload,
        weights_bytes=model.file_bytes,
        kv_bytes=model.arch.kv_bytes_per_token_per_rank(1, OLLAMA.kv_bytes_per_element) * effective_context,
        surcharge_bytes=OLLAMA.surcharge_bytes(effective_context),
        cuda_context_bytes=round(cfg.plan.cuda_context_gib * GIB),
    )


def gpu_capacity_bytes(gpu: Gpu) -> int:
    """The total CUDA reports: the catalog's figure for the model, or vramGiB as given."""
    if gpu.model is not None:
        return GPU_MODELS[gpu.model].cuda_total_bytes
    assert gpu.vram_gib is not None  # one of the two, checked at the edge
    return round(gpu.vram_gib * GIB)


def _gpu_plans(cfg: StackConfig) -> dict[tuple[str, int], GpuPlan]:
    gpus: dict[tuple[str, int], GpuPlan] = {}
    for i, node in enumerate(cfg.nodes):
        for j, gpu in enumerate(node.gpus):
            ref = GpuRef(node.name, gpu.index, gpu_capacity_bytes(gpu), gpu.uuid, gpu.pci_bus_id, ("nodes", i, "gpus", j), gpu.model or "")
            gpus[(node.name, gpu.index)] = GpuPlan(ref, fit_target_bytes=cfg.plan.ollama_fit_target_mib * 2**20,
                                                   whole_load_rule=cfg.plan.ollama_whole_load_rule)
    return gpus


def _place_ollama(cfg: StackConfig, gpus: dict[tuple[str, int], GpuPlan], nodes: dict[str, NodePlan]) -> list[OllamaWorkload]:
    workloads: list[OllamaWorkload] = []
    for path, role, server in servers(cfg):
        assert cfg.ollama is not None
        node = node_of(cfg, server)
        assert node is not None  # parse_config checked it
        gpu_plan = gpus[(node.name, server.gpu)]
        adapter = server if isinstance(server, Adapter) else None
        deployment = "ollama-base" if adapter is None else f"ollama-adapter-{role}"
        pods = tuple(
            pod_vram(cfg, server, f"{deployment}#{r + 1}" if server.replicas > 1 else deployment, deployment)
            for r in range(server.replicas)
        )
        gpu_plan.pods.extend(pods)
        node_plan = nodes[node.name]
        node_plan.cpu_requests += server.cpu * server.replicas
        node_plan.memory_requests_gib += server.memory_gib * server.replicas
        node_plan.pods.extend(p.name for p in pods)
        workloads.append(OllamaWorkload(role, path, server, adapter, cfg.ollama.base_model, node.name, gpu_plan.gpu, pods,
                                        cfg.plan.ollama_fit_target_mib))
    return workloads


def build_plan(cfg: StackConfig) -> Plan:
    """Place every pod of the validated config and check the whole plan; raise ConfigError if it does not fit."""
    gpus = _gpu_plans(cfg)
    nodes = {n.name: NodePlan(n) for n in cfg.nodes}
    multi_lora = cfg.ollama is not None and cfg.ollama.engine == "vllm"
    # The Ollama design is always planned: deployed, or (engine vllm) kept for the comparison.
    ollama_gpus = _gpu_plans(cfg) if multi_lora else gpus
    ollama_nodes = {n.name: NodePlan(n) for n in cfg.nodes} if multi_lora else nodes
    ollama = _place_ollama(cfg, ollama_gpus, ollama_nodes)
    designs = pool_designs(cfg, ollama) if cfg.ollama is not None else []

    plan = Plan(cfg.gpu_sharing.mode, [] if multi_lora else ollama, list(gpus.values()), list(nodes.values()))
    plan.designs = designs
    plan.engine = cfg.ollama.engine if cfg.ollama is not None else "ollama"
    models: dict[str, tuple[tuple[str, ...], VllmModel]] = {}
    if cfg.vllm is not None:
        models.update({k: (("vllm", "models", k), m) for k, m in cfg.vllm.models.items()})
    if multi_lora:
        pool = adapter_pool_models(cfg, designs)
        plan.problems += [f"{key('vllm', 'models', k)}: the name is taken by the adapter pool's own server on that GPU "
                          "(ollama.engine vllm); rename the model" for k in sorted(pool.keys() & models.keys())]
        models.update({k: (("ollama", "vllm"), m) for k, m in pool.items()})
    if models:
        _place_vllm(cfg, plan, gpus, nodes, models)
    if multi_lora:
        plan.problems += _pool_concurrency_problems(plan, designs)
    if cfg.llama_stack is not None:
        # CPU-only: it counts against its node's CPU and RAM, not against any GPU.
        node = nodes[cfg.llama_stack.node or cfg.nodes[0].name]
        node.cpu_requests += cfg.llama_stack.cpu
        node.memory_requests_gib += cfg.llama_stack.memory_gib
        node.pods.append(LLAMA_STACK_NAME)
    problems = plan.problems + plan_problems(plan)
    if problems:
        raise ConfigError(problems)
    return plan


@dataclass(frozen=True)
class PoolDesign:
    """The adapter pool on one GPU, both ways, for the same adapters and concurrency."""

    node: str
    index: int
    capacity_bytes: int
    roles: tuple[str, ...]
    adapters: tuple[str, ...]
    slots: int
    tokens: int
    """KV tokens the roles hold at once: sum of replicas x parallel x contextLength."""
    max_context: int
    ollama_bytes: int
    vllm_weights_bytes: int
    vllm_lora_bytes: int
    vllm_kv_bytes: int
    vllm_overhead_bytes: int

    @property
    def vllm_bytes(self) -> int:
        return self.vllm_weights_bytes + self.vllm_lora_bytes + self.vllm_kv_bytes + self.vllm_overhead_bytes


def pool_designs(cfg: StackConfig, ollama: list[OllamaWorkload]) -> list[PoolDesign]:
    """Per GPU of the adapter pool: Ollama's pods (one per role, each with its own weights) against one
    vLLM server holding the base once, the adapters as LoRA slots, and the KV cache for the same slots."""
    assert cfg.ollama is not None
    pool = cfg.ollama.vllm
    hf = HF_MODELS.get(pool.model)
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
    m = rank_memory(hf, 0, 1, 1.0, gpu.capacity_bytes, gpu.model, None, slots, round(cfg.plan.vllm_context_gib * GIB))
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
        })
    return out


def _pool_concurrency_problems(plan: Plan, designs: list[PoolDesign]) -> list[str]:
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


def _vllm_replicas(models: dict[str, tuple[tuple[str, ...], VllmModel]]) -> list[VllmWorkload]:
    """Every vLLM pod, biggest first (tensor parallel, then share of a GPU), so placement packs well."""
    out = [
        VllmWorkload(k, path, m, hf, r)
        for k, (path, m) in models.items()
        if (hf := hf_model(m)) is not None
        for r in range(m.replicas)
    ]
    return sorted(out, key=lambda w: (-w.spec.tensor_parallel, -w.spec.gpu_memory_utilization, w.key, w.replica))


@dataclass(frozen=True)
class VllmAllowances:
    """plan.vllmContextGiB and plan.vllmMarginGiB in bytes."""

    context_bytes: int
    margin_bytes: int


def _footprint(w: VllmWorkload, g: GpuPlan, allow: VllmAllowances) -> int:
    return math.ceil(w.spec.gpu_memory_utilization * g.gpu.capacity_bytes) + allow.context_bytes


def _fit(w: VllmWorkload, node: Node, gpus: dict[tuple[str, int], GpuPlan], pinned: list[int] | None,
         allow: VllmAllowances, exclusive: bool = False) -> list[GpuPlan] | None:
    """The GPUs of `node` this pod would take: the pinned ones, or the tightest that still have room for
    its footprint (share + context) and the GPU's margin (in exclusive mode, only GPUs nothing else uses)."""
    room = [g for (n, _), g in gpus.items() if n == node.name and g.free_bytes - allow.margin_bytes >= _footprint(w, g, allow)
            and not (exclusive and g.pods)]
    if pinned is not None:
        chosen = [g for g in room if g.gpu.index in pinned]
        return chosen if len(chosen) == len(pinned) else None
    room.sort(key=lambda g: (g.free_bytes - _footprint(w, g, allow), g.gpu.index))
    return room[: w.spec.tensor_parallel] if len(room) >= w.spec.tensor_parallel else None


def _rank_memory(w: VllmWorkload, g: GpuPlan, allow: VllmAllowances) -> RankMemory:
    loras = w.spec.max_loras or len(w.spec.lora_modules)
    lora = w.hf.arch.lora_bytes(w.spec.max_lora_rank or VLLM.default_max_lora_rank) * loras if loras else 0
    return rank_memory(w.hf, w.weights_bytes, w.spec.tensor_parallel, w.spec.gpu_memory_utilization, g.gpu.capacity_bytes,
                       g.gpu.model, w.spec.max_num_batched_tokens, w.spec.max_num_seqs, allow.context_bytes, lora)


def _place_vllm(cfg: StackConfig, plan: Plan, gpus: dict[tuple[str, int], GpuPlan], nodes: dict[str, NodePlan],
                models: dict[str, tuple[tuple[str, ...], VllmModel]]) -> None:
    allow = VllmAllowances(round(cfg.plan.vllm_context_gib * GIB), round(cfg.plan.vllm_margin_gib * GIB))
    plan.vllm_margin_bytes = allow.margin_bytes
    unplaced: list[VllmWorkload] = []
    exclusive = cfg.gpu_sharing.mode == "exclusive"
    for w in _vllm_replicas(models):
        candidates = [n for n in cfg.nodes if w.spec.node in (None, n.name)]
        placed = next(((n, f) for n in candidates if (f := _fit(w, n, gpus, w.spec.gpus, allow, exclusive)) is not None), None)
        if placed is None:
            unplaced.append(w)
            continue
        node, chosen = placed
        w.node, w.gpus = node.name, tuple(sorted((g.gpu for g in chosen), key=lambda r: r.index))
        shares = []
        for g in sorted(chosen, key=lambda g: g.gpu.index):
            share = VllmShare(w.deployment_name, w.deployment_name, _rank_memory(w, g, allow))
            g.pods.append(share)
            shares.append(share)
        w.shares = tuple(shares)
        n = nodes[node.name]
        n.cpu_requests += w.spec.cpu
        n.memory_requests_gib += w.spec.memory_gib + shm_gib(w.spec)
        n.pods.append(w.deployment_name)
        plan.vllm.append(w)
    plan.vllm.sort(key=lambda w: (w.key, w.replica))
    for w in plan.vllm:
        # A GPU shared with another server: the KV size is pinned (--kv-cache-memory-bytes), exactly what the
        # plan computed, so start order and neighbours cannot change it. Alone on its GPUs, vLLM profiles, and
        # the plan counts on the KV cache less the margin its estimates may be off by.
        w.pinned = any(len(gpus[(w.node, ref.index)].pods) > 1 for ref in w.gpus)
        w.margin_bytes = 0 if w.pinned else allow.margin_bytes
        kv = [s.kv_bytes - w.margin_bytes for s in w.shares]
        w.blocks = kv_blocks(kv, w.kv_bytes_per_token_per_rank, w.spec.max_model_len)
        plan.problems += _vllm_share_problems(w)
    if unplaced:
        plan.problems += _unplaced_problems(cfg, unplaced, gpus, allow)


def shm_gib(spec: VllmModel) -> int:
    """/dev/shm (memory-backed) for tensor parallelism; none for a single GPU."""
    return VLLM.shm_gib_per_rank * spec.tensor_parallel if spec.tensor_parallel > 1 else 0


def _vllm_share_problems(w: VllmWorkload) -> list[str]:
    at = lambda *k: key(*w.config_path, *k)  # noqa: E731
    s = min(w.shares, key=lambda x: x.kv_bytes)
    m = s.memory
    util = w.spec.gpu_memory_utilization
    if m.kv_bytes <= 0:
        return [
            f"{at('gpuMemoryUtilization')}: {w.deployment_name} does not fit its share of a GPU: {util:g} x "
            f"{(m.share_bytes / util) / GIB:.2f} GiB = {(m.share_bytes) / GIB:.2f} GiB, but weights need {(m.weights_bytes) / GIB:.2f} GiB "
            f"per GPU (of {(w.weights_bytes) / GIB:.2f} GiB over tensorParallel {w.spec.tensor_parallel}) + "
            f"{(m.non_kv_bytes - m.weights_bytes) / GIB:.2f} GiB profile peak, non-torch memory and CUDA graphs; "
            f"raise gpuMemoryUtilization or tensorParallel, or quantize"
        ]
    b = w.blocks
    assert b is not None
    if b.usable_blocks < b.blocks_per_sequence:
        how = "pinned" if w.pinned else f"profiled, less the {w.margin_bytes / GIB:.2f} GiB margin"
        return [
            f"{at('maxModelLen')}: {w.deployment_name}'s KV cache ({(s.kv_bytes) / GIB:.2f} GiB per GPU, {how}) holds "
            f"{b.usable_blocks} blocks of {VLLM.block_size} tokens after the null block, {b.tokens} tokens: less than one "
            f"{w.spec.max_model_len}-token sequence ({b.blocks_per_sequence} blocks); vLLM would refuse to start. "
            f"Use maxModelLen <= {b.tokens}, or raise gpuMemoryUtilization / tensorParallel, or set kvCacheDtype fp8"
        ]
    return []


def _unplaced_problems(cfg: StackConfig, unplaced: list[VllmWorkload], gpus: dict[tuple[str, int], GpuPlan],
                       allow: VllmAllowances) -> list[str]:
    """Name each pod that has no room, and what the node would need to place them all."""
    out = []
    by_model: dict[str, list[VllmWorkload]] = {}
    for w in unplaced:
        by_model.setdefault(w.key, []).append(w)
    for group in by_model.values():
        w = group[0]
        node = next(n for n in cfg.nodes if w.spec.node in (None, n.name))
        free = ", ".join(f"{g.gpu.index}: {g.free_bytes / GIB:.2f}{_holders(g)}" for (n, _), g in gpus.items() if n == node.name)
        where = "its pinned GPUs" if w.spec.gpus else f"{w.spec.tensor_parallel} GPU(s) of one node"
        need = w.spec.gpu_memory_utilization * gpu_capacity_bytes(node.gpus[0]) + allow.context_bytes if node.gpus else 0
        out.append(
            f"{key(*w.config_path)}: no room for {listing([x.deployment_name for x in group])}"
            f"{f' ({len(group)} of its {w.spec.replicas} replicas)' if len(group) > 1 else ''}: each needs {w.spec.gpu_memory_utilization:g} of {where} "
            f"plus its {allow.context_bytes / GIB:.2f} GiB context ({need / GIB:.2f} GiB each), and every GPU keeps a "
            f"{allow.margin_bytes / GIB:.2f} GiB margin; free GiB per GPU on node {node.name}: {free or 'no GPUs'}"
        )
    # How many more GPUs like the node's largest would place what is left (same packing rule).
    node = cfg.nodes[0]
    if node.gpus and not any(w.spec.gpus for w in unplaced):
        template = max(node.gpus, key=gpu_capacity_bytes)
        capacity = gpu_capacity_bytes(template)
        for extra in range(1, 33):
            trial = {k: GpuPlan(g.gpu, list(g.pods), g.fit_target_bytes, g.whole_load_rule) for k, g in gpus.items()}
            for i in range(extra):
                ref = GpuRef(node.name, 1000 + i, capacity, None, None, (), template.model or "")
                trial[(node.name, 1000 + i)] = GpuPlan(ref)
            if all(_take(w, node, trial, allow, cfg.gpu_sharing.mode == "exclusive") for w in unplaced):
                out.append(
                    f"{key('nodes', 0, 'gpus')}: to place everything, node {node.name} needs {extra} more GPU(s) of "
                    f"{capacity / GIB:.2f} GiB (like its GPU {template.index}), or lower gpuMemoryUtilization / replicas"
                )
                break
    return out


def _holders(g: GpuPlan) -> str:
    """Who holds a GPU, so a failure points at what took the room (the model just added, often)."""
    names = list(dict.fromkeys(p.workload for p in g.pods))
    return f" (held by {listing(names, 3)})" if names else ""


def listing(items: list[str], limit: int = 4, sep: str = ", ") -> str:
    """At most `limit` items, then how many more: a thousand replicas make one short line."""
    head = sep.join(items[:limit])
    return head if len(items) <= limit else f"{head}{sep}... and {len(items) - limit} more"


def _take(w: VllmWorkload, node: Node, gpus: dict[tuple[str, int], GpuPlan], allow: VllmAllowances, exclusive: bool) -> bool:
    chosen = _fit(w, node, gpus, None, allow, exclusive)
    for g in chosen or []:
        g.pods.append(VllmShare(w.deployment_name, w.deployment_name, _rank_memory(w, g, allow)))
    return chosen is not None


def _servers_on(plan: Plan, g: GpuPlan) -> str:
    keys = [key(*w.config_path, "gpu") for w in plan.workloads if w.gpu == g.gpu]
    keys += [key(*w.config_path, "gpuMemoryUtilization") for w in plan.vllm if g.gpu in w.gpus]
    return ", ".join(dict.fromkeys(keys))


def _pod_figures(p: PodVram | VllmShare) -> str:
    return (
        f"{p.name} {(p.total_bytes) / GIB:.2f} (weights {(p.weights_bytes) / GIB:.2f} + KV {(p.kv_bytes) / GIB:.2f}"
        f" + overhead {(p.overhead_bytes) / GIB:.2f})"
    )


def _offload_problem(plan: Plan, g: GpuPlan, p: PodVram, where: str) -> str:
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
            f"it would offload layers to the CPU. Leave at least {short / GIB:.2f} GiB more free on this GPU [{_servers_on(plan, g)}]")


def plan_problems(plan: Plan) -> list[str]:
    problems: list[str] = []
    for g in plan.used_gpus():
        where = f"{key(*g.gpu.config_path)} (GPU {g.gpu.index} on node {g.gpu.node})"
        if plan.mode == "exclusive" and len(g.pods) > 1:
            problems.append(
                f"{where}: gpuSharing.mode exclusive gives each pod a whole GPU, but {len(g.pods)} pods are planned on it "
                f"({listing([p.name for p in g.pods])}); use one pod per GPU or mode dra / visible-devices [{_servers_on(plan, g)}]"
            )
        margin = plan.vllm_margin_bytes if any(isinstance(p, VllmShare) for p in g.pods) else 0
        if margin and g.allocated_bytes <= g.gpu.capacity_bytes < g.allocated_bytes + margin:
            problems.append(
                f"{where}: its pods need {g.allocated_bytes / GIB:.2f} GiB of its {g.gpu.capacity_bytes / GIB:.2f} GiB, leaving "
                f"{g.free_bytes / GIB:.2f} GiB, less than the {margin / GIB:.2f} GiB margin (plan.vllmMarginGiB) the vLLM "
                f"accounting's estimates need; lower gpuMemoryUtilization [{_servers_on(plan, g)}]"
            )
        if g.allocated_bytes > g.gpu.capacity_bytes:
            problems.append(
                f"{where}: over-committed: {len(g.pods)} pods need {(g.allocated_bytes) / GIB:.2f} GiB of its "
                f"{(g.gpu.capacity_bytes) / GIB:.2f} GiB ({(-g.free_bytes) / GIB:.2f} GiB too much): "
                f"{listing([_pod_figures(p) for p in g.pods], sep='; ')}. Every Ollama pod holds its own copy of the weights; "
                f"lower replicas, parallel or contextLength, or move a server to another GPU [{_servers_on(plan, g)}]"
            )
            continue
        for p in g.pods:
            if not g.loads_whole(p):
                problems.append(_offload_problem(plan, g, p, where))
    for i, n in enumerate(plan.nodes):
        if n.cpu_requests > n.cpu_allocatable + 1e-9:
            problems.append(
                f"{key('nodes', i)} (node {n.node.name}): pods request {n.cpu_requests:g} CPU but the node has "
                f"{n.cpu_allocatable:g} after its reserve of {n.node.reserve.cpu:g}; lower cpu or replicas of its pods ({listing(n.pods)})"
            )
        if n.memory_requests_gib > n.memory_allocatable_gib + 1e-9:
            problems.append(
                f"{key('nodes', i)} (node {n.node.name}): pods request {n.memory_requests_gib:g} GiB RAM but the node has "
                f"{n.memory_allocatable_gib:g} GiB after its reserve of {n.node.reserve.memory_gib:g} GiB; lower memoryGiB or replicas of its pods ({listing(n.pods)})"
            )
    return problems


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
        out += ["  free at load: what an Ollama pod sees free if it loads after every other pod on its GPU",
                f"  whole: it then loads every layer on the GPU (llama-server --fit: its total within free at load less "
                f"{plan.gpus[0].fit_target_bytes / 2**20:g} MiB{rule}); NO: it would spill layers to the CPU"]
    out.append("")
    rows = [("node", "CPU requested", "CPU allocatable", "RAM requested GiB", "RAM allocatable GiB", "pods")]
    for n in plan.nodes:
        rows.append((n.node.name, f"{n.cpu_requests:.2f}", f"{n.cpu_allocatable:.2f}", f"{n.memory_requests_gib:.2f}",
                     f"{n.memory_allocatable_gib:.2f}", str(len(n.pods))))
    out += ["Node plan", text_table(rows, left=1)]
    if plan.vllm:
        rows = [("vLLM pod", "GPUs", "TP", "util", "weights/GPU", "KV/GPU", "KV", "KV/token/GPU", "blocks", "maxModelLen", "seqs at full len")]
        for w in plan.vllm:
            rows.append((
                w.deployment_name, f"{w.node}/{','.join(str(g.index) for g in w.gpus)}", str(w.spec.tensor_parallel),
                f"{w.spec.gpu_memory_utilization:.2f}", f"{(w.shares[0].weights_bytes) / GIB:.2f}", f"{(w.kv_budget_bytes_per_rank) / GIB:.2f}",
                "pinned" if w.pinned else f"profiled -{w.margin_bytes / GIB:.2f}",
                f"{w.kv_bytes_per_token_per_rank / 1024:g} KiB", str(w.blocks.usable_blocks if w.blocks else 0),
                str(w.spec.max_model_len), str(w.max_full_context_seqs),
            ))
        out += ["", "vLLM (GiB per GPU as vLLM 0.33 accounts for it; KV pinned = --kv-cache-memory-bytes on a shared GPU, "
                "profiled = vLLM measures, the plan counts the margin off; blocks of 16 tokens after the null block; "
                "seqs at full len = maxModelLen-token sequences the blocks hold at once)", text_table(rows)]
    if plan.designs:
        rows = [("GPU", "roles", "slots", "KV tokens", "Ollama pods", "vLLM multi-LoRA", "(weights", "LoRA", "KV", "overhead)", "capacity")]
        mark = lambda b, cap: f"{b / GIB:.2f}" + ("" if b <= cap else " !")  # noqa: E731
        for d in plan.designs:
            rows.append((
                f"{d.node}/{d.index}", "+".join(d.roles), str(d.slots), str(d.tokens), mark(d.ollama_bytes, d.capacity_bytes),
                mark(d.vllm_bytes, d.capacity_bytes), f"{(d.vllm_weights_bytes) / GIB:.2f}", f"{(d.vllm_lora_bytes) / GIB:.2f}",
                f"{(d.vllm_kv_bytes) / GIB:.2f}", f"{(d.vllm_overhead_bytes) / GIB:.2f}", f"{(d.capacity_bytes) / GIB:.2f}",
            ))
        out += ["", f"Adapter pool designs (GiB; same adapters and concurrency; deployed: ollama.engine={plan.engine})", text_table(rows),
                "  ! = does not fit the GPU's capacity"]
    return "\n".join(out)


def text_table(rows: list[tuple[str, ...]], left: int = 2) -> str:
    """Rows as aligned columns, the header underlined; the first `left` columns left-aligned, the rest right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
