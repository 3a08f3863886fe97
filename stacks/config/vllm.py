"""vLLM servers: one entry per model, typed flags plus a checked escape hatch."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from stacks.catalog import VLLM, VLLM_DEFAULT_IMAGE, HfModel
from stacks.config.arch import ModelArchSpec
from stacks.config.base import DNS_LABEL, MAX_CPU, MAX_GIB, MAX_MIB_PER_SECOND, MAX_REPLICAS, MAX_TOKENS, MIN_CPU, MIN_POD_GIB, _Model, hf_repo_id, key
from stacks.config.images import MOVING_TAGS, check_image, release_text
from stacks.config.pod_options import PodOptions
from stacks.errors import MissingSecret

if TYPE_CHECKING:
    from stacks.config import StackConfig


class VllmAutoscale(_Model):
    max_replicas: int = Field(ge=2, le=64)
    """Replicas at most: the plan places and reserves GPUs for every one (printed as reserved); those above `replicas`
    start at 0 pods and KEDA starts them, each on its reserved GPUs, when requests wait."""
    requests_per_replica: int = Field(default=16, ge=1, le=1_000_000)
    """Requests in flight (running + waiting, summed over the model's pods) one replica carries: the k-th reserved replica
    starts when demand passes (replicas + k - 1) x this, and stops once it stays below for the cooldown."""


class MultiNode(_Model):
    """How the ranks of a model larger than a node talk (`pipelineParallel` > 1)."""

    master_port: int = Field(default=VLLM.default_master_port, ge=1024, le=65535)
    """`--master-port`: the leader's torch.distributed store every rank joins (vLLM 0.33's default, 29501)."""
    host_network: bool = False
    """Ranks on the node's network (`hostNetwork: true`): NCCL over the host's interfaces, no pod overlay. Pod Security
    `restricted` and `baseline` forbid it: the namespace is then labelled `enforce: privileged` (warn/audit stay restricted)."""
    rdma_resource: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    """An RDMA device plugin's resource (e.g. `rdma/rdma_shared_device_a`), one per rank, for NCCL over InfiniBand/RoCE.
    The pods stay non-root with no capabilities: registering memory needs the runtime's memlock limit (`ulimit -l`)."""


class VllmModel(PodOptions):
    model: str
    """Hugging Face repo id: from the model catalog, or described by `arch`; the first container arg (unless `path`)."""
    arch: ModelArchSpec | None = None
    """The model's architecture from its config.json, for a model not in the catalog (air-gapped users, new models)."""
    revision: str | None = None
    """The Hub revision served (`--revision`; vLLM's tokenizer follows it): a full commit sha (40 lowercase hex digits,
    the repo's commit history lists them) pins the files; a tag is taken as given. Branch names (`main`, `dev`, ...) are
    refused, like moving image tags: the files under them change without the stack changing. Default: the repo's `main`."""
    path: str | None = None
    """Serve a copy already on the model cache, never downloading: a directory relative to the cache's root (e.g.
    `models/llama-3.1-8b`, holding config.json, the tokenizer files and `*.safetensors`) that becomes the server's model
    argument (`/models/<path>`). `model` (or `arch`) still names the facts the plan sizes; the pod runs with
    `HF_HUB_OFFLINE=1`, without the token (even for a gated model) and with no download in its start-up budget."""
    served_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    """`--served-model-name` (default: the model's key); the name clients send and the metrics label."""
    tensor_parallel: int = Field(default=1, ge=1, le=64)
    """`--tensor-parallel-size`: GPUs per pod, all on one node; must divide the attention heads."""
    pipeline_parallel: int = Field(default=1, ge=1, le=64)
    """`--pipeline-parallel-size`: nodes per replica, one pipeline stage (a contiguous run of layers) and tensorParallel
    GPUs on each; above 1 a replica is a LeaderWorkerSet whose leader serves the API and whose workers run headless."""
    multi_node: MultiNode = MultiNode()
    """Networking of the ranks when pipelineParallel > 1."""
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    """Pods behind the model's one Service; each is placed on its own GPUs by the plan."""
    autoscale: VllmAutoscale | None = None
    """More replicas when requests wait: KEDA ScaledObjects on vLLM's own queue metric, bounded by what the plan reserved."""
    max_model_len: int = Field(ge=256, le=MAX_TOKENS)
    """`--max-model-len`: tokens per sequence; at most the model's trained context."""
    max_num_seqs: int | None = Field(default=None, ge=1, le=1_000_000)
    """`--max-num-seqs`: sequences batched at once (vLLM's default when unset)."""
    max_num_batched_tokens: int | None = Field(default=None, ge=256, le=MAX_TOKENS)
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
    max_loras: int | None = Field(default=None, ge=1, le=1024)
    """`--max-loras`: adapters active in one batch (default: the number of lora_modules)."""
    max_lora_rank: int | None = None
    """`--max-lora-rank`: at least the adapters' rank; one of 1, 8, 16, 32, 64, 128, 256, 320, 512."""
    extra_args: list[str] = []
    """Further `vllm serve` flags, one item per option or value, read by vLLM 0.33's own option table (types, choices, how
    many values); may not repeat a typed one, use a flag vLLM 0.33 removed, hold `$(VAR)` (the kubelet expands it), or ask
    for what the pod lacks: a Unix socket, TLS files (TLS belongs on the ingress), data parallelism, dummy weights, a config
    file, or more CPU offload than memoryGiB."""
    node: str | None = None
    """Node to place it on (default: any node with room)."""
    pool: str | None = Field(default=None, pattern=DNS_LABEL)
    """Node pool to place it in (`nodes[].pool`; default: any node with room)."""
    gpus: list[int] | None = None
    """GPU indexes to pin it to (one per tensor-parallel rank); default: placed by the plan."""
    cpu: float = Field(ge=MIN_CPU, le=MAX_CPU)
    """CPU cores requested per pod."""
    memory_gib: float = Field(ge=MIN_POD_GIB, le=MAX_GIB)
    """RAM in GiB requested and limited per pod (the /dev/shm volume is added on top)."""

    _repo = field_validator("model")(hf_repo_id)
    _revision = field_validator("revision")(lambda v: hub_revision(v))


def hub_revision(v: str) -> str:
    """A Hub revision that names one set of files: a full commit sha, or a tag; a branch name is refused. The offline
    cache matches commits by the full lowercase sha only (huggingface_hub 2.4.0 file_download.py REGEX_COMMIT_HASH
    `[0-9a-f]{40}`); any other name is looked up as `refs/<name>` (file_download.py:1140-1152)."""
    if re.fullmatch(r"[0-9a-f]{40}", v):
        return v
    if re.fullmatch(r"[0-9a-fA-F]{40}", v):
        raise ValueError(f"{v!r}: write the commit sha in lowercase (the Hub client matches commits as [0-9a-f]{{40}})")
    if re.fullmatch(r"[0-9a-f]{7,39}", v):
        raise ValueError(f"{v!r} looks like a shortened commit sha; give all 40 characters (an offline cache finds a "
                         "commit by its full sha only)")
    if "/" in v:
        raise ValueError(f"{v!r}: a ref with '/' (refs/pr/N, refs/convert/...) moves with new pushes; give its commit sha")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", v) or ".." in v or v.endswith(".lock"):
        raise ValueError(f"{v!r} is not a commit sha or a tag name (letters, digits, '.', '_', '-')")
    if v.lower() in MOVING_TAGS:
        raise ValueError(f"{v!r} is a branch: the files under it change without the stack changing; give the commit sha "
                         "it points at now (40 hex digits, from the repo's commit history)")
    return v


def cache_path_problem(path: str) -> str | None:
    """Why `path` is not a directory inside the model cache (relative, no '..'), or None."""
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or not re.fullmatch(r"^[A-Za-z0-9._/-]+$", path):
        return f"{path!r} must be a directory inside the model cache, relative and without '..'"
    if all(p in ("", ".") for p in parts):
        return f"{path!r} is the model cache's root; give the model's own directory (e.g. models/<name>)"
    return None


class Vllm(_Model):
    image: str = VLLM_DEFAULT_IMAGE
    """vLLM image, pinned to a release tag or a digest (`ENTRYPOINT vllm serve`; args start with the model); a registry of your
    own with its port is fine (`registry.internal:5000/vllm/vllm-openai:v0.33.0`)."""
    accept_version: str | None = None
    """The vLLM release the image holds, when it is not 0.33 or its tag does not name one (a mirror's own tag, a digest
    alone): the plan's flags and memory accounting are vLLM 0.33's, and stating the release accepts them for it. Releases
    older than 0.33 are refused (the plan passes flags they lack)."""
    download_mib_per_second: float = Field(default=50, gt=0, le=MAX_MIB_PER_SECOND)
    """Assumed Hugging Face download rate; sizes the startup budget for a first download."""
    load_mib_per_second: float = Field(default=400, gt=0, le=MAX_MIB_PER_SECOND)
    """Assumed read rate of the model cache when loading weights."""
    compile_seconds: int = Field(default=300, ge=0)
    """Allowance for torch.compile, CUDA graph capture and KV profiling at start."""
    models: dict[str, VllmModel] = {}
    """Models by key; each becomes a VllmModel (Deployment per replica + Service `vllm-<key>`)."""

    _pinned = field_validator("image")(lambda v: check_image(v, VLLM_DEFAULT_IMAGE))
    _version = field_validator("accept_version", mode="before")(release_text)



TYPED_FLAGS = frozenset({
    "--model", "--served-model-name", "--tensor-parallel-size", "-tp", "--max-model-len", "--max-num-seqs",
    "--max-num-batched-tokens", "--gpu-memory-utilization", "--kv-cache-memory-bytes", "--device-memory-utilization", "--dtype",
    "--quantization", "-q", "--kv-cache-dtype", "--trust-remote-code", "--no-trust-remote-code",
    "--enable-lora", "--disable-lora", "--lora-modules", "--max-loras", "--max-lora-rank",
    "--port", "--host", "--download-dir", "--api-key", "--hf-token",
    "--pipeline-parallel-size", "-pp", "--nnodes", "-n", "--node-rank", "-r", "--master-addr", "--master-port", "--headless",
    "--distributed-executor-backend", "--allow-deprecated-quantization", "--revision",
})
"""Flags a typed field (or the component) owns, with their aliases; extraArgs may not repeat them."""


def hf_model(m: VllmModel) -> HfModel | None:
    """The catalog's entry for the model, or one built from its inline arch block."""
    from stacks.model_catalog import hf_models, model_arch  # the catalog's schema is this package's

    if m.model in hf_models():
        return hf_models()[m.model]
    if m.arch is None:
        return None
    return HfModel(m.model, model_arch(m.model, m.arch), gated=m.arch.gated, note="described inline (arch)")


def catalog_problem(name: str, repo: str) -> str:
    """A model repo the catalog lacks: the catalog's repo it likely misspells (then no `make catalog` of the misspelling),
    else how to add it. Also run on the raw entry of a model whose other fields failed validation (stacks/config/salvage.py)."""
    from stacks.config.suggest import REPO_CUTOFF, close_match
    from stacks.model_catalog import hf_models

    at = key("vllm", "models", name, "model")
    arch = f"{key('vllm', 'models', name, 'arch')}: parametersB, layers, attentionHeads, kvHeads, headDim, hidden, maxPosition, vocab"
    close = close_match(repo, hf_models(), REPO_CUTOFF)
    if close is not None:
        return (f"{at}: {repo!r} is not in the model catalog; did you mean {close!r}? (a model the catalog lacks: add it with "
                f"`make catalog MODEL=<org>/<name>`, or describe it with an arch block from its config.json)")
    return (f"{at}: {repo!r} is not in the model catalog ({', '.join(sorted(hf_models()))}); add it with `make catalog "
            f"MODEL={repo}`, or describe it with an arch block from its config.json ({arch}); without the network, `make "
            f"catalog MODEL=<directory of a local copy> REPO={repo}` reads the copy")


def _extra_args_problems(at, m: VllmModel) -> list[str]:
    """`extraArgs` read as vLLM 0.33's parser reads them (stacks/vllm_args.py: names, values, types, choices, strays),
    what of them the pod cannot honour, and the batch limits vLLM refuses together. `at(*keys)` builds the model's keys."""
    from stacks import vllm_args

    pod = vllm_args.Pod(gpus=m.tensor_parallel, memory_gib=m.memory_gib, max_model_len=m.max_model_len,
                        max_num_batched_tokens=m.max_num_batched_tokens, autoscaled=m.autoscale is not None)
    out = [f"{at('extraArgs')}[{i}]: {why}" for i, why in
           vllm_args.extra_args_problems(m.extra_args, TYPED_FLAGS, VLLM.removed_flags, pod)]
    if m.max_num_seqs is not None and m.max_num_batched_tokens is not None and m.max_num_seqs > m.max_num_batched_tokens:
        # vllm/config/scheduler.py:331-336@0.33.0 (SchedulerConfig.verify_max_model_len).
        out.append(f"{at('maxNumSeqs')}: {m.max_num_seqs} is above maxNumBatchedTokens {m.max_num_batched_tokens}, which "
                   f"vLLM 0.33 refuses ('max_num_batched_tokens ({m.max_num_batched_tokens}) must be greater than or equal "
                   f"to max_num_seqs ({m.max_num_seqs})'); use at most {m.max_num_batched_tokens}, or raise maxNumBatchedTokens")
    return out


def flag_name(arg: str) -> str:
    """`--max_num_seqs=4` -> `--max-num-seqs` (vLLM accepts underscores and `=`)."""
    from stacks.vllm_args import flag_name as name

    return name(arg)


def _vllm_problems(cfg: StackConfig, vllm: Vllm, secret_keys: frozenset[str]) -> list[str]:
    from stacks.model_catalog import hf_models

    problems: list[str] = []
    names = [n.name for n in cfg.nodes]
    known_nodes = set(names)
    pool_of = {n.name: n.pool for n in cfg.nodes}
    pools = sorted({n.pool for n in cfg.nodes if n.pool})
    gated = []
    for name, m in sorted(vllm.models.items()):
        at = lambda *k: key("vllm", "models", name, *k)  # noqa: E731
        if not re.fullmatch(DNS_LABEL, name) or len(f"vllm-{name}") > 52:
            problems.append(f"{at()}: model key must be a DNS label of at most 47 characters (lowercase, digits, '-')")
        hf = hf_model(m)
        if hf is None:
            problems.append(catalog_problem(name, m.model))
            continue
        if m.arch is not None and m.model in hf_models():
            problems.append(f"{at('arch')}: {m.model} is in the model catalog already; remove the arch block")
        if hf.gated and m.path is None:  # a copy on the cache needs no token
            gated.append(name)
        if m.path is not None:
            if (problem := cache_path_problem(m.path)) is not None:
                problems.append(f"{at('path')}: {problem}")
            if m.revision is not None:
                problems.append(f"{at('revision')}: the model is served from path {m.path!r}, whose files are what serves; "
                                "remove revision (or path, to download that revision)")
            if cfg.model_cache.mode != "hostPath":
                # rwx and perPod claims are created by the same `pulumi up` that starts the pods: nothing can be copied
                # into them first, so check-cache would stop every pod until the rollout times out.
                problems.append(f"{at('path')}: modelCache.mode {cfg.model_cache.mode}'s claims are created by the same "
                                "pulumi up that starts the pods, so nothing can be seeded into them first; use mode hostPath "
                                "(seed the node's directory), or start without path (the model downloads into the claim) and "
                                "add path once the files are there")
        if m.autoscale is not None and m.autoscale.max_replicas <= m.replicas:
            problems.append(f"{at('autoscale', 'maxReplicas')}: {m.autoscale.max_replicas} is not above replicas {m.replicas}; "
                            "raise it, or remove autoscale")
        tp_problem = hf.arch.tp_problem(m.tensor_parallel)
        if tp_problem:
            problems.append(f"{at('tensorParallel')}: {tp_problem}")
        problems += _pipeline_problems(cfg, name, m, hf.arch.layers)
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
            if not re.fullmatch(DNS_LABEL, lora):
                problems.append(f"{at('loraModules', lora)}: LoRA name must be lowercase letters, digits and '-'")
            if (problem := cache_path_problem(path)) is not None:
                problems.append(f"{at('loraModules', lora)}: {problem}")
        problems += _extra_args_problems(at, m)
        if m.pool is not None and m.pool not in pools:
            problems.append(f"{at('pool')}: no node pool {m.pool!r}; pools are: {', '.join(pools) or 'none (set nodes[].pool)'}")
        if m.pool is not None and m.node is not None and m.node in pool_of and pool_of[m.node] != m.pool:
            problems.append(f"{at('pool')}: node {m.node!r} is not in pool {m.pool!r}; set one of node or pool")
        if m.node is not None and m.node not in known_nodes:
            problems.append(f"{at('node')}: no node named {m.node!r}; nodes are: {', '.join(names)}")
        elif m.gpus is not None:
            if m.node is None and len(cfg.nodes) > 1:
                problems.append(f"{at('node')}: gpus are pinned but the stack has {len(cfg.nodes)} nodes; say which one")
            node = next((n for n in cfg.nodes if n.name == m.node), cfg.nodes[0])
            if len(m.gpus) != m.tensor_parallel or len(set(m.gpus)) != len(m.gpus):
                problems.append(f"{at('gpus')}: {m.gpus} must list {m.tensor_parallel} distinct GPU(s), one per tensor-parallel rank")
            missing = [g for g in m.gpus if g not in {x.index for x in node.gpus}]
            if missing:
                have = ", ".join(str(x.index) for x in node.gpus) or "none"
                problems.append(f"{at('gpus')}: node {node.name} has no GPU {', '.join(map(str, missing))} (it has: {have})")
            if m.replicas > 1 or m.autoscale is not None:
                problems.append(f"{at('gpus')}: pinned GPUs serve one pod; with replicas {m.replicas} or autoscale leave gpus unset "
                                "so the plan places each replica")
    if cfg.gpu_sharing.mode in ("dra", "visible-devices") and vllm.models:
        # Every GPU a model may be placed on must be addressable: checked once per GPU, not once per model and GPU.
        anywhere = any(m.node is None for m in vllm.models.values())
        pinned_nodes = {m.node for m in vllm.models.values()}
        for i, n in enumerate(cfg.nodes):
            if not (anywhere or n.name in pinned_nodes):
                continue
            for j, g in enumerate(n.gpus):
                if not (g.uuid or (cfg.gpu_sharing.mode == "dra" and g.pci_bus_id)):
                    problems.append(f"{key('nodes', i, 'gpus', j)}: gpuSharing.mode {cfg.gpu_sharing.mode} pins GPUs by "
                                    f"{'uuid or pciBusID' if cfg.gpu_sharing.mode == 'dra' else 'UUID'}; set it (nvidia-smi -L)")
    if gated and cfg.hf_token is None:
        problems.append(MissingSecret("hfToken", f"{key('hfToken')}: {', '.join(gated)} {'is a gated model' if len(gated) == 1 else 'are gated models'} "
                                      "on Hugging Face; set a token with `pulumi config set --secret hfToken hf_...`"))
    if cfg.hf_token is not None and key("hfToken") not in secret_keys:
        problems.append(f"{key('hfToken')}: the token is in plain text in the stack file; store it with `pulumi config set --secret hfToken hf_...`")
    return sorted(set(problems), key=problems.index)


def _pipeline_problems(cfg: StackConfig, name: str, m: VllmModel, layers: int) -> list[str]:
    """What a multi-node model (pipelineParallel > 1) cannot be given: vLLM's limits and what one LeaderWorkerSet can pin."""
    at = lambda *k: key("vllm", "models", name, *k)  # noqa: E731
    pp = m.pipeline_parallel
    if pp == 1:
        return [f"{at('multiNode')}: applies to the ranks of a model on several nodes; set pipelineParallel > 1 or remove it"] \
            if m.multi_node != MultiNode() else []
    out = []
    if m.multi_node.master_port == VLLM.port:
        out.append(f"{at('multiNode', 'masterPort')}: {VLLM.port} is the leader's API port; use another (vLLM's default is "
                   f"{VLLM.default_master_port})")
    if pp > layers:
        # vllm/distributed/utils.py get_pp_indices: each stage takes layers // pp (the remainder to the stages before the last).
        out.append(f"{at('pipelineParallel')}: {pp} stages for {m.model}'s {layers} layers would leave a stage with no layer; "
                   f"use at most {layers}")
    if m.node is not None or m.gpus is not None:
        out.append(f"{at('node' if m.node is not None else 'gpus')}: with pipelineParallel {pp} each of a replica's {pp} ranks goes "
                   "on a node of its own; remove node/gpus and choose the nodes with pool")
    if m.autoscale is not None:
        out.append(f"{at('autoscale')}: a multi-node replica (pipelineParallel {pp}) is a LeaderWorkerSet group, which the "
                   "autoscaler does not start; set replicas instead")
    if pp > 2:
        # Workers share one pod template (LeaderWorkerSet workerTemplate): what differs per node cannot be written in it.
        if cfg.gpu_sharing.mode != "exclusive":
            out.append(f"{key('gpuSharing', 'mode')}: {cfg.gpu_sharing.mode} pins each GPU by name, but the {pp - 1} workers of "
                       f"{at()} share one pod template (LeaderWorkerSet) on different nodes; use mode exclusive, or pipelineParallel 2")
        if cfg.model_cache.mode != "rwx":
            out.append(f"{key('modelCache', 'mode')}: {cfg.model_cache.mode} gives each node (or pod) its own claim, but the "
                       f"{pp - 1} workers of {at()} share one pod template; use mode rwx, or pipelineParallel 2")
    return out
