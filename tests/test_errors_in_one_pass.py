"""Issue 22 item 4: every config problem in one run, "did you mean" for names, and fit errors that name the model at
fault, the GPUs' free memory, a lower gpuMemoryUtilization that would place it, and the plan of what did fit."""

from __future__ import annotations

import contextlib
import io

import pytest
import yaml

from stacks.errors import ConfigError
from stacks.loader import stack_from
from stacks.plan import PlanFailed
from tests.conftest import stack_of, stack_problems, variant
from tools import render

TYPO = "meta-llama/Llama-3.1-8B-Instruc"
REPO = "meta-llama/Llama-3.1-8B-Instruct"


def models(r):
    return r["vllm"]["models"]


def only_once(problems, start):
    hits = [p for p in problems if p.startswith(start)]
    assert len(hits) == 1, problems
    return hits[0]


# ------------------------------------------------------------------------------------------ all errors in one pass


def test_a_key_typo_and_a_model_typo_are_reported_in_one_run():
    problems = stack_problems(variant(lambda r: (r.update(gpuu=1), models(r)["llama-8b"].update(model=TYPO)), "lab"))
    only_once(problems, "llm-infra:gpuu: unknown key")
    only_once(problems, f"llm-infra:vllm.models.llama-8b.model: {TYPO!r} is not in the model catalog; did you mean {REPO!r}?")
    assert len(problems) == len(set(problems)) == 2, problems


def test_a_model_whose_own_entry_is_refused_still_gets_its_catalog_check():
    """`cpu` missing takes the whole entry out of the checked config; its repo is still looked up, from the raw value."""
    problems = stack_problems(variant(lambda r: (models(r)["llama-8b"].pop("cpu"), models(r)["llama-8b"].update(model=TYPO)), "lab"))
    assert problems == ["llm-infra:vllm.models.llama-8b.cpu: required key is missing; add it to the stack config",
                        f"llm-infra:vllm.models.llama-8b.model: {TYPO!r} is not in the model catalog; did you mean {REPO!r}? "
                        "(a model the catalog lacks: add it with `make catalog MODEL=<org>/<name>`, or describe it with an "
                        "arch block from its config.json)"]


def test_a_refused_entry_is_not_reported_missing_where_others_name_it():
    """granite-8b's entry is refused (cpu is text): the agents that use it get no "'granite-8b' is not a vllm.models key",
    while a real misspelling in another agent is reported in the same run, its choices still listing granite-8b."""
    def edit(r):
        models(r)["granite-8b"]["cpu"] = "four"
        r["agents"]["workshop-chat"]["model"] = "llama-3bb"

    problems = stack_problems(variant(edit, "prod"))
    assert "llm-infra:vllm.models.granite-8b.cpu: Input should be a valid number, got 'four'" in problems
    assert not any("'granite-8b' is not a" in p for p in problems), problems
    hit = only_once(problems, "llm-infra:agents.workshop-chat.model: 'llama-3bb' is not a vllm.models key; use one of: ")
    assert "granite-8b" in hit and hit.endswith("(did you mean 'llama-3b'?)")


def test_an_empty_value_does_not_hide_the_other_problems():
    problems = stack_problems(variant(lambda r: (r.update(namespace=None), models(r)["mixtral"].update(model=TYPO)), "lab"))
    only_once(problems, "llm-infra:namespace: empty value")
    only_once(problems, f"llm-infra:vllm.models.mixtral.model: {TYPO!r} is not in the model catalog; did you mean")


def test_a_refused_ollama_block_still_checks_its_tag():
    problems = stack_problems(variant(lambda r: (r["ollama"]["base"].update(cpu="x"), r["ollama"].update(baseModel="llama3:8bb"))))
    only_once(problems, "llm-infra:ollama.base.cpu: Input should be a valid number")
    only_once(problems, "llm-infra:ollama.baseModel: 'llama3:8bb' is not in the model catalog; did you mean 'llama3:8b'?")
    assert not any("serves nothing" in p for p in problems), problems


def test_broken_nodes_still_leave_the_model_lookups():
    """Without valid nodes no cross-field check can run; the catalog lookups of the raw models still do."""
    problems = stack_problems(variant(lambda r: (r["nodes"][0].pop("cpu"), models(r)["mixtral"].update(model=TYPO)), "lab"))
    assert problems[0] == "llm-infra:nodes[0].cpu: required key is missing; add it to the stack config"
    only_once(problems, f"llm-infra:vllm.models.mixtral.model: {TYPO!r} is not in the model catalog; did you mean {REPO!r}?")
    assert len(problems) == 2, problems


# ------------------------------------------------------------------------------------------ did you mean


def test_a_repo_in_another_case_is_the_catalog_s():
    hit = only_once(stack_problems(variant(lambda r: models(r)["mixtral"].update(model=REPO.lower()), "lab")),
                    "llm-infra:vllm.models.mixtral.model:")
    assert f"did you mean {REPO!r}?" in hit
    assert f"MODEL={REPO.lower()}" not in hit  # never `make catalog` the misspelling


def test_the_adapter_pool_model_and_llama_stack_models_suggest_too():
    problems = stack_problems(variant(lambda r: r["llamaStack"]["models"].append("granite-8"), "prod"))
    assert only_once(problems, "llm-infra:llamaStack.models[3]: 'granite-8' is not a vllm.models key").endswith(
        "(did you mean 'granite-8b'?)")
    problems = stack_problems(variant(lambda r: r["llamaStack"]["safety"].update(model="llama-gaurd"), "prod"))
    assert only_once(problems, "llm-infra:llamaStack.safety.model: 'llama-gaurd' is not a vllm.models key").endswith(
        "(did you mean 'llama-guard'?)")
    problems = stack_problems(variant(lambda r: r["ollama"].update(engine="vllm", vllm={"model": REPO.replace("8B", "8b")})))
    assert f"llm-infra:ollama.vllm.model: {REPO.replace('8B', '8b')!r} is not in the model catalog (did you mean {REPO!r}?)" in problems


# ------------------------------------------------------------------------------------------ the fit error

ADDED = {"model": REPO, "maxModelLen": 8192, "gpuMemoryUtilization": 0.6, "cpu": 4, "memoryGiB": 24}


def test_the_model_added_is_the_one_named_not_the_one_it_pushed_out():
    """Placed biggest first, a 0.6 model added to lab took the GPU of llama-8b-multi's two 0.45 replicas, and the failure
    named those ("2 of its 1 replicas"). Placed last, the new model is the one without room; the others that could make
    room are named as well."""
    problems = stack_problems(variant(lambda r: models(r).update({"llama-8b-b": dict(ADDED)}), "lab"))
    assert problems[0].startswith("llm-infra:vllm.models.llama-8b-b: no room for vllm-llama-8b-b: each needs 0.6 of 1 GPU(s)")
    assert problems[0].endswith("; every other model fits without it (so would the rest without one of deepseek-coder, "
                                "llama-8b, llama-8b-multi, mixtral instead)")
    assert not any("llama-8b-multi: no room" in p or "maxReplicas" in p for p in problems), problems
    # No lower share is offered: the most free GPU (8.33 GiB) holds no share that fits the 8B model's 15 GiB of weights.
    assert "at gpuMemoryUtilization" not in problems[0]


def test_the_replica_count_counts_the_reserved_replicas():
    """Not "(2 of its 1 replicas)": the model places replicas + its autoscaler's reserve, here 1 + 1."""
    def edit(r):
        r["vllm"]["models"] = {"llama-8b-multi": dict(models(r)["llama-8b-multi"], gpuMemoryUtilization=0.99)}

    problems = stack_problems(variant(edit, "lab"))
    assert problems[0].startswith("llm-infra:vllm.models.llama-8b-multi: no room for vllm-llama-8b-multi, "
                                  "vllm-llama-8b-multi-1 (2 of its 2 replicas, 1 of them reserved for autoscale): ")
    assert "free GiB per GPU on node l40-node: 0-3: 44.40 each;" in problems[0]


SMALL = {"model": "AMead10/Llama-3.2-3B-Instruct-AWQ", "maxModelLen": 4096, "cpu": 2, "memoryGiB": 8}


def test_the_fit_error_names_the_lower_share_that_places_the_model():
    problems = stack_problems(variant(lambda r: models(r).update(small=dict(SMALL, gpuMemoryUtilization=0.2)), "lab"))
    assert "free GiB per GPU on node l40-node: 0: 3.89 (held by vllm-deepseek-coder), 1: 8.33 (held by vllm-mixtral)" in problems[0]
    assert "; at gpuMemoryUtilization 0.15 (0.05 less) it would fit: vllm-small on GPU 1 of node l40-node (a KV cache " \
           "for 5 sequences of 4096 tokens at once)" in problems[0]
    # And it does: at 0.15 the stack plans, with vllm-small on GPU 1; at 0.16 it has no room.
    stack = stack_of(variant(lambda r: models(r).update(small=dict(SMALL, gpuMemoryUtilization=0.15)), "lab"))
    w = next(w for w in stack.plan.vllm if w.key == "small")
    assert (w.node, [g.index for g in w.gpus], w.max_full_context_seqs) == ("l40-node", [1], 5)
    assert stack_problems(variant(lambda r: models(r).update(small=dict(SMALL, gpuMemoryUtilization=0.16)), "lab"))[0].startswith(
        "llm-infra:vllm.models.small: no room for vllm-small")


def test_the_free_memory_of_every_node_the_model_may_use():
    def edit(r):
        r["gpuSharing"]["mode"] = "exclusive"
        models(r)["llama-405b"].update(gpuMemoryUtilization=0.6)
        models(r)["small"] = {"model": REPO, "pool": "h100", "maxModelLen": 8192, "gpuMemoryUtilization": 0.3, "cpu": 4,
                              "memoryGiB": 16}

    problem = stack_problems(variant(edit, "scale"))[0]
    assert problem.startswith("llm-infra:vllm.models.small: no room for vllm-small")
    assert ("free GiB per GPU on node h100-a: 0-7: 30.07 each (held whole by vllm-llama-405b-0, a multi-node replica); "
            "node h100-b: 0-7: 30.07 each (held whole by vllm-llama-405b-0, a multi-node replica)") in problem


# ------------------------------------------------------------------------------------------ the plan of what fitted


def test_a_failed_plan_carries_what_was_placed():
    with pytest.raises(PlanFailed) as exc:
        stack_from(variant(lambda r: models(r).update({"llama-8b-b": dict(ADDED)}), "lab"), frozenset({"llm-infra:hfToken"}))
    assert isinstance(exc.value, ConfigError)
    assert exc.value.unplaced == ("vllm-llama-8b-b",)
    placed = sorted(w.deployment_name for w in exc.value.plan.vllm)
    assert placed == ["vllm-deepseek-coder", "vllm-llama-3b-awq", "vllm-llama-8b", "vllm-llama-8b-multi",
                      "vllm-llama-8b-multi-1", "vllm-mixtral"]


def render_variant(tmp_path, edit):
    """`make render CONFIG=<file>` of a lab variant (the token left out: the render fills in a placeholder)."""
    raw = variant(lambda r: (edit(r), r.pop("hfToken", None)), "lab")
    config = tmp_path / "Pulumi.lab22.yaml"
    config.write_text(yaml.safe_dump({"config": {f"llm-infra:{k}": v for k, v in raw.items()}}, sort_keys=False))
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = render.main(["--stack", "lab22", "--config", str(config), "--out", str(tmp_path / "out")])
    assert code == 2 and not (tmp_path / "out").exists()
    return out.getvalue(), err.getvalue()


def test_make_render_prints_the_table_of_what_fitted_before_the_errors(tmp_path):
    text, err = render_variant(tmp_path, lambda r: models(r).update({"llama-8b-b": dict(ADDED)}))
    assert text.startswith("The plan failed; this is what was placed (the errors below say what does not fit).\n"
                           "GPU plan (GiB; gpuSharing.mode=visible-devices)\n")
    assert "l40-node/3  vllm-llama-8b-multi-1 (reserved)" in text
    assert "\n  NOT PLACED (no room): vllm-llama-8b-b\n" in text
    assert "vllm-llama-8b-b " not in text.split("NOT PLACED")[0]
    assert "llm-infra:vllm.models.llama-8b-b: no room for vllm-llama-8b-b" in err


def test_a_config_error_prints_no_plan(tmp_path):
    """Only a plan that failed has a table: a schema error prints the errors alone, all of them."""
    text, err = render_variant(tmp_path, lambda r: (r.update(gpuu=1), models(r)["mixtral"].update(model=TYPO)))
    assert text == ""
    assert "llm-infra:gpuu: unknown key" in err and f"llm-infra:vllm.models.mixtral.model: {TYPO!r}" in err
