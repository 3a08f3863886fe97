"""Typed stack configuration: the pydantic models for every `llm-infra:*` key, and their checks.

Pure Python. `parse_config(raw)` takes the stack's config as a dict of top-level key -> value
(already JSON-decoded) and returns a `StackConfig`, or raises `ConfigError` whose lines each name
the full key (`llm-infra:ollama.adapters.chatbot.gpu: ...`) and the fix.
"""

from __future__ import annotations

import difflib
import re
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stacks.catalog import (
    DEFAULT_CUDA_CONTEXT_GIB,
    DEFAULT_VLLM_RUNTIME_GIB,
    HF_MODELS,
    OLLAMA_DEFAULT_IMAGE,
    OLLAMA_MODELS,
    VLLM,
    VLLM_DEFAULT_IMAGE,
)
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
    lora_dir: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-][A-Za-z0-9._/-]*$")
    """The same adapter as a PEFT (safetensors) directory relative to the model cache; needed for `ollama.engine: vllm`."""
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


class AdapterPoolVllm(_Model):
    model: str = "meta-llama/Meta-Llama-3-8B-Instruct"
    """Hugging Face base the adapters were trained on (bf16 original of `baseModel`)."""
    quantization: Literal["fp8"] | None = None
    """`fp8`: vLLM quantizes the bf16 weights at load (halves them)."""
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    """Share of each GPU the one vLLM server per GPU takes."""
    max_lora_rank: int = 16
    """`--max-lora-rank`: at least the adapters' rank (vLLM choices 1, 8, 16, 32, 64, 128, 256, 320, 512)."""
    cpu: float = Field(default=4, gt=0)
    """CPU cores per server."""
    memory_gib: float = Field(default=24, gt=0)
    """RAM in GiB per server."""


class Ollama(_Model):
    engine: Literal["ollama", "vllm"] = "ollama"
    """`ollama`: one Ollama server per role (GGUF adapters). `vllm`: one vLLM server per GPU with the adapters as LoRA modules over one copy of the base."""
    vllm: AdapterPoolVllm = AdapterPoolVllm()
    """The multi-LoRA design: used by `engine: vllm`, and compared in every plan."""
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

    _pinned = field_validator("image")(lambda v: _pinned_image(v, OLLAMA_DEFAULT_IMAGE))


def _pinned_image(v: str, example: str) -> str:
    if "@" not in v and (":" not in v.rsplit("/", 1)[-1] or v.endswith(":latest")):
        raise ValueError(f"{v!r} is not pinned; use a released tag such as {example}")
    return v


class VllmModel(_Model):
    model: str
    """Hugging Face repo id (must be in the model catalog); the first container arg."""
    served_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    """`--served-model-name` (default: the model's key); the name clients send and the metrics label."""
    tensor_parallel: int = Field(default=1, ge=1)
    """`--tensor-parallel-size`: GPUs per pod, all on one node; must divide the attention heads."""
    replicas: int = Field(default=1, ge=1)
    """Pods behind the model's one Service; each is placed on its own GPUs by the plan."""
    max_model_len: int = Field(ge=256)
    """`--max-model-len`: tokens per sequence; at most the model's trained context."""
    max_num_seqs: int | None = Field(default=None, ge=1)
    """`--max-num-seqs`: sequences batched at once (vLLM's default when unset)."""
    max_num_batched_tokens: int | None = Field(default=None, ge=256)
    """`--max-num-batched-tokens` (vLLM's default, 2048 on A100/<70 GiB GPUs, when unset)."""
    gpu_memory_utilization: float = Field(default=VLLM.default_gpu_memory_utilization, gt=0, le=1)
    """`--gpu-memory-utilization`: the share of each of its GPUs the server takes (weights, activations, KV cache)."""
    dtype: Literal["auto", "bfloat16", "float16", "half", "float", "float32"] = "auto"
    """`--dtype`."""
    quantization: str | None = None
    """`--quantization` (e.g. `fp8` online; AWQ/GPTQ checkpoints carry theirs and need none). No bitsandbytes or GGUF in vLLM 0.33."""
    kv_cache_dtype: Literal["auto", "float16", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    """`--kv-cache-dtype`; fp8 halves the KV cache."""
    trust_remote_code: bool = False
    """`--trust-remote-code`: runs the repo's own Python; none of the catalog's models needs it."""
    lora_modules: dict[str, str] = {}
    """LoRA adapters by name -> directory relative to the model cache; adds `--enable-lora --lora-modules`."""
    max_loras: int | None = Field(default=None, ge=1)
    """`--max-loras`: adapters active in one batch (default: the number of lora_modules)."""
    max_lora_rank: int | None = None
    """`--max-lora-rank`: at least the adapters' rank; one of 1, 8, 16, 32, 64, 128, 256, 320, 512."""
    extra_args: list[str] = []
    """Further `vllm serve` flags; may not repeat a typed one or use a flag vLLM 0.33 removed."""
    node: str | None = None
    """Node to place it on (default: any node with room)."""
    gpus: list[int] | None = None
    """GPU indexes to pin it to (one per tensor-parallel rank); default: placed by the plan."""
    cpu: float = Field(gt=0)
    """CPU cores requested per pod."""
    memory_gib: float = Field(gt=0)
    """RAM in GiB requested and limited per pod (the /dev/shm volume is added on top)."""


class Vllm(_Model):
    image: str = Field(default=VLLM_DEFAULT_IMAGE, pattern=IMAGE)
    """vLLM image, pinned (`ENTRYPOINT vllm serve`; args start with the model)."""
    download_mib_per_second: float = Field(default=50, gt=0)
    """Assumed Hugging Face download rate; sizes the startup budget for a first download."""
    load_mib_per_second: float = Field(default=400, gt=0)
    """Assumed read rate of the model cache when loading weights."""
    compile_seconds: int = Field(default=300, ge=0)
    """Allowance for torch.compile, CUDA graph capture and KV profiling at start."""
    models: dict[str, VllmModel] = {}
    """Models by key; each becomes a VllmModel (Deployment per replica + Service `vllm-<key>`)."""

    _pinned = field_validator("image")(lambda v: _pinned_image(v, VLLM_DEFAULT_IMAGE))


class Plan(_Model):
    cuda_context_gib: float = Field(default=DEFAULT_CUDA_CONTEXT_GIB, ge=0)
    """VRAM each GPU process holds for its CUDA context, which Ollama's estimate leaves out."""
    vllm_runtime_gib: float = Field(default=DEFAULT_VLLM_RUNTIME_GIB, ge=0)
    """Per GPU of a vLLM server: CUDA context, workspaces and CUDA graphs, outside weights, activations and KV."""


class StackConfig(_Model):
    namespace: str = Field(default="llama3-multi-adapter", pattern=DNS_LABEL, max_length=63)
    """Namespace of every namespaced object (the seed's `llama3-multi-adapter` keeps its service URLs)."""
    nodes: list[Node] = Field(min_length=1)
    """The cluster's GPU nodes."""
    gpu_sharing: GpuSharing = GpuSharing()
    """GPU pinning mode."""
    model_cache: ModelCache = ModelCache()
    """Where model weights live; survives `pulumi destroy`."""
    ollama: Ollama | None = None
    """The Ollama adapter pool."""
    vllm: Vllm | None = None
    """vLLM servers."""
    hf_token: str | None = None
    """Hugging Face token for gated models: set it with `pulumi config set --secret hfToken hf_...` (a Kubernetes Secret, never plain text)."""
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
        while get_origin(model) in (Union, types.UnionType):
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


def parse_config(raw: dict[str, Any], secret_keys: frozenset[str] = frozenset()) -> StackConfig:
    """Validate the stack's `llm-infra:*` values (top-level key -> value) into a StackConfig."""
    try:
        cfg = StackConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_format(e) for e in exc.errors()]) from None
    problems = cross_field_problems(cfg, secret_keys)
    if problems:
        raise ConfigError(problems)
    return cfg


# --------------------------------------------------------------------------------------------
# Cross-field rules


def servers(cfg: StackConfig) -> list[tuple[tuple[str, ...], str, OllamaServer]]:
    """(config path, role name, server) for the base and every adapter, in a stable order."""
    if cfg.ollama is None:
        return []
    out: list[tuple[tuple[str, ...], str, OllamaServer]] = [(("ollama", "base"), "base", cfg.ollama.base)]
    for name in sorted(cfg.ollama.adapters):
        out.append((("ollama", "adapters", name), name, cfg.ollama.adapters[name]))
    return out


def node_of(cfg: StackConfig, server: OllamaServer) -> Node | None:
    if server.node is None:
        return cfg.nodes[0] if len(cfg.nodes) == 1 else None
    return next((n for n in cfg.nodes if n.name == server.node), None)


def cross_field_problems(cfg: StackConfig, secret_keys: frozenset[str] = frozenset()) -> list[str]:
    problems = _node_problems(cfg)
    if cfg.ollama is not None:
        problems += _ollama_problems(cfg, cfg.ollama)
    if cfg.vllm is not None:
        problems += _vllm_problems(cfg, cfg.vllm, secret_keys)
    if cfg.ollama is None and (cfg.vllm is None or not cfg.vllm.models):
        problems.append(f"{key('ollama')}: the stack serves nothing; configure ollama or vllm.models")
    problems += _cache_problems(cfg)
    return problems


def _node_problems(cfg: StackConfig) -> list[str]:
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
    return problems


def _ollama_problems(cfg: StackConfig, ollama: Ollama) -> list[str]:
    problems: list[str] = []
    names = [n.name for n in cfg.nodes]
    model = OLLAMA_MODELS.get(ollama.base_model)
    if model is None:
        problems.append(
            f"{key('ollama', 'baseModel')}: {ollama.base_model!r} is not in the model catalog; use one of: {', '.join(sorted(OLLAMA_MODELS))}"
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
        if model is not None and server.context_length > model.arch.max_position:
            problems.append(
                f"{key(*path, 'contextLength')}: {server.context_length} is above {ollama.base_model}'s trained context of "
                f"{model.arch.max_position}; use at most {model.arch.max_position}"
            )
        if server.cpu_limit is not None and server.cpu_limit < server.cpu:
            problems.append(f"{key(*path, 'cpuLimit')}: {server.cpu_limit:g} is below the request cpu={server.cpu:g}")

    if ollama.engine == "vllm":
        pool = ollama.vllm
        if pool.model not in HF_MODELS:
            problems.append(f"{key('ollama', 'vllm', 'model')}: {pool.model!r} is not in the model catalog")
        if pool.max_lora_rank not in VLLM.max_lora_ranks:
            problems.append(f"{key('ollama', 'vllm', 'maxLoraRank')}: {pool.max_lora_rank} is not a vLLM choice; use one of {', '.join(map(str, VLLM.max_lora_ranks))}")
        for name, adapter in sorted(ollama.adapters.items()):
            if adapter.lora_dir is None:
                problems.append(f"{key('ollama', 'adapters', name, 'loraDir')}: ollama.engine vllm serves adapters as PEFT LoRA directories; set loraDir (GGUF files are for Ollama)")
        if HF_MODELS.get(pool.model, None) is not None and HF_MODELS[pool.model].gated and cfg.hf_token is None:
            problems.append(f"{key('hfToken')}: {pool.model} is gated on Hugging Face; set a token with `pulumi config set --secret hfToken hf_...`")
    for name, adapter in sorted(ollama.adapters.items()):
        if not re.match(DNS_LABEL, name) or len(f"ollama-adapter-{name}") > 63:
            problems.append(f"{key('ollama', 'adapters', name)}: adapter name must be a DNS label of at most 48 characters (lowercase, digits, '-')")
        if name == "base":
            problems.append(f"{key('ollama', 'adapters', name)}: 'base' is the base server's name; rename the adapter")
        if adapter.base != ollama.base_model:
            problems.append(
                f"{key('ollama', 'adapters', name, 'base')}: adapter was trained on {adapter.base!r} but the pool serves "
                f"{ollama.base_model!r}; a LoRA only works on its own base: fix ollama.baseModel or the adapter"
            )

    return problems


def _cache_problems(cfg: StackConfig) -> list[str]:
    problems: list[str] = []
    cache = cfg.model_cache
    if cache.mode in ("rwx", "perPod") and cache.storage_class_name is None:
        problems.append(f"{key('modelCache', 'storageClassName')}: modelCache.mode {cache.mode} needs a StorageClass (e.g. longhorn for rwx, local-path for perPod)")
    if cache.provisioner is not None and cache.mode == "hostPath":
        problems.append(f"{key('modelCache', 'provisioner')}: hostPath mode provisions nothing; remove provisioner or use rwx/perPod")
    return problems


TYPED_FLAGS = frozenset({
    "--model", "--served-model-name", "--tensor-parallel-size", "-tp", "--max-model-len", "--max-num-seqs",
    "--max-num-batched-tokens", "--gpu-memory-utilization", "--device-memory-utilization", "--dtype",
    "--quantization", "-q", "--kv-cache-dtype", "--trust-remote-code", "--no-trust-remote-code",
    "--enable-lora", "--disable-lora", "--lora-modules", "--max-loras", "--max-lora-rank",
    "--port", "--host", "--download-dir", "--api-key", "--hf-token",
})
"""Flags a typed field (or the component) owns, with their aliases; extraArgs may not repeat them."""


def flag_name(arg: str) -> str:
    """`--max_num_seqs=4` -> `--max-num-seqs` (vLLM accepts underscores and `=`)."""
    name = arg.split("=", 1)[0]
    return "--" + name[2:].replace("_", "-") if name.startswith("--") else name


def _vllm_problems(cfg: StackConfig, vllm: Vllm, secret_keys: frozenset[str]) -> list[str]:
    problems: list[str] = []
    names = [n.name for n in cfg.nodes]
    gated = []
    for name, m in sorted(vllm.models.items()):
        at = lambda *k: key("vllm", "models", name, *k)  # noqa: E731
        if not re.match(DNS_LABEL, name) or len(f"vllm-{name}") > 52:
            problems.append(f"{at()}: model key must be a DNS label of at most 47 characters (lowercase, digits, '-')")
        hf = HF_MODELS.get(m.model)
        if hf is None:
            problems.append(f"{at('model')}: {m.model!r} is not in the model catalog; use one of: {', '.join(sorted(HF_MODELS))}")
            continue
        if hf.gated:
            gated.append(name)
        tp_problem = hf.arch.tp_problem(m.tensor_parallel)
        if tp_problem:
            problems.append(f"{at('tensorParallel')}: {tp_problem}")
        if m.max_model_len > hf.trained_context:
            problems.append(f"{at('maxModelLen')}: {m.max_model_len} is above {m.model}'s trained context of {hf.trained_context}; use at most {hf.trained_context}")
        q = m.quantization
        if q in ("bitsandbytes", "gguf"):
            problems.append(f"{at('quantization')}: vLLM 0.33 has no {q}; use a pre-quantized AWQ/GPTQ checkpoint (e.g. AMead10/Llama-3.2-3B-Instruct-AWQ) and leave quantization unset")
        elif q is not None and q not in VLLM.quantization_methods:
            problems.append(f"{at('quantization')}: {q!r} is not a vLLM 0.33 quantization method; use one of: {', '.join(VLLM.quantization_methods)}")
        elif q is not None and hf.quant_method is None and ("awq" in q or "gptq" in q):
            problems.append(f"{at('quantization')}: {m.model} is not an {q} checkpoint; pick a pre-quantized repo or use fp8")
        elif q is not None and hf.quant_method is not None and hf.quant_method not in q:
            problems.append(f"{at('quantization')}: {m.model} is a {hf.quant_method} checkpoint; leave quantization unset or use {hf.quant_method}")
        if m.max_lora_rank is not None and m.max_lora_rank not in VLLM.max_lora_ranks:
            problems.append(f"{at('maxLoraRank')}: {m.max_lora_rank} is not a vLLM choice; use one of {', '.join(map(str, VLLM.max_lora_ranks))}")
        if (m.max_loras is not None or m.max_lora_rank is not None) and not m.lora_modules:
            problems.append(f"{at('loraModules')}: maxLoras/maxLoraRank are set but no LoRA modules are; add loraModules or remove them")
        for lora, path in sorted(m.lora_modules.items()):
            if not re.match(DNS_LABEL, lora):
                problems.append(f"{at('loraModules', lora)}: LoRA name must be lowercase letters, digits and '-'")
            if path.startswith("/") or ".." in path.split("/") or not re.match(r"^[A-Za-z0-9._/-]+$", path):
                problems.append(f"{at('loraModules', lora)}: {path!r} must be a directory inside the model cache, relative and without '..'")
        for i, arg in enumerate(m.extra_args):
            flag = flag_name(arg)
            if not arg.startswith("-"):
                continue
            if flag in TYPED_FLAGS:
                problems.append(f"{at('extraArgs')}[{i}]: {arg!r} repeats a typed setting; set it through its own key instead")
            elif flag in VLLM.removed_flags:
                problems.append(f"{at('extraArgs')}[{i}]: {arg!r} was removed from vLLM 0.33 and would stop the server; drop it")
        if m.node is not None and m.node not in names:
            problems.append(f"{at('node')}: no node named {m.node!r}; nodes are: {', '.join(names)}")
        elif m.gpus is not None:
            if m.node is None and len(cfg.nodes) > 1:
                problems.append(f"{at('node')}: gpus are pinned but the stack has {len(cfg.nodes)} nodes; say which one")
            node = next((n for n in cfg.nodes if n.name == m.node), cfg.nodes[0])
            if len(m.gpus) != m.tensor_parallel or len(set(m.gpus)) != len(m.gpus):
                problems.append(f"{at('gpus')}: {m.gpus} must list {m.tensor_parallel} distinct GPU(s), one per tensor-parallel rank")
            missing = [g for g in m.gpus if g not in {x.index for x in node.gpus}]
            if missing:
                problems.append(f"{at('gpus')}: node {node.name} has no GPU {', '.join(map(str, missing))}")
            if m.replicas > 1:
                problems.append(f"{at('gpus')}: pinned GPUs serve one pod; with replicas {m.replicas} leave gpus unset so the plan places each replica")
        if cfg.gpu_sharing.mode in ("dra", "visible-devices"):
            candidates = [n for n in cfg.nodes if m.node in (None, n.name)]
            for n in candidates:
                for g in n.gpus:
                    if not (g.uuid or (cfg.gpu_sharing.mode == "dra" and g.pci_bus_id)):
                        where = key("nodes", cfg.nodes.index(n), "gpus", n.gpus.index(g))
                        problems.append(f"{where}: gpuSharing.mode {cfg.gpu_sharing.mode} pins GPUs by {'uuid or pciBusID' if cfg.gpu_sharing.mode == 'dra' else 'UUID'}; set it (nvidia-smi -L)")
    if gated and cfg.hf_token is None:
        problems.append(f"{key('hfToken')}: {', '.join(gated)} {'is a gated model' if len(gated) == 1 else 'are gated models'} on Hugging Face; "
                        "set a token with `pulumi config set --secret hfToken hf_...`")
    if cfg.hf_token is not None and key("hfToken") not in secret_keys:
        problems.append(f"{key('hfToken')}: the token is in plain text in the stack file; store it with `pulumi config set --secret hfToken hf_...`")
    return sorted(set(problems), key=problems.index)
