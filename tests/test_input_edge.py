"""Input at the edge: paths and URLs, ingress rules the API server or the controller enforces, and security settings
that would open everything. Each refusal names the key; the legitimate neighbour of each stays accepted."""

from __future__ import annotations

import json

import pytest

from stacks.loader import InvalidStack, provider_problems
from tests.conftest import stack_of, stack_problems, variant
from tools.offline import run_program, stack_config

OIDC = "llm-infra:ingress.auth.oidcUrl"
PROM = "llm-infra:monitoring.prometheusUrl"


def oidc(url: str):
    return variant(lambda r: (r["ingress"].update(auth={"mode": "oidc", "oidcUrl": url}), r.pop("apiKey")))


def prometheus(url: str):
    return variant(lambda r: r["monitoring"].update(prometheusUrl=url))


def problem_at(raw, at: str) -> str:
    problems = stack_problems(raw)
    found = [p for p in problems if p.startswith(at + ": ")]
    assert found, problems
    return found[0]


# --------------------------------------------------------------------------------------------
# 5. Paths and URLs


@pytest.mark.parametrize("make, at", [(oidc, OIDC), (prometheus, PROM)])
def test_a_url_with_a_password_is_refused_without_echoing_it(make, at):
    message = problem_at(make("https://admin:hunter2@sso.example.edu/oauth2"), at)
    assert "user name or password" in message and "hunter2" not in message


@pytest.mark.parametrize("url, says", [
    ("https://sso.example.edu/oauth2?next=/x", "has a query or fragment"),
    ("https://sso.example.edu/oauth2#top", "has a query or fragment"),
    ("https:///oauth2", "has no host"),
    ("https://sso.example.edu:0/oauth2", "port 0 is not a port"),
    ('https://sso.example.edu/oauth2";', "holds '\"'"),
    ("https://sso.example.edu/oauth2;return", "holds ';'"),
    ("https://sso.example.edu/$host", "holds '$'"),
    ("https://sso.example.edu/{x}", "holds '{'"),
    ("https://sso.example.edu/a\\b", "holds '\\\\'"),
    ("https://sso.example.edu/%24host", "holds '%'"),
    ("https://sso.exаmple.edu/oauth2", "has non-ASCII characters"),  # a Cyrillic а
    ("https://sso.example.edu//oauth2", "empty, '.' or '..' segment"),
    ("https://sso.example.edu/oauth2/../admin", "empty, '.' or '..' segment"),
    ("https://sso_example.edu/oauth2", "is not a DNS name"),
])
def test_oidc_url_that_breaks_the_annotations_is_refused(url, says):
    assert says in problem_at(oidc(url), OIDC)


def test_prometheus_url_with_a_query_is_refused_since_keda_appends_its_own():
    assert "has a query or fragment" in problem_at(prometheus("http://prometheus.monitoring.svc:9090/?x=1"), PROM)


@pytest.mark.parametrize("url", ["https://sso.example.edu/oauth2/", "http://10.0.0.5:4180", "http://[fd00::1]:4180/oauth2",
                                 "https://xn--bcher-kva.example/oauth2", "HTTPS://SSO.Example.edu/oauth2"])
def test_ordinary_oidc_urls_stay_accepted(url):
    assert stack_of(oidc(url)).config.ingress.auth.oidc_url == url


@pytest.mark.parametrize("path", ["//etc/models", "/libx32/models", "/libexec/llm", "/opt/cni/bin", "/var/lib/cni/cache",
                                  "//var/lib/kubelet/pods", "/var/lib/longhorn/models"])
def test_host_path_in_the_system_family_is_refused_after_normalising(path):
    message = problem_at(variant(lambda r: r["modelCache"].update(hostPath=path)), "llm-infra:modelCache.hostPath")
    assert "is a system directory" in message


@pytest.mark.parametrize("path", ["/var/lib/llm-models/.", "/srv/models", "/data//llm-models", "/home/llm/models"])
def test_host_path_of_its_own_stays_accepted(path):
    assert stack_of(variant(lambda r: r["modelCache"].update(hostPath=path))).config.model_cache.host_path == path


def program_problems_with(extra: dict[str, str], secret: tuple[str, ...] = ()) -> list[str]:
    config, secrets = stack_config("dev")
    config.update(extra)
    with pytest.raises(InvalidStack) as exc:
        run_program(config, secrets + list(secret))
    return exc.value.problems


@pytest.mark.parametrize("where", ["../rendered", "build/../../rendered", "/etc/rendered"])
def test_render_directory_outside_the_project_is_refused(where):
    problems = program_problems_with({"kubernetes:renderYamlToDirectory": where})
    assert any(p.startswith("kubernetes:renderYamlToDirectory: ") and "outside the project" in p for p in problems), problems


def test_render_directory_inside_the_project_stays_accepted():
    from tools.offline import ROOT
    assert provider_problems({"kubernetes:renderYamlToDirectory": "build/yaml-dev"}, frozenset()) == []
    assert provider_problems({"kubernetes:renderYamlToDirectory": str(ROOT / "build" / "yaml")}, frozenset()) == []


# --------------------------------------------------------------------------------------------
# 6. Edge rules of the API server and the controllers


def hosts(*names: str):
    return variant(lambda r: r["ingress"].update(hosts=list(names)))


@pytest.mark.parametrize("host, says", [
    ("10.0.0.1", "is an IP address"),
    ("010.000.000.001", "is an IP address"),  # Go's ParseIPSloppy takes leading zeros
    ("*.example.edu", "is a wildcard"),
    ("a" * 64 + ".example.edu", "has a label of 64 characters"),
])
def test_ingress_host_the_api_server_or_dns_refuses_is_named(host, says):
    assert says in problem_at(hosts(host), "llm-infra:ingress.hosts")


def route(service: str, **over):
    return lambda r: r["ingress"].setdefault("routes", {}).update({service: over})


@pytest.mark.parametrize("path", ["/chat//bot", "/chat/./bot", "/chat/../bot", "/chat/..", "/chat/.", "/."])
def test_route_path_with_dot_or_empty_segments_is_refused(path):
    message = problem_at(variant(route("ollama-chatbot", path=path)), "llm-infra:ingress.routes.ollama-chatbot.path")
    assert "empty, '.' or '..' segment" in message


@pytest.mark.parametrize("edits, at", [
    ([route("ollama-chatbot", path="/chatbot"), route("ollama-code", path="/chatbot/v1")], "ollama-code"),
    ([route("ollama-base", path="/"), route("ollama-code", path="/api")], "ollama-code"),
])
def test_route_inside_another_routes_api_is_refused(edits, at):
    raw = variant(lambda r: [e(r) for e in edits])
    message = problem_at(raw, f"llm-infra:ingress.routes.{at}.path")
    assert "the longer path wins" in message


def test_route_inside_llama_stacks_v1_is_refused():
    raw = variant(route("vllm-llama-3b", path="/v1/chat"), "prod")
    assert "llamastack-server's route /v1" in problem_at(raw, "llm-infra:ingress.routes.vllm-llama-3b.path")


def test_routes_under_a_root_route_outside_its_api_stay_accepted():
    raw = variant(lambda r: (route("ollama-base", path="/")(r), route("ollama-code", path="/code")(r)))
    assert {r.path for r in stack_of(raw).routes} >= {"/", "/code"}


def test_paths_differing_only_in_case_are_refused_on_nginx_only():
    edit = route("ollama-code", path="/Chatbot")
    assert "only in letter case" in problem_at(variant(lambda r: (edit(r), r["ingress"].update(controller="nginx"))),
                                               "llm-infra:ingress.routes.ollama-code.path")
    assert "/Chatbot" in {r.path for r in stack_of(variant(edit)).routes}  # Traefik matches case-sensitively


@pytest.mark.parametrize("name, says", [("nginx", "is nginx's class"), ("internal", "is not the class the traefik chart creates")])
def test_ingress_class_of_another_controller_with_auth_is_refused(name, says):
    message = problem_at(variant(lambda r: r["ingress"].update(className=name)), "llm-infra:ingress.className")
    assert says in message and "classServedByController" in message


def test_ingress_class_is_taken_when_said_to_be_the_controllers_or_nothing_is_checked():
    said = variant(lambda r: r["ingress"].update(className="internal", classServedByController=True))
    assert stack_of(said).config.ingress.ingress_class == "internal"
    open_ = variant(lambda r: (r["ingress"].update(className="internal", auth={"mode": "none"}), r.pop("apiKey")))
    assert stack_of(open_).config.ingress.ingress_class == "internal"


@pytest.mark.parametrize("edit, at", [
    (lambda r: r["ingress"].update(rateLimit=1_000_001), "llm-infra:ingress.rateLimit"),
    (route("ollama-code", rateLimit=10**10), "llm-infra:ingress.routes.ollama-code.rateLimit"),
])
def test_rate_limit_past_what_the_controllers_compute_is_refused(edit, at):
    assert "less than or equal to 1000000" in problem_at(variant(edit), at)


# --------------------------------------------------------------------------------------------
# 7. Security settings that open everything


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0", "8.0.0.0/7", "fd00::/8"])
def test_node_cidr_wide_enough_to_admit_the_internet_is_refused(cidr):
    raw = variant(lambda r: r["networkPolicy"].update(nodeCidrs=[cidr]))
    assert "acceptWideNodeCidrs" in problem_at(raw, "llm-infra:networkPolicy.nodeCidrs[0]")


def test_wide_node_cidrs_are_taken_when_acknowledged_and_node_ranges_always():
    wide = variant(lambda r: r["networkPolicy"].update(nodeCidrs=["0.0.0.0/0"], acceptWideNodeCidrs=True))
    assert stack_of(wide).config.network_policy.node_cidrs == ["0.0.0.0/0"]
    nodes = variant(lambda r: r["networkPolicy"].update(nodeCidrs=["10.0.0.0/8", "fd12:3456:789a::/48"]))
    assert len(stack_of(nodes).config.network_policy.node_cidrs) == 2


def test_ingress_namespace_equal_to_the_stacks_is_refused():
    given = variant(lambda r: r["networkPolicy"].update(ingressNamespace="llama3-multi-adapter"))
    assert "the stack's own namespace" in problem_at(given, "llm-infra:networkPolicy.ingressNamespace")
    default = variant(lambda r: (r.update(namespace="traefik"), r["networkPolicy"].pop("ingressNamespace")))
    assert "defaults to 'traefik'" in problem_at(default, "llm-infra:networkPolicy.ingressNamespace")


KUBECONFIG = json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [],
                         "users": [{"name": "admin", "user": {"token": "eyJhbGciOi..."}}]})


def test_plain_text_kubeconfig_with_a_token_is_refused():
    problems = program_problems_with({"kubernetes:kubeconfig": KUBECONFIG})
    found = [p for p in problems if p.startswith("kubernetes:kubeconfig: ")]
    assert found and "token" in found[0] and "eyJhbGciOi" not in found[0] and "--secret" in found[0]


def test_kubeconfig_as_a_secret_or_a_path_stays_accepted():
    assert provider_problems({"kubernetes:kubeconfig": KUBECONFIG}, frozenset({"kubernetes:kubeconfig"})) == []
    assert provider_problems({"kubernetes:kubeconfig": "/etc/llm/kubeconfig"}, frozenset()) == []
    keyed = KUBECONFIG.replace('"token": "eyJhbGciOi..."', '"client-key-data": "LS0t", "client-certificate-data": "LS0t"')
    assert "client-key-data" in provider_problems({"kubernetes:kubeconfig": keyed}, frozenset())[0]


@pytest.mark.parametrize("listed", ['["kubernetes"]', '["*"]', '[" kubernetes "]'])
def test_disabling_the_default_kubernetes_provider_is_refused(listed):
    problems = program_problems_with({"pulumi:disable-default-providers": listed})
    assert any(p.startswith("pulumi:disable-default-providers: ") and "default Kubernetes provider" in p for p in problems)


def test_disabling_other_default_providers_stays_accepted():
    assert provider_problems({"pulumi:disable-default-providers": '["random", "aws"]'}, frozenset()) == []
