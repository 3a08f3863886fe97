"""Shared pieces of the config models: the key syntax, name patterns and the strict base model."""

from __future__ import annotations

import re
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator

PROJECT = "llm-infra"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
GPU_UUID = r"^GPU-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
PCI_BUS_ID = r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$"
QUANTITY = r"^[1-9][0-9]*(Ki|Mi|Gi|Ti)$"
# Go duration (time.ParseDuration) or plain integer seconds; Ollama accepts both for keep-alive.
GO_DURATION = r"^-?(([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+|[0-9]+)$"

MIN_CPU = 0.001
"""One millicore: Kubernetes' smallest CPU unit (a smaller request renders as `0` or rounds up unseen)."""
MAX_CPU = 4096
MIN_POD_GIB = 1 / 16
"""64 MiB: pod memory is rendered in whole MiB, and a container below this does not start an engine."""
MAX_GIB = 65536
MAX_TOKENS = 1 << 24
"""16M tokens: beyond every model's context and vLLM's int32 token counters."""
MAX_REPLICAS = 10_000
MAX_MIB_PER_SECOND = 1_000_000
GO_DURATION_MAX_SECONDS = (2**63 - 1) / 1e9
"""Go's time.Duration is int64 nanoseconds: about 292 years (time.ParseDuration refuses more)."""


def go_duration_seconds(text: str) -> float | None:
    """Seconds of a Go duration (`1h30m`, `-1s`) or integer seconds, or None if it is neither."""
    if re.fullmatch(r"-?[0-9]+", text):
        return float(text)
    m = re.fullmatch(r"(-?)((?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+)", text)
    if m is None:
        return None
    scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    total = sum(float(n) * scale[u] for n, u in re.findall(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", m.group(2)))
    return -total if m.group(1) else total


def hf_repo_id(v: str) -> str:
    """A field validator: a Hugging Face repo id as the Hub client checks it (huggingface_hub 2.4.0
    utils/_validators.py validate_repo_id: `org/name`, `[A-Za-z0-9._-]`, no `--` or `..`, at most 96 characters), so a
    path (`../x`, `/models/x`) never becomes the server's model argument or a directory in the cache."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(v)
    except HFValidationError as exc:
        raise ValueError(f"{v!r} is not a Hugging Face repo id ({str(exc).split(':')[0]}); give <org>/<name> as the Hub "
                         "shows it") from None
    return v


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
        allow_inf_nan=False,
        use_attribute_docstrings=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _from_cli_strings(cls, data: Any) -> Any:
        """`pulumi config set --path 'a.b' 0.6` stores the string "0.6" (and "true", "3"): take a string that spells
        a number or boolean where the field is one; everything else stays strict (still range-checked)."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, field in cls.model_fields.items():
            alias = field.alias or name
            value = out.get(alias)
            if isinstance(value, str):
                out[alias] = _scalar(field.annotation, value)
            elif isinstance(value, list) and get_origin(_optional(field.annotation)) is list:
                inner = get_args(_optional(field.annotation))[0]
                out[alias] = [_scalar(inner, v) if isinstance(v, str) else v for v in value]
        return out


def _optional(annotation: Any) -> Any:
    """X for `X | None`."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _scalar(annotation: Any, value: str) -> Any:
    kinds = set(get_args(annotation)) if get_origin(annotation) in (Union, types.UnionType) else {annotation}
    text = value.strip()
    if str in kinds:
        return value
    if bool in kinds and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if int in kinds and re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    if float in kinds and re.fullmatch(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?", text):
        return float(text)
    return value

