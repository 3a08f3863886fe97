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

from stacks.catalog import GIB, OLLAMA, OLLAMA_MODELS
from stacks.config import Adapter, Node, OllamaServer, StackConfig, key, node_of, servers
from stacks.errors import ConfigError


@dataclass(frozen=True)
class GpuRef:
    """One physical GPU as the plan and the components address it."""

    node: str
    index: int
    capacity_bytes: int
    uuid: str | None
    pci_bus_id: str | None
    config_path: tuple[str | int, ...]

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
    pods: list[PodVram] = field(default_factory=list)

    @property
    def allocated_bytes(self) -> int:
        return sum(p.total_bytes for p in self.pods)

    @property
    def free_bytes(self) -> int:
        return self.gpu.capacity_bytes - self.allocated_bytes

    def free_at_load_bytes(self, pod: PodVram) -> int:
        """Memory free when `pod` loads last: capacity minus every other pod's use."""
        return self.gpu.capacity_bytes - (self.allocated_bytes - pod.total_bytes)

    def loads_whole(self, pod: PodVram) -> bool:
        return pod.predicted_bytes <= OLLAMA.whole_load_fraction * self.free_at_load_bytes(pod)


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
                            "weightsGiB": gib(p.weights_bytes),
                            "kvCacheGiB": gib(p.kv_bytes),
                            "overheadGiB": gib(p.overhead_bytes),
                            "totalGiB": gib(p.total_bytes),
                            "predictedGiB": gib(p.predicted_bytes),
                            "freeAtLoadGiB": gib(g.free_at_load_bytes(p)),
                            "loadsWhole": g.loads_whole(p),
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
        kv_bytes=model.arch.kv_bytes_per_token(OLLAMA.kv_bytes_per_element) * effective_context,
        surcharge_bytes=OLLAMA.surcharge_bytes(effective_context),
        cuda_context_bytes=round(cfg.plan.cuda_context_gib * GIB),
    )


def build_plan(cfg: StackConfig) -> Plan:
    """Place every pod of the validated config and check the whole plan; raise ConfigError if it does not fit."""
    gpus: dict[tuple[str, int], GpuPlan] = {}
    for i, node in enumerate(cfg.nodes):
        for j, gpu in enumerate(node.gpus):
            ref = GpuRef(node.name, gpu.index, round(gpu.vram_gib * GIB), gpu.uuid, gpu.pci_bus_id, ("nodes", i, "gpus", j))
            gpus[(node.name, gpu.index)] = GpuPlan(ref)
    nodes = {n.name: NodePlan(n) for n in cfg.nodes}

    workloads: list[OllamaWorkload] = []
    for path, role, server in servers(cfg):
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
        workloads.append(OllamaWorkload(role, path, server, adapter, cfg.ollama.base_model, node.name, gpu_plan.gpu, pods))

    plan = Plan(cfg.gpu_sharing.mode, workloads, list(gpus.values()), list(nodes.values()))
    problems = plan_problems(plan)
    if problems:
        raise ConfigError(problems)
    return plan


def _servers_on(plan: Plan, g: GpuPlan) -> str:
    return ", ".join(key(*w.config_path, "gpu") for w in plan.workloads if w.gpu == g.gpu)


def _pod_figures(p: PodVram) -> str:
    return (
        f"{p.name} {gib(p.total_bytes):.2f} (weights {gib(p.weights_bytes):.2f} + KV {gib(p.kv_bytes):.2f}"
        f" + overhead {gib(p.overhead_bytes):.2f})"
    )


def plan_problems(plan: Plan) -> list[str]:
    problems: list[str] = []
    for g in plan.used_gpus():
        where = f"{key(*g.gpu.config_path)} (GPU {g.gpu.index} on node {g.gpu.node})"
        if plan.mode == "exclusive" and len(g.pods) > 1:
            problems.append(
                f"{where}: gpuSharing.mode exclusive gives each pod a whole GPU, but {len(g.pods)} pods are planned on it "
                f"({', '.join(p.name for p in g.pods)}); use one pod per GPU or mode dra / visible-devices [{_servers_on(plan, g)}]"
            )
        if g.allocated_bytes > g.gpu.capacity_bytes:
            problems.append(
                f"{where}: over-committed: {len(g.pods)} pods need {gib(g.allocated_bytes):.2f} GiB of its "
                f"{gib(g.gpu.capacity_bytes):.2f} GiB ({gib(-g.free_bytes):.2f} GiB too much): "
                f"{'; '.join(_pod_figures(p) for p in g.pods)}. Every Ollama pod holds its own copy of the weights; "
                f"lower replicas, parallel or contextLength, or move a server to another GPU [{_servers_on(plan, g)}]"
            )
            continue
        for p in g.pods:
            if not g.loads_whole(p):
                free = g.free_at_load_bytes(p)
                problems.append(
                    f"{where}: {p.name} would not load wholly on the GPU: loading last it sees {gib(free):.2f} GiB free, "
                    f"and Ollama predicts {gib(p.predicted_bytes):.2f} GiB, above 80 % of that ({gib(OLLAMA.whole_load_fraction * free):.2f} GiB); "
                    f"it would offload layers to the CPU. Leave at least {gib(p.predicted_bytes / OLLAMA.whole_load_fraction - free):.2f} GiB "
                    f"more free on this GPU [{_servers_on(plan, g)}]"
                )
    for i, n in enumerate(plan.nodes):
        if n.cpu_requests > n.cpu_allocatable + 1e-9:
            problems.append(
                f"{key('nodes', i)} (node {n.node.name}): pods request {n.cpu_requests:g} CPU but the node has "
                f"{n.cpu_allocatable:g} after its reserve of {n.node.reserve.cpu:g}; lower ollama.*.cpu or replicas"
            )
        if n.memory_requests_gib > n.memory_allocatable_gib + 1e-9:
            problems.append(
                f"{key('nodes', i)} (node {n.node.name}): pods request {n.memory_requests_gib:g} GiB RAM but the node has "
                f"{n.memory_allocatable_gib:g} GiB after its reserve of {n.node.reserve.memory_gib:g} GiB; lower ollama.*.memoryGiB or replicas"
            )
    return problems


def format_table(plan: Plan) -> str:
    """The plan as text tables a person can read."""
    rows = [("GPU", "pod", "weights", "KV cache", "overhead", "total", "free at load", "whole")]
    for g in plan.gpus:
        label = f"{g.gpu.node}/{g.gpu.index}"
        for p in g.pods:
            rows.append((
                label, p.name, f"{gib(p.weights_bytes):.2f}", f"{gib(p.kv_bytes):.2f}", f"{gib(p.overhead_bytes):.2f}",
                f"{gib(p.total_bytes):.2f}", f"{gib(g.free_at_load_bytes(p)):.2f}", "yes" if g.loads_whole(p) else "NO",
            ))
        rows.append((label, "= allocated / capacity", "", "", "", f"{gib(g.allocated_bytes):.2f}", f"of {gib(g.gpu.capacity_bytes):.2f}", ""))
    out = [f"GPU plan (GiB; gpuSharing.mode={plan.mode})", _table(rows), ""]
    rows = [("node", "CPU requested", "CPU allocatable", "RAM requested GiB", "RAM allocatable GiB", "pods")]
    for n in plan.nodes:
        rows.append((n.node.name, f"{n.cpu_requests:g}", f"{n.cpu_allocatable:g}", f"{n.memory_requests_gib:g}",
                     f"{n.memory_allocatable_gib:g}", str(len(n.pods))))
    out += ["Node plan", _table(rows)]
    return "\n".join(out)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
