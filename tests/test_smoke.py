"""`make smoke` (tools/smoke.py) against stand-in servers on loopback: one per API, one down, one that answers
500, one slower than the timeout. Every server is stopped at the end; every call has a timeout."""

from __future__ import annotations

import contextlib
import io
import json
import socket

import pytest

from tests.standin import StandIn
from tools import smoke


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def stand_ins():
    started: list[StandIn] = []

    def start(name: str, **kw) -> StandIn:
        s = StandIn(name, **kw).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def run(tmp_path, services: dict, timeout: float = 5.0, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"endpoints": {}, "services": services}))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = smoke.main(["--endpoints", str(outputs), "--timeout", str(timeout), *extra])
    return code, out.getvalue(), err.getvalue()


def test_every_api_is_called_as_its_clients_call_it(tmp_path, stand_ins):
    ollama = stand_ins("chatbot")
    vllm = stand_ins("llama-3b")
    stack = stand_ins("vllm-llama-3b/llama-3b")
    code, out, err = run(tmp_path, {
        "ollama-chatbot": {"kind": "ollama", "url": f"http://127.0.0.1:{ollama.port}", "models": ["chatbot"]},
        "vllm-llama-3b": {"kind": "vllm", "url": vllm.base_url, "models": ["llama-3b"]},
        "llamastack-server": {"kind": "llama-stack", "url": f"http://127.0.0.1:{stack.port}",
                              "models": ["vllm-llama-3b/llama-3b"], "shield": "llama-guard"},
    })
    assert code == 0, out
    assert "6 checks ok, 0 failed" in out
    assert [r["path"] for r in ollama.requests] == ["/api/generate"]
    assert ollama.requests[0]["body"]["model"] == "chatbot" and ollama.requests[0]["body"]["stream"] is True
    assert [r["path"] for r in vllm.requests] == ["/v1/models", "/v1/chat/completions"]
    assert [r["path"] for r in stack.requests] == ["/v1/health", "/v1/chat/completions", "/v1/safety/run-shield"]
    assert stack.requests[1]["body"]["model"] == "vllm-llama-3b/llama-3b"
    header = out.splitlines()[0].split()
    assert header[:3] == ["endpoint", "check", "status"] and "first" in header
    chat = next(line for line in out.splitlines() if line.startswith("vllm-llama-3b") and "chat" in line)
    assert " ok " in chat and chat.split()[4].isdigit() and chat.split()[5].isdigit()  # latency and time to first token
    assert "[1/3] llamastack-server" in err  # progress


def test_a_down_a_broken_and_a_slow_server_fail_and_the_exit_is_1(tmp_path, stand_ins):
    good = stand_ins("llama-3b")
    broken = stand_ins("granite-8b", fail_with=500)
    slow = stand_ins("watt-8b", delay=3.0)
    down = free_port()
    code, out, _ = run(tmp_path, {
        "vllm-llama-3b": {"kind": "vllm", "url": good.base_url, "models": ["llama-3b"]},
        "vllm-granite-8b": {"kind": "vllm", "url": broken.base_url, "models": ["granite-8b"]},
        "vllm-watt-8b": {"kind": "vllm", "url": slow.base_url, "models": ["watt-8b"]},
        "vllm-down": {"kind": "vllm", "url": f"http://127.0.0.1:{down}/v1", "models": ["x"]},
    }, timeout=1.0)
    assert code == 1
    assert "2 checks ok, 6 failed" in out
    lines = out.splitlines()
    assert all(" ok " in line for line in lines if line.startswith("vllm-llama-3b"))
    assert any("FAIL" in line and "500" in line for line in lines if line.startswith("vllm-granite-8b"))
    assert any("FAIL" in line and "timed out" in line for line in lines if line.startswith("vllm-watt-8b"))
    assert all("FAIL" in line for line in lines if line.startswith("vllm-down"))


def test_a_model_the_server_does_not_serve_fails(tmp_path, stand_ins):
    vllm = stand_ins("llama-3b")
    code, out, _ = run(tmp_path, {"vllm-x": {"kind": "vllm", "url": vllm.base_url, "models": ["llama-70b"]}})
    assert code == 1 and "llama-70b not served (serves llama-3b)" in out


def test_outputs_without_services_are_refused(tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"endpoints": {}}))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert smoke.main(["--endpoints", str(outputs)]) == 2
    assert "no `services`" in err.getvalue()


def test_the_services_output_lists_every_rendered_service():
    """What make smoke calls is derived from the service graph: every Service the stack renders, with its models."""
    from tests.test_llama_stack import prod_run

    run_ = prod_run()
    services = run_.program["stack"].graph.services()
    rendered = {o["metadata"]["name"] for o in run_.objects() if o["kind"] == "Service"}
    assert set(services) == rendered
    assert services["vllm-llama-70b"] == {"kind": "vllm", "url": "http://vllm-llama-70b.llama-serve:8000/v1", "models": ["llama-3.1-70b"]}
    assert services["llamastack-server"]["shield"] == "llama-guard"


def test_vllm_with_the_stacks_key_needs_it_and_the_failure_says_how(tmp_path, stand_ins, monkeypatch):
    monkeypatch.delenv("API_KEY", raising=False)
    key = "k" * 40
    vllm = stand_ins("llama-3b", api_key=key)  # like vLLM with VLLM_API_KEY: /v1 needs the Bearer key
    services = {"vllm-llama-3b": {"kind": "vllm", "url": vllm.base_url, "models": ["llama-3b"]}}
    code, out, _ = run(tmp_path, services)
    assert code == 1 and "API_KEY=$(pulumi config get apiKey" in out
    code, out, _ = run(tmp_path, services, extra=("--api-key", key))
    assert code == 0 and "2 checks ok, 0 failed" in out
    assert {r["auth"] for r in vllm.requests[-2:]} == {f"Bearer {key}"}
    monkeypatch.setenv("API_KEY", key)  # what `make smoke` passes on
    code, _, _ = run(tmp_path, services)
    assert code == 0
