"""The live check of a deployed stack: call every served model the way its clients will, print a table.

    make smoke STACK=prod                       # endpoints from `pulumi stack output --json --stack prod`
    make smoke ENDPOINTS=outputs.json STACK=prod  # or a file (or http(s) URL) holding that JSON (STACK: for port-forwards)
    make smoke STACK=prod PORT_FORWARD=1        # through a port-forward to each Service's pod (PORT_FORWARD=0: never)

Reads the stack's `services` output (every Service with its API, URL and model ids, from the service graph)
and, per Service: Ollama `POST /api/generate` for its model; vLLM `GET /v1/models` (its served name listed)
and a short streamed chat completion; Llama Stack `GET /v1/health`, a streamed chat through its first model
and, with a shield, `POST /v1/safety/run-shield`. Prints endpoint, check, status, latency and time to first
token; exits 1 if any check fails. Outside the cluster (no KUBERNETES_SERVICE_HOST), the Services whose URL is their
in-cluster name are reached through a port-forward to a ready pod of each (kubeconfig's current context, or
$KUBECONFIG; Services, pods and ports from the stack file's service graph: tools/smoke_forward.py); `--port-forward`
forwards every Service, `--no-port-forward` none. vLLM checks the stack's API key (`VLLM_API_KEY`): pass it as
`API_KEY=$(pulumi config get apiKey --stack <stack>)` in the environment.

This module imports only the standard library and httpx: the in-cluster smoke Job (`smoke.job`, components/smoke.py)
runs this very file in the Llama Stack or vLLM image.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import httpx

PROMPT = "Reply with the single word OK."


@dataclass
class Result:
    endpoint: str
    check: str
    ok: bool
    detail: str
    seconds: float
    ttft: float | None = None


NO_KEY = "HTTP 401: the server wants the stack's API key; run with API_KEY=$(pulumi config get apiKey --stack <stack>)"


def _stream_lines(client: httpx.Client, method: str, url: str, body: dict[str, Any],
                  headers: dict[str, str] | None = None) -> Iterator[str]:
    with client.stream(method, url, json=body, headers=headers) as r:
        if r.status_code != 200:
            r.read()
            raise RuntimeError(NO_KEY if r.status_code == 401 else f"HTTP {r.status_code}: {r.text[:120]}")
        yield from (line for line in r.iter_lines() if line.strip())


def _timed(endpoint: str, check: str, call: Callable[[], tuple[str, float | None]]) -> Result:
    started = time.monotonic()
    try:
        detail, first = call()
        return Result(endpoint, check, True, detail, time.monotonic() - started, first - started if first else None)
    except httpx.TimeoutException:
        return Result(endpoint, check, False, "timed out", time.monotonic() - started)
    except (httpx.HTTPError, RuntimeError, ValueError, KeyError) as exc:
        reason = (str(exc) or type(exc).__name__).splitlines()[0]
        return Result(endpoint, check, False, reason[:120], time.monotonic() - started)


def _first_token(lines: Iterator[str], pick: Callable[[dict[str, Any]], str]) -> tuple[str, float | None]:
    """Reads a streamed answer; returns its text and when the first token arrived."""
    text, first = "", None
    for line in lines:
        payload = line.removeprefix("data:").strip()
        if payload == "[DONE]":
            break
        piece = pick(json.loads(payload))
        if piece and first is None:
            first = time.monotonic()
        text += piece
    if not text:
        raise ValueError("empty answer")
    return text.strip()[:40], first


def _chat(client: httpx.Client, base: str, model: str, headers: dict[str, str] | None = None) -> tuple[str, float | None]:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8, "stream": True}
    return _first_token(_stream_lines(client, "POST", f"{base}/chat/completions", body, headers),
                        lambda d: (d.get("choices") or [{}])[0].get("delta", {}).get("content") or "")


def checks(name: str, service: dict[str, Any], client: httpx.Client, api_key: str | None = None) -> list[Result]:
    kind, url, models = service["kind"], service["url"].rstrip("/"), service.get("models") or []
    out = []
    if kind == "ollama":
        for model in models:
            body = {"model": model, "prompt": PROMPT, "stream": True, "options": {"num_predict": 8}}
            out.append(_timed(name, f"/api/generate {model}", lambda m=model, b=body: _first_token(
                _stream_lines(client, "POST", f"{url}/api/generate", b), lambda d: d.get("response", ""))))
    elif kind == "vllm":
        bearer = {"Authorization": f"Bearer {api_key}"} if api_key else None

        def listed() -> tuple[str, float | None]:
            r = client.get(f"{url}/models", headers=bearer)
            if r.status_code == 401:
                raise RuntimeError(NO_KEY)
            r.raise_for_status()
            ids = [m["id"] for m in r.json()["data"]]
            missing = [m for m in models if m not in ids]
            if missing:
                raise ValueError(f"{', '.join(missing)} not served (serves {', '.join(ids)})")
            return ", ".join(ids), None

        out.append(_timed(name, "/v1/models", listed))
        out += [_timed(name, f"chat {m}", lambda m=m: _chat(client, url, m, bearer)) for m in models]
    elif kind == "llama-stack":
        def health() -> tuple[str, float | None]:
            r = client.get(f"{url}/v1/health")
            r.raise_for_status()
            return r.json().get("status", ""), None

        out.append(_timed(name, "/v1/health", health))
        if models:
            out.append(_timed(name, f"chat {models[0]}", lambda: _chat(client, f"{url}/v1", models[0])))
        if service.get("shield"):
            def shield() -> tuple[str, float | None]:
                r = client.post(f"{url}/v1/safety/run-shield",
                                json={"shield_id": service["shield"], "messages": [{"role": "user", "content": PROMPT}]})
                r.raise_for_status()
                violation = r.json().get("violation")
                return "safe" if violation is None else f"flagged {violation.get('metadata', {})}", None

            out.append(_timed(name, f"run-shield {service['shield']}", shield))
    return out


def load_outputs(stack: str | None, source: str | None) -> dict[str, Any]:
    if source is None:
        text = subprocess.run(["pulumi", "stack", "output", "--json", "--stack", stack or "dev"],
                              capture_output=True, text=True, check=True, timeout=120).stdout
    elif source.startswith(("http://", "https://")):
        text = httpx.get(source, timeout=30).text
    else:
        text = Path(source).read_text()
    outputs = json.loads(text)
    if "services" not in outputs:
        raise ValueError("the outputs have no `services` (deployed with an older llm-infra?)")
    return outputs["services"]


def table(results: list[Result]) -> str:
    rows = [("endpoint", "check", "status", "latency ms", "first token ms", "detail")]
    for r in results:
        rows.append((r.endpoint, r.check, "ok" if r.ok else "FAIL", f"{r.seconds * 1000:.0f}",
                     f"{r.ttft * 1000:.0f}" if r.ttft is not None else "-", r.detail))
    # Aligned like stacks.plan.text_table (not imported: this file runs alone in the smoke Job).
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i in (3, 4) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _outside_with_cluster_urls(services: dict[str, Any]) -> bool:
    """Outside a cluster (the kubelet sets KUBERNETES_SERVICE_HOST in every container: k8s.io/kubernetes v1.34.4
    pkg/kubelet/kubelet_pods.go:700-709), with a URL whose host is a name, not loopback or an address: an in-cluster
    name that does not resolve here. Which of them are the stack's Services, the service graph says."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return False
    hosts = {urlsplit(s["url"]).hostname or "" for s in services.values()}
    return any(h != "localhost" and not _is_address(h) for h in hosts)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", help="stack whose outputs `pulumi stack output` reads (default dev)")
    p.add_argument("--endpoints", help="file or URL with the stack outputs as JSON, instead of the Pulumi CLI")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per call (default 60)")
    p.add_argument("--api-key", default=os.environ.get("API_KEY"),
                   help="the stack's API key, sent to vLLM as a Bearer token (default: $API_KEY)")
    p.add_argument("--port-forward", action=argparse.BooleanOptionalAction, default=None,
                   help="reach every Service through a port-forward to its pod (--no-port-forward: none); default: outside "
                        "the cluster, the Services whose URL is their in-cluster name")
    a = p.parse_args(argv)
    try:
        services = load_outputs(a.stack, a.endpoints)
    except (OSError, ValueError, subprocess.CalledProcessError, httpx.HTTPError) as exc:
        print(f"smoke: cannot read the stack's outputs: {exc}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as forwards:
        results: list[Result] = []
        if a.port_forward or (a.port_forward is None and _outside_with_cluster_urls(services)):
            if a.stack is None and a.endpoints is not None:
                print("smoke: the URLs are in-cluster names, and port-forwarding to them needs the stack's service graph: "
                      "give STACK=<stack> as well (or PORT_FORWARD=0 to call the URLs as they are)", file=sys.stderr)
                return 2
            try:
                from tools.smoke_forward import KubeCluster, forwarded
                from tools.status import load

                graph = load(a.stack or "dev", None).graph
                services, problems = forwards.enter_context(forwarded(services, graph, KubeCluster, bool(a.port_forward)))
            except Exception as exc:  # stack file, kubeconfig or API errors: one line
                print(f"smoke: cannot port-forward (--no-port-forward calls the URLs as they are): {type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
                return 2
            results += [Result(name, "port-forward", False, why, 0.0) for name, why in sorted(problems.items())]
            services = {n: s for n, s in services.items() if n not in problems}
        with httpx.Client(timeout=a.timeout) as client:
            for i, (name, service) in enumerate(sorted(services.items()), 1):
                via = f", via {service['via']}" if "via" in service else ""
                print(f"[{i}/{len(services)}] {name} ({service['kind']}, {service['url']}{via})", file=sys.stderr, flush=True)
                results += checks(name, service, client, a.api_key)
    print(table(results))
    failed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} checks ok, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
