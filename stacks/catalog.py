"""Model and engine facts: the one place for numbers the plan reasons about.

Every figure cites ../shared/FACTS.md or ../shared/facts/*.md; nothing here is tuned to make a
plan fit. Components and the plan import these names instead of repeating literals.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class ModelArch:
    """Architecture facts of one model family (facts/ollama.md section 5)."""

    name: str
    parameters_b: float
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    trained_context: int

    def kv_bytes_per_token(self, bytes_per_element: int) -> int:
        """K and V for every layer: 2 x layers x kv_heads x head_dim x element size."""
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_element


@dataclass(frozen=True)
class OllamaModel:
    """One Ollama registry tag: which weights file it pulls and what architecture that file has."""

    tag: str
    arch: ModelArch
    quantization: str
    file_bytes: int
    note: str


LLAMA3_8B = ModelArch(
    name="Llama 3 8B",
    parameters_b=8.0,
    layers=32,
    attention_heads=32,
    kv_heads=8,
    head_dim=128,  # embedding 4096 / 32 heads
    trained_context=8192,
)

OLLAMA_MODELS: dict[str, OllamaModel] = {
    m.tag: m
    for m in (
        OllamaModel(
            tag="llama3:8b",
            arch=LLAMA3_8B,
            quantization="Q4_0",
            file_bytes=4_661_211_424,
            note="the instruct model (same manifest as llama3:instruct); LoRAs must be trained on it",
        ),
    )
}


@dataclass(frozen=True)
class OllamaEngine:
    """How Ollama 0.32/0.33 estimates and places a model (facts/ollama.md section 5, server/sched.go)."""

    port: int = 11434
    # PredictServerVRAM always assumes an f16 KV cache, whatever OLLAMA_KV_CACHE_TYPE says.
    kv_bytes_per_element: int = 2
    # Batch surcharge keyed on the effective context num_ctx x num_parallel (sched.go
    # generationBatchForContext / generationBatchSurcharge).
    medium_batch_above_tokens: int = 4096
    medium_batch_surcharge_bytes: int = 768 * MIB
    large_batch_above_tokens: int = 32768
    large_batch_surcharge_bytes: int = 2 * GIB
    # A model loads wholly on a GPU only if predicted <= 80 % of that GPU's free memory.
    whole_load_fraction: float = 0.80

    def surcharge_bytes(self, effective_context: int) -> int:
        if effective_context > self.large_batch_above_tokens:
            return self.large_batch_surcharge_bytes
        if effective_context > self.medium_batch_above_tokens:
            return self.medium_batch_surcharge_bytes
        return 0


OLLAMA = OllamaEngine()

# Released Ollama tag pinned by default (FACTS.md: latest stable 0.32.15; never :latest).
OLLAMA_DEFAULT_IMAGE = "ollama/ollama:0.32.15"

# CUDA context each GPU process holds that PredictServerVRAM leaves out ("about 0.45 GiB",
# facts/ollama.md section 5, rough budget). Overridable in config (plan.cudaContextGiB).
DEFAULT_CUDA_CONTEXT_GIB = 0.45
