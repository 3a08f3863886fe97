"""Typed stack configuration: the pydantic models for every `llm-infra:*` key, and their checks.

Pure Python. `parse_config(raw)` takes the stack's config as a dict of top-level key -> value
(already JSON-decoded) and returns a `StackConfig`, or raises `ConfigError` whose lines each name
the full key (`llm-infra:ollama.adapters.chatbot.gpu: ...`) and the fix.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stacks.catalog import DEFAULT_CUDA_CONTEXT_GIB, OLLAMA_DEFAULT_IMAGE, OLLAMA_MODELS
from stacks.errors import ConfigError

PROJECT = "llm-infra"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
GPU_UUID = r"^GPU-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
PCI_BUS_ID = r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$"
QUANTITY = r"^[1-9][0-9]*(Ki|Mi|Gi|Ti)$"
# Go duration (time.ParseDuration) or plain integer seconds; Ollama accepts both for keep-alive.
GO_DURATION = r"^-?(([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+|[0-9]+)$"
IMAGE = r"^[a-z0-9./_-]+(:[A-Za-z0-9._-]+)?(@sha256:[0-9a-f]{64})?$"


def key(*parts: str | int) -> str:
    """Full config key for a path: key("ollama", "adapters", "chatbot", "gpu")."""
    out = f"{PROJECT}:{parts[0]}"
    for part in parts[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


_SPECIAL_WORDS = {"id": "ID", "gib": "GiB", "mib": "MiB"}


def camel(name: str) -> str:
    """snake_case field -> the camelCase key of the stack YAML (`vram_gib` -> `vramGiB`)."""
    first, *rest = name.split("_")
    return first + "".join(_SPECIAL_WORDS.get(w, w.capitalize()) for w in rest)


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        alias_generator=camel,
        validate_by_alias=True,
        validate_by_name=False,
        use_attribute_docstrings=True,
    )


class Gpu(_Model):
    index: int = Field(ge=0)
    """GPU index as `nvidia-smi -L` lists it on the node."""
    vram_gib: float = Field(gt=0)
    """Memory of the GPU in GiB as `nvidia-smi` reports it (total)."""
    uuid: str | None = Field(default=None, pattern=GPU_UUID)
    """GPU UUID (`GPU-...` from `nvidia-smi -L`): selects it in `dra` mode and pins it in `visible-devices` mode."""
    pci_bus_id: str | None = Field(default=None, pattern=PCI_BUS_ID)
    """PCI bus id (`0000:01:00.0`): an alternative selector for `dra` mode."""


class Reserve(_Model):
    cpu: float = Field(default=0, ge=0)
    """CPU cores kept for the OS, k3s and everything not planned here."""
    memory_gib: float = Field(default=0, ge=0)
    """RAM in GiB kept for the OS, k3s and everything not planned here."""


class Node(_Model):
    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253)
    """Kubernetes node name (`kubectl get nodes`); pods planned on it are scheduled there."""
    cpu: float = Field(gt=0)
    """CPU cores of the node."""
    memory_gib: float = Field(gt=0)
    """RAM of the node in GiB."""
    reserve: Reserve = Reserve()
    """Capacity kept back from planning."""
    gpus: list[Gpu] = []
    """The node's GPUs."""


class GpuSharing(_Model):
    mode: Literal["dra", "visible-devices", "exclusive"] = "visible-devices"
    """How pods are pinned to GPUs: `dra` (a ResourceClaim per GPU), `visible-devices` (env pinning, no GPU request) or `exclusive` (`nvidia.com/gpu`, one pod per GPU)."""
    device_class_name: str = Field(default="gpu.nvidia.com", pattern=DNS_SUBDOMAIN)
    """DeviceClass of the NVIDIA DRA driver (`dra` mode)."""
    runtime_class_name: str = Field(default="nvidia", pattern=DNS_SUBDOMAIN)
    """RuntimeClass of the NVIDIA container runtime (`visible-devices` and `exclusive` modes; k3s creates `nvidia`)."""


class ModelCache(_Model):
    mode: Literal["hostPath", "rwx", "perPod"] = "hostPath"
    """`hostPath` (one PV+PVC per node over a host directory), `rwx` (one ReadWriteMany claim) or `perPod` (a ReadWriteOnce claim per workload)."""
    host_path: str = Field(default="/var/lib/llm-models", pattern=r"^/[^\s]*$")
    """Host directory of the cache (`hostPath` mode)."""
    size: str = Field(default="100Gi", pattern=QUANTITY)
    """Requested size of each cache volume."""
    storage_class_name: str | None = Field(default=None, pattern=DNS_SUBDOMAIN)
    """StorageClass for `rwx`/`perPod` claims (e.g. `longhorn`, `local-path`)."""
    provisioner: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9./]*[a-z0-9])?$")
    """If set, the stack creates `storageClassName` itself with this provisioner and `reclaimPolicy: Retain`, so dynamically provisioned model data survives claim deletion."""


class OllamaServer(_Model):
    gpu: int = Field(ge=0)
    """Index of the GPU (on `node`) the pods of this server use."""
    node: str | None = None
    """Node name; may be left out when the stack has one node."""
    replicas: int = Field(default=1, ge=1)
    """Pods of this server; each holds its own copy of the base weights."""
    parallel: int = Field(ge=1)
    """`OLLAMA_NUM_PARALLEL`: request slots per pod; each slot holds `contextLength` tokens of KV cache."""
    queue: int = Field(ge=1)
    """`OLLAMA_MAX_QUEUE`: requests waiting for a model load before HTTP 503."""
    keep_alive: Union[str, int] = "5m"
    """`OLLAMA_KEEP_ALIVE`: Go duration (`10m`, `24h`, negative = forever) or integer seconds."""
    context_length: int = Field(ge=256)
    """`OLLAMA_CONTEXT_LENGTH`: tokens per slot; at most the model's trained context."""
    cpu: float = Field(gt=0)
    """CPU cores requested per pod."""
    cpu_limit: float | None = Field(default=None, gt=0)
    """CPU limit per pod (none by default: a limit throttles token generation)."""
    memory_gib: float = Field(gt=0)
    """RAM in GiB requested and limited per pod."""

    @field_validator("keep_alive")
    @classmethod
    def _duration(cls, v: str | int) -> str:
        text = str(v)
        if not re.match(GO_DURATION, text):
            raise ValueError(f"{v!r} is not a duration; use a Go duration such as 10m or 24h, or integer seconds")
        return text


class Adapter(OllamaServer):
    file: str = Field(pattern=r"^[A-Za-z0-9._/-]+\.gguf$")
    """GGUF LoRA adapter (`general.type=adapter`), as a path relative to the model cache root (e.g. `adapters/chatbot.gguf`)."""
    base: str
    """Ollama tag the adapter was trained on; must equal `ollama.baseModel`."""
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """Expected sha256 of the adapter file; checked before the model is created."""

    @field_validator("file")
    @classmethod
    def _relative(cls, v: str) -> str:
        if v.startswith("/") or ".." in v.split("/"):
            raise ValueError(f"{v!r} must be a path inside the model cache, relative and without '..'")
        return v


class Ollama(_Model):
    image: str = Field(default=OLLAMA_DEFAULT_IMAGE, pattern=IMAGE)
    """Ollama image, pinned to a released tag or digest."""
    base_model: str = "llama3:8b"
    """Ollama tag of the base model (must be in the model catalog)."""
    pull_mib_per_second: float = Field(default=25, gt=0)
    """Assumed registry download rate; sizes the rollout deadline for a first pull."""
    server_start_seconds: int = Field(default=120, ge=10)
    """Budget for `ollama serve` to start and discover GPUs (startupProbe)."""
    base: OllamaServer
    """The base model server (no adapter)."""
    adapters: dict[str, Adapter] = {}
    """Task adapters by name (`chatbot`, `code`, ...); each gets its own Deployment and Service."""

    @field_validator("image")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if "@" not in v and (":" not in v.rsplit("/", 1)[-1] or v.endswith(":latest")):
            raise ValueError(f"{v!r} is not pinned; use a released tag such as {OLLAMA_DEFAULT_IMAGE}")
        return v


class Plan(_Model):
    cuda_context_gib: float = Field(default=DEFAULT_CUDA_CONTEXT_GIB, ge=0)
    """VRAM each GPU process holds for its CUDA context, which Ollama's estimate leaves out."""


class StackConfig(_Model):
    namespace: str = Field(default="llama3-multi-adapter", pattern=DNS_LABEL, max_length=63)
    """Namespace of every namespaced object (the seed's `llama3-multi-adapter` keeps its service URLs)."""
    nodes: list[Node] = Field(min_length=1)
    """The cluster's GPU nodes."""
    gpu_sharing: GpuSharing = GpuSharing()
    """GPU pinning mode."""
    model_cache: ModelCache = ModelCache()
    """Where model weights live; survives `pulumi destroy`."""
    ollama: Ollama
    """The Ollama adapter pool."""
    plan: Plan = Plan()
    """Capacity-plan settings."""


# --------------------------------------------------------------------------------------------
# Error formatting


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The camelCase keys accepted at the object that `loc` points into."""
    model: Any = StackConfig
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
            if field is None:
                return []
            model = field.annotation
        elif get_origin(model) in (list, dict):
            model = get_args(model)[-1]
        while get_origin(model) is Union or str(get_origin(model)) == "types.UnionType":
            model = next(a for a in get_args(model) if a is not type(None))
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items()]
    return []


def _format(err: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    path = key(*loc) if loc else f"{PROJECT}:<root>"
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"{path}: unknown key; {hint}allowed keys here: {', '.join(allowed)}"
    if kind == "missing":
        return f"{path}: required key is missing; add it to the stack config"
    msg = err["msg"]
    if kind == "string_pattern_mismatch":
        msg = f"{err['input']!r} has the wrong form (expected {err['ctx']['pattern']})"
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    else:
        msg = f"{msg}, got {err['input']!r}"
    return f"{path}: {msg}"


def parse_config(raw: dict[str, Any]) -> StackConfig:
    """Validate the stack's `llm-infra:*` values (top-level key -> value) into a StackConfig."""
    try:
        cfg = StackConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_format(e) for e in exc.errors()]) from None
    problems = cross_field_problems(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg


# --------------------------------------------------------------------------------------------
# Cross-field rules


def servers(cfg: StackConfig) -> list[tuple[tuple[str, ...], str, OllamaServer]]:
    """(config path, role name, server) for the base and every adapter, in a stable order."""
    out: list[tuple[tuple[str, ...], str, OllamaServer]] = [(("ollama", "base"), "base", cfg.ollama.base)]
    for name in sorted(cfg.ollama.adapters):
        out.append((("ollama", "adapters", name), name, cfg.ollama.adapters[name]))
    return out


def node_of(cfg: StackConfig, server: OllamaServer) -> Node | None:
    if server.node is None:
        return cfg.nodes[0] if len(cfg.nodes) == 1 else None
    return next((n for n in cfg.nodes if n.name == server.node), None)


def cross_field_problems(cfg: StackConfig) -> list[str]:
    problems: list[str] = []

    names = [n.name for n in cfg.nodes]
    for i, node in enumerate(cfg.nodes):
        if names.count(node.name) > 1:
            problems.append(f"{key('nodes', i, 'name')}: node {node.name!r} is listed twice; give each node once")
        indexes = [g.index for g in node.gpus]
        for j, gpu in enumerate(node.gpus):
            if indexes.count(gpu.index) > 1:
                problems.append(f"{key('nodes', i, 'gpus', j, 'index')}: GPU index {gpu.index} is listed twice on node {node.name}")
        if node.reserve.cpu >= node.cpu:
            problems.append(f"{key('nodes', i, 'reserve', 'cpu')}: reserve {node.reserve.cpu:g} leaves no CPU of the node's {node.cpu:g}")
        if node.reserve.memory_gib >= node.memory_gib:
            problems.append(f"{key('nodes', i, 'reserve', 'memoryGiB')}: reserve {node.reserve.memory_gib:g} GiB leaves no RAM of the node's {node.memory_gib:g} GiB")

    model = OLLAMA_MODELS.get(cfg.ollama.base_model)
    if model is None:
        problems.append(
            f"{key('ollama', 'baseModel')}: {cfg.ollama.base_model!r} is not in the model catalog; use one of: {', '.join(sorted(OLLAMA_MODELS))}"
        )

    mode = cfg.gpu_sharing.mode
    for path, role, server in servers(cfg):
        node = node_of(cfg, server)
        if node is None:
            if server.node is None:
                problems.append(f"{key(*path, 'node')}: the stack has {len(cfg.nodes)} nodes; say which one ({', '.join(names)})")
            else:
                problems.append(f"{key(*path, 'node')}: no node named {server.node!r}; nodes are: {', '.join(names)}")
            continue
        gpu = next((g for g in node.gpus if g.index == server.gpu), None)
        if gpu is None:
            have = ", ".join(str(g.index) for g in node.gpus) or "none"
            problems.append(f"{key(*path, 'gpu')}: node {node.name} has no GPU {server.gpu} (it has: {have})")
        else:
            where = key("nodes", cfg.nodes.index(node), "gpus", node.gpus.index(gpu))
            if mode == "dra" and not (gpu.uuid or gpu.pci_bus_id):
                problems.append(f"{where}: gpuSharing.mode dra selects GPUs by uuid or pciBusID; set one (nvidia-smi -L / nvidia-smi --query-gpu=pci.bus_id)")
            if mode == "visible-devices" and not gpu.uuid:
                problems.append(f"{where}.uuid: gpuSharing.mode visible-devices pins GPUs by UUID; set it from nvidia-smi -L")
        if model is not None and server.context_length > model.arch.trained_context:
            problems.append(
                f"{key(*path, 'contextLength')}: {server.context_length} is above {cfg.ollama.base_model}'s trained context of "
                f"{model.arch.trained_context}; use at most {model.arch.trained_context}"
            )
        if server.cpu_limit is not None and server.cpu_limit < server.cpu:
            problems.append(f"{key(*path, 'cpuLimit')}: {server.cpu_limit:g} is below the request cpu={server.cpu:g}")

    for name, adapter in sorted(cfg.ollama.adapters.items()):
        if not re.match(DNS_LABEL, name) or len(f"ollama-adapter-{name}") > 63:
            problems.append(f"{key('ollama', 'adapters', name)}: adapter name must be a DNS label of at most 48 characters (lowercase, digits, '-')")
        if name == "base":
            problems.append(f"{key('ollama', 'adapters', name)}: 'base' is the base server's name; rename the adapter")
        if adapter.base != cfg.ollama.base_model:
            problems.append(
                f"{key('ollama', 'adapters', name, 'base')}: adapter was trained on {adapter.base!r} but the pool serves "
                f"{cfg.ollama.base_model!r}; a LoRA only works on its own base: fix ollama.baseModel or the adapter"
            )

    cache = cfg.model_cache
    if cache.mode in ("rwx", "perPod") and cache.storage_class_name is None:
        problems.append(f"{key('modelCache', 'storageClassName')}: modelCache.mode {cache.mode} needs a StorageClass (e.g. longhorn for rwx, local-path for perPod)")
    if cache.provisioner is not None and cache.mode == "hostPath":
        problems.append(f"{key('modelCache', 'provisioner')}: hostPath mode provisions nothing; remove provisioner or use rwx/perPod")
    return problems
