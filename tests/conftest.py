"""Shared helpers: the dev stack's config as plain data, and running the program on a variant."""

from __future__ import annotations

import copy
import json
from typing import Any, Callable

import pytest

from stacks.errors import ConfigError
from stacks.loader import InvalidStack, stack_from
from tools.offline import Run, run_program, stack_config


def stack_raw(stack: str = "dev") -> dict[str, Any]:
    """Top-level key -> value, as the program sees Pulumi.<stack>.yaml (plus Pulumi.yaml defaults)."""
    config, _ = stack_config(stack)
    return {k.split(":", 1)[1]: json.loads(v) if v[:1] in "{[" else v for k, v in config.items()}


STORED_SECRET = ("apiKey",)
"""Keys the stack files store `secure:`: a variant keeps them secret unless a test says otherwise."""


def _stored(raw: dict[str, Any]) -> list[str]:
    return [k for k in STORED_SECRET if k in raw]


def run_raw(raw: dict[str, Any]) -> Run:
    return run_program({f"llm-infra:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()},
                       [f"llm-infra:{k}" for k in _stored(raw)])


def variant(edit: Callable[[dict[str, Any]], Any], stack: str = "dev") -> dict[str, Any]:
    raw = copy.deepcopy(stack_raw(stack))
    edit(raw)
    return raw


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        stack_from(raw, frozenset(f"llm-infra:{k}" for k in _stored(raw)))
    return exc.value.problems


def program_problems(raw: dict[str, Any]) -> list[str]:
    """The same, but through the real program under mocks."""
    with pytest.raises(InvalidStack) as exc:
        run_raw(raw)
    return exc.value.problems


@pytest.fixture(scope="session")
def dev_run() -> Run:
    return run_raw(stack_raw("dev"))


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def run_secret_raw(raw: dict[str, Any], secret_keys: list[str]) -> Run:
    """Like run_raw, with some keys marked secret (as `secure:` values are)."""
    return run_program({f"llm-infra:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()},
                       [f"llm-infra:{k}" for k in {*secret_keys, *_stored(raw)}])


def stack_problems(raw: dict[str, Any], secrets: tuple[str, ...] = ("hfToken", *STORED_SECRET)) -> list[str]:
    """Config problems of a variant, with the given keys counted as secret."""
    with pytest.raises(ConfigError) as exc:
        stack_from(raw, frozenset(f"llm-infra:{k}" for k in secrets))
    return exc.value.problems


def stack_of(raw: dict[str, Any]):
    """The validated Stack of a variant, its token and key counted secret (as the stack files store them)."""
    return stack_from(raw, frozenset(f"llm-infra:{k}" for k in ("hfToken", *STORED_SECRET)))


def plan_of(raw: dict[str, Any], secrets: tuple[str, ...] = ("hfToken", *STORED_SECRET)):
    return stack_from(raw, frozenset(f"llm-infra:{k}" for k in secrets)).plan


def pod_templates(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod template the stack renders: a Deployment's by its name, a LeaderWorkerSet's leader by its name and its
    workers' as `<name>/worker`."""
    out = {}
    for o in objects:
        if o["kind"] == "Deployment":
            out[o["metadata"]["name"]] = o["spec"]["template"]
        elif o["kind"] == "LeaderWorkerSet":
            lwt = o["spec"]["leaderWorkerTemplate"]
            out[o["metadata"]["name"]] = lwt["leaderTemplate"]
            out[o["metadata"]["name"] + "/worker"] = lwt["workerTemplate"]
    return out
