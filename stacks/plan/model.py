"""The plan's types: GPUs, pods and their memory, nodes, and the plan that holds them."""

from __future__ import annotations

import hashlib

from dataclasses import dataclass, field

from stacks.catalog import GIB, GPU_MODELS, OLLAMA, VLLM, HfModel, ModelArch
from stacks.config import Adapter, Gpu, Node, OllamaServer, VllmModel, key
from stacks.vllm_memory import KvBlocks, RankMemory

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
    device_class: str = ""
    """The DeviceClass its claim names (`dra` mode: gpuSharing.deviceClassName)."""

    @property
    def claim_name(self) -> str:
        """Name of the ResourceClaim for this GPU in `dra` mode. The API server refuses any change to a claim's spec, so
        the name carries a digest of what the spec holds (the device class and the device it selects): new UUIDs (GPUs
        swapped, placeholders replaced by `nvidia-smi -L`) or another class make a new claim the pods move to, and the
        old one goes once no pod holds it."""
        digest = hashlib.sha256(f"{self.device_class} {self.uuid or self.pci_bus_id or ''}".encode()).hexdigest()[:8]
        return f"{self.node}-gpu-{self.index}-{digest}"


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
    exclusive: bool = False
    """A rank of a multi-node replica: its GPU is its alone, in every pinning mode (a shared GPU would slow the whole
    tensor-parallel group, and the pipeline with it)."""

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


@dataclass(frozen=True)
class VllmRank:
    """One node's part of a replica: a pipeline stage (its layers) on tensorParallel GPUs of one node."""

    rank: int
    """`--node-rank` (0: the leader, which serves the API; the others run headless)."""
    node: str
    gpus: tuple[GpuRef, ...]
    shares: tuple[VllmShare, ...]
    layers: tuple[int, int]
    """[first, last) decoder layers of its stage."""
    pod: str
    """The pod's name: a Deployment's pod prefix, or the LeaderWorkerSet's `<name>-0` (leader) / `<name>-0-<rank>` (worker)."""


def stage_layers(layers: int, pp: int) -> list[tuple[int, int]]:
    """vLLM 0.33's split of the decoder layers over pipeline stages (vllm/distributed/utils.py get_pp_indices): layers // pp
    each, the remainder one more each to the stages before the last, counting back from the second-to-last."""
    parts = [layers // pp] * pp
    for i in range(2, layers % pp + 2):
        parts[-i] += 1
    bounds, start = [], 0
    for n in parts:
        bounds.append((start, start + n))
        start += n
    return bounds


def max_replicas(spec: VllmModel) -> int:
    """Replicas the plan places: `autoscale.maxReplicas` when the model scales, else `replicas`."""
    return spec.autoscale.max_replicas if spec.autoscale is not None else spec.replicas


@dataclass
class VllmWorkload:
    """One vLLM pod (a replica of a model) and where the plan put it."""

    key: str
    config_path: tuple[str, ...]
    spec: VllmModel
    hf: HfModel
    replica: int
    blocks: KvBlocks | None = None
    """The KV cache in engine blocks (minimum over ranks; profiled caches less the margin)."""
    pinned: bool = False
    """A GPU of this pod is shared: its KV cache is pinned with --kv-cache-memory-bytes."""
    margin_bytes: int = 0
    """Taken off a profiled KV cache (0 when pinned: the engine then takes exactly the pinned size)."""
    ranks: tuple[VllmRank, ...] = ()
    """Every node's part (one for a single-node model), leader first; empty until placed."""

    @property
    def node(self) -> str:
        """The leader's node (the only one of a single-node model)."""
        return self.ranks[0].node if self.ranks else ""

    @property
    def gpus(self) -> tuple[GpuRef, ...]:
        return self.ranks[0].gpus if self.ranks else ()

    @property
    def shares(self) -> tuple[VllmShare, ...]:
        return self.ranks[0].shares if self.ranks else ()

    @property
    def multi_node(self) -> bool:
        return self.spec.pipeline_parallel > 1

    @property
    def deployment_name(self) -> str:
        """The Deployment, or for a multi-node replica the LeaderWorkerSet (always numbered: LeaderWorkerSet makes a headless
        Service of its own name, which must not be the model's Service). The first replica keeps the model's name
        whatever `replicas` and `autoscale` say, so raising them adds Deployments and never renames (replaces) a
        running one or its per-pod cache claim."""
        if self.multi_node:
            return f"vllm-{self.key}-{self.replica}"
        return f"vllm-{self.key}" if self.replica == 0 else f"vllm-{self.key}-{self.replica}"

    def pod_name(self, rank: int) -> str:
        """A multi-node rank's pod: LeaderWorkerSet names the leader `<name>-<group>` and workers `<name>-<group>-<index>`."""
        return f"{self.deployment_name}-0" + (f"-{rank}" if rank else "")

    @property
    def stages(self) -> list[tuple[int, int]]:
        return stage_layers(self.hf.arch.layers, self.spec.pipeline_parallel)

    def stage_weights_bytes(self, stage: int) -> int:
        """The weights one stage holds (all its GPUs): its layers' share of the body, the embeddings on the first stage and
        the LM head on the last (vllm/model_executor/models/llama.py builds them only there). One stage: the whole checkpoint."""
        return stage_weights_bytes(self.weights_bytes, self.hf.arch, self.spec.pipeline_parallel, stage)

    def kv_bytes_per_token_of(self, stage: int) -> int:
        """KV bytes one GPU of a stage holds per token: its layers' K and V heads over tensorParallel."""
        first, last = self.stages[stage]
        return self.kv_bytes_per_token_per_rank * (last - first) // self.hf.arch.layers

    @property
    def reserved(self) -> bool:
        """A replica above `replicas`, up to `autoscale.maxReplicas`: placed and its GPUs held, started by the autoscaler."""
        return self.replica >= self.spec.replicas

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
        """Per token per GPU over all the model's layers (one stage: what each GPU holds)."""
        kv_dtype = 1 if self.spec.kv_cache_dtype.startswith("fp8") else dtype_bytes(self.spec.dtype)
        return self.hf.arch.kv_bytes_per_token_per_rank(self.spec.tensor_parallel, kv_dtype)

    @property
    def all_shares(self) -> tuple[VllmShare, ...]:
        return tuple(s for r in self.ranks for s in r.shares)

    @property
    def kv_budget_bytes_per_rank(self) -> int:
        return min(s.kv_bytes for s in self.all_shares)

    @property
    def max_full_context_seqs(self) -> int:
        """Sequences of maxModelLen tokens the engine's KV blocks hold at once."""
        return self.blocks.full_length_sequences if self.blocks is not None else 0

    @property
    def pinned_kv_bytes(self) -> int | None:
        """--kv-cache-memory-bytes for a pod on a shared GPU (whole blocks), else None."""
        return self.blocks.pinned_bytes if self.pinned and self.blocks is not None else None


def stage_weights_bytes(weights_bytes: int, arch: ModelArch, pp: int, stage: int) -> int:
    """The weights one pipeline stage holds (all its GPUs): its layers' share of the body, the embeddings on the first
    stage and the LM head on the last (vllm/model_executor/models/llama.py builds them only there)."""
    if pp == 1:
        return weights_bytes
    # 16-bit: no quantization method here touches embeddings or head. The checkpoint holds one matrix when they are
    # tied, but vLLM builds it on the first stage and again on the last (models/llama.py, is_last_rank and tied).
    edge = arch.vocab * arch.hidden * 2
    body = max(0, weights_bytes - (1 if arch.tied_embeddings else 2) * edge)
    first, last = stage_layers(arch.layers, pp)[stage]
    return round(body * (last - first) / arch.layers) + (edge if stage == 0 else 0) + (edge if stage == pp - 1 else 0)


def dtype_bytes(dtype: str) -> int:
    return 4 if dtype in ("float", "float32") else 2


def vllm_weights_bytes(spec: VllmModel, hf: HfModel) -> int:
    params = hf.arch.parameters_b * 1e9
    if hf.quant_bits == 4:
        unq = hf.unquantized_parameters_b * 1e9
        return round(unq * 2 + (params - unq) * VLLM.four_bit_bytes_per_parameter)
    if hf.quant_bits == 8:  # an FP8 checkpoint: 1 byte per quantized weight (its per-channel fp32 scales are < 0.02 %)
        unq = hf.unquantized_parameters_b * 1e9
        return round(unq * 2 + (params - unq))
    if spec.quantization is not None and spec.quantization.startswith("fp8"):
        # Online FP8 quantizes the linear layers; the embeddings and the LM head stay 16 bit (Llama-3.1-8B: 8.49 GiB
        # loaded with --quantization fp8, calibration/vllm-startup-logs.yaml lld-llama31-8b-fp8-tp1).
        edge = hf.arch.vocab * hf.arch.hidden * (1 if hf.arch.tied_embeddings else 2)
        return round(params + min(edge, params))
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


NO_POOL = "(no pool)"
RESERVED_MARK = " (reserved)"
"""Ends the name of a pod the plan holds room for that only an autoscaler starts."""


@dataclass
class PoolSummary:
    name: str
    nodes: int = 0
    gpus: int = 0
    gpus_used: int = 0
    capacity_bytes: int = 0
    allocated_bytes: int = 0
    """Planned on its GPUs, reserved pods included."""
    reserved_bytes: int = 0

    @property
    def free_bytes(self) -> int:
        return self.capacity_bytes - self.allocated_bytes

    def to_dict(self) -> dict:
        return {"pool": self.name, "nodes": self.nodes, "gpus": self.gpus, "gpusUsed": self.gpus_used,
                "capacityGiB": gib(self.capacity_bytes), "plannedGiB": gib(self.allocated_bytes),
                "reservedGiB": gib(self.reserved_bytes), "freeGiB": gib(self.free_bytes)}


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
    vllm_context_override: bool = False
    """plan.vllmContextGiB is set: every vLLM context is that figure, not the calibrated one."""
    smoke_node: str | None = None
    """The node the smoke Job runs on (smoke.job): Llama Stack's, or the first vLLM server's, whose image it already pulled."""

    def used_gpus(self) -> list[GpuPlan]:
        return [g for g in self.gpus if g.pods]

    def pools(self) -> list[PoolSummary]:
        """Per node pool (`nodes[].pool`; nodes without one together): GPUs in use, memory planned, reserved and free.
        One pass over the GPUs: linear in the fleet."""
        pool_of = {n.node.name: n.node.pool or NO_POOL for n in self.nodes}
        out: dict[str, PoolSummary] = {}
        for n in self.nodes:
            out.setdefault(pool_of[n.node.name], PoolSummary(pool_of[n.node.name])).nodes += 1
        for g in self.gpus:
            p = out[pool_of[g.gpu.node]]
            p.gpus += 1
            p.gpus_used += 1 if g.pods else 0
            p.capacity_bytes += g.gpu.capacity_bytes
            p.allocated_bytes += g.allocated_bytes
            p.reserved_bytes += sum(x.total_bytes for x in g.pods if x.name.endswith(RESERVED_MARK))
        return list(out.values())

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
            "pools": [p.to_dict() for p in self.pools()],
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
                    "reserved": w.reserved,
                    "deployment": w.deployment_name,
                    "repo": w.hf.repo,
                    "servedName": w.served_name,
                    "node": w.node,
                    "gpus": [g.index for g in w.gpus],
                    "tensorParallel": w.spec.tensor_parallel,
                    "pipelineParallel": w.spec.pipeline_parallel,
                    "ranks": [
                        {"rank": r.rank, "pod": r.pod, "node": r.node, "gpus": [g.index for g in r.gpus],
                         "layers": [r.layers[0], r.layers[1] - 1], "weightsPerGpuGiB": gib(r.shares[0].weights_bytes),
                         "kvCachePerGpuGiB": gib(min(x.kv_bytes for x in r.shares)),
                         "kvPerTokenPerGpuKiB": round(w.kv_bytes_per_token_of(r.rank) / 1024, 3)}
                        for r in w.ranks
                    ],
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


def gib(n: int | float) -> float:
    return round(n / GIB, 3)


def gpu_capacity_bytes(gpu: Gpu) -> int:
    """The total CUDA reports: the catalog's figure for the model, or vramGiB as given."""
    if gpu.model is not None:
        return GPU_MODELS[gpu.model].cuda_total_bytes
    assert gpu.vram_gib is not None  # one of the two, checked at the edge
    return round(gpu.vram_gib * GIB)


def shm_gib(spec: VllmModel) -> int:
    """/dev/shm (memory-backed) for tensor parallelism; none for a single GPU."""
    return VLLM.shm_gib_per_rank * spec.tensor_parallel if spec.tensor_parallel > 1 else 0


def listing(items: list[str], limit: int = 4, sep: str = ", ") -> str:
    """At most `limit` items, then how many more: a thousand replicas make one short line."""
    head = sep.join(items[:limit])
    return head if len(items) <= limit else f"{head}{sep}... and {len(items) - limit} more"


def servers_on(plan: Plan, g: GpuPlan) -> str:
    keys = [key(*w.config_path, "gpu") for w in plan.workloads if w.gpu == g.gpu]
    keys += [key(*w.config_path, "gpuMemoryUtilization") for w in plan.vllm if g.gpu in w.gpus]
    return ", ".join(dict.fromkeys(keys))


def pod_figures(p: PodVram | VllmShare) -> str:
    return (
        f"{p.name} {(p.total_bytes) / GIB:.2f} (weights {(p.weights_bytes) / GIB:.2f} + KV {(p.kv_bytes) / GIB:.2f}"
        f" + overhead {(p.overhead_bytes) / GIB:.2f})"
    )
