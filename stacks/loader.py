"""The edge: read the stack's `llm-infra:*` Pulumi config once, validate it, and plan it."""

from __future__ import annotations

import dataclasses
import difflib
import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import config as runtime_config

from stacks.config import PROJECT, StackConfig, parse_config
from stacks.errors import ConfigError, MissingSecret
from stacks.edge import IngressRoute, ingress_routes, route_problems
from stacks.graph import ServiceGraph, build_graph
from stacks.names import name_problems
from stacks.timing import timing_problems
from stacks.plan import Plan, PlanFailed, build_plan


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

    def __init__(self, problems: list[str], plan: Plan | None = None, unplaced: tuple[str, ...] = ()):
        self.problems = problems
        self.plan = plan
        """The plan of what fitted, when the plan is what failed (PlanFailed): `make render` prints its table."""
        self.unplaced = unplaced
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


ROOT = Path(__file__).resolve().parent.parent
"""The project directory (the program's working directory under `pulumi`)."""
CREDENTIAL_KEYS = ("token", "client-key-data", "password")
"""A kubeconfig user's secrets (k8s.io/client-go v0.34.4 tools/clientcmd/api/v1/types.go AuthInfo, the fields tagged
`datapolicy`), besides an auth-provider's `config` (its id-token, refresh-token, client-secret)."""


def provider_problems(config: dict[str, Any], secret: frozenset[str]) -> list[str]:
    """`kubernetes:*` and `pulumi:*` settings that write outside the project, leak a credential, or that the program
    cannot honour. `config` is every stack key -> value, `secret` the keys stored encrypted."""
    problems: list[str] = []
    render = config.get(RENDER_KEY)
    if isinstance(render, str) and render:
        outside = posixpath.isabs(render) and not Path(render).resolve().is_relative_to(ROOT)
        if ".." in render.split("/") or outside:
            problems.append(f"{RENDER_KEY}: {render!r} leads outside the project; the provider writes the rendered manifests "
                            "there: give a directory inside it, e.g. build/yaml-<stack> (no '..')")
    kubeconfig = config.get("kubernetes:kubeconfig")
    if isinstance(kubeconfig, str) and "kubernetes:kubeconfig" not in secret:
        held = _kubeconfig_credentials(kubeconfig)
        if held:
            problems.append(f"kubernetes:kubeconfig: the kubeconfig in the stack file holds {', '.join(held)} in plain text; "
                            "store it encrypted with `pulumi config set --secret kubernetes:kubeconfig \"$(cat <file>)\"`, "
                            "or give the file's path instead of its content")
    disabled = config.get("pulumi:disable-default-providers")
    barred = _listed(disabled)
    hit = next((b for b in barred if b in ("*", "kubernetes")), None)
    if hit is not None:
        problems.append(f"pulumi:disable-default-providers: lists {hit!r}, but the program creates most objects with the default "
                        "Kubernetes provider (only the namespace and the model cache use its own, which takes the stack's "
                        "kubernetes:* settings); take kubernetes out of the list" + (" (name the other packages instead of '*')"
                                                                                     if hit == "*" else ""))
    return problems


def _listed(value: Any) -> list[str]:
    """`pulumi:disable-default-providers` as the engine reads it: a JSON list of package names (pkg/v3 v3.274.1
    resource/deploy/default_providers.go shouldDenyRequest, which trims each and takes `*` for every package)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            return []
    return [v.strip() for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _kubeconfig_credentials(text: str) -> list[str]:
    """The credential fields a kubeconfig's text holds (none for a file path)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    if not isinstance(doc, dict) or not isinstance(doc.get("users"), list):
        return []
    held: set[str] = set()
    for entry in doc["users"]:
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(user, dict):
            continue
        held |= {k for k in CREDENTIAL_KEYS if user.get(k)}
        provider = user.get("auth-provider")
        if isinstance(provider, dict) and isinstance(provider.get("config"), dict) and any(provider["config"].values()):
            held.add("auth-provider config")
    return sorted(held)


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
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    env_secret = set(runtime_config.get_config_secret_keys_env())
    problems += provider_problems(merged, frozenset(k for k in merged if runtime_config.is_config_secret(k) or k in env_secret))
    failed: PlanFailed | None = None
    try:
        stack = stack_from(raw_config(), secret_keys())
        stack = dataclasses.replace(stack, kubernetes=provider_settings())
    except ConfigError as exc:
        problems += exc.problems
        failed = exc if isinstance(exc, PlanFailed) else None
    if problems:
        raise InvalidStack(problems, failed.plan if failed else None, failed.unplaced if failed else ())
    return stack
