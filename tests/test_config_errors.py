"""Every kind of invalid config exits with one line per problem naming the full key, and no files."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.conftest import stack_of, problems_of, program_problems, stack_raw, variant
from tools.offline import ROOT

A = "llm-infra:ollama.adapters"


def chatbot(raw):
    return raw["ollama"]["adapters"]["chatbot"]


CASES = [
    ("wrong type", lambda r: chatbot(r).update(parallel="twelve"), f"{A}.chatbot.parallel: Input should be a valid integer"),
    ("float for a count", lambda r: chatbot(r).update(replicas=1.5), f"{A}.chatbot.replicas: Input should be a valid integer"),
    ("typo'd key", lambda r: chatbot(r).update(gpuu=0), f"{A}.chatbot.gpuu: unknown key; did you mean 'gpu'?"),
    ("typo'd top-level key", lambda r: r.update(olama={}), "llm-infra:olama: unknown key; did you mean 'ollama'?"),
    ("zero replicas", lambda r: chatbot(r).update(replicas=0), f"{A}.chatbot.replicas: Input should be greater than or equal to 1"),
    ("negative parallel", lambda r: r["ollama"]["base"].update(parallel=-2), "llm-infra:ollama.base.parallel: Input should be greater than or equal to 1"),
    ("zero VRAM", lambda r: r["nodes"][0]["gpus"][1].update(vramGiB=0), "llm-infra:nodes[0].gpus[1].vramGiB: 0 GiB is not a plausible GPU memory (1 to 1024 GiB)"),
    ("GPU that does not exist", lambda r: chatbot(r).update(gpu=2), f"{A}.chatbot.gpu: node workstation has no GPU 2 (it has: 0, 1)"),
    ("malformed duration", lambda r: chatbot(r).update(keepAlive="10 minutes"), f"{A}.chatbot.keepAlive: '10 minutes' is not a duration"),
    ("missing required key", lambda r: chatbot(r).pop("contextLength"), f"{A}.chatbot.contextLength: required key is missing"),
    ("nothing to serve", lambda r: r.pop("ollama"), "llm-infra:ollama: the stack serves nothing; configure ollama or vllm.models"),
    ("missing base server", lambda r: r["ollama"].pop("base"), "llm-infra:ollama.base: required key is missing"),
    ("unpinned image", lambda r: r["ollama"].update(image="ollama/ollama:latest"), "llm-infra:ollama.image: 'ollama/ollama:latest' is not pinned"),
    ("untagged image", lambda r: r["ollama"].update(image="ollama/ollama"), "llm-infra:ollama.image: 'ollama/ollama' is not pinned"),
    ("unknown GPU mode", lambda r: r["gpuSharing"].update(mode="mps"), "llm-infra:gpuSharing.mode: Input should be 'dra', 'visible-devices' or 'exclusive'"),
    ("adapter of another base", lambda r: chatbot(r).update(base="llama3:8b-text-q4_0"), f"{A}.chatbot.base: adapter was trained on 'llama3:8b-text-q4_0'"),
    ("adapter not GGUF", lambda r: chatbot(r).update(file="adapters/chatbot.safetensors"), f"{A}.chatbot.file: 'adapters/chatbot.safetensors' has the wrong form"),
    ("adapter outside the cache", lambda r: chatbot(r).update(file="../etc/x.gguf"), f"{A}.chatbot.file: '../etc/x.gguf' must be a path inside the model cache"),
    ("context above trained", lambda r: chatbot(r).update(contextLength=16384), f"{A}.chatbot.contextLength: 16384 is above llama3:8b's trained context of 8192"),
    ("model not in catalog", lambda r: r["ollama"].update(baseModel="llama9:1t"), "llm-infra:ollama.baseModel: 'llama9:1t' is not in the model catalog"),
    ("bad GPU uuid", lambda r: r["nodes"][0]["gpus"][0].update(uuid="GPU-0"), "llm-infra:nodes[0].gpus[0].uuid: 'GPU-0' has the wrong form"),
    ("visible-devices without uuid", lambda r: r["nodes"][0]["gpus"][0].pop("uuid"), "llm-infra:nodes[0].gpus[0].uuid: gpuSharing.mode visible-devices pins GPUs by UUID"),
    ("unknown node", lambda r: chatbot(r).update(node="laptop"), f"{A}.chatbot.node: no node named 'laptop'"),
    ("reserve eats the node", lambda r: r["nodes"][0]["reserve"].update(cpu=16), "llm-infra:nodes[0].reserve.cpu: reserve 16 leaves no CPU"),
    ("rwx without a class", lambda r: r["modelCache"].update(mode="rwx"), "llm-infra:modelCache.storageClassName: modelCache.mode rwx needs a StorageClass"),
    ("bad size", lambda r: r["modelCache"].update(size="100GB"), "llm-infra:modelCache.size: '100GB' has the wrong form"),
    ("bad adapter name", lambda r: r["ollama"]["adapters"].update(Chat_Bot=r["ollama"]["adapters"].pop("chatbot")), f"{A}.Chat_Bot: adapter name must be a DNS label"),
]


@pytest.mark.parametrize("edit,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_value_names_key_and_fix(edit, expected):
    problems = problems_of(variant(edit))
    assert any(p.startswith(expected) for p in problems), problems


def test_dra_needs_uuid_or_pci_bus_id():
    def edit(r):
        r["gpuSharing"]["mode"] = "dra"
        for g in r["nodes"][0]["gpus"]:
            g.pop("uuid"), g.pop("pciBusID")

    problems = problems_of(variant(edit))
    assert problems[0].startswith("llm-infra:nodes[0].gpus[0]: gpuSharing.mode dra selects GPUs by uuid or pciBusID")


def test_several_nodes_need_node_named():
    def edit(r):
        second = dict(r["nodes"][0], name="second")
        r["nodes"].append(second)

    problems = problems_of(variant(edit))
    assert "llm-infra:ollama.base.node: the stack has 2 nodes; say which one (workstation, second)" in problems


def test_all_problems_reported_at_once():
    def edit(r):
        chatbot(r)["gpu"] = 5
        r["ollama"]["base"]["contextLength"] = 9000

    problems = problems_of(variant(edit))
    assert len(problems) == 2
    assert problems[0].startswith("llm-infra:ollama.base.contextLength") and problems[1].startswith(f"{A}.chatbot.gpu")


def test_program_stops_with_the_problems_not_a_traceback():
    problems = program_problems(variant(lambda r: chatbot(r).update(gpu=3)))
    assert problems == [f"{A}.chatbot.gpu: node workstation has no GPU 3 (it has: 0, 1)"]


def test_render_of_invalid_config_exits_nonzero_and_writes_nothing(tmp_path):
    raw = variant(lambda r: chatbot(r).update(queue=0))
    cfg = tmp_path / "Pulumi.bad.yaml"
    cfg.write_text(yaml.safe_dump({"config": {f"llm-infra:{k}": v for k, v in raw.items()}}))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "tools.render", "--stack", "bad", "--config", str(cfg), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{A}.chatbot.queue: Input should be greater than or equal to 1" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not out.exists()


def test_dev_stack_is_valid():
    assert stack_raw("dev")["ollama"]["base"]["gpu"] == 0

    assert [w.role for w in stack_of(stack_raw("dev")).plan.workloads] == ["base", "chatbot", "code", "summarization"]


def render_text(tmp_path, text: str) -> tuple[int, str, bool]:
    """Render a stack file given as text, in-process: (exit code, stderr, whether anything was written)."""
    import contextlib
    import io

    from tools import render

    cfg = tmp_path / "Pulumi.text.yaml"
    cfg.write_text(text)
    out = tmp_path / "out"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = render.main(["--stack", "text", "--config", str(cfg), "--out", str(out)])
    return code, err.getvalue(), out.exists()


DEV_TEXT = (ROOT / "Pulumi.dev.yaml").read_text()


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path):
    lines = DEV_TEXT.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("parallel:"))
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    text = "\n".join(lines[: at + 1] + [f"{indent}parallel: 1"] + lines[at + 1:]) + "\n"
    code, err, written = render_text(tmp_path, text)
    assert code == 2 and not written and "Traceback" not in err
    assert f"line {at + 2}: key 'parallel' is given twice (first at line {at + 1}); the second would silently replace the first" in err


def test_a_top_level_key_given_twice_is_refused(tmp_path):
    code, err, written = render_text(tmp_path, DEV_TEXT + "  llm-infra:namespace: other\n")
    assert code == 2 and not written
    assert "key 'llm-infra:namespace' is given twice" in err


@pytest.mark.parametrize("namespace", ["llm-infr", "llm_infra", "llminfra"])
def test_config_under_a_misspelt_project_namespace_is_reported(tmp_path, namespace):
    code, err, written = render_text(tmp_path, DEV_TEXT + f"  {namespace}:gpuSharing:\n    mode: dra\n")
    assert code == 2 and not written
    assert (f"{namespace}:gpuSharing: config namespace {namespace!r} is not read by anything; "
            f"did you mean 'llm-infra:gpuSharing'?") in err


def test_provider_namespaces_are_accepted(tmp_path):
    code, err, written = render_text(tmp_path, DEV_TEXT + "  kubernetes:context: workstation\n")
    assert code == 0 and written and "config namespace" not in err and "invalid" not in err


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    code, err, written = render_text(tmp_path, "config:\n  llm-infra:namespace: [unclosed\n")
    assert code == 2 and not written
    assert "Pulumi.text.yaml line 3 is not valid YAML" in err


def test_numbers_and_booleans_set_from_the_cli_as_strings():
    """`pulumi config set --path 'vllm.models.llama-3b.gpuMemoryUtilization' 0.35` stores the string "0.35"."""
    from tests.conftest import plan_of

    def as_strings(r):
        m = r["vllm"]["models"]["llama-3b"]
        m.update(gpuMemoryUtilization="0.35", maxModelLen="32768", cpu="4", trustRemoteCode="false")
        r["vllm"]["models"]["llama-guard"]["gpus"] = ["2"]
        r["agents"]["source-manager"]["rag"] = "false"

    plan = plan_of(variant(as_strings, "prod"))
    w = next(x for x in plan.vllm if x.key == "llama-3b")
    assert (w.spec.gpu_memory_utilization, w.spec.max_model_len, w.spec.cpu, w.spec.trust_remote_code) == (0.35, 32768, 4.0, False)
    assert next(x for x in plan.vllm if x.key == "llama-guard").spec.gpus == [2]
    assert plan_of(stack_raw("prod")).to_dict() == plan.to_dict()


@pytest.mark.parametrize("value, expected", [
    ("abc", "llm-infra:vllm.models.llama-3b.gpuMemoryUtilization: Input should be a valid number, got 'abc'"),
    ("1.5", "llm-infra:vllm.models.llama-3b.gpuMemoryUtilization: Input should be less than or equal to 1, got 1.5"),
])
def test_cli_strings_are_still_checked(value, expected):
    from tests.conftest import stack_problems

    problems = stack_problems(variant(lambda r: r["vllm"]["models"]["llama-3b"].update(gpuMemoryUtilization=value), "prod"))
    assert expected in problems


def test_a_fractional_string_for_an_integer_is_refused():
    from tests.conftest import stack_problems

    problems = stack_problems(variant(lambda r: r["vllm"]["models"]["llama-3b"].update(maxModelLen="32768.5"), "prod"))
    assert problems == ["llm-infra:vllm.models.llama-3b.maxModelLen: Input should be a valid integer, got '32768.5'"]
