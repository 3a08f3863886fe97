"""Upgrade and rollback: changing an image or a model rolls the serving pods and leaves the model cache alone;
going back to the previous config renders exactly what was there before (what `pulumi up` of it applies)."""

from __future__ import annotations

import hashlib

from tests.conftest import run_raw, run_secret_raw, stack_raw, variant
from tools.offline import Run

KEEP = ("Namespace", "PersistentVolume", "PersistentVolumeClaim")


def by_kind(run: Run, kinds: tuple[str, ...]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in run.objects() if o["kind"] in kinds}


def test_a_new_ollama_image_rolls_every_server_and_keeps_the_cache():
    before = run_raw(stack_raw("dev"))
    after = run_raw(variant(lambda r: r["ollama"].update(image="ollama/ollama:0.33.0")))
    assert by_kind(before, KEEP) == by_kind(after, KEEP)  # nothing that holds model data changes
    for (kind, name), old in by_kind(before, ("Deployment",)).items():
        new = by_kind(after, ("Deployment",))[(kind, name)]
        images = lambda d: {c["image"] for c in d["spec"]["template"]["spec"]["containers"] + d["spec"]["template"]["spec"].get("initContainers", [])}  # noqa: E731
        assert images(old) == {"ollama/ollama:0.32.15"} and images(new) == {"ollama/ollama:0.33.0"}
        # one pod at a time, never two holding the GPU: a rollout cannot deadlock on a full GPU
        assert new["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    claims = [r for r in after.resources if r.is_k8s_object and r.inputs.get("kind") in KEEP]
    assert claims and all(r.options["retainOnDelete"] for r in claims)


def test_a_new_model_rolls_its_server_only():
    before = run_secret_raw(stack_raw("prod"), ["hfToken"])
    after = run_secret_raw(variant(lambda r: r["vllm"]["models"]["granite-8b"].update(model="ibm-granite/granite-3.1-8b-instruct",
                                                                                      maxModelLen=4096), "prod"), ["hfToken"])
    old, new = by_kind(before, ("Deployment",)), by_kind(after, ("Deployment",))
    changed = sorted(name for (_, name), d in new.items() if d != old[("Deployment", name)])
    # Llama Stack rolls too: its provider's max_tokens follows the model's context (4096 / 2), and the config hash changes
    assert changed == ["llamastack-server", "vllm-granite-8b"]
    assert by_kind(before, KEEP) == by_kind(after, KEEP)


def test_rolling_back_is_the_previous_config():
    """pulumi up of the previous commit's stack file renders the previous objects exactly: a rollback."""
    first = run_raw(stack_raw("dev"))
    changed = run_raw(variant(lambda r: r["ollama"]["adapters"]["chatbot"].update(contextLength=1024)))
    back = run_raw(stack_raw("dev"))
    assert first.objects() != changed.objects() and first.objects() == back.objects()


def test_long_starts_get_pulumi_waits_sized_from_their_budget():
    """Pulumi's default wait for a Deployment is 10 minutes; the 70B's first start is budgeted at 3330 s."""
    run = run_secret_raw(stack_raw("prod"), ["hfToken"])
    opts = run.resource("Deployment", "vllm-llama-70b").options["customTimeouts"]
    assert run.find("Deployment", "vllm-llama-70b")["spec"]["progressDeadlineSeconds"] == 3330
    assert opts == {"create": "4995s", "update": "4995s"}  # 1.5 x the budget: well past the 10-minute default


def _objects_by_urn_name(run: Run) -> dict[str, tuple[str, str]]:
    """Pulumi resource name -> (kind, object name): what `pulumi up` matches old and new objects by."""
    return {r.name: (r.inputs["kind"], r.inputs["metadata"]["name"]) for r in run.resources if r.is_k8s_object}


def test_a_second_replica_adds_objects_and_renames_none():
    """replicas 1 -> 2 used to rename vllm-<m> to vllm-<m>-0: a replace whose new pod fought the old for its GPU."""
    room = lambda r: r["vllm"]["models"].pop("mixtral")  # noqa: E731  (the lab's GPUs are full otherwise)
    one = run_secret_raw(variant(room, "lab"), ["hfToken"])
    two = run_secret_raw(variant(lambda r: (room(r), r["vllm"]["models"]["llama-3b-awq"].update(replicas=2)), "lab"), ["hfToken"])
    before, after = _objects_by_urn_name(one), _objects_by_urn_name(two)
    assert {n: o for n, o in after.items() if n in before} == before  # every object keeps its URN and its name
    added = sorted(o for n, o in after.items() if n not in before)
    assert ("Deployment", "vllm-llama-3b-awq-1") in added and all(name.endswith("-1") for _, name in added)


def test_rotating_the_api_key_restarts_exactly_the_pods_that_read_it():
    """vLLM and Llama Stack read the key from the Secret at start: a new key must roll them (Ollama never reads it)."""
    def templates(run: Run) -> dict[str, dict]:
        return {o["metadata"]["name"]: o["spec"]["template"]["metadata"].get("annotations", {})
                for o in run.objects() if o["kind"] == "Deployment" and o["spec"]["replicas"]}
    old = templates(run_secret_raw(stack_raw("prod"), ["hfToken"]))
    new = templates(run_secret_raw(variant(lambda r: r.update(apiKey="k" * 40), "prod"), ["hfToken"]))
    changed = sorted(n for n in old if old[n] != new[n])
    assert changed == sorted(n for n in old if n.startswith("vllm-") or n == "llamastack-server") and len(changed) == 6
    assert {new[n]["llm-infra/api-key-sha256"] for n in changed} == {hashlib.sha256(b"k" * 40).hexdigest()[:16]}


def shield_off(raw: dict) -> None:
    """What a user edits to turn the shield off: llamaStack.safety, and the agents that asked for it."""
    raw["llamaStack"].pop("safety")
    for agent in raw.get("agents", {}).values():
        agent["safety"] = False


def test_the_guard_keeps_its_objects_when_the_shield_is_turned_off_or_on():
    """Removing llamaStack.safety moves the guard's server from its SafetyModel to the Topology; each side names the
    other as an alias, so the engine updates its Deployment, Service and PDB instead of creating them again."""
    on = run_secret_raw(stack_raw("prod"), ["hfToken"])
    off = run_secret_raw(variant(shield_off, "prod"), ["hfToken"])
    inner = next(r for r in on.resources if r.name == "safety-llama-guard-vllm")
    plain = next(r for r in off.resources if r.name == "vllm-llama-guard")
    assert [(a["name"], a["parentUrn"].endswith("llm-infra:stack:Topology::llm-infra")) for a in inner.options["aliases"]] == [
        ("vllm-llama-guard", True)]
    assert [(a["name"], a["parentUrn"].endswith("$llm-infra:serving:SafetyModel::safety-llama-guard")) for a in plain.options["aliases"]] == [
        ("safety-llama-guard-vllm", True)]
    # The children's names carry their parent's as a prefix, which is how the engine aliases them too.
    kids = lambda run, parent: sorted(r.name.removeprefix(parent) for r in run.resources if r.options.get("parent", "").endswith(f"::{parent}"))  # noqa: E731
    assert kids(on, "safety-llama-guard-vllm") == kids(off, "vllm-llama-guard") == ["-0", "-pdb", "-service"]
