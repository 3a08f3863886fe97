"""`make smoke` (tools/smoke.py) against stand-in servers on loopback: one per API, one down, one that answers
500, one slower than the timeout; and through port-forwards (tools/smoke_forward.py) to stand-ins playing the pods, by an
injected cluster. Every server is stopped at the end; every call has a timeout."""

from __future__ import annotations

import contextlib
import io
import json
import socket
from types import SimpleNamespace

import pytest

from tests.conftest import stack_of, stack_raw, variant
from tests.standin import StandIn
from tests.test_validate import VARIANTS
from tools import smoke, smoke_forward
from tools.smoke_forward import Target, local_url, ready_pod, targets, to_forward


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


# --------------------------------------------------------------------------------------------
# Port-forwards (tools/smoke_forward.py): from the service graph, through an injected cluster



def pod(name: str, ready: bool = True, phase: str = "Running"):
    return SimpleNamespace(metadata=SimpleNamespace(name=name), status=SimpleNamespace(
        phase=phase, conditions=[SimpleNamespace(type="Ready", status="True" if ready else "False")]))


class FakeCluster:
    """Pods by label selector, and `connect` opening a loopback connection to the stand-in playing that pod."""

    def __init__(self, pods: dict[str, list], servers: dict[str, StandIn]):
        self._pods, self._servers = pods, servers
        self.asked: list[tuple[str, str]] = []
        self.connected: list[tuple[str, str, int]] = []

    def pods(self, namespace, selector):
        self.asked.append((namespace, selector))
        return self._pods.get(selector, [])

    def connect(self, namespace, pod_name, port):
        self.connected.append((namespace, pod_name, port))
        return socket.create_connection(("127.0.0.1", self._servers[pod_name].port), timeout=5)


def test_the_targets_come_from_the_graph():
    prod = targets(stack_of(stack_raw("prod")).graph)
    assert prod["vllm-llama-70b"] == Target("llama-serve", "llm-infra/service=vllm-llama-70b", 8000)
    assert prod["llamastack-server"] == Target("llama-serve", "llm-infra/service=llamastack-server", 8321)
    # The adapter pool on vLLM: the task Service ollama-<role> on 11434 reaches its server's pods on 8000.
    graph = stack_of(variant(VARIANTS["multi-lora"])).graph
    alias = next(ep for ep in graph.endpoints.values() if ep.alias_of)
    assert targets(graph)[alias.name] == Target(alias.namespace, f"llm-infra/service={alias.alias_of}", 8000) and alias.port == 11434
    # A multi-node replica answers from its leader.
    scale = stack_of(stack_raw("scale")).graph
    grouped = next(ep for ep in scale.endpoints.values() if ep.groups)
    assert targets(scale)[grouped.name].selector == f"llm-infra/service={grouped.name},llm-infra/role=leader"


def test_only_in_cluster_urls_are_forwarded_unless_asked_and_urls_keep_their_path():
    graph = stack_of(stack_raw("prod")).graph
    services = graph.services()
    services["vllm-llama-3b"] = {**services["vllm-llama-3b"], "url": "http://127.0.0.1:9000/v1"}  # a hand-made forward
    services["vllm-gone"] = {"kind": "vllm", "url": "http://vllm-gone.llama-serve:8000/v1", "models": ["x"]}
    chosen, problems = to_forward(services, graph, always=False)
    assert "vllm-llama-70b" in chosen and "vllm-llama-3b" not in chosen and not problems
    chosen, problems = to_forward(services, graph, always=True)
    assert "vllm-llama-3b" in chosen and "not in the stack's service graph" in problems["vllm-gone"]
    assert local_url("http://vllm-llama-70b.llama-serve:8000/v1", 40123) == "http://127.0.0.1:40123/v1"
    assert ready_pod([pod("b"), pod("a", ready=False), pod("c", phase="Pending")]) == "b"
    assert ready_pod([pod("a", ready=False)]) is None


def test_make_smoke_forwards_to_each_services_pod_and_closes_the_forwards(tmp_path, stand_ins, monkeypatch):
    """Outside the cluster, with the stack's own in-cluster URLs: every check goes through a forward to a ready pod."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("API_KEY", raising=False)
    graph = stack_of(stack_raw("prod")).graph
    services = graph.services()
    pods, servers = {}, {}
    for name, t in targets(graph).items():
        if graph.endpoints[name].alias_of is None:
            servers[f"{name}-0"] = stand_ins(services[name]["models"][0])
            pods[t.selector] = [pod(f"{name}-0"), pod(f"{name}-1", ready=False)]
    cluster = FakeCluster(pods, servers)
    made = []
    monkeypatch.setattr(smoke_forward, "KubeCluster", lambda: made.append(cluster) or cluster)
    opened = []
    real = smoke_forward.Forward.__init__
    monkeypatch.setattr(smoke_forward.Forward, "__init__", lambda self, *a: real(self, *a) or opened.append(self))
    code, out, err = run(tmp_path, services, extra=("--stack", "prod"))
    assert code == 0, out
    assert made == [cluster]
    assert {p for _, p, _ in cluster.connected} == set(servers)  # only ready pods, each on the graph's port
    assert ("llama-serve", "vllm-llama-70b-0", 8000) in cluster.connected
    assert all(s.requests for s in servers.values())
    assert "via pod/vllm-llama-70b-0:8000" in err and "http://127.0.0.1:" in err
    for f in opened:  # closed: nothing listens any more
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", f.port), timeout=1).close()


def test_a_service_without_a_ready_pod_fails_its_row_and_loopback_urls_need_no_cluster(tmp_path, stand_ins, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    graph = stack_of(stack_raw("prod")).graph
    service = graph.services()["vllm-llama-3b"]
    cluster = FakeCluster({"llm-infra/service=vllm-llama-3b": [pod("p", ready=False)]}, {})
    monkeypatch.setattr(smoke_forward, "KubeCluster", lambda: cluster)
    code, out, _ = run(tmp_path, {"vllm-llama-3b": service}, extra=("--stack", "prod"))
    assert code == 1 and "port-forward" in out and "no ready pod with llm-infra/service=vllm-llama-3b" in out
    # --no-port-forward calls the URL as it is (and reaches no cluster); a loopback URL is never forwarded.
    code, out, _ = run(tmp_path, {"vllm-llama-3b": service}, timeout=2.0, extra=("--stack", "prod", "--no-port-forward"))
    assert code == 1 and "port-forward" not in out
    vllm = stand_ins("llama-3b")
    monkeypatch.setattr(smoke_forward, "KubeCluster", lambda: pytest.fail("the cluster was asked"))
    code, out, err = run(tmp_path, {"vllm-llama-3b": {**service, "url": vllm.base_url}}, extra=("--stack", "prod"))
    assert code == 0 and "2 checks ok" in out and "via" not in err


def test_the_kubernetes_client_opens_one_forward_per_connection(monkeypatch):
    import kubernetes.stream

    calls = []
    sock = object()
    forward = SimpleNamespace(socket=lambda port: (calls.append(("socket", port)), sock)[1])
    monkeypatch.setattr(kubernetes.stream, "portforward", lambda method, name, ns, ports: calls.append((method, name, ns, ports)) or forward)
    core = SimpleNamespace(connect_get_namespaced_pod_portforward="connect",
                           list_namespaced_pod=lambda ns, label_selector, _request_timeout: SimpleNamespace(items=[(ns, label_selector)]))
    kube = smoke_forward.KubeCluster(core)
    assert kube.pods("llama-serve", "llm-infra/service=x") == [("llama-serve", "llm-infra/service=x")]
    assert kube.connect("llama-serve", "vllm-x-0", 8000) is sock
    assert calls == [("connect", "vllm-x-0", "llama-serve", "8000"), ("socket", 8000)]


def test_a_refused_forward_fails_the_check_and_says_why(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    service = stack_of(stack_raw("prod")).graph.services()["vllm-llama-3b"]

    class Refusing(FakeCluster):
        def connect(self, namespace, pod_name, port):
            raise RuntimeError("(403) Forbidden: pods/portforward is forbidden")

    monkeypatch.setattr(smoke_forward, "KubeCluster", lambda: Refusing({"llm-infra/service=vllm-llama-3b": [pod("p")]}, {}))
    code, out, err = run(tmp_path, {"vllm-llama-3b": service}, timeout=5.0, extra=("--stack", "prod"))
    assert code == 1 and "2 failed" in out
    assert "smoke: port-forward to pod/p:8000: (403) Forbidden: pods/portforward is forbidden" in err


def test_saved_outputs_of_in_cluster_urls_without_a_stack_say_to_name_it(tmp_path, monkeypatch, capsys):
    """Forwarding follows the stack's service graph: with ENDPOINTS= alone it would read another stack's (dev)."""
    import json as json_

    from tools import smoke as tool

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json_.dumps({"services": stack_of(stack_raw("prod")).graph.services()}))
    assert tool.main(["--endpoints", str(outputs)]) == 2
    assert "give STACK=<stack> as well (or PORT_FORWARD=0" in capsys.readouterr().err
