"""A model's architecture as its config.json gives it: the schema of inline `arch:` blocks and of the catalog's files."""

from __future__ import annotations

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from stacks.config.base import _Model, camel


class ModelArchSpec(_Model):
    """A model's architecture, from its config.json, for a model the catalog does not have."""

    parameters_b: float = Field(gt=0, le=100_000)
    """Parameters in billions (safetensors metadata, or the model card)."""
    layers: int = Field(ge=1, le=10_000)
    """`num_hidden_layers`."""
    attention_heads: int = Field(ge=1, le=65_536)
    """`num_attention_heads`."""
    kv_heads: int = Field(ge=1, le=65_536)
    """`num_key_value_heads` (equal to attentionHeads without grouped-query attention)."""
    head_dim: int = Field(ge=1, le=65_536)
    """`head_dim`, or hidden / attentionHeads where config.json has none."""
    hidden: int = Field(ge=1, le=1_048_576)
    """`hidden_size`."""
    max_position: int = Field(ge=256, le=1 << 30)
    """`max_position_embeddings`: the trained context."""
    vocab: int = Field(ge=1, le=1 << 30)
    """`vocab_size`."""
    mla_kv_dim: int = Field(default=0, ge=0, le=1_048_576)
    """MLA models (DeepSeek-V2/V3): `kv_lora_rank + qk_rope_head_dim`; 0 otherwise."""
    ffn: int = Field(default=0, ge=0, le=1 << 24)
    """`intermediate_size` (sizes LoRA slots)."""
    tied_embeddings: bool = False
    """`tie_word_embeddings`: one matrix for the embeddings and the LM head (with pipeline parallelism vLLM builds it on
    the first and the last stage)."""
    experts: int = Field(default=0, ge=0, le=65_536)
    """Routed experts of a mixture-of-experts model (`num_local_experts`, `n_routed_experts` or `num_experts`); 0 if dense."""
    gated: bool = False
    """The repo is gated on Hugging Face (needs hfToken)."""

    @model_validator(mode="after")
    def _consistent(self) -> "ModelArchSpec":
        """Facts of one config.json cannot contradict each other: each problem is reported at its own key."""
        problems = arch_problems(self)
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, [
                InitErrorDetails(type=PydanticCustomError("value_error", "{problem}", {"problem": text}),
                                 loc=(camel(field),), input=getattr(self, field)) for field, text in problems])
        return self


HEAD_WIDTH_FACTOR = 4
"""How far attentionHeads x headDim may stray from hidden (a factor either way). config.json's head_dim defaults to
hidden_size / num_attention_heads; models that set it stay near that (tests/fixtures/hf-config/gemma-2-9b-it.json:
16 x 256 = 4096 for hidden 3584). A factor of 4 only catches a headDim or hidden copied from the wrong field."""
PARAMETERS_SLACK = 0.9
"""parametersB may be this much below the attention-and-embeddings floor (rounded model-card figures)."""


def minimum_parameters(a: ModelArchSpec) -> int:
    """Parameters the attention projections and the embeddings alone hold: a floor for any count of the model.

    q and o are hidden x heads x headDim each, k and v hidden x kvHeads x headDim, in every layer; MLA (DeepSeek-V2/V3)
    factors q and the KV projections through small ranks, so there only the output projection counts. The MLPs are
    left out: MoE and hybrid models put them in some layers only."""
    per_layer = a.hidden * a.head_dim * (a.attention_heads if a.mla_kv_dim else 2 * a.attention_heads + 2 * a.kv_heads)
    return a.layers * per_layer + a.vocab * a.hidden * (1 if a.tied_embeddings else 2)


def arch_problems(a: ModelArchSpec) -> list[tuple[str, str]]:
    """(field, problem) for figures that contradict each other."""
    problems: list[tuple[str, str]] = []
    if a.attention_heads % a.kv_heads:
        # vLLM's Attention layer asserts num_heads % num_kv_heads == 0 (vllm/attention/layer.py Attention.__init__).
        problems.append(("kv_heads", f"{a.kv_heads} KV heads do not divide {a.attention_heads} attention heads: each KV head "
                                     "serves the same number of query heads, so config.json's num_key_value_heads divides "
                                     "num_attention_heads; copy both from config.json"))
    width = a.attention_heads * a.head_dim
    if not a.mla_kv_dim and not a.hidden / HEAD_WIDTH_FACTOR <= width <= a.hidden * HEAD_WIDTH_FACTOR:
        problems.append(("head_dim", f"attentionHeads x headDim = {a.attention_heads} x {a.head_dim} = {width} is "
                                     f"{f'more than {HEAD_WIDTH_FACTOR} times' if width > a.hidden else f'less than 1/{HEAD_WIDTH_FACTOR} of'} "
                                     f"hidden {a.hidden}: config.json's head_dim is hidden_size / num_attention_heads unless it sets "
                                     "another, and models that do stay near it; copy head_dim, hidden_size and "
                                     "num_attention_heads from config.json"))
    floor = minimum_parameters(a)
    if a.parameters_b * 1e9 < PARAMETERS_SLACK * floor:
        problems.append(("parameters_b", f"{a.parameters_b:g} B parameters is fewer than the attention projections and "
                                         f"embeddings alone hold ({floor / 1e9:.2f} B for {a.layers} layers, hidden "
                                         f"{a.hidden}, {a.attention_heads}/{a.kv_heads} heads of {a.head_dim}, vocab "
                                         f"{a.vocab}); parametersB is the model's total parameter count in billions "
                                         "(safetensors metadata, or the model card), not its active parameters or file size"))
    return problems
