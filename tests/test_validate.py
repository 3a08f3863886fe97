"""Every rendered object of every stack, and of every GPU / cache mode, passes the Kubernetes
schema in strict mode for 1.34. A missing schema fails, except for the CRDs listed here."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate as kv
import pytest
from kubernetes_validate.utils import SchemaNotFoundError

from tests.crd_schema import crd_errors, is_crd
from tests.conftest import stack_of, run_raw, run_secret_raw, stack_raw, variant
from tools.offline import ROOT, run_stack

K8S_VERSION = "1.34.0"

STACKS = sorted(p.name.split(".")[1] for p in Path(ROOT).glob("Pulumi.*.yaml"))


def one_pod_per_gpu(raw):
    raw["gpuSharing"]["mode"] = "exclusive"
    raw["ollama"]["adapters"] = {"code": raw["ollama"]["adapters"]["code"]}


def multi_lora(raw):
    raw["hfToken"] = "hf_x"  # the Meta-Llama-3-8B base is gated
    raw["ollama"].update(engine="vllm", vllm={"quantization": "fp8"})
    for name, a in raw["ollama"]["adapters"].items():
        a["loraDir"] = f"loras/{name}"


VARIANTS = {
    "multi-lora": multi_lora,
    "dra": lambda r: r["gpuSharing"].update(mode="dra"),
    "exclusive": one_pod_per_gpu,
    "rwx": lambda r: r.update(modelCache={"mode": "rwx", "storageClassName": "longhorn", "storageClassReclaimPolicy": "Retain"}),
    "perPod+class": lambda r: r.update(modelCache={"mode": "perPod", "storageClassName": "models", "provisioner": "rancher.io/local-path"}),
}


def validate_all(objects):
    assert objects
    for o in objects:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if is_crd(o):  # against its published CRD's schema (tests/schemas), never skipped
            assert crd_errors(o) == [], name
            continue
        try:
            assert kv.validate(o, K8S_VERSION, strict=True) == "1.34", name
        except SchemaNotFoundError:
            pytest.fail(f"{name}: no schema for {o['apiVersion']} in Kubernetes {K8S_VERSION} and no CRD in tests/schemas")
        except kv.ValidationError as exc:
            pytest.fail(f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}")


@pytest.mark.parametrize("stack", STACKS)
def test_stack_objects_pass_strict_schema(stack):
    validate_all(run_stack(stack).objects())


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_mode_variants_pass_strict_schema(name):
    raw = variant(VARIANTS[name])
    validate_all(run_secret_raw(raw, ["hfToken"] if "hfToken" in raw else []).objects())


def test_crd_check_catches_a_typo_and_a_wrong_type():
    """The CRD check can fail: a misspelt Middleware field, and a string where the schema wants an integer."""
    mw = run_raw(stack_raw("dev")).find("Middleware", "edge-ollama-chatbot-rate")
    assert crd_errors(mw) == []
    typo = {**mw, "spec": {"rateLimit": {**mw["spec"]["rateLimit"], "averge": 5}}}
    assert any("averge" in e for e in crd_errors(typo))
    wrong = {**mw, "spec": {"rateLimit": {**mw["spec"]["rateLimit"], "average": "ten"}}}
    assert any(e.startswith("spec.rateLimit.average") for e in crd_errors(wrong))


def test_validator_catches_a_typo():
    """The check can fail: a misspelt field in a rendered object is rejected."""
    obj = run_raw(stack_raw("dev")).find("Service", "ollama-base")
    obj["spec"]["sessionAfinity"] = "ClientIP"
    with pytest.raises(kv.ValidationError):
        kv.validate(obj, K8S_VERSION, strict=True)


def rendered_names(run) -> set[tuple[str, str | None, str]]:
    return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in run.objects()}


def planned_names(raw, secrets=frozenset()) -> set[tuple[str, str | None, str]]:
    from stacks.loader import stack_from
    from stacks.names import planned_objects

    s = stack_from(raw, frozenset(secrets) | {"llm-infra:apiKey"})
    return {(c.kind, c.namespace, c.name) for c in planned_objects(s.config, s.plan, s.graph) if not c.controller}


@pytest.mark.parametrize("stack", STACKS)
def test_the_name_registry_lists_exactly_what_renders(stack):
    """The names checked at the edge are the names the components create: no object escapes the check."""
    raw = stack_raw(stack)
    assert planned_names(raw, frozenset({"llm-infra:hfToken"})) == rendered_names(run_stack(stack))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_the_name_registry_lists_exactly_what_renders_in_every_mode(name):
    raw = variant(VARIANTS[name])
    secrets = ["hfToken"] if "hfToken" in raw else []
    assert planned_names(raw, frozenset(f"llm-infra:{k}" for k in secrets)) == rendered_names(run_secret_raw(raw, secrets))


def test_the_name_registry_covers_llama_stack_agents_and_per_pod_claims():
    raw = variant(lambda r: r.update(modelCache={"mode": "perPod", "storageClassName": "local-path", "storageClassReclaimPolicy": "Retain", "size": "200Gi"}), "prod")
    secrets = frozenset({"llm-infra:hfToken"})
    names = planned_names(raw, secrets)
    assert ("PersistentVolumeClaim", "llama-serve", "model-cache-llamastack-server") in names
    assert ("ConfigMap", "llama-serve", "agent-workshop-chat") in names
    assert names == rendered_names(run_secret_raw(raw, ["hfToken"]))


def test_a_namespace_may_start_with_a_digit():
    """Namespaces are DNS-1123 labels (Services are DNS-1035: a letter first); the registry applies each rule."""

    assert stack_of(variant(lambda r: r.update(namespace="0-llm"))).config.namespace == "0-llm"
