"""The GPU / CPU / RAM plan: pure Python, no Pulumi.

`build_plan` places every pod of a validated config and checks the whole plan:

- Ollama pods (`ollama.py`): the VRAM Ollama itself predicts plus the CUDA context; each pod, loading
  last, must fit llama-server's --fit (free memory less its target), optionally Ollama's 80 % rule;
- vLLM pods (`vllm.py`): placed on GPUs with room for their share, context and the GPU's margin, and
  sized as vLLM 0.33 accounts for its memory (`stacks/vllm_memory.py`);
- per GPU: capacity, exclusive mode; per node: CPU and RAM requests against the node minus its reserve.

The types are in `model.py`, the tables in `report.py`. Any failure raises PlanFailed (a ConfigError) with the
figures and the plan as far as it got; the renderer prints that plan's table and writes nothing.
"""

from __future__ import annotations

from stacks.catalog import GIB
from stacks.config import StackConfig, VllmModel, key
from stacks.config.smoke import CPU as SMOKE_CPU, JOB_NAME as SMOKE_JOB, MEMORY_MIB as SMOKE_MEMORY_MIB
from stacks.errors import ConfigError
from stacks.plan.model import (LLAMA_STACK_NAME, GpuPlan, GpuRef, NodePlan, OllamaWorkload, Plan, PodVram, PoolDesign,
                               VllmShare, VllmWorkload, pod_figures, servers_on, dtype_bytes, gib, gpu_capacity_bytes,
                               listing, shm_gib, vllm_weights_bytes)
from stacks.plan.ollama import (RESERVED, offload_problem, place_ollama, pool_concurrency_problems, adapter_pool_models,
                                pod_vram, pool_designs, pool_server_key, server_pods)
from stacks.plan.report import format_table, text_table
from stacks.plan.vllm import place_vllm

__all__ = [
    "RESERVED", "server_pods", "LLAMA_STACK_NAME", "GpuPlan", "GpuRef", "NodePlan", "OllamaWorkload", "Plan", "PodVram", "PoolDesign", "VllmShare",
    "VllmWorkload", "adapter_pool_models", "build_plan", "dtype_bytes", "format_table", "gib", "gpu_capacity_bytes",
    "listing", "PlanFailed", "plan_problems", "pod_vram", "pool_designs", "pool_server_key", "shm_gib", "text_table", "vllm_weights_bytes",
]


class PlanFailed(ConfigError):
    """The plan does not fit: its problems, the plan of what was placed, and the vLLM Deployments left without room."""

    def __init__(self, problems: list[str], plan: Plan, unplaced: list[str]):
        super().__init__(problems)
        self.plan = plan
        self.unplaced = tuple(unplaced)


def _gpu_plans(cfg: StackConfig) -> dict[tuple[str, int], GpuPlan]:
    gpus: dict[tuple[str, int], GpuPlan] = {}
    for i, node in enumerate(cfg.nodes):
        for j, gpu in enumerate(node.gpus):
            ref = GpuRef(node.name, gpu.index, gpu_capacity_bytes(gpu), gpu.uuid, gpu.pci_bus_id, ("nodes", i, "gpus", j), gpu.model or "",
                         cfg.gpu_sharing.device_class_name)
            gpus[(node.name, gpu.index)] = GpuPlan(ref, fit_target_bytes=cfg.plan.ollama_fit_target_mib * 2**20,
                                                   whole_load_rule=cfg.plan.ollama_whole_load_rule)
    return gpus


def build_plan(cfg: StackConfig) -> Plan:
    """Place every pod of the validated config and check the whole plan; raise ConfigError if it does not fit."""
    gpus = _gpu_plans(cfg)
    nodes = {n.name: NodePlan(n) for n in cfg.nodes}
    multi_lora = cfg.ollama is not None and cfg.ollama.engine == "vllm"
    # The Ollama design is always planned: deployed, or (engine vllm) kept for the comparison.
    ollama_gpus = _gpu_plans(cfg) if multi_lora else gpus
    ollama_nodes = {n.name: NodePlan(n) for n in cfg.nodes} if multi_lora else nodes
    ollama = place_ollama(cfg, ollama_gpus, ollama_nodes)
    designs = pool_designs(cfg, ollama) if cfg.ollama is not None else []

    plan = Plan(cfg.gpu_sharing.mode, [] if multi_lora else ollama, list(gpus.values()), list(nodes.values()))
    plan.designs = designs
    plan.engine = cfg.ollama.engine if cfg.ollama is not None else "ollama"
    models: dict[str, tuple[tuple[str, ...], VllmModel]] = {}
    unplaced: list[str] = []
    if cfg.vllm is not None:
        models.update({k: (("vllm", "models", k), m) for k, m in cfg.vllm.models.items()})
    if multi_lora:
        pool = adapter_pool_models(cfg, designs)
        plan.problems += [f"{key('vllm', 'models', k)}: the name is taken by the adapter pool's own server on that GPU "
                          "(ollama.engine vllm); rename the model" for k in sorted(pool.keys() & models.keys())]
        models.update({k: (("ollama", "vllm"), m) for k, m in pool.items()})
    if models:
        unplaced = place_vllm(cfg, plan, gpus, nodes, models)
    if multi_lora:
        plan.problems += pool_concurrency_problems(plan, designs)
    if cfg.llama_stack is not None:
        # CPU-only: it counts against its node's CPU and RAM, not against any GPU.
        node = nodes[cfg.llama_stack.node or cfg.nodes[0].name]
        node.cpu_requests += cfg.llama_stack.cpu
        node.memory_requests_gib += cfg.llama_stack.memory_gib
        node.pods.append(LLAMA_STACK_NAME)
    if cfg.smoke.job:  # components/smoke.py: a CPU pod of its own, counted like any other on its node
        plan.smoke_node = (cfg.llama_stack.node or cfg.nodes[0].name) if cfg.llama_stack is not None else \
            (plan.vllm[0].node if plan.vllm else None)
        if plan.smoke_node in nodes:
            nodes[plan.smoke_node].cpu_requests += SMOKE_CPU
            nodes[plan.smoke_node].memory_requests_gib += SMOKE_MEMORY_MIB / 1024
            nodes[plan.smoke_node].pods.append(SMOKE_JOB)
    problems = plan.problems + plan_problems(plan)
    if problems:
        raise PlanFailed(problems, plan, unplaced)
    return plan


def plan_problems(plan: Plan) -> list[str]:
    problems: list[str] = []
    for g in plan.used_gpus():
        where = f"{key(*g.gpu.config_path)} (GPU {g.gpu.index} on node {g.gpu.node})"
        if plan.mode == "exclusive" and len(g.pods) > 1:
            problems.append(
                f"{where}: gpuSharing.mode exclusive gives each pod a whole GPU, but {len(g.pods)} pods are planned on it "
                f"({listing([p.name for p in g.pods])}); use one pod per GPU or mode dra / visible-devices [{servers_on(plan, g)}]"
            )
        margin = plan.vllm_margin_bytes if any(isinstance(p, VllmShare) for p in g.pods) else 0
        if margin and g.allocated_bytes <= g.gpu.capacity_bytes < g.allocated_bytes + margin:
            problems.append(
                f"{where}: its pods need {g.allocated_bytes / GIB:.2f} GiB of its {g.gpu.capacity_bytes / GIB:.2f} GiB, leaving "
                f"{g.free_bytes / GIB:.2f} GiB, less than the {margin / GIB:.2f} GiB margin (plan.vllmMarginGiB) the vLLM "
                f"accounting's estimates need; lower gpuMemoryUtilization [{servers_on(plan, g)}]"
            )
        reserved = [p for p in g.pods if isinstance(p, PodVram) and p.name.endswith(RESERVED)]
        if reserved and g.allocated_bytes - sum(p.total_bytes for p in reserved) <= g.gpu.capacity_bytes < g.allocated_bytes:
            fitting = {p.name for p in _fitting(g, reserved)}
            for w in (w for w in plan.workloads if any(p.workload == w.deployment_name for p in reserved)):
                mine = [p for p in reserved if p.workload == w.deployment_name]
                fits = w.server.replicas + sum(1 for p in mine if p.name in fitting)
                problems.append(
                    f"{key(*w.config_path, 'autoscale', 'maxReplicas')}: no room on GPU {g.gpu.index} of node {g.gpu.node} for "
                    f"{listing([p.name for p in mine])}: {g.allocated_bytes / GIB:.2f} GiB planned of {g.gpu.capacity_bytes / GIB:.2f} GiB; "
                    f"each pod holds its own {mine[0].total_bytes / GIB:.2f} GiB; "
                    + (f"use maxReplicas <= {fits}" if fits > w.server.replicas else "not one pod more fits: remove autoscale or "
                       "move a server to another GPU") + f" [{servers_on(plan, g)}]")
            continue
        if g.allocated_bytes > g.gpu.capacity_bytes:
            problems.append(
                f"{where}: over-committed: {len(g.pods)} pods need {(g.allocated_bytes) / GIB:.2f} GiB of its "
                f"{(g.gpu.capacity_bytes) / GIB:.2f} GiB ({(-g.free_bytes) / GIB:.2f} GiB too much): "
                f"{listing([pod_figures(p) for p in g.pods], sep='; ')}. Every Ollama pod holds its own copy of the weights; "
                f"lower replicas, parallel or contextLength, or move a server to another GPU [{servers_on(plan, g)}]"
            )
            continue
        for p in g.pods:
            if not g.loads_whole(p):
                problems.append(offload_problem(plan, g, p, where))
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


def _fitting(g, reserved):
    """The reserved pods that still fit, in order, after the running ones."""
    used = g.allocated_bytes - sum(p.total_bytes for p in reserved)
    for p in reserved:
        used += p.total_bytes
        if used > g.gpu.capacity_bytes:
            return
        yield p
