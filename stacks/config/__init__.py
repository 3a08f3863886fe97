"""Typed stack configuration: the pydantic models for every `llm-infra:*` key, and their checks.

Pure Python. `parse_config(raw)` takes the stack's config as a dict of top-level key -> value
(already JSON-decoded) and returns a `StackConfig`, or raises `ConfigError` whose lines each name
the full key (`llm-infra:ollama.adapters.chatbot.gpu: ...`) and the fix.
"""

import difflib
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError

from stacks.config.base import DNS_LABEL, DNS_SUBDOMAIN, PROJECT, _Model, camel, key
from stacks.config.cluster import Gpu, GpuSharing, ModelCache, Node, Plan, Reserve, _cache_problems, _node_problems
from stacks.config.ollama import Adapter, AdapterPoolVllm, Ollama, OllamaServer, _ollama_problems, node_of, servers
from stacks.config.edge import Auth, Ingress, NetworkPolicy, PodSecurity, Route, Tls, edge_problems
from stacks.config.monitoring import Monitoring
from stacks.config.llama_stack import Agent, LlamaStack, LlamaStackSafety, llama_stack_problems
from stacks.config.consistency import consistency_problems
from stacks.config.raw_checks import raw_problems
from stacks.config.salvage import kept, salvaged_problems
from stacks.config.smoke import Smoke, smoke_problems
from stacks.config.pod_options import PodOptions, Toleration, pod_options_problems
from stacks.config.vllm import TYPED_FLAGS, Vllm, VllmModel, _vllm_problems, flag_name
from stacks.errors import ConfigError

__all__ = [
    "DNS_LABEL", "DNS_SUBDOMAIN", "Auth", "Ingress", "Monitoring", "NetworkPolicy", "PodSecurity", "Route", "Tls", "PROJECT", "TYPED_FLAGS", "Adapter", "Agent", "LlamaStack", "LlamaStackSafety", "AdapterPoolVllm", "Gpu", "GpuSharing",
    "ModelCache", "Node", "Ollama", "OllamaServer", "Plan", "PodOptions", "Toleration", "Reserve", "StackConfig", "Vllm", "VllmModel",
    "camel", "cross_field_problems", "flag_name", "key", "node_of", "parse_config", "servers",
]


class StackConfig(_Model):
    namespace: str = Field(default="llama3-multi-adapter", pattern=DNS_LABEL, max_length=63)
    """Namespace of every namespaced object (the seed's `llama3-multi-adapter` keeps its service URLs)."""
    existing_namespace: bool = False
    """The namespace exists and is not the stack's: it is used as it is, never created, adopted or relabelled (required for `default` and `kube-*`)."""
    nodes: list[Node] = Field(min_length=1)
    """The cluster's GPU nodes."""
    gpu_sharing: GpuSharing = GpuSharing()
    """GPU pinning mode."""
    model_cache: ModelCache = ModelCache()
    """Where model weights live; survives `pulumi destroy`."""
    ollama: Ollama | None = None
    """The Ollama adapter pool."""
    vllm: Vllm | None = None
    """vLLM servers."""
    llama_stack: LlamaStack | None = None
    """Llama Stack in front of vLLM models, with Llama Guard as its shield (seed 004)."""
    agents: dict[str, Agent] = {}
    """Agents by name: each gets a ConfigMap `agent-<name>` with the endpoint and model id of its path."""
    hf_token: str | None = None
    """Hugging Face token for gated models: set it with `pulumi config set --secret hfToken hf_...` (a Kubernetes Secret, never plain text)."""
    plan: Plan = Plan()
    """Capacity-plan settings."""
    api_key: str | None = None
    """The stack's API key: `pulumi config set --secret apiKey "$(openssl rand -hex 32)"`. vLLM checks it as a Bearer token
    (`VLLM_API_KEY`, from a Secret), the ingress as the basic-auth password of the Ollama and Llama Stack routes."""
    ingress: Ingress | None = None
    """Routes from outside the cluster: host names, paths, rate limits, TLS and authentication."""
    network_policy: NetworkPolicy = NetworkPolicy()
    """NetworkPolicies from the service graph over a default deny."""
    smoke: Smoke = Smoke()
    """`make smoke`'s checks as a Job inside the cluster."""
    monitoring: Monitoring = Monitoring()
    """Prometheus, its monitors and alerts, the Grafana dashboard, and what KEDA asks."""
    pod_security: PodSecurity = PodSecurity()
    """The non-root user and group every pod runs as."""
    image_pull_secrets: list[Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]] = []
    """Secrets (`kubernetes.io/dockerconfigjson`, in the stack's namespace) every pod pulls its images with, for a private
    registry or mirror: `kubectl create secret docker-registry <name> -n <namespace> ...` before `pulumi up`."""


# --------------------------------------------------------------------------------------------
# Error formatting


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The camelCase keys accepted at the object that `loc` points into."""
    model: Any = StackConfig
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
            if field is None:
                return []
            model = field.annotation
        elif get_origin(model) in (list, dict):
            model = get_args(model)[-1]
        while get_origin(model) in (Union, types.UnionType):
            model = next(a for a in get_args(model) if a is not type(None))
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items()]
    return []


def _format(err: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    path = key(*loc) if loc else f"{PROJECT}:<root>"
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"{path}: unknown key; {hint}allowed keys here: {', '.join(allowed)}"
    if kind == "missing":
        return f"{path}: required key is missing; add it to the stack config"
    msg = err["msg"]
    if kind == "string_pattern_mismatch":
        msg = f"{short(err['input'])} has the wrong form (expected {err['ctx']['pattern']})"
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    else:
        msg = f"{msg}, got {short(err['input'])}"
    return f"{path}: {msg}"


def short(value: Any, limit: int = 60) -> str:
    """A value for an error message: its repr, cut to `limit` characters (a large value is never echoed whole)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 15]}... ({len(text)} chars)"


def parse_config(raw: dict[str, Any], secret_keys: frozenset[str] = frozenset()) -> StackConfig:
    """Validate the stack's `llm-infra:*` values (top-level key -> value) into a StackConfig."""
    empty = [k for k, v in sorted(raw.items()) if v is None or (isinstance(v, str) and not v.strip())]
    problems = [f"{key(k)}: empty value (`~` or nothing after the colon); give a value, or remove the key to use its default"
                for k in empty]
    given = {k: v for k, v in raw.items() if k not in empty}
    problems += raw_problems(given)
    flagged = {p.split(": ", 1)[0] for p in problems}
    cross = lambda c: cross_field_problems(c, secret_keys)  # noqa: E731
    try:
        cfg = StackConfig.model_validate(given)
    except ValidationError as exc:
        # Every problem in one run: the checks that can still run on what validates (stacks/config/salvage.py).
        problems += [p for p in dict.fromkeys(_format(e) for e in exc.errors()) if p.split(": ", 1)[0] not in flagged]
        raise ConfigError(problems + salvaged_problems(given, problems, StackConfig.model_validate, cross,
                                                       [(k,) for k in empty])) from None
    problems += kept(cross(cfg), [(k,) for k in empty])
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return cfg



def cross_field_problems(cfg: StackConfig, secret_keys: frozenset[str] = frozenset()) -> list[str]:
    problems = _node_problems(cfg)
    if cfg.ollama is not None:
        problems += _ollama_problems(cfg, cfg.ollama)
    if cfg.vllm is not None:
        problems += _vllm_problems(cfg, cfg.vllm, secret_keys)
    if cfg.ollama is None and (cfg.vllm is None or not cfg.vllm.models):
        problems.append(f"{key('ollama')}: the stack serves nothing; configure ollama or vllm.models")
    if (cfg.namespace == "default" or cfg.namespace.startswith("kube-")) and not cfg.existing_namespace:
        problems.append(f"{key('namespace')}: {cfg.namespace!r} is a system namespace; the stack would adopt it and stamp its Pod "
                        "Security labels on it. Use a namespace of the stack's own, or set existingNamespace: true to use it as it is")
    problems += llama_stack_problems(cfg)
    problems += _cache_problems(cfg)
    problems += edge_problems(cfg, secret_keys)
    problems += consistency_problems(cfg)
    problems += smoke_problems(cfg)
    problems += pod_options_problems(cfg)
    return problems
