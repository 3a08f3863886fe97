"""Llama Stack, its Llama Guard shield, and the agents' routing map (seed 004).

`llamaStack` names the vLLM models the stack fronts (by their `vllm.models` key) and, under
`safety`, the one that serves Llama Guard; `agents` says for each agent which model it uses, on which
path (straight to vLLM or through Llama Stack), its fallback, and whether its traffic is checked by
the shield and can use RAG. Every reference is checked here, at the edge.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from stacks.catalog import EMBEDDING_MODELS, LLAMA_STACK, LLAMA_STACK_DEFAULT_IMAGE
from stacks.config.base import DNS_LABEL, MAX_CPU, MAX_GIB, MAX_TOKENS, MIN_CPU, MIN_POD_GIB, _Model, key
from stacks.config.images import check_image, release_text
from stacks.config.suggest import did_you_mean
from stacks.config.pod_options import PodOptions
from stacks.config.vllm import hf_model

if TYPE_CHECKING:
    from stacks.config import StackConfig


class LlamaStackSafety(_Model):
    model: str
    """Key of the `vllm.models` entry that serves Llama Guard; it becomes a SafetyModel and the stack's shield."""
    shield_id: str = Field(default="llama-guard", pattern=DNS_LABEL)
    """`shield_id` clients send to `/v1/safety/run-shield` (agents get it as `SAFETY_SHIELD_ID`)."""
    excluded_categories: list[str] = []
    """Llama Guard hazard categories the shield ignores (`S1` ... `S14`)."""
    max_tokens: int = Field(default=512, ge=1, le=MAX_TOKENS)
    """`max_tokens` of the guard's inference provider: a verdict is `safe` or `unsafe` plus a category line."""


class LlamaStack(PodOptions):
    image: str = LLAMA_STACK_DEFAULT_IMAGE
    """Llama Stack image, pinned to a release tag or a digest (`llamastack/distribution-starter`; the program writes its config.yaml)."""
    accept_version: str | None = None
    """The Llama Stack release the image holds, when it is not 0.7 or its tag does not name one: the program writes a
    0.7 run config (version 2), and stating the release accepts it for that one."""
    models: list[str] = Field(min_length=1)
    """Keys of the `vllm.models` the stack fronts: each becomes a `remote::vllm` inference provider and a registered model."""
    max_tokens: int = Field(default=4096, ge=1, le=MAX_TOKENS)
    """`max_tokens` Llama Stack adds to requests that set none; per model it is capped at half its `maxModelLen`, so a prompt always fits."""
    embedding_model: str = "all-MiniLM-L6-v2"
    """sentence-transformers model for RAG embeddings (one of the catalog's); its weights go to the model cache."""
    safety: LlamaStackSafety | None = None
    """Llama Guard as the stack's shield."""
    node: str | None = None
    """Node to run on (default: the stack's only node); in `hostPath` cache mode its state lives on that node."""
    cpu: float = Field(default=2, ge=MIN_CPU, le=MAX_CPU)
    """CPU cores requested."""
    memory_gib: float = Field(default=8, ge=MIN_POD_GIB, le=MAX_GIB)
    """RAM in GiB requested and limited."""

    _pinned = field_validator("image")(lambda v: check_image(v, LLAMA_STACK_DEFAULT_IMAGE))
    _version = field_validator("accept_version", mode="before")(release_text)


class Agent(_Model):
    model: str
    """Key of the `vllm.models` entry the agent uses."""
    path: Literal["direct", "llamaStack"] = "direct"
    """`direct`: the model's own vLLM Service; `llamaStack`: through Llama Stack (model id `vllm-<key>/<servedName>`)."""
    fallback: str | None = None
    """Key of the `vllm.models` entry used when the model fails or a request needs more; same path."""
    safety: bool = True
    """Check the agent's traffic with Llama Stack's shield (`SAFETY_ENABLED`)."""
    rag: bool = False
    """The agent uses Llama Stack's vector stores (`RAG_ENABLED`)."""
    description: str = ""
    """What the agent does (kept in its ConfigMap)."""


def llama_stack_problems(cfg: StackConfig) -> list[str]:
    ls = cfg.llama_stack
    problems: list[str] = []
    models = cfg.vllm.models if cfg.vllm is not None else {}
    choices = ", ".join(sorted(models)) or "none: configure vllm.models"
    if ls is not None:
        at = lambda *k: key("llamaStack", *k)  # noqa: E731
        for i, name in enumerate(ls.models):
            if name not in models:
                problems.append(f"{at('models')}[{i}]: {name!r} is not a vllm.models key; use one of: {choices}"
                                + did_you_mean(name, models))
            elif ls.models.count(name) > 1 and ls.models.index(name) < i:
                problems.append(f"{at('models')}[{i}]: {name!r} is listed twice; list each model once")
            elif (hf := hf_model(models[name])) is not None and hf.safety_classifier:
                problems.append(f"{at('models')}[{i}]: {name!r} serves a Llama Guard classifier; set it as llamaStack.safety.model instead")
        if ls.embedding_model not in EMBEDDING_MODELS:
            problems.append(f"{at('embeddingModel')}: {ls.embedding_model!r} is not in the catalog's embedding models; use one of: {', '.join(EMBEDDING_MODELS)}")
        names = [n.name for n in cfg.nodes]
        if ls.node is not None and ls.node not in names:
            problems.append(f"{at('node')}: no node named {ls.node!r}; nodes are: {', '.join(names)}")
        elif ls.node is None and len(names) > 1:
            problems.append(f"{at('node')}: the stack has {len(names)} nodes; say which one runs Llama Stack ({', '.join(names)})")
        if ls.safety is not None:
            s = ls.safety
            if s.model not in models:
                problems.append(f"{at('safety', 'model')}: {s.model!r} is not a vllm.models key; use one of: {choices}"
                                + did_you_mean(s.model, models))
            elif (hf := hf_model(models[s.model])) is not None and not hf.safety_classifier:
                from stacks.model_catalog import hf_models

                guards = ", ".join(r for r, m in hf_models().items() if m.safety_classifier)
                problems.append(f"{at('safety', 'model')}: {s.model!r} serves {models[s.model].model}, not a Llama Guard model ({guards})")
            for i, c in enumerate(s.excluded_categories):
                if c not in LLAMA_STACK.guard_categories:
                    problems.append(f"{at('safety', 'excludedCategories')}[{i}]: {c!r} is not a Llama Guard 3 category; use S1 ... S14")
    for name, agent in sorted(cfg.agents.items()):
        at = lambda *k: key("agents", name, *k)  # noqa: E731
        if not re.fullmatch(DNS_LABEL, name) or len(f"agent-{name}") > 63:
            problems.append(f"{at()}: agent name must be a DNS label of at most 57 characters (lowercase, digits, '-')")
        for field, ref in (("model", agent.model), ("fallback", agent.fallback)):
            if ref is None:
                continue
            if ref not in models:
                problems.append(f"{at(field)}: {ref!r} is not a vllm.models key; use one of: {choices}" + did_you_mean(ref, models))
            elif ls is not None and ls.safety is not None and ref == ls.safety.model:
                problems.append(f"{at(field)}: {ref!r} is the safety classifier; agents reach it through the shield (safety: true)")
            elif agent.path == "llamaStack" and (ls is None or ref not in ls.models):
                fronted = ", ".join(ls.models) if ls is not None else "none: configure llamaStack"
                problems.append(f"{at(field)}: path llamaStack, but Llama Stack does not front {ref!r}; add it to llamaStack.models or use path direct (fronted: {fronted})")
        if agent.fallback is not None and agent.fallback == agent.model:
            problems.append(f"{at('fallback')}: the fallback is the model itself; name another model or remove fallback")
        if agent.safety and (ls is None or ls.safety is None):
            problems.append(f"{at('safety')}: true needs a shield; configure llamaStack.safety (Llama Guard) or set safety: false")
        if agent.rag and ls is None:
            problems.append(f"{at('rag')}: true needs Llama Stack's vector stores; configure llamaStack or set rag: false")
    return problems
