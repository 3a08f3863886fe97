"""Model and engine facts: the one place for numbers the plan reasons about.

Every figure cites the engine's source (file and version) or the model's config.json; nothing here is tuned to make a
plan fit. Components and the plan import these names instead of repeating literals.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class OllamaModel:
    """One Ollama registry tag: which weights file it pulls and what architecture that file has."""

    tag: str
    arch: ModelArch
    quantization: str
    file_bytes: int
    note: str




@dataclass(frozen=True)
class OllamaEngine:
    """How Ollama 0.32/0.33 estimates and places a model (Ollama 0.32.15 server/sched.go, llm/llama_server.go)."""

    port: int = 11434
    # PredictServerVRAM always assumes an f16 KV cache, whatever OLLAMA_KV_CACHE_TYPE says.
    kv_bytes_per_element: int = 2
    # Batch surcharge keyed on the effective context num_ctx x num_parallel (sched.go
    # generationBatchForContext / generationBatchSurcharge).
    medium_batch_above_tokens: int = 4096
    medium_batch_surcharge_bytes: int = 768 * MIB
    large_batch_above_tokens: int = 32768
    large_batch_surcharge_bytes: int = 2 * GIB
    # With several visible GPUs Ollama puts a model wholly on one only if predicted <= 80 % of its free memory
    # (sched.go bestSingleGPUFit); with one visible GPU that rule is skipped (selectLlamaServerPlacement, sched.go:974).
    whole_load_fraction: float = 0.80
    # With one visible GPU, llama-server --fit offloads layers to the CPU when its allocation would exceed free
    # memory minus this target (llama.cpp fit_params_target, 1024 MiB; env LLAMA_ARG_FIT_TARGET, in MiB).
    fit_target_mib: int = 1024

    def surcharge_bytes(self, effective_context: int) -> int:
        if effective_context > self.large_batch_above_tokens:
            return self.large_batch_surcharge_bytes
        if effective_context > self.medium_batch_above_tokens:
            return self.medium_batch_surcharge_bytes
        return 0


OLLAMA = OllamaEngine()

# Released Ollama tag pinned by default (latest stable release 0.32.15; never :latest).
OLLAMA_DEFAULT_IMAGE = "ollama/ollama:0.32.15"
NVIDIA_DRA_DRIVER = "gpu.nvidia.com"
"""The NVIDIA DRA driver's name: the domain of its device attributes (and the name of its default DeviceClass)."""
OLLAMA_RELEASES = ((0, 32), (0, 33))
"""The Ollama releases the figures above describe (major, minor)."""

# CUDA context each GPU process holds that PredictServerVRAM leaves out ("about 0.45 GiB",
# not in Ollama 0.32.15's PredictServerVRAM; rough budget). Overridable in config (plan.cudaContextGiB).
DEFAULT_CUDA_CONTEXT_GIB = 0.45


# ------------------------------------------------------------------------------------------------
# vLLM 0.33.0 (image vllm/vllm-openai:v0.33.0, ENTRYPOINT `vllm serve`, port 8000)


@dataclass(frozen=True)
class ModelArch:
    """Architecture facts of a model family (each model's config.json on Hugging Face)."""

    name: str
    parameters_b: float
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    max_position: int
    mla_kv_dim: int = 0
    """MLA models (DeepSeek-V2): kv_lora_rank + qk_rope_head_dim per token per layer, one head, not split by TP."""
    ffn: int = 0
    """MLP width, where known (sizes LoRA buffers)."""
    vocab: int = 0
    """Vocabulary size (config.json `vocab_size`): the sampler's logits are rows x vocab in fp32."""
    tied_embeddings: bool = False
    """config.json `tie_word_embeddings`: the LM head is the embedding matrix (one copy in the checkpoint)."""
    experts: int = 0
    """Routed experts of a mixture-of-experts model (config.json `num_local_experts`, `n_routed_experts` or `num_experts`);
    0 for a dense model. MoE models profile a larger activation peak and capture larger CUDA graphs."""

    @property
    def moe(self) -> bool:
        return self.experts > 0

    def lora_bytes(self, rank: int, dtype_bytes: int = 2) -> int:
        """One LoRA slot of `rank` on q, k, v, o, gate, up and down of every layer: rank x (in + out) each."""
        kv = self.kv_heads * self.head_dim
        widths = (self.hidden + self.hidden) * 2 + (self.hidden + kv) * 2 + (self.hidden + self.ffn) * 3
        return self.layers * rank * widths * dtype_bytes

    def kv_bytes_per_token_per_rank(self, tp: int, dtype_bytes: int) -> int:
        if self.mla_kv_dim:
            return self.layers * self.mla_kv_dim * dtype_bytes
        kv_per_rank = max(1, self.kv_heads // tp)
        return 2 * self.layers * kv_per_rank * self.head_dim * dtype_bytes

    def tp_problem(self, tp: int) -> str | None:
        """Why vLLM would reject this tensor-parallel size, or None."""
        if self.attention_heads % tp:
            ok = [d for d in (1, 2, 4, 8, 16) if self.attention_heads % d == 0 and self.tp_problem(d) is None]
            return f"{tp} does not divide {self.attention_heads} attention heads; use {', '.join(map(str, ok))}"
        if not self.mla_kv_dim and (self.kv_heads % tp if self.kv_heads >= tp else tp % self.kv_heads):
            return f"{tp} does not divide {self.kv_heads} KV heads (nor is a multiple of them)"
        return None


@dataclass(frozen=True)
class HfModel:
    """One Hugging Face repo vLLM serves."""

    repo: str
    arch: ModelArch
    gated: bool
    quant_bits: int | None = None
    """4 for pre-quantized AWQ/GPTQ checkpoints (the quantization is read from the checkpoint)."""
    quant_method: str | None = None
    unquantized_parameters_b: float = 0.0
    """Parameters a 4-bit checkpoint keeps in 16 bit (embeddings, lm_head, MoE gates)."""
    max_context: int | None = None
    """Context the model card gives when it is below max_position (fine-tunes)."""
    safety_classifier: bool = False
    """A Llama Guard model: answers `safe` / `unsafe\\n<categories>`, served as Llama Stack's shield, not chatted with."""
    note: str = ""

    @property
    def trained_context(self) -> int:
        return self.max_context or self.arch.max_position


# The models themselves are data: one file per model under catalog/ (stacks/model_catalog.py reads them).


@dataclass(frozen=True)
class VllmEngine:
    """vLLM 0.33 facts and the plan's estimates (vllm 0.33.0: engine/arg_utils.py, config/cache.py, v1/worker/gpu_worker.py)."""

    port: int = 8000
    default_gpu_memory_utilization: float = 0.92
    # KV cache block size in tokens (config/cache.py:185, CacheConfig.DEFAULT_BLOCK_SIZE).
    block_size: int = 16
    # 4-bit weights plus an fp16 scale and a 4-bit zero per group of 128 (estimate).
    four_bit_bytes_per_parameter: float = 0.5 + (2 + 0.5) / 128
    # The terms below are calibrated on published V1-engine startup logs (calibration/vllm-startup-logs.yaml, one entry
    # per log with its source; `make calibrate` prints plan vs log term by term and tests/test_calibration.py keeps every
    # term at or above what the logs measured and within a stated tolerance of it). The figures quoted are the logs'.
    # Profile-run peak: the larger of the forward pass (batched tokens x hidden x 2 B x activation_factor: 1.05-1.10 GiB
    # on the first stages of Llama-3.1-8B at 8192 tokens) and the sampler's fp32 buffers (rows x vocabulary x 4 B x
    # sampler_copies, plus sampler_extra_gib: 1.89 GiB Llama-3.1-8B, 1.96 Llama-3.3-70B, 2.01 on the last of its
    # pipeline stages); they do not add up (granite-3.1-8b: 0.85, their sum 1.4). Models the catalog lacks an architecture
    # for (gemma-2-9b's 256k vocabulary: 3.65, Mistral-Small-24B: 2.03) follow the same rule by hand, untested.
    activation_factor: int = 18
    sampler_copies: int = 4
    sampler_extra_gib: float = 0.05
    # MoE models peak higher than that rule at 8192 batched tokens (DeepSeek-V2-Lite +0.32, Qwen3-30B-A3B +0.31,
    # Mixtral +0.09), scaled with the batched tokens.
    moe_activation_gib_per_8k_tokens: float = 0.35
    # Non-torch memory growing after the init snapshot (attention workspaces, all-reduce buffers), by tensor-parallel
    # size: 0.24-0.46 GiB at TP 1, 2.06-2.11 at TP 2, 2.13-2.21 at TP 4 (TP 8: no log yet, the TP 4 step extended);
    # with pipeline parallelism alone (TP 1) 0.07.
    non_torch_gib_by_tp: tuple[tuple[int, float], ...] = ((1, 0.5), (2, 2.15), (4, 2.25), (8, 2.3))
    non_torch_gib_pipeline_only: float = 0.25
    # CUDA graph pool (actual): 0.51-1.09 GiB for dense models up to 24B, 1.54-1.85 for 70B-class, 0.93-1.57 for MoE.
    cudagraph_gib_dense: float = 1.15
    cudagraph_gib_dense_large: float = 1.9
    cudagraph_large_above_b: float = 30.0
    cudagraph_gib_moe: float = 1.6
    # CUDA context, NCCL communicators and cuBLAS handles each process creates before its init snapshot, outside the
    # gpuMemoryUtilization share: 0.51 GiB on one GPU; 1.43-1.55 with TP or PP >= 2 (NCCL); 2.01-2.07 for MoE models
    # across GPUs. Overridable (plan.vllmContextGiB).
    context_gib_one_gpu: float = 0.55
    context_gib_multi_gpu: float = 1.6
    context_gib_multi_gpu_moe: float = 2.1
    # /dev/shm per tensor-parallel rank (NCCL needs >= 1 GB; docs examples 1-2 Gi; production-stack 20Gi flat).
    shm_gib_per_rank: int = 4
    # Removed in 0.33 ("unrecognized arguments"): never emitted, rejected in extraArgs.
    removed_flags: tuple[str, ...] = ("--swap-space", "--tokenizer-pool-size", "--num-scheduler-steps",
                                      "--use-v2-block-manager", "--task")
    # Valid --quantization methods in 0.33 (model_executor/layers/quantization/__init__.py).
    quantization_methods: tuple[str, ...] = (
        "awq", "auto_awq", "awq_marlin", "fp8", "modelopt", "modelopt_fp4", "modelopt_mxfp8", "modelopt_mixed",
        "auto_gptq", "gptq", "gptq_marlin", "compressed-tensors", "experts_int8", "quark", "moe_wna16", "torchao",
        "inc", "mxfp4", "fp8_per_tensor", "fp8_per_block", "fp8_per_channel",
    )
    # Deprecated methods (model_executor/layers/quantization/__init__.py:52): a checkpoint quantized with one of them is
    # refused unless the server gets --allow-deprecated-quantization (config/model.py:1472-1485).
    deprecated_quantization_methods: tuple[str, ...] = ("fbgemm_fp8", "fp_quant")
    # Multi-node (pipelineParallel > 1): torch.distributed's store on the leader (--master-port default,
    # config/parallel.py:320-322); the only backend vLLM 0.33 allows with --nnodes > 1 besides uni/external_launcher
    # is mp (parallel.py:1106-1114), and it is the default there (1054-1065).
    default_master_port: int = 29501
    max_lora_ranks: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
    default_max_lora_rank: int = 16


VLLM = VllmEngine()
VLLM_DEFAULT_IMAGE = "vllm/vllm-openai:v0.33.0"
VLLM_RELEASES = ((0, 33),)
"""The vLLM releases whose flags (catalog/vllm-flags.json) and memory accounting the plan uses (major, minor)."""
# Safety margin kept free on every GPU a vLLM server uses, and off a profiled KV cache: covers the
# estimates above (context, non-torch, CUDA graphs, activations). Overridable (plan.vllmMarginGiB).
DEFAULT_VLLM_MARGIN_GIB = 1.0


# ------------------------------------------------------------------------------------------------
# Llama Stack 0.7.3 (PyPI llama-stack==0.7.3; image llamastack/distribution-starter:0.7.3)


@dataclass(frozen=True)
class EmbeddingModel:
    """A sentence-transformers model the `inline::sentence-transformers` provider loads on first use."""

    provider_model_id: str
    """The name passed to `SentenceTransformer(...)` (bare names resolve to the sentence-transformers org)."""
    hf_repo: str
    dimension: int
    """`metadata.embedding_dimension`: registration fails without it (core/routing_tables/models.py)."""
    trust_remote_code: bool = False
    note: str = ""


EMBEDDING_MODELS: dict[str, EmbeddingModel] = {
    m.provider_model_id: m
    for m in (
        EmbeddingModel("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", 384,
                       note="model card: 384-dimensional dense vectors, Apache-2.0, ~90 MB"),
        EmbeddingModel("nomic-ai/nomic-embed-text-v1.5", "nomic-ai/nomic-embed-text-v1.5", 768, trust_remote_code=True,
                       note="the provider's own default (providers/inline/inference/sentence_transformers); runs the repo's code"),
    )
}


@dataclass(frozen=True)
class LlamaStackEngine:
    """Llama Stack 0.7.3 server facts (llama_stack/core/datatypes.py, core/stack.py, providers/*)."""

    port: int = 8321
    """`llama stack run --port` default (`$LLAMA_STACK_PORT` or 8321)."""
    health_path: str = "/v1/health"
    config_version: int = 2
    """LLAMA_STACK_RUN_CONFIG_VERSION in core/datatypes.py."""
    config_dir: str = "/etc/llama-stack"
    config_key: str = "config.yaml"
    # The Llama Guard 3 hazard categories the inline::llama-guard provider accepts in excluded_categories
    # (providers/inline/safety/llama_guard/llama_guard.py, SAFETY_CATEGORIES_TO_CODE_MAP).
    guard_categories: tuple[str, ...] = tuple(f"S{i}" for i in range(1, 15))
    # Env names the run config reads for its state paths; the Deployment sets them under the state volume.
    state_env: tuple[str, ...] = ("SQLITE_STORE_DIR", "MILVUS_DB_PATH", "FILES_STORAGE_DIR")


LLAMA_STACK = LlamaStackEngine()
LLAMA_STACK_DEFAULT_IMAGE = "llamastack/distribution-starter:0.7.3"
LLAMA_STACK_RELEASES = ((0, 7),)
"""The Llama Stack releases whose run config (version 2) and providers the program writes (major, minor)."""


# ------------------------------------------------------------------------------------------------
# GPUs: the total memory CUDA reports (cudaMemGetInfo / torch.cuda.mem_get_info), which vLLM sizes its
# share from, is below the nameplate and below nvidia-smi's total. Where sources differ (driver, ECC),
# the lowest is kept.


@dataclass(frozen=True)
class GpuModel:
    name: str
    cuda_total_bytes: int
    nvidia_smi_mib: int
    source: str


GPU_MODELS: dict[str, GpuModel] = {
    g.name: g
    for g in (
        GpuModel("A100-80GB", 81049 * MIB, 81920,
                 "A100 80GB PCIe totalGlobalMem 81049 MiB (ekondis/mixbench#47); vLLM logs 79.32 GiB on another "
                 "A100 80GB (vllm-project/vllm-omni#276): the lower is kept"),
        GpuModel("H100-80GB", round(79.18 * GIB), 81559,
                 "vLLM 'total_gpu_memory (79.22GiB)' on H100-80G (vllm-project/vllm#12126), 79.19 GiB in every log of "
                 "jgchn/llm-d-planner's v0.19.0 campaign (calibration/): 0.01 below the lowest is kept, as drivers differ; "
                 "nvidia-smi 81559MiB (vllm#55169)"),
        GpuModel("L40", round(44.40 * GIB), 46068,
                 "PyTorch 'total capacity of 44.40 GiB' on an L40 (QwenLM/Qwen3-VL#2097); nvidia-smi 46068MiB with ECC on"),
        GpuModel("L40S", round(44.42 * GIB), 46068,
                 "PyTorch 'total capacity of 44.42 GiB' on an L40S (stepfun-ai/Step-Video-T2V#8); 44.52 GiB elsewhere"),
    )
}
