"""The edge: read the stack's `llm-infra:*` Pulumi config once, validate it, and plan it."""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from stacks.config import PROJECT, StackConfig, parse_config
from stacks.errors import ConfigError, MissingSecret
from stacks.edge import IngressRoute, ingress_routes, route_problems
from stacks.graph import ServiceGraph, build_graph
from stacks.names import name_problems
from stacks.timing import timing_problems
from stacks.plan import Plan, build_plan


@dataclass(frozen=True)
class Stack:
    """A validated stack: its config, the plan and the service graph every component renders from."""

    config: StackConfig
    plan: Plan
    graph: ServiceGraph
    routes: tuple[IngressRoute, ...] = ()
    """The ingress routes, from the graph (stacks/edge.py)."""
    kubernetes: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The stack's `kubernetes:*` settings (context, kubeconfig, renderYamlToDirectory, ...), for the program's own
    provider: an explicit provider reads no stack config, so without them it would reach another cluster than the
    default provider (or, with renderYamlToDirectory, call a cluster while the rest renders)."""


class InvalidStack(pulumi.RunError):
    """Raised instead of a traceback: Pulumi prints only the message for a RunError."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack configuration:\n  " + "\n  ".join(problems))


def _decode(value: Any) -> Any:
    """Structured config reaches the program as JSON text; plain strings stay strings."""
    if value == "null":  # `key: ~` in a stack file
        return None
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


KNOWN_NAMESPACES = (PROJECT, "kubernetes", "pulumi")
"""Config namespaces a stack file may use: this project's and its provider's (plus Pulumi's own)."""


def namespace_problems(keys: list[str]) -> list[str]:
    """A key under any other namespace (`llm-infr:`, `llm_infra:`) is ignored by everything: say so."""
    problems = []
    for k in sorted(keys):
        ns, _, rest = k.partition(":")
        if ns not in KNOWN_NAMESPACES:
            close = difflib.get_close_matches(ns, KNOWN_NAMESPACES, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}:{rest}'? " if close else ""
            problems.append(f"{k}: config namespace {ns!r} is not read by anything; {hint}this project's keys are {PROJECT}:<key>")
    return problems


def all_config_keys() -> list[str]:
    return list({**runtime_config.get_config_env(), **runtime_config.CONFIG.get()})


RENDER_KEY = "kubernetes:renderYamlToDirectory"
PROVIDER_SETTINGS = {
    # `kubernetes:<key>` -> the Provider argument (pulumi-kubernetes 4.x provider config, schema.json `config`).
    "kubeconfig": "kubeconfig", "context": "context", "cluster": "cluster", "clusterIdentifier": "cluster_identifier",
    "namespace": "namespace", "renderYamlToDirectory": "render_yaml_to_directory",
    "enableServerSideApply": "enable_server_side_apply", "enableConfigMapMutable": "enable_config_map_mutable",
    "enableSecretMutable": "enable_secret_mutable", "deleteUnreachable": "delete_unreachable",
    "skipUpdateUnreachable": "skip_update_unreachable", "suppressDeprecationWarnings": "suppress_deprecation_warnings",
    "suppressHelmHookWarnings": "suppress_helm_hook_warnings",
}


def provider_settings() -> dict[str, Any]:
    """The stack's `kubernetes:*` settings the program's own provider must share with the default provider."""
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    out: dict[str, Any] = {}
    for name in PROVIDER_SETTINGS:
        value = merged.get(f"kubernetes:{name}")
        if value in (None, ""):
            continue
        if name.startswith(("enable", "delete", "skip", "suppress")):
            value = str(value).lower() == "true"
        elif runtime_config.is_config_secret(f"kubernetes:{name}"):
            value = pulumi.Output.secret(value)
        out[name] = value
    return out


def raw_config() -> dict[str, Any]:
    """Every `llm-infra:<key>` the engine passed to this program, as top-level key -> value."""
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{PROJECT}:"
    return {k[len(prefix):]: _decode(v) for k, v in sorted(merged.items()) if k.startswith(prefix)}


def secret_keys() -> frozenset[str]:
    """The `llm-infra:*` keys the engine marked secret (stored `secure:`)."""
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    env = set(runtime_config.get_config_secret_keys_env())
    return frozenset(k for k in merged if k.startswith(f"{PROJECT}:") and (runtime_config.is_config_secret(k) or k in env))


def missing_secrets(raw: dict[str, Any], secrets: frozenset[str] = frozenset()) -> list[str]:
    """The secret keys (`apiKey`, `hfToken`) this config needs and does not have, whatever else is wrong with it."""
    try:
        parse_config(raw, secrets)
    except ConfigError as exc:
        return sorted({p.key for p in exc.problems if isinstance(p, MissingSecret)})
    return []


def stack_from(raw: dict[str, Any], secrets: frozenset[str] = frozenset()) -> Stack:
    cfg = parse_config(raw, secrets)
    plan = build_plan(cfg)
    graph = build_graph(cfg, plan)
    problems = name_problems(cfg, plan, graph) + timing_problems(cfg, plan) + route_problems(cfg, graph)
    if problems:
        raise ConfigError(problems)
    return Stack(cfg, plan, graph, tuple(ingress_routes(cfg, graph)))


def load_stack() -> Stack:
    """Parse and plan the running stack's config; an invalid one ends the program with its problems."""
    problems = namespace_problems(all_config_keys())
    try:
        stack = stack_from(raw_config(), secret_keys())
        stack = dataclasses.replace(stack, kubernetes=provider_settings())
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise InvalidStack(problems)
    return stack
