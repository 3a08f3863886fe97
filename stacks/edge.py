"""The edge, derived from the service graph: ingress routes and the network-policy rules.

Pure Python. Every route is an endpoint of the graph (its path from the graph unless `ingress.routes`
overrides it); every NetworkPolicy allow rule is a call of the graph, the ingress controller's
route to a Service, the scraper's pull of `/metrics`, DNS, or a weight download. Nothing is listed
by hand; `edge_problems` refuses routes the graph does not have and two routes on one path.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
from dataclasses import dataclass
from typing import Literal

from stacks.catalog import LLAMA_STACK, OLLAMA, VLLM
from stacks.config import StackConfig, key
from stacks.config.edge import CONTROLLER_NAMESPACE
from stacks.graph import Endpoint, ServiceGraph
from stacks.plan import text_table

SERVICE_LABEL = "llm-infra/service"
"""Pod label naming the Service whose pods these are: what the policies select servers by."""
GROUP_LABEL = "llm-infra/group"
"""Pod label of every rank of one multi-node vLLM replica (its LeaderWorkerSet's name): what the ranks' policy selects."""
ROLE_LABEL = "llm-infra/role"
"""`leader` (serves the API; the model's Service selects it) or `worker` (headless) in a multi-node replica."""
AGENT_LABEL = "llm-infra/agent"
"""Pod label an agent's pods carry (`llm-infra/agent: <name>`) to get the calls the graph gives that agent."""
AUTH_SECRET = "edge-basic-auth"
AUTH_MIDDLEWARE = "edge-auth"
DEFAULT_DENY = "default-deny"
API_KEY_SECRET = "llm-infra-api-key"
API_KEY_KEY = "api-key"
ACME_SOLVER_LABEL = "acme.cert-manager.io/http01-solver"
ACME_SOLVER_PORT = 8089
"""cert-manager's HTTP-01 solver pods: their label and port."""
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")
"""Left out of the download egress: the internet, not the cluster, the node network or the cloud metadata service."""
PRIVATE_RANGES_V6 = ("fc00::/7", "fe80::/10")
"""The same for IPv6 (unique-local and link-local), for dual-stack clusters."""

Auth = Literal["basic", "backend", "oidc", "none"]

API_ROOTS = {"ollama": ("/api", "/v1"), "vllm": ("/v1",), "llama-stack": ("/v1",)}
"""Where each backend serves its API: Ollama `/api/...` and the OpenAI `/v1/...` (ollama server/routes.go GenerateRoutes,
v0.32.15), vLLM and Llama Stack the OpenAI and Llama Stack APIs under `/v1` (the only prefix the routes publish)."""


@dataclass(frozen=True)
class IngressRoute:
    service: str
    """The Service the route reaches (its port is the endpoint's)."""
    port: int
    path: str
    """Public path prefix (`/chatbot`, `/models/llama-70b/v1`, `/v1`)."""
    backend_prefix: str
    """What the public prefix becomes on the backend: `""` (Ollama: `/chatbot/api/tags` -> `/api/tags`) or `/v1`."""
    rate_limit: int
    auth: Auth
    """`backend`: vLLM checks the Bearer key itself (`VLLM_API_KEY`), `basic`: the ingress checks it."""

    @property
    def strip(self) -> str:
        """The prefix the ingress removes (the public path without the backend's own prefix; nothing at the root)."""
        prefix = self.path[: len(self.path) - len(self.backend_prefix)] if self.backend_prefix else self.path
        return "" if prefix == "/" else prefix

    @property
    def nginx_path(self) -> str:
        """The route as ingress-nginx's regex location: the prefix (dots escaped), then the rest captured as $2."""
        # Paths hold letters, digits and . _ ~ / - (config pattern): only the dot means something in a regex.
        return "/()(.*)" if self.path == "/" else self.path.replace(".", "\\.") + "(/|$)(.*)"

    @property
    def ingress_name(self) -> str:
        return f"edge-{self.service}"

    def middlewares(self) -> list[str]:
        """Traefik: this route's own Middlewares, in the order they run (the shared auth one goes between them)."""
        return [f"edge-{self.service}-rate"] + ([f"edge-{self.service}-strip"] if self.strip else [])


def pod_port(ep: Endpoint) -> int:
    """The container port behind an endpoint (an alias Service on 11434 reaches vLLM's 8000)."""
    return {"ollama": OLLAMA.port, "vllm": VLLM.port, "llama-stack": LLAMA_STACK.port}[ep.kind]


def pod_service(ep: Endpoint) -> str:
    """The Service whose pods answer for an endpoint (aliases select another Service's pods)."""
    return ep.alias_of or ep.name


def default_path(ep: Endpoint) -> tuple[str, str]:
    """(public path, backend prefix) for an endpoint, as the seeds publish them."""
    if ep.kind == "llama-stack":
        return "/v1", "/v1"
    if ep.alias_of is not None or ep.kind == "ollama":
        # The seeds' task paths; a task served by vLLM (an alias Service) speaks the OpenAI API under /v1.
        role = ep.name.removeprefix("ollama-")
        return (f"/{role}/v1", "/v1") if ep.kind == "vllm" else (f"/{role}", "")
    return f"/models/{ep.name.removeprefix('vllm-')}/v1", "/v1"  # the model's key: unique, where served names may repeat


def ingress_routes(cfg: StackConfig, graph: ServiceGraph) -> list[IngressRoute]:
    ing = cfg.ingress
    if ing is None:
        return []
    out: list[IngressRoute] = []
    shield = graph.llama_stack.shield if graph.llama_stack else None
    internal = {shield.model.provider_id} if shield else set()  # the guard answers Llama Stack only, unless a route says so
    for name, ep in sorted(graph.endpoints.items()):
        over = ing.routes.get(name)
        if (over is not None and not over.enabled) or (name in internal and (over is None or "enabled" not in over.model_fields_set)):
            continue
        path, backend = default_path(ep)
        if over is not None and over.path:
            path = over.path.rstrip("/")
            if backend and not path.endswith(backend):
                path = f"{path}{backend}"  # the backend's own prefix stays published: `/` -> `/v1`
            path = path or "/"
        mode = ing.auth.mode
        auth: Auth = "none" if mode == "none" else "oidc" if mode == "oidc" else "backend" if ep.kind == "vllm" else "basic"
        rate = over.rate_limit if over is not None and over.rate_limit else ing.rate_limit
        out.append(IngressRoute(name, ep.port, path, backend, rate, auth))
    return out


def route_problems(cfg: StackConfig, graph: ServiceGraph) -> list[str]:
    """Routes the graph does not have, and two routes on one path."""
    ing = cfg.ingress
    if ing is None:
        return []
    problems = []
    for name in ing.routes:
        if name not in graph.endpoints:
            close = difflib.get_close_matches(name, graph.endpoints, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"{key('ingress', 'routes', name)}: no such Service in the stack; {hint}"
                            f"Services: {', '.join(sorted(graph.endpoints))}")
    routes = ingress_routes(cfg, graph)
    seen: dict[str, str] = {}
    for r in routes:
        if r.path in seen:
            problems.append(f"{key('ingress', 'routes', r.service, 'path')}: {r.path} is also the path of {seen[r.path]}; "
                            "give one of them another path")
        seen.setdefault(r.path, r.service)
    return problems + overlap_problems(cfg, graph, routes) + class_problems(cfg, routes)


def overlap_problems(cfg: StackConfig, graph: ServiceGraph, routes: list[IngressRoute]) -> list[str]:
    """Two routes one controller cannot tell apart, and a route that takes part of another's API.

    All routes answer on every host. The longer path wins on both controllers: ingress-nginx writes its regex locations
    longest first (internal/ingress/controller/controller.go, createServers: locations sorted by path length) and nginx takes
    the first regex that matches; Traefik's default router priority is the rule's length, and Kubernetes gives the longest
    Prefix match priority (k8s.io/api v0.34.4 networking/v1/types.go, PathType). So a nested route is reached, but the
    outer route's backend loses the requests under it: refused where they fall inside that backend's API (API_ROOTS).
    nginx matches case-insensitively (ingress-nginx buildLocation writes `location ~* "^<path>"`).
    """
    assert cfg.ingress is not None
    fold = (lambda p: p.lower()) if cfg.ingress.controller == "nginx" else (lambda p: p)
    problems: list[str] = []
    by_path: dict[str, IngressRoute] = {}
    for r in routes:
        other = by_path.setdefault(fold(r.path), r)
        if other is not r and other.path != r.path:
            problems.append(f"{key('ingress', 'routes', r.service, 'path')}: {r.path} differs from {other.service}'s {other.path} "
                            "only in letter case, and nginx matches paths case-insensitively (ingress-nginx writes "
                            "`location ~*`), so one of them gets both; give one of them another path")
    for outer in routes:
        for inner in routes:
            o, i = fold(outer.path), fold(inner.path)
            if o == i or not (o == "/" or i.startswith(o + "/")):
                continue
            reaches = inner.path[len(outer.strip):]  # what outer's backend would have been sent for inner's prefix
            hit = next((root for root in API_ROOTS[graph.endpoints[outer.service].kind]
                        if fold(reaches) == root or fold(reaches).startswith(root + "/")), None)
            if hit is not None:
                problems.append(f"{key('ingress', 'routes', inner.service, 'path')}: {inner.path} lies inside {outer.service}'s "
                                f"route {outer.path}, and the longer path wins: requests for {outer.service}'s own {reaches} (its "
                                f"{hit}/... API) would reach {inner.service} instead; give {inner.service} a path outside {outer.path}"
                                + ("" if outer.path == "/" else f" or {outer.service} another one"))
    return problems


CONTROLLER_CLASS = {"nginx": "nginx", "traefik": "traefik"}
"""The IngressClass each controller's chart creates: ingress-nginx `controller.ingressClassResource.name: nginx`
(charts/ingress-nginx/values.yaml), Traefik's named after its release, `traefik` (traefik-helm-chart
templates/ingressclass.yaml; k3s's bundled Traefik is that release)."""


def class_problems(cfg: StackConfig, routes: list[IngressRoute]) -> list[str]:
    """An ingress class that may belong to another controller while the ingress checks the key on some route: the other
    controller ignores the auth annotations (nginx) or Middlewares (Traefik) and serves the route open."""
    ing = cfg.ingress
    assert ing is not None
    checked = [r.service for r in routes if r.auth in ("basic", "oidc")]
    if ing.class_name in (None, CONTROLLER_CLASS[ing.controller]) or ing.class_served_by_controller or not checked:
        return []
    other = next((c for c, name in CONTROLLER_CLASS.items() if name == ing.class_name and c != ing.controller), None)
    whose = f"is {other}'s class" if other else "is not the class the " + ing.controller + " chart creates"
    return [f"{key('ingress', 'className')}: {ing.class_name!r} {whose}, but the auth on {', '.join(checked)} is written for "
            f"{ing.controller} (ingress.controller); any other controller ignores it and serves those routes open. Set "
            f"className to the {ing.controller} controller's class, or set ingress.classServedByController: true if "
            f"{ing.class_name!r} is served by {ing.controller}"]


# --------------------------------------------------------------------------------------------
# Network policy rules


@dataclass(frozen=True)
class Peer:
    """The other side of an allowed connection."""

    kind: Literal["pods", "namespace", "internet", "dns", "cidr"]
    labels: tuple[tuple[str, str], ...] = ()
    """Pod labels (kind pods: in the stack's namespace)."""
    namespace: str | None = None
    cidr: str | None = None


@dataclass(frozen=True)
class Allow:
    """One NetworkPolicy: pods selected by `pod` may receive from (`ingress`), send to (`egress`) or both `peers` on `ports`
    (none listed: every port)."""

    name: str
    pod: tuple[tuple[str, str], ...]
    """Pod labels selecting the policy's pods (empty: every pod in the namespace)."""
    direction: Literal["ingress", "egress", "both"]
    peers: tuple[Peer, ...]
    ports: tuple[tuple[str, int], ...]
    """(protocol, port) pairs."""
    why: str


def client_labels(client: str) -> tuple[tuple[str, str], ...]:
    """The pods of a graph client: a Service's pods, or an agent's (`agent:<name>`)."""
    if client.startswith("agent:"):
        return ((AGENT_LABEL, client.removeprefix("agent:")),)
    return ((SERVICE_LABEL, client),)


def downloaders(graph: ServiceGraph) -> list[str]:
    """Services whose pods fetch weights on a cold cache: vLLM (Hugging Face), Ollama (its registry), Llama Stack (embeddings)."""
    return sorted({pod_service(ep) for ep in graph.endpoints.values()})


def policy_rules(cfg: StackConfig, graph: ServiceGraph, routes: list[IngressRoute]) -> list[Allow]:
    """The allow rules over the default deny, one per server and one per client, from the graph alone."""
    np = cfg.network_policy
    controller_ns = np.ingress_namespace or (CONTROLLER_NAMESPACE[cfg.ingress.controller] if cfg.ingress else None)
    routed = {pod_service(graph.endpoints[r.service]) for r in routes}
    rules: list[Allow] = [Allow("allow-dns", (), "egress", (Peer("dns", namespace=np.dns_namespace),),
                                (("UDP", 53), ("TCP", 53)), "every pod resolves Service names")]
    servers: dict[str, Endpoint] = {}
    for ep in graph.endpoints.values():
        servers.setdefault(pod_service(ep), graph.endpoints[pod_service(ep)])
    callers: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}
    for r in graph.routes:
        target = pod_service(graph.endpoints[r.server])
        callers.setdefault(target, set()).add(r.client)
        calls.setdefault(r.client, set()).add(target)
    for name, ep in sorted(servers.items()):
        port = (("TCP", pod_port(ep)),)
        peers = [Peer("pods", client_labels(c)) for c in sorted(callers.get(name, ()))]
        if name in routed and controller_ns:
            peers.append(Peer("namespace", namespace=controller_ns))
        peers += [Peer("cidr", cidr=c) for c in np.node_cidrs]  # the kubelet's probes, where the CNI polices them
        if ep.kind == "vllm":  # vLLM's /metrics is on its API port; Ollama has none, Llama Stack 0.7.3 exports OpenTelemetry only
            peers.append(Peer("namespace", namespace=cfg.monitoring.namespace))
        if peers:
            rules.append(Allow(f"allow-to-{name}", ((SERVICE_LABEL, name),), "ingress", tuple(peers), port,
                               f"callers of {name}: graph routes, ingress, scraper"))
    for client, targets in sorted(calls.items()):
        peers = tuple(Peer("pods", ((SERVICE_LABEL, t),)) for t in sorted(targets))
        ports = tuple(sorted({("TCP", pod_port(servers[t])) for t in targets}))
        rules.append(Allow(f"allow-from-{client.replace(':', '-')}", client_labels(client), "egress", peers, ports,
                           f"{client} calls {', '.join(sorted(targets))}"))
    if cfg.ingress is not None and cfg.ingress.tls.enabled and cfg.ingress.tls.cluster_issuer and controller_ns:
        # cert-manager's HTTP-01 solver pod answers the CA's challenge in this namespace, through the ingress controller.
        rules.append(Allow("allow-acme-solver", ((ACME_SOLVER_LABEL, "true"),), "ingress", (Peer("namespace", namespace=controller_ns),),
                           (("TCP", ACME_SOLVER_PORT),), "cert-manager's HTTP-01 challenge, from the ingress controller"))
    for group in sorted(g for ep in graph.endpoints.values() if ep.alias_of is None for g in ep.groups):
        # torch.distributed's store is on the master port, but NCCL and vLLM's message queues bind ports the OS picks
        # (vllm/distributed/device_communicators/shm_broadcast.py binds tcp://<ip>:0): the ranks may use any port, only
        # among themselves.
        ranks = ((GROUP_LABEL, group),)
        rules.append(Allow(f"allow-ranks-{group}", ranks, "both", (Peer("pods", ranks),), (),
                           f"the ranks of {group} (torch.distributed, NCCL, vLLM's message queues on ports chosen at run time)"))
    if np.download_egress:
        for name in downloaders(graph):
            rules.append(Allow(f"allow-download-{name}", ((SERVICE_LABEL, name),), "egress", (Peer("internet"),),
                               (("TCP", 443),), "weights from Hugging Face or the Ollama registry (networkPolicy.downloadEgress)"))
    return rules


# --------------------------------------------------------------------------------------------
# The basic-auth file


_BCRYPT_ALPHABET = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


BCRYPT_COST = 5
"""htpasswd -B's default. The ingress verifies the hash on every request (nginx auth_basic, Traefik basicAuth), so a high cost
is CPU per request; the key's own 128+ random bits (apiKey needs 32 characters) are what make guessing hopeless."""


@functools.cache
def htpasswd(user: str, password: str, namespace: str) -> str:
    """One htpasswd line `user:$2b$05$...` (bcrypt: read by ingress-nginx through musl's crypt() and by Traefik's basicAuth).

    The salt is derived from the namespace and user, not random, so the same key renders the same line and
    `pulumi up` does not rewrite the Secret (and reload the ingress) on every run.
    """
    import bcrypt  # pinned in requirements.txt; imported here so the plan does not need it
    seed = hashlib.sha256(f"llm-infra htpasswd {namespace}/{user}".encode()).digest()
    salt = bytes(_BCRYPT_ALPHABET[b % 64] for b in seed[:21]) + bytes([_BCRYPT_ALPHABET[(seed[21] % 4) * 16]])
    return f"{user}:{bcrypt.hashpw(password.encode(), f'$2b${BCRYPT_COST:02d}$'.encode() + salt).decode()}"


def edge_objects(cfg: StackConfig, routes: list[IngressRoute], rules: list[Allow]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(kind, name, config path) of every object the edge and the policies make: the name registry's entries."""
    out: list[tuple[str, str, tuple[str, ...]]] = []
    if cfg.api_key is not None:
        out.append(("Secret", API_KEY_SECRET, ("apiKey",)))
    if cfg.network_policy.enabled:
        out += [("NetworkPolicy", n, ("networkPolicy",)) for n in [DEFAULT_DENY, *(r.name for r in rules)]]
    ing = cfg.ingress
    if ing is None or not routes:
        return out
    if cfg.api_key is not None and any(r.auth == "basic" for r in routes):
        out.append(("Secret", AUTH_SECRET, ("ingress", "auth")))
    if ing.controller == "traefik" and any(r.auth in ("basic", "oidc") for r in routes):
        out.append(("Middleware", AUTH_MIDDLEWARE, ("ingress", "auth")))
    for r in routes:
        out.append(("Ingress", r.ingress_name, ("ingress", "routes", r.service)))
        if ing.controller == "traefik":
            out += [("Middleware", m, ("ingress", "routes", r.service)) for m in r.middlewares()]
    return out


def format_edge(cfg: StackConfig, routes: list[IngressRoute]) -> str:
    """The published routes as a table (printed by `make render`)."""
    ing = cfg.ingress
    if ing is None or not routes:
        return ""
    scheme = "https" if ing.tls.enabled else "http"
    checked = {"basic": "ingress (basic auth, apiKey)", "backend": "vLLM (Bearer apiKey)", "oidc": "oauth2-proxy", "none": "nobody"}
    rows = [("public URL", "Service", "reaches", "checked by", "req/s")]
    for r in routes:
        rows.append((f"{scheme}://{ing.hosts[0]}{r.path}", f"{r.service}:{r.port}", f"{r.backend_prefix}/...", checked[r.auth],
                     str(r.rate_limit)))
    tls = ing.tls.secret_name or (f"cert-manager ClusterIssuer {ing.tls.cluster_issuer}" if ing.tls.cluster_issuer else "off (plain HTTP)")
    return "\n".join([f"Ingress routes ({ing.controller}, class {ing.ingress_class}; TLS: {tls})", text_table(rows, left=4)])
