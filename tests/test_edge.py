"""The edge: ingress routes from the service graph (nginx and Traefik), the API key's checks, TLS."""

from __future__ import annotations

import bcrypt
import pytest

from stacks.edge import AUTH_SECRET, htpasswd
from tests.conftest import problems_of, run_raw, run_secret_raw, stack_of, stack_problems, stack_raw, variant

KEY = "0123456789abcdef" * 3


def ingresses(run) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in run.objects() if o["kind"] == "Ingress"}


def paths(ing: dict) -> set[str]:
    return {p["path"] for rule in ing["spec"]["rules"] for p in rule["http"]["paths"]}


@pytest.fixture(scope="module")
def dev():
    return run_raw(stack_raw("dev"))


@pytest.fixture(scope="module")
def prod():
    return run_secret_raw(stack_raw("prod"), ["hfToken"])


def test_dev_keeps_the_seed_paths_on_traefik_with_prefixes_stripped(dev):
    ing = ingresses(dev)
    assert sorted(ing) == ["edge-ollama-base", "edge-ollama-chatbot", "edge-ollama-code", "edge-ollama-summarization"]
    chat = ing["edge-ollama-chatbot"]
    assert paths(chat) == {"/chatbot"} and chat["spec"]["ingressClassName"] == "traefik"
    backend = chat["spec"]["rules"][0]["http"]["paths"][0]
    assert backend["pathType"] == "Prefix"
    assert backend["backend"]["service"] == {"name": "ollama-chatbot", "port": {"number": 11434}}
    ns = "llama3-multi-adapter"
    assert chat["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"] == (
        f"{ns}-edge-ollama-chatbot-rate@kubernetescrd,{ns}-edge-auth@kubernetescrd,{ns}-edge-ollama-chatbot-strip@kubernetescrd")
    # /chatbot/api/tags reaches /api/tags: the strip Middleware removes exactly the route's prefix.
    strip = dev.find("Middleware", "edge-ollama-chatbot-strip")["spec"]
    assert strip == {"stripPrefix": {"prefixes": ["/chatbot"]}}
    assert dev.find("Middleware", "edge-ollama-chatbot-rate")["spec"] == {"rateLimit": {"average": 10, "burst": 50, "period": "1s"}}
    auth = dev.find("Middleware", "edge-auth")["spec"]
    assert auth == {"basicAuth": {"secret": AUTH_SECRET, "realm": "llm-infra", "removeHeader": True}}
    assert chat["spec"]["tls"] == [{"hosts": ["ollama.local"], "secretName": "ollama-local-tls"}]
    assert chat["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.tls"] == "true"


def test_prod_publishes_each_model_under_models_name_v1_and_llama_stack_under_v1(prod):
    ing = ingresses(prod)
    assert {n: paths(i) for n, i in ing.items()} == {
        "edge-llamastack-server": {"/v1(/|$)(.*)"},
        "edge-vllm-granite-8b": {"/models/granite-8b/v1(/|$)(.*)"},
        "edge-vllm-llama-3b": {"/models/llama-3b/v1(/|$)(.*)"},
        "edge-vllm-llama-70b": {"/models/llama-70b/v1(/|$)(.*)"},
        "edge-vllm-watt-8b": {"/models/watt-8b/v1(/|$)(.*)"},
    }  # no route to Llama Guard: only Llama Stack calls the shield's model
    vllm = ing["edge-vllm-llama-70b"]["metadata"]["annotations"]
    # /models/llama-70b/v1/chat/completions reaches /v1/chat/completions; /health and /metrics are not published.
    assert vllm["nginx.ingress.kubernetes.io/rewrite-target"] == "/v1/$2"
    assert vllm["nginx.ingress.kubernetes.io/use-regex"] == "true"
    assert vllm["nginx.ingress.kubernetes.io/limit-rps"] == "5"  # ingress.routes.vllm-llama-70b.rateLimit
    assert "nginx.ingress.kubernetes.io/auth-type" not in vllm  # vLLM checks the Bearer key itself
    stack = ing["edge-llamastack-server"]["metadata"]["annotations"]
    assert stack["nginx.ingress.kubernetes.io/auth-type"] == "basic" and stack["nginx.ingress.kubernetes.io/auth-secret"] == AUTH_SECRET
    assert stack["nginx.ingress.kubernetes.io/limit-rps"] == "20"


def test_cert_manager_is_asked_once_for_the_one_shared_secret(prod):
    ing = ingresses(prod)
    annotated = [n for n, i in ing.items() if "cert-manager.io/cluster-issuer" in (i["metadata"].get("annotations") or {})]
    assert len(annotated) == 1 and ing[annotated[0]]["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert {i["spec"]["tls"][0]["secretName"] for i in ing.values()} == {"llama-serve-edge-tls"}
    assert all(i["spec"]["tls"][0]["hosts"] == ["llm.example.com"] for i in ing.values())


def test_vllm_takes_the_key_from_the_secret_never_from_args(prod):
    for d in (o for o in prod.objects() if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("vllm-")):
        c = d["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in c["env"]}
        assert env["VLLM_API_KEY"] == {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "llm-infra-api-key", "key": "api-key"}}}
        assert "--api-key" not in c["args"]
    # The key and its htpasswd line are Pulumi secrets: the render never holds them. One key `auth` serves both controllers.
    assert prod.find("Secret", "llm-infra-api-key")["stringData"] == {"api-key": "<redacted: Pulumi secret>"}
    assert prod.find("Secret", AUTH_SECRET)["stringData"] == {"auth": "<redacted: Pulumi secret>"}
    without = run_raw(variant(lambda r: (r.pop("apiKey"), r.pop("ingress"))))
    assert not [o for o in without.objects() if o["kind"] == "Secret"]


def test_the_basic_auth_file_verifies_the_key_and_is_stable():
    line = htpasswd("llm-infra", KEY, "llama-serve")
    user, hashed = line.split(":", 1)
    assert user == "llm-infra" and hashed.startswith("$2b$05$")
    assert bcrypt.checkpw(KEY.encode(), hashed.encode())
    assert not bcrypt.checkpw((KEY + "x").encode(), hashed.encode())
    assert htpasswd("llm-infra", KEY, "llama-serve") == line  # same key, same line: no diff on every `pulumi up`
    assert htpasswd("llm-infra", KEY, "other") != line


def test_oidc_sends_every_route_to_oauth2_proxy():
    lab = run_secret_raw(stack_raw("lab"), ["hfToken"])
    auth = lab.find("Middleware", "edge-auth")["spec"]
    assert auth["forwardAuth"]["address"] == "https://sso.university.local/oauth2/auth"
    assert auth["forwardAuth"]["authSigninURL"] == "https://sso.university.local/oauth2/start"
    assert not [o for o in lab.objects() if o["kind"] == "Secret" and o["metadata"]["name"] == AUTH_SECRET]
    for ing in ingresses(lab).values():
        assert "edge-auth@kubernetescrd" in ing["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"]
    nginx = run_secret_raw(variant(lambda r: r["ingress"].update(controller="nginx"), "lab"), ["hfToken"])
    a = ingresses(nginx)["edge-vllm-llama-8b"]["metadata"]["annotations"]
    assert a["nginx.ingress.kubernetes.io/auth-url"] == "https://sso.university.local/oauth2/auth"
    # back to the page asked for, on this host (oauth2-proxy runs on another: its --whitelist-domain must allow it)
    assert a["nginx.ingress.kubernetes.io/auth-signin"] == "https://sso.university.local/oauth2/start?rd=$scheme://$host$escaped_request_uri"


def test_route_overrides_path_rate_and_off():
    raw = variant(lambda r: r["ingress"].update(routes={"ollama-code": {"path": "/coder", "rateLimit": 3},
                                                          "ollama-base": {"enabled": False}}))
    stack = stack_of(raw)
    by = {r.service: r for r in stack.routes}
    assert "ollama-base" not in by and by["ollama-code"].path == "/coder" and by["ollama-code"].rate_limit == 3
    assert by["ollama-chatbot"].rate_limit == 10


def test_plain_http_only_when_said():
    http = run_raw(variant(lambda r: r["ingress"].update(tls={"enabled": False})))
    for ing in ingresses(http).values():
        assert "tls" not in ing["spec"] and "traefik.ingress.kubernetes.io/router.tls" not in ing["metadata"]["annotations"]


@pytest.mark.parametrize("edit, expected", [
    (lambda r: r["ingress"].update(routes={"ollama-code": {"path": "/chatbot"}}),
     "llm-infra:ingress.routes.ollama-code.path: /chatbot is also the path of ollama-chatbot; give one of them another path"),
    (lambda r: r["ingress"].update(rateLimit=0), "llm-infra:ingress.rateLimit: Input should be greater than or equal to 1, got 0"),
    (lambda r: r["ingress"].update(routes={"ollama-code": {"rateLimit": 0}}),
     "llm-infra:ingress.routes.ollama-code.rateLimit: Input should be greater than or equal to 1, got 0"),
    (lambda r: r["ingress"].update(tls={}), "llm-infra:ingress.tls: TLS is on but has no certificate; set secretName"),
    (lambda r: r["ingress"].update(tls={"secretName": "a", "clusterIssuer": "b"}), "llm-infra:ingress.tls: set secretName or clusterIssuer, not both"),
    (lambda r: r["ingress"].update(routes={"ollama-cod": {"rateLimit": 2}}),
     "llm-infra:ingress.routes.ollama-cod: no such Service in the stack; did you mean 'ollama-code'?"),
    (lambda r: r.pop("apiKey"), "llm-infra:ingress.auth.mode: apiKey needs the stack's key"),
    (lambda r: r["ingress"].update(auth={"mode": "oidc"}), "llm-infra:ingress.auth.oidcUrl: mode oidc needs oauth2-proxy's base URL"),
    (lambda r: r["ingress"].update(auth={"mode": "oidc", "oidcUrl": "https://sso.example/oauth2"}),
     "llm-infra:apiKey: with ingress.auth.mode oidc the Authorization header carries the SSO's token"),
    (lambda r: r["ingress"].update(hosts=["ollama.local", "ollama.local"]), "llm-infra:ingress.hosts: a host is listed twice"),
    (lambda r: r["ingress"].update(hosts=["https://ollama.local"]), "llm-infra:ingress.hosts: 'https://ollama.local' is not a DNS name"),
    (lambda r: r["ingress"].update(controller="haproxy"), "llm-infra:ingress.controller: Input should be 'nginx' or 'traefik'"),
    (lambda r: r.update(podSecurity={"runAsUser": 0}), "llm-infra:podSecurity.runAsUser: Input should be greater than or equal to 1"),
])
def test_bad_edge_config_names_the_key(edit, expected):
    problems = problems_of(variant(edit))
    assert any(p.startswith(expected) for p in problems), problems


def test_the_key_must_be_a_secret_and_long():
    assert stack_problems(stack_raw("dev"), secrets=())[0].startswith("llm-infra:apiKey: the key is in plain text")
    short = stack_problems(variant(lambda r: r.update(apiKey="short")), secrets=("apiKey",))
    assert short == ["llm-infra:apiKey: 5 characters; use at least 32 random ones (`openssl rand -hex 32`)"]


def test_traefik_with_only_vllm_routes_has_no_auth_middleware_pointing_at_a_missing_secret():
    raw = variant(lambda r: (r["ingress"].update(controller="traefik", tls={"secretName": "llm-tls"}), r.pop("llamaStack"),
                             r.pop("agents")), "prod")
    run = run_secret_raw(raw, ["hfToken"])
    kinds = {(o["kind"], o["metadata"]["name"]) for o in run.objects()}
    assert ("Middleware", "edge-auth") not in kinds and ("Secret", AUTH_SECRET) not in kinds
    for ing in ingresses(run).values():
        assert "edge-auth" not in ing["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"]


def test_root_and_dotted_paths_stay_well_formed():
    import re as regex

    raw = variant(lambda r: r["ingress"].update(routes={"ollama-base": {"path": "/"}, "ollama-code": {"path": "/code.v2"}}))
    by = {r.service: r for r in stack_of(raw).routes}
    base, code = by["ollama-base"], by["ollama-code"]
    assert (base.path, base.strip, base.nginx_path) == ("/", "", "/()(.*)")
    m = regex.fullmatch(base.nginx_path, "/api/tags")
    assert m and "/" + m.group(2) == "/api/tags"  # rewrite-target /$2
    assert regex.fullmatch(code.nginx_path, "/code.v2/api/tags") and not regex.fullmatch(code.nginx_path, "/codexv2/api/tags")
    stack = stack_of(variant(lambda r: r["ingress"].update(routes={"llamastack-server": {"path": "/"}}), "prod"))
    assert next(r for r in stack.routes if r.service == "llamastack-server").path == "/v1"  # not //v1
    traefik = run_raw(raw)
    assert not [o for o in traefik.objects() if o["kind"] == "Middleware" and o["metadata"]["name"] == "edge-ollama-base-strip"]
