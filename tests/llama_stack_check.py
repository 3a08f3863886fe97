"""Check a Llama Stack config the way the 0.7.3 server does at startup, and what it does not check.

1. `${env.X}` substitution (`llama_stack.core.stack.replace_env_vars`) with the pod's environment,
   then `StackConfig` (as `core/server/server.py:create_app` does);
2. every API name, provider type and provider `config` against its config class, and each provider's
   API dependencies (as `core/resolver.py` does when it instantiates them);
3. keys neither model knows: pydantic drops them silently (a vLLM `url:` would vanish), so they fail here;
4. cross-references between registered resources and providers (model -> inference provider, shield
   -> safety provider and a registered model id, the vector-store and safety defaults).

Returns a list of problems; empty means the server would accept the config.
"""

from __future__ import annotations

import copy
import os
import types
import typing
from contextlib import contextmanager
from typing import Any, Iterator

from pydantic import BaseModel, ValidationError

from llama_stack.core.datatypes import StackConfig
from llama_stack.core.distribution import builtin_automatically_routed_apis, get_provider_registry
from llama_stack.core.stack import cast_distro_name_to_string, replace_env_vars
from llama_stack.core.utils.dynamic import instantiate_class_type
from llama_stack_api import Api

# APIs the server implements itself (core/stack.py add_internal_implementations).
INTERNAL_APIS = {Api.inspect, Api.providers, Api.admin, Api.prompts, Api.conversations, Api.connectors}


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _models_in(tp: Any) -> list[type[BaseModel]]:
    """The pydantic models a field annotation can hold (through Optional, unions, lists, dicts)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType, list, tuple, set, dict):
        args = typing.get_args(tp)
        args = args[1:] if origin is dict else args
        return [m for a in args for m in _models_in(a)]
    return [tp] if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def unknown_keys(data: Any, model: type[BaseModel], where: str) -> list[str]:
    """Keys in `data` that `model` (recursively) has no field for."""
    if not isinstance(data, dict):
        return []
    fields = {}
    for name, f in model.model_fields.items():
        fields[name] = f
        if f.alias:
            fields[f.alias] = f
    out = []
    for k, v in data.items():
        if k not in fields:
            out.append(f"{where}.{k}: unknown key for {model.__name__}; the server would silently drop it")
            continue
        candidates = _models_in(fields[k].annotation)
        items: list[tuple[str, Any]] = [(f"{where}.{k}", v)]
        if isinstance(v, list):
            items = [(f"{where}.{k}[{i}]", x) for i, x in enumerate(v)]
        elif isinstance(v, dict) and typing.get_origin(fields[k].annotation) is dict:
            items = [(f"{where}.{k}.{n}", x) for n, x in v.items()]
        for path, x in items:
            if not isinstance(x, dict) or not candidates:
                continue
            # A union of models (e.g. storage backends by `type`): the member that reports fewest unknown keys.
            out += min((unknown_keys(x, m, path) for m in candidates), key=len)
    return out


def check(config: dict[str, Any], env: dict[str, str]) -> list[str]:
    problems: list[str] = []
    with environment(env):
        try:
            resolved = replace_env_vars(copy.deepcopy(config))
        except Exception as exc:  # EnvVarError: an ${env.X} without a value
            return [f"env substitution: {exc}"]
    try:
        cfg = StackConfig(**cast_distro_name_to_string(copy.deepcopy(resolved)))
    except ValidationError as exc:
        return [f"StackConfig: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    problems += unknown_keys(resolved, StackConfig, "config")

    registry = get_provider_registry(cfg)
    served: set[Api] = set()
    for a in cfg.apis:
        try:
            served.add(Api(a))
        except ValueError as exc:
            problems.append(f"apis: {exc}")
    routed = {r.routing_table_api for r in builtin_automatically_routed_apis() if r.router_api in served}
    available = {Api(a) for a in cfg.providers if a in Api._value2member_map_} | routed | INTERNAL_APIS
    for api_name, providers in cfg.providers.items():
        try:
            api = Api(api_name)
        except ValueError as exc:
            problems.append(f"providers.{api_name}: {exc}")
            continue
        if api not in served:
            problems.append(f"providers.{api_name}: has providers but is not listed in apis")
        for i, p in enumerate(providers):
            where = f"providers.{api_name}[{i}] ({p.provider_id})"
            spec = registry.get(api, {}).get(p.provider_type)
            if spec is None:
                problems.append(f"{where}: provider `{p.provider_type}` is not available for API `{api}`")
                continue
            cls = instantiate_class_type(spec.config_class)
            try:
                cls(**p.config)
            except ValidationError as exc:
                problems += [f"{where}.config.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            problems += unknown_keys(p.config, cls, f"{where}.config")
            for dep in spec.api_dependencies:
                if dep not in available:
                    problems.append(f"{where}: needs the `{dep.value}` API, which no provider serves")

    by_api = {api: {p.provider_id for p in ps} for api, ps in cfg.providers.items()}
    res = cfg.registered_resources
    model_ids = set()
    for m in res.models:
        if m.provider_id not in by_api.get("inference", set()):
            problems.append(f"registered_resources.models {m.model_id}: provider {m.provider_id!r} is not an inference provider")
        model_ids.add(f"{m.provider_id}/{m.provider_model_id or m.model_id}")
        if m.model_type == "embedding" and "embedding_dimension" not in (m.metadata or {}):
            problems.append(f"registered_resources.models {m.model_id}: an embedding model needs metadata.embedding_dimension")
    for s in res.shields:
        if s.provider_id not in by_api.get("safety", set()):
            problems.append(f"registered_resources.shields {s.shield_id}: provider {s.provider_id!r} is not a safety provider")
        if s.provider_shield_id not in model_ids:
            problems.append(f"registered_resources.shields {s.shield_id}: provider_shield_id {s.provider_shield_id!r} "
                            f"is not a registered model id ({', '.join(sorted(model_ids))})")
    vs = cfg.vector_stores
    if vs is not None:
        if vs.default_provider_id and vs.default_provider_id not in by_api.get("vector_io", set()):
            problems.append(f"vector_stores.default_provider_id: {vs.default_provider_id!r} is not a vector_io provider")
        emb = vs.default_embedding_model
        if emb is not None and f"{emb.provider_id}/{emb.model_id}" not in model_ids:
            problems.append(f"vector_stores.default_embedding_model: {emb.provider_id}/{emb.model_id} is not registered")
    if cfg.safety is not None and cfg.safety.default_shield_id not in {s.shield_id for s in res.shields}:
        problems.append(f"safety.default_shield_id: {cfg.safety.default_shield_id!r} is not a registered shield")
    return problems
