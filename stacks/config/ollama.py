"""The Ollama adapter pool: one server per role (base and each task adapter)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal, Union

from pydantic import Field, field_validator

from stacks.catalog import OLLAMA_DEFAULT_IMAGE, VLLM
from stacks.config.base import (DNS_LABEL, GO_DURATION, MAX_CPU, MAX_GIB, MAX_MIB_PER_SECOND, MAX_REPLICAS,
                                 MAX_TOKENS, MIN_CPU, MIN_POD_GIB, GO_DURATION_MAX_SECONDS, _Model, go_duration_seconds, hf_repo_id, key)
from stacks.config.images import check_image, release_text
from stacks.config.suggest import REPO_CUTOFF, close_match, did_you_mean
from stacks.config.pod_options import PodOptions
from stacks.errors import MissingSecret
from stacks.config.cluster import Node

if TYPE_CHECKING:
    from stacks.config import StackConfig


class OllamaAutoscale(_Model):
    max_replicas: int = Field(ge=2, le=16)
    """Pods at most (seed 000's HPA): the plan places every one on the server's GPU, each with its own copy of the weights,
    and refuses the config when they do not fit."""
    cpu_utilization: int = Field(default=80, ge=10, le=100)
    """Average CPU use (percent of the request) the HorizontalPodAutoscaler keeps."""


class OllamaServer(PodOptions):
    gpu: int
    """Index of the GPU (on `node`) the pods of this server use."""
    node: str | None = None
    """Node name; may be left out when the stack has one node."""
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    """Pods of this server; each holds its own copy of the base weights."""
    autoscale: OllamaAutoscale | None = None
    """A HorizontalPodAutoscaler on CPU between `replicas` and `autoscale.maxReplicas` pods, all planned on the server's GPU."""
    parallel: int = Field(ge=1, le=1024)
    """`OLLAMA_NUM_PARALLEL`: request slots per pod; each slot holds `contextLength` tokens of KV cache."""
    queue: int = Field(ge=1, le=1_000_000)
    """`OLLAMA_MAX_QUEUE`: requests waiting for a model load before HTTP 503."""
    keep_alive: Union[str, int] = "5m"
    """`OLLAMA_KEEP_ALIVE`: Go duration (`10m`, `24h`, negative = forever) or integer seconds."""
    context_length: int = Field(ge=256, le=MAX_TOKENS)
    """`OLLAMA_CONTEXT_LENGTH`: tokens per slot; at most the model's trained context."""
    cpu: float = Field(ge=MIN_CPU, le=MAX_CPU)
    """CPU cores requested per pod."""
    cpu_limit: float | None = Field(default=None, ge=MIN_CPU, le=MAX_CPU)
    """CPU limit per pod (none by default: a limit throttles token generation)."""
    memory_gib: float = Field(ge=MIN_POD_GIB, le=MAX_GIB)
    """RAM in GiB requested and limited per pod."""

    @field_validator("keep_alive")
    @classmethod
    def _duration(cls, v: str | int) -> str:
        text = str(v)
        seconds = go_duration_seconds(text) if re.fullmatch(GO_DURATION, text) else None
        if seconds is None:
            raise ValueError(f"{v!r} is not a duration; use a Go duration such as 10m or 24h, or integer seconds")
        if abs(seconds) > GO_DURATION_MAX_SECONDS:
            raise ValueError(f"{v!r} is past Go's duration range (about 292 years), which Ollama parses it into; use a "
                             "negative duration (-1) to keep the model loaded for ever")
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

    @field_validator("file", "lora_dir")
    @classmethod
    def _relative(cls, v: str | None) -> str | None:
        if v is not None and (v.startswith("/") or ".." in v.split("/")):
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
    cpu: float = Field(default=4, ge=MIN_CPU, le=MAX_CPU)
    """CPU cores per server."""
    memory_gib: float = Field(default=24, ge=MIN_POD_GIB, le=MAX_GIB)
    """RAM in GiB per server."""

    _repo = field_validator("model")(hf_repo_id)


class Ollama(_Model):
    engine: Literal["ollama", "vllm"] = "ollama"
    """`ollama`: one Ollama server per role (GGUF adapters). `vllm`: one vLLM server per GPU with the adapters as LoRA modules over one copy of the base."""
    vllm: AdapterPoolVllm = AdapterPoolVllm()
    """The multi-LoRA design: used by `engine: vllm`, and compared in every plan."""
    image: str = OLLAMA_DEFAULT_IMAGE
    """Ollama image, pinned to a released tag or digest (a registry of your own with its port is fine)."""
    accept_version: str | None = None
    """The Ollama release the image holds, when it is not 0.32 or 0.33 or its tag does not name one: the plan's memory
    estimate is Ollama 0.32/0.33's scheduler's, and stating the release accepts it for that one."""
    base_model: str = "llama3:8b"
    """Ollama tag of the base model (must be in the model catalog)."""
    pull_mib_per_second: float = Field(default=25, gt=0, le=MAX_MIB_PER_SECOND)
    """Assumed registry download rate; sizes the rollout deadline for a first pull."""
    server_start_seconds: int = Field(default=120, ge=10)
    """Budget for `ollama serve` to start and discover GPUs (startupProbe)."""
    base: OllamaServer
    """The base model server (no adapter)."""
    adapters: dict[str, Adapter] = {}
    """Task adapters by name (`chatbot`, `code`, ...); each gets its own Deployment and Service."""

    _pinned = field_validator("image")(lambda v: check_image(v, OLLAMA_DEFAULT_IMAGE))
    _version = field_validator("accept_version", mode="before")(release_text)



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



def base_model_problem(tag: str) -> str:
    """An Ollama tag the catalog lacks, and the catalog's tag it likely misspells. Also run on the raw `ollama` block when
    the rest of it failed validation (stacks/config/salvage.py)."""
    from stacks.model_catalog import ollama_models

    close = close_match(tag, ollama_models())
    hint = f" did you mean {close!r}?" if close else ""
    return f"{key('ollama', 'baseModel')}: {tag!r} is not in the model catalog;{hint} use one of: {', '.join(sorted(ollama_models()))}"


def _ollama_problems(cfg: StackConfig, ollama: Ollama) -> list[str]:
    problems: list[str] = []
    names = [n.name for n in cfg.nodes]
    from stacks.model_catalog import hf_models, ollama_models

    model = ollama_models().get(ollama.base_model)
    if model is None:
        problems.append(base_model_problem(ollama.base_model))

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
        if server.autoscale is not None and server.autoscale.max_replicas <= server.replicas:
            problems.append(f"{key(*path, 'autoscale', 'maxReplicas')}: {server.autoscale.max_replicas} is not above replicas "
                            f"{server.replicas}; raise it, or remove autoscale")
        if server.cpu_limit is not None and server.cpu_limit < server.cpu:
            problems.append(f"{key(*path, 'cpuLimit')}: {server.cpu_limit:g} is below the request cpu={server.cpu:g}")

    if ollama.engine == "vllm":
        pool = ollama.vllm
        if pool.model not in hf_models():
            problems.append(f"{key('ollama', 'vllm', 'model')}: {pool.model!r} is not in the model catalog"
                            + did_you_mean(pool.model, hf_models(), REPO_CUTOFF))
        if pool.max_lora_rank not in VLLM.max_lora_ranks:
            problems.append(f"{key('ollama', 'vllm', 'maxLoraRank')}: {pool.max_lora_rank} is not a vLLM choice; use one of {', '.join(map(str, VLLM.max_lora_ranks))}")
        for name, adapter in sorted(ollama.adapters.items()):
            if adapter.lora_dir is None:
                problems.append(f"{key('ollama', 'adapters', name, 'loraDir')}: ollama.engine vllm serves adapters as PEFT LoRA directories; set loraDir (GGUF files are for Ollama)")
        if pool.model in hf_models() and hf_models()[pool.model].gated and cfg.hf_token is None:
            problems.append(MissingSecret("hfToken", f"{key('hfToken')}: {pool.model} is gated on Hugging Face; set a token with "
                                          "`pulumi config set --secret hfToken hf_...`"))
    for name, adapter in sorted(ollama.adapters.items()):
        if not re.fullmatch(DNS_LABEL, name) or len(f"ollama-adapter-{name}") > 63:
            problems.append(f"{key('ollama', 'adapters', name)}: adapter name must be a DNS label of at most 48 characters (lowercase, digits, '-')")
        if name == "base":
            problems.append(f"{key('ollama', 'adapters', name)}: 'base' is the base server's name; rename the adapter")
        if adapter.base != ollama.base_model:
            problems.append(
                f"{key('ollama', 'adapters', name, 'base')}: adapter was trained on {adapter.base!r} but the pool serves "
                f"{ollama.base_model!r}; a LoRA only works on its own base: fix ollama.baseModel or the adapter"
            )

    return problems
