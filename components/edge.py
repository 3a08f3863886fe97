"""Edge: the stack's ingress routes (nginx or Traefik), their authentication and TLS.

One Ingress per route (`edge-<service>`), because the rate limit, the rewrite and the check are per
route and ingress-nginx takes them as annotations of the whole Ingress; every Ingress lists all the
stack's hosts and the same TLS Secret. With a cert-manager ClusterIssuer only the first Ingress carries
the annotation: cert-manager makes one Certificate per secretName and ignores the same name on a
second annotated Ingress (cert-manager 1.21 certificate-shim/sync.go).

- nginx (ingress-nginx 1.15 annotations): `use-regex` + `rewrite-target` strip the prefix, `limit-rps`
  limits each client address, `auth-type: basic` + `auth-secret` check the key, `auth-url`/`auth-signin`
  send to oauth2-proxy.
- Traefik (3.7 `traefik.io/v1alpha1` Middleware): `stripPrefix`, `rateLimit`, `basicAuth` (the header is
  removed before the backend), `forwardAuth`; attached with `traefik.ingress.kubernetes.io/router.middlewares`.

vLLM routes are not checked by the ingress: vLLM checks the Bearer key itself (`VLLM_API_KEY`), and only
its `/v1` is published, so `/health` and `/metrics` stay in-cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apiextensions import CustomResource

from components.labels import labels, meta, SKIP_AWAIT
from stacks.config import Ingress
from stacks.edge import AUTH_MIDDLEWARE, AUTH_SECRET, IngressRoute, htpasswd

NGINX = "nginx.ingress.kubernetes.io"
TRAEFIK = "traefik.ingress.kubernetes.io"
CLUSTER_ISSUER = "cert-manager.io/cluster-issuer"
BURST_MULTIPLIER = 5
"""Burst = rate x 5 on both controllers (ingress-nginx's default `limit-burst-multiplier`)."""
REALM = "llm-infra"
AUTH_USER_HEADERS = ["X-Auth-Request-User", "X-Auth-Request-Email"]
"""What oauth2-proxy tells the backend about the signed-in user."""


@dataclass(frozen=True)
class EdgeArgs:
    namespace: str
    ingress: Ingress
    routes: list[IngressRoute]
    api_key: pulumi.Input[str] | None
    """The stack's key (a secret Output): the basic-auth password on the Ollama and Llama Stack routes."""


def tls_secret(namespace: str, ingress: Ingress) -> str | None:
    if not ingress.tls.enabled:
        return None
    return ingress.tls.secret_name or f"{namespace}-edge-tls"


def nginx_annotations(route: IngressRoute, ingress: Ingress, first: bool) -> dict[str, str]:
    a = {
        f"{NGINX}/use-regex": "true",
        f"{NGINX}/rewrite-target": f"{route.backend_prefix}/$2",
        f"{NGINX}/limit-rps": str(route.rate_limit),
        f"{NGINX}/limit-burst-multiplier": str(BURST_MULTIPLIER),
    }
    if route.auth == "basic":
        a |= {f"{NGINX}/auth-type": "basic", f"{NGINX}/auth-secret": AUTH_SECRET, f"{NGINX}/auth-realm": REALM}
    elif route.auth == "oidc":
        url = (ingress.auth.oidc_url or "").rstrip("/")
        a |= {f"{NGINX}/auth-url": f"{url}/auth", f"{NGINX}/auth-signin": f"{url}/start?rd=$scheme://$host$escaped_request_uri",
              f"{NGINX}/auth-response-headers": ",".join(AUTH_USER_HEADERS)}
    if first and ingress.tls.cluster_issuer:
        a[CLUSTER_ISSUER] = ingress.tls.cluster_issuer
    return a


def traefik_middlewares(route: IngressRoute) -> list[tuple[str, dict[str, object]]]:
    """(name, spec) of the route's own Middlewares, in the order they run (rate limit first, prefix last)."""
    specs: list[dict[str, object]] = [
        {"rateLimit": {"average": route.rate_limit, "burst": route.rate_limit * BURST_MULTIPLIER, "period": "1s"}}]
    if route.strip:
        specs.append({"stripPrefix": {"prefixes": [route.strip]}})
    return list(zip(route.middlewares(), specs, strict=True))


def traefik_auth(ingress: Ingress) -> dict[str, object] | None:
    """The shared auth Middleware's spec, or None with auth mode none."""
    if ingress.auth.mode == "apiKey":
        return {"basicAuth": {"secret": AUTH_SECRET, "realm": REALM, "removeHeader": True}}
    if ingress.auth.mode == "oidc":
        url = (ingress.auth.oidc_url or "").rstrip("/")
        return {"forwardAuth": {"address": f"{url}/auth", "authResponseHeaders": AUTH_USER_HEADERS, "authSigninURL": f"{url}/start"}}
    return None


class Edge(pulumi.ComponentResource):
    urls: dict[str, str]
    """Public URL of each routed Service."""

    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-infra:edge:Edge", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ing, ns = args.ingress, args.namespace
        if any(r.auth == "basic" for r in args.routes) and args.api_key is not None:
            # One key `auth`: ingress-nginx reads exactly that key (auth-file); Traefik takes any single key.
            k8s.core.v1.Secret(
                f"{name}-basic-auth",
                metadata=meta(AUTH_SECRET, ns, labels("edge", AUTH_SECRET, "credentials")),
                type="Opaque",
                string_data={"auth": pulumi.Output.secret(args.api_key).apply(lambda key: htpasswd(ing.auth.user, key, ns) + "\n")},
                opts=child,
            )
        # Traefik's shared auth Middleware, when a route uses it (vLLM routes are checked by vLLM itself).
        auth_mw = traefik_auth(ing) if ing.controller == "traefik" and any(r.auth in ("basic", "oidc") for r in args.routes) else None
        if auth_mw is not None:
            self._middleware(name, AUTH_MIDDLEWARE, ns, auth_mw)
        secret = tls_secret(ns, ing)
        scheme = "https" if secret else "http"
        self.urls = {}
        for i, route in enumerate(args.routes):
            annotations: dict[str, str]
            if ing.controller == "nginx":
                annotations = nginx_annotations(route, ing, first=i == 0)
                path, path_type = route.nginx_path, "ImplementationSpecific"
            else:
                own = traefik_middlewares(route)
                chain = [n for n, _ in own]
                for mw_name, spec in own:
                    self._middleware(name, mw_name, ns, spec)
                if auth_mw is not None and route.auth in ("basic", "oidc"):
                    chain.insert(1, AUTH_MIDDLEWARE)
                annotations = {f"{TRAEFIK}/router.middlewares": ",".join(f"{ns}-{n}@kubernetescrd" for n in chain)}
                if secret:
                    annotations[f"{TRAEFIK}/router.tls"] = "true"
                if i == 0 and ing.tls.cluster_issuer:
                    annotations[CLUSTER_ISSUER] = ing.tls.cluster_issuer
                path, path_type = route.path, "Prefix"
            backend = k8s.networking.v1.IngressBackendArgs(service=k8s.networking.v1.IngressServiceBackendArgs(
                name=route.service, port=k8s.networking.v1.ServiceBackendPortArgs(number=route.port)))
            k8s.networking.v1.Ingress(
                f"{name}-{route.service}",
                metadata=meta(route.ingress_name, ns, labels("edge", route.ingress_name, "ingress"), {**annotations, **SKIP_AWAIT}),
                spec=k8s.networking.v1.IngressSpecArgs(
                    ingress_class_name=ing.ingress_class,
                    tls=[k8s.networking.v1.IngressTLSArgs(hosts=ing.hosts, secret_name=secret)] if secret else None,
                    rules=[k8s.networking.v1.IngressRuleArgs(host=h, http=k8s.networking.v1.HTTPIngressRuleValueArgs(
                        paths=[k8s.networking.v1.HTTPIngressPathArgs(path=path, path_type=path_type, backend=backend)]))
                        for h in ing.hosts],
                ),
                opts=child,
            )
            self.urls[route.service] = f"{scheme}://{ing.hosts[0]}{route.path}"
        self.register_outputs({"urls": self.urls})

    def _middleware(self, name: str, mw_name: str, ns: str, spec: dict[str, object]) -> None:
        CustomResource(
            f"{name}-{mw_name}",
            api_version="traefik.io/v1alpha1",
            kind="Middleware",
            metadata=meta(mw_name, ns, labels("edge", mw_name, "middleware")),
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self),
        )
