"""Upgrade and rollback: changing an image or a model rolls the serving pods and leaves the model cache alone;
going back to the previous config renders exactly what was there before (what `pulumi up` of it applies)."""

from __future__ import annotations

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
