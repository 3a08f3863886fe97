"""`make status` (tools/status.py): the Kubernetes Python client against a stand-in API server on loopback,
the engines' own reports from stand-ins, all next to the plan of the dev stack."""

from __future__ import annotations

import contextlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.standin import StandIn
from tools import status

GiB = 2**30


def pod(name: str, deployment: str, node: str, ready: bool = True, restarts: int = 0, vllm: bool = False) -> dict:
    labels = {"app.kubernetes.io/part-of": "llm-infra", "app.kubernetes.io/instance": deployment}
    if vllm:
        labels["llm-infra/pod"] = deployment
    return {"metadata": {"name": name, "namespace": "llama3-multi-adapter", "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "server", "image": "x"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "server", "ready": ready, "restartCount": restarts,
                                                                 "image": "x", "imageID": "", "containerID": ""}]}}


@pytest.fixture
def kube_api():
    """A stand-in API server answering the one call make status makes: list the namespace's pods by label."""
    state: dict = {"pods": [], "requests": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            state["requests"].append(self.path)
            if self.path.startswith("/api/v1/namespaces/llama3-multi-adapter/pods"):
                body = json.dumps({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": state["pods"]}).encode()
                self.send_response(200)
            else:
                body = b'{"kind": "Status", "code": 404}'
                self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = status.main(args)
    return code, out.getvalue(), err.getvalue()


def test_pods_next_to_the_plan_and_what_the_engines_report(kube_api):
    base = StandIn("llama3:8b", size_vram=int(6.2 * GiB)).start()
    chatbot = StandIn("chatbot", size_vram=int(8.1 * GiB)).start()
    try:
        kube_api["pods"] = [
            pod("ollama-base-7d9f", "ollama-base", "workstation"),
            pod("ollama-adapter-chatbot-5c4b", "ollama-adapter-chatbot", "workstation", restarts=2),
            pod("ollama-adapter-code-8f2a", "ollama-adapter-code", "other-node", ready=False),
            pod("stray-1", "something-else", "workstation"),
        ]
        code, out, _ = run(["--stack", "dev", "--kube-api", kube_api["url"],
                            "--service-url", f"ollama-base=http://127.0.0.1:{base.port}",
                            "--service-url", f"ollama-chatbot=http://127.0.0.1:{chatbot.port}", "--timeout", "2"])
    finally:
        base.stop()
        chatbot.stop()
    assert code == 0, out
    assert kube_api["requests"][0].startswith("/api/v1/namespaces/llama3-multi-adapter/pods?labelSelector=app.kubernetes.io")
    lines = {line.split()[0]: line for line in out.splitlines()[3:]}
    assert lines["ollama-base-7d9f"].split()[1:6] == ["workstation/0", "workstation", "1/1", "0", "6.54"]
    assert "size_vram 6.20 GiB" in lines["ollama-base-7d9f"]
    assert lines["ollama-adapter-chatbot-5c4b"].split()[4] == "2" and "size_vram 8.10 GiB" in lines["ollama-adapter-chatbot-5c4b"]
    code_line = lines["ollama-adapter-code-8f2a"]
    assert "other-node MOVED" in code_line and " 0/1 " in code_line and "unreachable" in code_line
    assert "not in the plan" in lines["stray-1"]
    assert "(ollama-adapter-summarization:" in out and "no pod)" in out  # planned, but no pod runs


def test_vllm_kv_usage_comes_from_its_metrics():
    from stacks.catalog import GIB as gib_
    from tests.conftest import stack_of, stack_raw

    stack = stack_of(stack_raw("lab"))
    p = status.planned(stack)["vllm-mixtral"]
    assert (p.kind, p.model, p.service) == ("vllm", "mixtral", "vllm-mixtral")
    assert p.vram_gib == pytest.approx(next(w for w in stack.plan.vllm if w.key == "mixtral").shares[0].total_bytes / gib_)
    engine = StandIn("mixtral", kv_usage=0.42).start()
    try:
        import httpx

        with httpx.Client(timeout=2) as client:
            assert status.engine_usage(p, f"http://127.0.0.1:{engine.port}", client) == "KV cache 42 % used"
            other = status.Planned("x", "n", "0", 1.0, "s", "vllm", "llama-8b")
            assert status.engine_usage(other, f"http://127.0.0.1:{engine.port}", client) == "no vllm:kv_cache_usage_perc for its model"
    finally:
        engine.stop()


def test_an_unreachable_api_server_is_one_line(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run(["--stack", "dev", "--kube-api", f"http://127.0.0.1:{port}", "--timeout", "2"])
    assert code == 2 and err.startswith("status: ") and len(err.strip().splitlines()) == 1


def test_a_reserved_replica_without_a_pod_is_reported_as_reserved_not_missing():
    import httpx

    from tests.conftest import stack_of, stack_raw

    stack = stack_of(stack_raw("lab"))
    plan = status.planned(stack)
    assert plan["vllm-llama-8b-multi-1"].reserved and not plan["vllm-llama-8b-multi"].reserved
    with httpx.Client(timeout=1) as client:
        rows = status.pod_rows(stack, [], {}, client)
    text = {r[0] for r in rows}
    assert "(vllm-llama-8b-multi-1: reserved, no pod until its autoscaler starts one)" in text
    assert "(vllm-llama-8b-multi: no pod)" in text
