"""The rendered NetworkPolicies, read by an evaluator of their semantics (tests/netpol.py), prove both ways:
a pod that is not in the service graph reaches nothing and is reached by nothing, and every call of the
graph (plus the ingress controller's routes, the scraper, DNS and weight downloads) is allowed."""

from __future__ import annotations

import pytest

from stacks.config.edge import CONTROLLER_NAMESPACE
from stacks.edge import AGENT_LABEL, SERVICE_LABEL, pod_port, pod_service
from tests.conftest import problems_of, run_raw, run_secret_raw, stack_of, stack_raw, variant
from tests.netpol import Address, Pod, Policies, pods_of

STACKS = ("dev", "prod", "lab", "scale")
INTERNET = Address("151.101.1.1")  # a public address (a CDN)
NODE = Address("10.0.0.5")  # the node network: not the internet
METADATA = Address("169.254.169.254")  # the cloud metadata service


@pytest.fixture(scope="module", params=STACKS)
def world(request):
    raw = stack_raw(request.param)
    stack = stack_of(raw)
    objects = run_secret_raw(raw, ["hfToken"] if "hfToken" in raw else []).objects()
    return stack, Policies(objects), pods_of(objects)


def server_pods(stack, pods):
    """Pod of each Service that has pods (one of its Deployments stands for all)."""
    out = {}
    for ep in stack.graph.endpoints.values():
        name = pod_service(ep)
        workload = stack.graph.endpoints[name].workloads[0]
        out[name] = pods[workload]
    return out


def client_pod(stack, client: str, servers) -> Pod:
    if client.startswith("agent:"):
        return Pod(stack.config.namespace, {AGENT_LABEL: client.removeprefix("agent:"), "app": "my-agent"})
    return servers[client]


def test_every_serving_pod_carries_its_service_label(world):
    stack, _, pods = world
    for name, pod in server_pods(stack, pods).items():
        assert pod.labels[SERVICE_LABEL] == name


def test_every_call_of_the_graph_is_allowed(world):
    stack, policies, pods = world
    servers = server_pods(stack, pods)
    ns = stack.config.namespace
    assert stack.graph.routes or stack.config.llama_stack is None
    for route in stack.graph.routes:
        target = stack.graph.endpoints[route.server]
        src, dst = client_pod(stack, route.client, servers), servers[pod_service(target)]
        assert policies.allowed(src, dst, pod_port(target), stack_ns=ns), route


def test_a_pod_outside_the_graph_reaches_nothing_and_nothing_reaches_it(world):
    stack, policies, pods = world
    ns = stack.config.namespace
    stranger = Pod(ns, {"app": "stranger"})
    for name, pod in server_pods(stack, pods).items():
        for port in (8000, 8321, 11434, 80):
            assert not policies.allowed(stranger, pod, port, stack_ns=ns), (name, port)
            assert not policies.allowed(pod, stranger, port, stack_ns=ns), (name, port)
    for outside in (INTERNET, NODE, METADATA):
        assert not policies.allowed(stranger, outside, 443, stack_ns=ns)
    # A pod in another namespace is not the ingress controller or the scraper: nothing.
    other = Pod("default", {"app": "curl"})
    assert not any(policies.allowed(other, pod, pod_port(stack.graph.endpoints[n]), stack_ns=ns)
                   for n, pod in server_pods(stack, pods).items())


def test_servers_do_not_call_each_other_beyond_the_graph(world):
    stack, policies, pods = world
    servers = server_pods(stack, pods)
    ns = stack.config.namespace
    edges = {(r.client, pod_service(stack.graph.endpoints[r.server])) for r in stack.graph.routes}
    for a, pa in servers.items():
        for b, pb in servers.items():
            if a != b and (a, b) not in edges:
                assert not policies.allowed(pa, pb, pod_port(stack.graph.endpoints[b]), stack_ns=ns), (a, b)


def test_the_ingress_controller_reaches_exactly_the_routed_services(world):
    stack, policies, pods = world
    ns = stack.config.namespace
    controller_ns = stack.config.network_policy.ingress_namespace or CONTROLLER_NAMESPACE[stack.config.ingress.controller]
    controller = Pod(controller_ns, {"app.kubernetes.io/name": "controller"})
    routed = {pod_service(stack.graph.endpoints[r.service]) for r in stack.routes}
    assert routed
    for name, pod in server_pods(stack, pods).items():
        port = pod_port(stack.graph.endpoints[name])
        assert policies.allowed(controller, pod, port, stack_ns=ns) == (name in routed), name


def test_the_scraper_reaches_metrics_ports_only_where_there_are_metrics(world):
    stack, policies, pods = world
    ns = stack.config.namespace
    prometheus = Pod(stack.config.monitoring.namespace, {"app": "prometheus"})
    for name, pod in server_pods(stack, pods).items():
        ep = stack.graph.endpoints[name]
        # vLLM serves /metrics on its API port; Ollama has no /metrics, Llama Stack 0.7.3 exports OpenTelemetry (OTLP) only.
        assert policies.allowed(prometheus, pod, pod_port(ep), stack_ns=ns) == (ep.kind == "vllm"), name


def test_dns_and_weight_downloads_but_no_node_or_metadata_access(world):
    stack, policies, pods = world
    ns = stack.config.namespace
    dns = Pod("kube-system", {"k8s-app": "kube-dns"})
    for name, pod in server_pods(stack, pods).items():
        assert policies.allowed(pod, dns, 53, "UDP", stack_ns=ns) and policies.allowed(pod, dns, 53, "TCP", stack_ns=ns)
        assert not policies.allowed(pod, Pod("kube-system", {"k8s-app": "metrics-server"}), 443, stack_ns=ns)
        assert policies.allowed(pod, INTERNET, 443, stack_ns=ns), name  # downloadEgress defaults to true
        assert not policies.allowed(pod, INTERNET, 80, stack_ns=ns)
        assert not policies.allowed(pod, NODE, 443, stack_ns=ns) and not policies.allowed(pod, METADATA, 80, stack_ns=ns)
        assert policies.allowed(pod, Address("2600:1f18::1"), 443, stack_ns=ns)  # dual-stack: the IPv6 internet too
        assert not policies.allowed(pod, Address("fd00::5"), 443, stack_ns=ns)  # not unique-local addresses


def test_download_egress_switches_off_once_the_cache_is_warm():
    raw = variant(lambda r: r.update(networkPolicy={"downloadEgress": False, "ingressNamespace": "kube-system"}))
    objects = run_raw(raw).objects()
    policies, pods = Policies(objects), pods_of(objects)
    assert not any(policies.allowed(p, INTERNET, 443, stack_ns=raw["namespace"]) for p in pods.values())
    # ... and the Hugging Face client is told so, instead of waiting on connections the policies drop
    prod = run_secret_raw(variant(lambda r: r.update(networkPolicy={"downloadEgress": False}), "prod"), ["hfToken"])
    for d in (o for o in prod.objects() if o["kind"] == "Deployment"):
        env = {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["HF_HUB_OFFLINE"] == "1", d["metadata"]["name"]
    online = run_secret_raw(stack_raw("prod"), ["hfToken"])
    assert not any(e["name"] == "HF_HUB_OFFLINE" for o in online.objects() if o["kind"] == "Deployment"
                   for e in o["spec"]["template"]["spec"]["containers"][0]["env"])


def test_no_policies_when_turned_off_and_the_evaluator_can_say_yes():
    raw = variant(lambda r: r.update(networkPolicy={"enabled": False}))
    objects = run_raw(raw).objects()
    assert not [o for o in objects if o["kind"] == "NetworkPolicy"]
    policies, pods = Policies(objects), pods_of(objects)
    stranger = Pod(raw["namespace"], {"app": "stranger"})
    assert all(policies.allowed(stranger, p, 11434, stack_ns=raw["namespace"]) for p in pods.values())


def test_removing_one_allow_rule_breaks_exactly_its_calls():
    raw = stack_raw("prod")
    stack = stack_of(raw)
    objects = run_secret_raw(raw, ["hfToken"]).objects()
    kept = [o for o in objects if not (o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "allow-from-llamastack-server")]
    assert len(kept) == len(objects) - 1
    full, cut, pods = Policies(objects), Policies(kept), pods_of(objects)
    servers = server_pods(stack, pods)
    for route in stack.graph.routes:
        target = stack.graph.endpoints[route.server]
        src, dst = client_pod(stack, route.client, servers), servers[pod_service(target)]
        assert full.allowed(src, dst, pod_port(target), stack_ns=raw["namespace"])
        assert cut.allowed(src, dst, pod_port(target), stack_ns=raw["namespace"]) == (route.client != "llamastack-server"), route


def test_node_cidrs_let_the_kubelet_probe_every_server_and_nothing_else():
    raw = variant(lambda r: r["networkPolicy"].update(nodeCidrs=["10.0.0.0/24"]))
    objects = run_raw(raw).objects()
    policies, pods = Policies(objects), pods_of(objects)
    ns = raw["namespace"]
    for pod in pods.values():
        assert policies.allowed(NODE, pod, 11434, stack_ns=ns)  # 10.0.0.5, the node
        assert not policies.allowed(Address("10.0.1.5"), pod, 11434, stack_ns=ns)
        assert not policies.allowed(pod, NODE, 443, stack_ns=ns)  # in only: the pods still cannot reach the node
    assert any(p.startswith("llm-infra:networkPolicy.nodeCidrs[0]: '10.0.0.1/24' is not a CIDR")
               for p in problems_of(variant(lambda r: r["networkPolicy"].update(nodeCidrs=["10.0.0.1/24"]))))


def test_cert_manager_s_solver_answers_the_ingress_controller_only_when_it_issues():
    raw = stack_raw("prod")  # tls.clusterIssuer
    objects = run_secret_raw(raw, ["hfToken"]).objects()
    policies = Policies(objects)
    solver = Pod("llama-serve", {"acme.cert-manager.io/http01-solver": "true"})
    assert policies.allowed(Pod("ingress-nginx", {"app": "controller"}), solver, 8089, stack_ns="llama-serve")
    assert not policies.allowed(Pod("default", {}), solver, 8089, stack_ns="llama-serve")
    assert not policies.allowed(solver, Pod("llama-serve", {"llm-infra/service": "vllm-llama-3b"}), 8000, stack_ns="llama-serve")
    dev = Policies(run_raw(stack_raw("dev")).objects())  # a TLS Secret of its own: no solver, no rule
    assert not dev.allowed(Pod("kube-system", {}), Pod("llama3-multi-adapter", {"acme.cert-manager.io/http01-solver": "true"}),
                           8089, stack_ns="llama3-multi-adapter")
