"""Shared pieces of the config models: the key syntax, name patterns and the strict base model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

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


def _pinned_image(v: str, example: str) -> str:
    if "@" not in v and (":" not in v.rsplit("/", 1)[-1] or v.endswith(":latest")):
        raise ValueError(f"{v!r} is not pinned; use a released tag such as {example}")
    return v
