"""A model's architecture as its config.json gives it: the schema of inline `arch:` blocks and of the catalog's files."""

from __future__ import annotations

from pydantic import Field

from stacks.config.base import _Model


class ModelArchSpec(_Model):
    """A model's architecture, from its config.json, for a model the catalog does not have."""

    parameters_b: float = Field(gt=0)
    """Parameters in billions (safetensors metadata, or the model card)."""
    layers: int = Field(ge=1)
    """`num_hidden_layers`."""
    attention_heads: int = Field(ge=1)
    """`num_attention_heads`."""
    kv_heads: int = Field(ge=1)
    """`num_key_value_heads` (equal to attentionHeads without grouped-query attention)."""
    head_dim: int = Field(ge=1)
    """`head_dim`, or hidden / attentionHeads where config.json has none."""
    hidden: int = Field(ge=1)
    """`hidden_size`."""
    max_position: int = Field(ge=256)
    """`max_position_embeddings`: the trained context."""
    vocab: int = Field(ge=1)
    """`vocab_size`."""
    mla_kv_dim: int = Field(default=0, ge=0)
    """MLA models (DeepSeek-V2/V3): `kv_lora_rank + qk_rope_head_dim`; 0 otherwise."""
    ffn: int = Field(default=0, ge=0)
    """`intermediate_size` (sizes LoRA slots)."""
    tied_embeddings: bool = False
    """`tie_word_embeddings`: one matrix for the embeddings and the LM head (with pipeline parallelism vLLM builds it on
    the first and the last stage)."""
    gated: bool = False
    """The repo is gated on Hugging Face (needs hfToken)."""
