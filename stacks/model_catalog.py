"""The model catalog: one data file per model under `catalog/` (hf/ for vLLM repos, ollama/ for Ollama tags),
validated by the schema below and read once, when first asked for (never at import).

`make catalog MODEL=<repo>` writes a new file from the repo's config.json and safetensors metadata
(tools/catalog.py); a model may also be described inline in the stack config (`arch:`).
"""

from __future__ import annotations

import difflib
import types
from functools import cache
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from stacks import yaml_file
from stacks.catalog import HfModel, ModelArch, OllamaModel
from stacks.config import short
from stacks.config.arch import ModelArchSpec
from stacks.config.base import _Model, hf_repo_id
from stacks.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CATALOG_DIR = ROOT / "catalog"


class Quantization(_Model):
    method: str
    """`quantization_config.quant_method` of a pre-quantized checkpoint (awq, gptq, ...)."""
    bits: int = Field(ge=1, le=16)
    unquantized_parameters_b: float = Field(default=0, ge=0)
    """Parameters the checkpoint keeps in 16 bit (embeddings, lm_head, MoE gates), in billions."""


class CatalogModel(_Model):
    repo: str
    """Hugging Face repo id."""
    _repo = field_validator("repo")(hf_repo_id)
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

    @model_validator(mode="after")
    def _consistent(self) -> "CatalogModel":
        problems = []
        q = self.quantization
        if q is not None and q.unquantized_parameters_b > self.arch.parameters_b:
            problems.append((("quantization", "unquantizedParametersB"), q.unquantized_parameters_b,
                             f"{q.unquantized_parameters_b:g} B parameters kept in 16 bit is more than the model's "
                             f"{self.arch.parameters_b:g} B (arch.parametersB); it is the part of those that stays unquantized"))
        if self.max_context is not None and self.max_context > self.arch.max_position:
            problems.append((("maxContext",), self.max_context,
                             f"{self.max_context} is above the trained context arch.maxPosition {self.arch.max_position}; "
                             "maxContext is for a model card that gives less: remove it, or correct it"))
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, [
                InitErrorDetails(type=PydanticCustomError("value_error", "{problem}", {"problem": text}), loc=loc, input=value)
                for loc, value, text in problems])
        return self


class CatalogOllamaTag(_Model):
    tag: str
    name: str
    arch: ModelArchSpec
    quantization: str
    file_bytes: int = Field(gt=0)
    """Size of the model blob the tag pulls."""
    note: str = ""
    source: str


class CatalogError(ConfigError):
    """Catalog files that cannot be read, or that contradict each other: one line each, naming the file and the field.

    A ConfigError, so that the program (stacks/loader.py load_stack) and `make render` print the lines and stop."""


def model_arch(name: str, a: ModelArchSpec) -> ModelArch:
    return ModelArch(name, a.parameters_b, a.layers, a.attention_heads, a.kv_heads, a.head_dim, a.hidden, a.max_position,
                     mla_kv_dim=a.mla_kv_dim, ffn=a.ffn, vocab=a.vocab, tied_embeddings=a.tied_embeddings, experts=a.experts)


def hf_model_of(entry: CatalogModel) -> HfModel:
    q = entry.quantization
    return HfModel(entry.repo, model_arch(entry.name, entry.arch), gated=entry.arch.gated,
                   quant_bits=q.bits if q else None, quant_method=q.method if q else None,
                   unquantized_parameters_b=q.unquantized_parameters_b if q else 0.0,
                   max_context=entry.max_context, safety_classifier=entry.safety_classifier, note=entry.note)


def _shown(path: Path) -> str:
    """A catalog file as errors name it: relative to the checkout (catalog/hf/x.yaml) when it is in it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _fields_at(schema: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys a catalog file accepts at the mapping that `loc` points into."""
    model: Any = schema
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            model = next((f.annotation for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        elif get_origin(model) in (list, dict):
            model = get_args(model)[-1]
        while get_origin(model) in (Union, types.UnionType):
            model = next(a for a in get_args(model) if a is not type(None))
    return [f.alias or n for n, f in model.model_fields.items()] if isinstance(model, type) and issubclass(model, BaseModel) else []


def _format(shown: str, schema: type[BaseModel], err: dict[str, Any]) -> str:
    """One pydantic error as `catalog/hf/x.yaml: arch.kvHeads: ...` (the stack config's style, stacks/config `_format`)."""
    loc = tuple(err["loc"])
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "<entry>"
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _fields_at(schema, loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"{shown}: {where}: unknown field; {hint}allowed fields here: {', '.join(allowed)}"
    if kind == "missing":
        return f"{shown}: {where}: required field is missing; add it (the other files show each field)"
    msg = err["msg"].removeprefix("Value error, ") if kind == "value_error" else f"{err['msg']}, got {short(err['input'])}"
    return f"{shown}: {where}: {msg}"


def validation_problems(shown: str, schema: type[BaseModel], exc: ValidationError) -> list[str]:
    """A catalog entry's validation errors, one line each, every one starting with `shown` and the field."""
    return list(dict.fromkeys(_format(shown, schema, e) for e in exc.errors()))


def claimed_by(directory: Path, key: str, name: str) -> list[Path]:
    """The files of a catalog directory that describe `name` (their `key`: repo or tag), whatever else is in them."""
    out = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml_file.load(path)
        except yaml_file.YamlFileError:
            continue
        if isinstance(data, dict) and data.get(key) == name:
            out.append(path)
    return out


def _load_all(directory: Path, schema: type[_Model], claim: str) -> list[Any]:
    """Every file of a catalog directory, validated; `claim` (repo, tag) names one model, so one file only may give it."""
    problems: list[str] = []
    entries: list[Any] = []
    claimed: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        shown = _shown(path)
        try:
            data = yaml_file.load(path, shown)
        except yaml_file.YamlFileError as exc:
            problems.append(str(exc))
            continue
        if not isinstance(data, dict):
            what = "empty" if data is None else f"a {type(data).__name__}"
            problems.append(f"{shown}: the file is {what}; a catalog entry is a mapping of "
                            f"{', '.join(_fields_at(schema, ('x',)))}, like the other files of {directory.name}/")
            continue
        try:
            entry = schema.model_validate(data)
        except ValidationError as exc:
            problems += validation_problems(shown, schema, exc)
            continue
        name = getattr(entry, claim)
        if name.lower() in claimed:  # the Hub's repo ids (and Ollama's tags) do not tell case apart
            problems.append(f"{shown}: {claim}: {name!r} is described by {claimed[name.lower()]} too; one file per model (the "
                            "later file would silently replace the first): delete one of them")
            continue
        claimed[name.lower()] = shown
        entries.append(entry)
    if problems:
        raise CatalogError(problems)
    return entries


def hf_models() -> dict[str, HfModel]:
    """Every vLLM model of the catalog (`CATALOG_DIR`), by repo id."""
    return _hf_models(CATALOG_DIR)


def ollama_models() -> dict[str, OllamaModel]:
    """Every Ollama tag of the catalog (`CATALOG_DIR`)."""
    return _ollama_models(CATALOG_DIR)


@cache
def _hf_models(directory: Path) -> dict[str, HfModel]:
    return {e.repo: hf_model_of(e) for e in _load_all(directory / "hf", CatalogModel, "repo")}


@cache
def _ollama_models(directory: Path) -> dict[str, OllamaModel]:
    return {e.tag: OllamaModel(e.tag, model_arch(e.name, e.arch), e.quantization, e.file_bytes, e.note)
            for e in _load_all(directory / "ollama", CatalogOllamaTag, "tag")}


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
