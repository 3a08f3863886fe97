"""The model catalog: one data file per model under `catalog/` (hf/ for vLLM repos, ollama/ for Ollama tags),
validated by the schema below and read once, when first asked for (never at import).

`make catalog MODEL=<repo>` writes a new file from the repo's config.json and safetensors metadata
(tools/catalog.py); a model may also be described inline in the stack config (`arch:`).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
import yaml
from pydantic import Field, ValidationError

from stacks.catalog import HfModel, ModelArch, OllamaModel
from stacks.config.arch import ModelArchSpec
from stacks.config.base import _Model

CATALOG_DIR = Path(__file__).resolve().parent.parent / "catalog"


class Quantization(_Model):
    method: str
    """`quantization_config.quant_method` of a pre-quantized checkpoint (awq, gptq, ...)."""
    bits: int = Field(ge=1, le=16)
    unquantized_parameters_b: float = Field(default=0, ge=0)
    """Parameters the checkpoint keeps in 16 bit (embeddings, lm_head, MoE gates), in billions."""


class CatalogModel(_Model):
    repo: str
    """Hugging Face repo id."""
    name: str
    """Model family, for people."""
    arch: ModelArchSpec
    quantization: Quantization | None = None
    max_context: int | None = Field(default=None, ge=256)
    """Context the model card gives when it is below maxPosition (fine-tunes)."""
    safety_classifier: bool = False
    """A Llama Guard model (served as Llama Stack's shield)."""
    note: str = ""
    source: str
    """Where each figure comes from (config.json, model card, safetensors metadata)."""


class CatalogOllamaTag(_Model):
    tag: str
    name: str
    arch: ModelArchSpec
    quantization: str
    file_bytes: int = Field(gt=0)
    """Size of the model blob the tag pulls."""
    note: str = ""
    source: str


class CatalogError(Exception):
    pass


def model_arch(name: str, a: ModelArchSpec) -> ModelArch:
    return ModelArch(name, a.parameters_b, a.layers, a.attention_heads, a.kv_heads, a.head_dim, a.hidden, a.max_position,
                     mla_kv_dim=a.mla_kv_dim, ffn=a.ffn, vocab=a.vocab, tied_embeddings=a.tied_embeddings)


def hf_model_of(entry: CatalogModel) -> HfModel:
    q = entry.quantization
    return HfModel(entry.repo, model_arch(entry.name, entry.arch), gated=entry.arch.gated,
                   quant_bits=q.bits if q else None, quant_method=q.method if q else None,
                   unquantized_parameters_b=q.unquantized_parameters_b if q else 0.0,
                   max_context=entry.max_context, safety_classifier=entry.safety_classifier, note=entry.note)


def _load(path: Path, schema: type[_Model]) -> _Model:
    try:
        return schema.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as exc:
        raise CatalogError(f"{path}: not a valid catalog entry: {exc}") from None


def hf_models() -> dict[str, HfModel]:
    """Every vLLM model of the catalog (`CATALOG_DIR`), by repo id."""
    return _hf_models(CATALOG_DIR)


def ollama_models() -> dict[str, OllamaModel]:
    """Every Ollama tag of the catalog (`CATALOG_DIR`)."""
    return _ollama_models(CATALOG_DIR)


@cache
def _hf_models(directory: Path) -> dict[str, HfModel]:
    entries = [_load(p, CatalogModel) for p in sorted((directory / "hf").glob("*.yaml"))]
    return {e.repo: hf_model_of(e) for e in entries}  # type: ignore[attr-defined, arg-type]


@cache
def _ollama_models(directory: Path) -> dict[str, OllamaModel]:
    out = {}
    for p in sorted((directory / "ollama").glob("*.yaml")):
        e = _load(p, CatalogOllamaTag)
        out[e.tag] = OllamaModel(e.tag, model_arch(e.name, e.arch), e.quantization, e.file_bytes, e.note)  # type: ignore[attr-defined]
    return out


@cache
def exported_metrics() -> frozenset[str]:
    """Every series name the engines and exporters expose (catalog/metrics.yaml), as Prometheus stores them."""
    data = yaml.safe_load((CATALOG_DIR / "metrics.yaml").read_text())
    names: set[str] = set()
    for source in data.values():
        for name, kind in source["metrics"].items():
            if kind == "counter":
                names.add(name if name.endswith("_total") else f"{name}_total")
            elif kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            else:
                names.add(name)
    return frozenset(names)


@cache
def vllm_flags() -> dict[str, str | None]:
    """Every option string `vllm serve` accepts -> its value type (`int`, `float`, `str`, `other` for JSON configs, None
    for a switch): catalog/vllm-flags.json, written from vLLM's own parser by tools/vllm_flags.py."""
    data = json.loads((CATALOG_DIR / "vllm-flags.json").read_text())
    return {s: o["type"] for o in data["options"] for s in o.get("strings", ())}
