"""The edge and pod security: ingress routes, authentication, TLS, network policies, and the pods' user.

`ingress` publishes the service graph's endpoints under one set of host names (paths from the graph,
overridable per Service under `ingress.routes`); `apiKey` (a Pulumi secret) is checked by vLLM itself
(`VLLM_API_KEY`) and by the ingress for everything else; `networkPolicy` turns the graph's calls into
NetworkPolicies over a default deny; `podSecurity` is the fixed non-root user every pod runs as.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from stacks.config.base import DNS_LABEL, DNS_SUBDOMAIN, _Model, key
from stacks.config.urls import host_problem, path_problem, url_problem
from stacks.errors import MissingSecret

if TYPE_CHECKING:
    from stacks.config import StackConfig

PATH = r"^/[A-Za-z0-9._~/-]*$"
MAX_RATE_LIMIT = 1_000_000
"""Requests per second per client address. Far past any one client's real rate, and far inside what the controllers
compute with it: Traefik multiplies the average by 10^9 in an int64 (pkg/middlewares/ratelimiter/rate_limiter.go, `New`:
`config.Average*int64(time.Second)`, which wraps past 9.2e9), nginx keeps rate and burst (rate x 5) x 1000 in an ngx_int_t
(src/http/modules/ngx_http_limit_req_module.c)."""
WIDE_V4_PREFIX = 8
WIDE_V6_PREFIX = 48
"""The widest node ranges taken without `networkPolicy.acceptWideNodeCidrs`: an IPv4 /8 (10.0.0.0/8, RFC 1918's largest
private block; any shorter prefix spans public addresses) and an IPv6 /48 (one site: RFC 4193's unique-local prefix, RFC
6177's end-site assignment)."""
API_KEY_MIN_CHARS = 32
API_KEY_MAX_BYTES = 72
"""bcrypt's limit (pyca bcrypt 5 refuses a longer password)."""
CONTROLLER_NAMESPACE = {"nginx": "ingress-nginx", "traefik": "traefik"}
"""Where each controller's own chart installs it (ingress-nginx's and Traefik's Helm charts); k3s runs Traefik in kube-system."""


class Tls(_Model):
    enabled: bool = True
    """Serve HTTPS. Plain HTTP only with `enabled: false`, said explicitly."""
    secret_name: str | None = Field(default=None, pattern=DNS_SUBDOMAIN, max_length=253)
    """A `kubernetes.io/tls` Secret you manage, in the stack's namespace."""
    cluster_issuer: str | None = Field(default=None, pattern=DNS_SUBDOMAIN, max_length=253)
    """A cert-manager ClusterIssuer: the ingress asks cert-manager for the certificate (`cert-manager.io/cluster-issuer`)."""


class Route(_Model):
    path: str | None = Field(default=None, pattern=PATH)
    """Path prefix on the ingress (default from the graph: `/<role>` for Ollama, `/models/<name>/v1` for vLLM, `/v1` for Llama Stack)."""
    rate_limit: int | None = Field(default=None, ge=1, le=MAX_RATE_LIMIT)
    """Requests per second per client address on this route (default `ingress.rateLimit`; at most 1000000)."""
    enabled: bool = True
    """`false` keeps the Service in-cluster only."""


class Auth(_Model):
    mode: Literal["apiKey", "oidc", "none"] = "apiKey"
    """`apiKey`: the stack's `apiKey` (Bearer on vLLM routes, checked by vLLM; basic-auth password elsewhere, checked by the
    ingress). `oidc`: an oauth2-proxy you run checks every request (`oidcUrl`). `none`: no check (say it explicitly)."""
    user: str = Field(default="llm-infra", pattern=r"^[A-Za-z0-9._-]+$")
    """Basic-auth user name that goes with `apiKey` on the Ollama and Llama Stack routes."""
    oidc_url: str | None = None
    """oauth2-proxy's base URL (e.g. `https://sso.example.edu/oauth2`): `/auth` checks, `/start` signs in. http(s), an ASCII
    host, no user name or password (it would stand in plain text in the Ingress annotations), no query or fragment."""

    @field_validator("oidc_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        problem = url_problem(v, "the Ingress annotations (nginx auth-url, auth-signin) or Traefik's forwardAuth") if v else None
        if problem:
            raise ValueError(problem)
        return v


class Ingress(_Model):
    controller: Literal["nginx", "traefik"]
    """Ingress controller: rewrite, rate limit and auth are annotations on nginx and `Middleware` objects on Traefik."""
    class_name: str | None = Field(default=None, pattern=DNS_SUBDOMAIN)
    """`ingressClassName` (default: the controller's name). Another name needs `classServedByController: true`."""
    class_served_by_controller: bool = False
    """`className` names a class that `controller` serves (a second install, a renamed class): say so with `true`. The
    auth, rate limit and rewrite are that controller's annotations or Middlewares; another controller ignores them and
    serves the routes open."""
    hosts: list[str] = Field(min_length=1)
    """Host names every route answers on."""
    rate_limit: int = Field(default=10, ge=1, le=MAX_RATE_LIMIT)
    """Requests per second per client address, on every route without its own (at most 1000000)."""
    routes: dict[str, Route] = {}
    """Per Service name (`ollama-chatbot`, `vllm-llama-70b`, `llamastack-server`): path, rate limit, or `enabled: false`."""
    tls: Tls = Tls()
    auth: Auth = Auth()

    @property
    def ingress_class(self) -> str:
        return self.class_name or self.controller


class NetworkPolicy(_Model):
    enabled: bool = True
    """Default deny in the namespace, and an allow rule for each call of the service graph."""
    ingress_namespace: str | None = Field(default=None, pattern=DNS_LABEL)
    """Namespace of the ingress controller's pods (default: `ingress-nginx` for nginx, `traefik` for Traefik; k3s: `kube-system`).
    Never the stack's own namespace: every pod there would be let in as the ingress."""
    dns_namespace: str = Field(default="kube-system", pattern=DNS_LABEL)
    """Namespace of the cluster DNS (pods labelled `k8s-app: kube-dns`)."""
    node_cidrs: list[str] = Field(default=[], max_length=16)
    """The nodes' addresses (e.g. `10.0.0.0/24`), allowed to every serving port: for a CNI whose policies also cover the
    kubelet's probes (most let the node through on their own; k3s's and Calico's do). At most an IPv4 /8 or an IPv6 /48
    each, unless `acceptWideNodeCidrs`."""
    accept_wide_node_cidrs: bool = False
    """Take `nodeCidrs` wider than an IPv4 /8 or an IPv6 /48 (`0.0.0.0/0` is the whole internet): every address in them
    reaches every serving port directly, Ollama's unauthenticated API included."""
    download_egress: bool = True
    """Pods that download weights may reach the internet on 443 (Hugging Face, the Ollama registry). Turn it off once the
    model cache is warm."""


class PodSecurity(_Model):
    run_as_user: int = Field(default=10001, ge=1, le=2147483647)
    """UID of every container (non-root; 10000 or more keeps clear of host users). The model cache must be writable by it."""
    fs_group: int = Field(default=10001, ge=1, le=2147483647)
    """Group that owns the pods' volumes (`fsGroup`; hostPath caches need it set on the host, see docs/operations.md)."""
    gpu_read_only_root: bool = False
    """Read-only root filesystem for the GPU containers too. Off by default: the NVIDIA runtime's hooks write the
    container's `/etc/ld.so.cache` at create and fail on a read-only root (kserve/kserve#5711). Turn it on where your
    nodes' runtime allows it; every other container is read-only already."""


def edge_problems(cfg: StackConfig, secret_keys: frozenset[str]) -> list[str]:
    """Cross-field checks: a key where the edge needs one, TLS from somewhere, no two routes on one path."""
    problems = _policy_problems(cfg)
    if cfg.api_key is not None:
        if key("apiKey") not in secret_keys:
            problems.append(f"{key('apiKey')}: the key is in plain text in the stack file; store it with "
                            "`pulumi config set --secret apiKey \"$(openssl rand -hex 32)\"`")
        elif len(cfg.api_key) < API_KEY_MIN_CHARS and not cfg.api_key.startswith("<secret:"):
            problems.append(f"{key('apiKey')}: {len(cfg.api_key)} characters; use at least {API_KEY_MIN_CHARS} random ones "
                            "(`openssl rand -hex 32`)")
        elif len(cfg.api_key.encode()) > API_KEY_MAX_BYTES:
            problems.append(f"{key('apiKey')}: {len(cfg.api_key.encode())} bytes; bcrypt (the ingress's htpasswd line) takes at "
                            f"most {API_KEY_MAX_BYTES}: use `openssl rand -hex 32` (64 characters)")
    ing = cfg.ingress
    if ing is None:
        return problems
    if ing.auth.mode == "apiKey" and cfg.api_key is None:
        problems.append(MissingSecret("apiKey", f"{key('ingress', 'auth', 'mode')}: apiKey needs the stack's key: `pulumi config set "
                        "--secret apiKey \"$(openssl rand -hex 32)\"` (or set ingress.auth.mode to oidc, or to none explicitly)"))
    if ing.auth.mode == "oidc" and cfg.api_key is not None:
        problems.append(f"{key('apiKey')}: with ingress.auth.mode oidc the Authorization header carries the SSO's token, so vLLM's "
                        "own key check (VLLM_API_KEY) would refuse every signed-in request; remove apiKey (the network policies "
                        "guard the calls inside the cluster) or use mode apiKey")
    if ing.auth.mode == "oidc" and ing.auth.oidc_url is None:
        problems.append(f"{key('ingress', 'auth', 'oidcUrl')}: mode oidc needs oauth2-proxy's base URL, e.g. https://sso.example.edu/oauth2")
    tls = ing.tls
    if tls.enabled and not (tls.secret_name or tls.cluster_issuer):
        problems.append(f"{key('ingress', 'tls')}: TLS is on but has no certificate; set secretName (a kubernetes.io/tls Secret) "
                        "or clusterIssuer (cert-manager), or enabled: false for plain HTTP")
    if tls.secret_name and tls.cluster_issuer:
        problems.append(f"{key('ingress', 'tls')}: set secretName or clusterIssuer, not both (cert-manager would overwrite your Secret)")
    if not tls.enabled and (tls.secret_name or tls.cluster_issuer):
        problems.append(f"{key('ingress', 'tls', 'enabled')}: false, but a certificate is configured; remove it or enable TLS")
    if len(set(ing.hosts)) != len(ing.hosts):
        problems.append(f"{key('ingress', 'hosts')}: a host is listed twice")
    for host in ing.hosts:
        problem = host_problem(host)
        if problem:
            problems.append(f"{key('ingress', 'hosts')}: {host!r} {problem}")
    for name, route in sorted(ing.routes.items()):
        problem = path_problem(route.path) if route.path else None
        if problem:
            problems.append(f"{key('ingress', 'routes', name, 'path')}: {route.path!r} {problem}")
    return problems


def _policy_problems(cfg: StackConfig) -> list[str]:
    """Node ranges that let the internet in, and an ingress namespace that lets the whole stack in."""
    problems: list[str] = []
    np = cfg.network_policy
    for i, cidr in enumerate(np.node_cidrs):
        try:
            net = ipaddress.ip_network(cidr)
        except ValueError:
            problems.append(f"{key('networkPolicy', 'nodeCidrs', i)}: {cidr!r} is not a CIDR (e.g. 10.0.0.0/24, host bits zero)")
            continue
        widest = WIDE_V4_PREFIX if net.version == 4 else WIDE_V6_PREFIX
        if net.prefixlen < widest and not np.accept_wide_node_cidrs:
            problems.append(f"{key('networkPolicy', 'nodeCidrs', i)}: {cidr} lets {net.num_addresses:.3g} addresses reach every "
                            f"serving port (Ollama's has no authentication); give the nodes' own range (at most a /{widest}), "
                            "or set networkPolicy.acceptWideNodeCidrs: true to open the ports that wide")
    if np.enabled and cfg.ingress is not None:
        given = np.ingress_namespace is not None
        controller_ns = np.ingress_namespace or CONTROLLER_NAMESPACE[cfg.ingress.controller]
        if controller_ns == cfg.namespace:
            said = f"{controller_ns!r} is" if given else f"defaults to {controller_ns!r} (the {cfg.ingress.controller} controller's), which is"
            problems.append(f"{key('networkPolicy', 'ingressNamespace')}: {said} the stack's own namespace; the rule that lets "
                            "the ingress controller in would let every pod of the stack reach every routed Service. Run the "
                            "stack in a namespace of its own, apart from the controller, and name the controller's here")
    return problems
