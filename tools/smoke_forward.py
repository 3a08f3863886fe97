"""`make smoke` from outside the cluster: a port-forward to each Service's pod, opened with the Kubernetes client.

Which Services exist, which pods answer for each (by the labels the network policies select servers by) and on which
container port, all come from the service graph. Each forward is a loopback listener; every connection made to it gets
its own stream to the pod (`kubernetes.stream.portforward`, one websocket per connection, as `kubectl port-forward`
opens one stream per connection). The checks then call the loopback URLs; the forwards close when they are done.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol
from urllib.parse import urlsplit, urlunsplit

from stacks.edge import ROLE_LABEL, SERVICE_LABEL, pod_port, pod_service
from stacks.graph import ServiceGraph


@dataclass(frozen=True)
class Target:
    """Where a Service's requests go: a pod matching `selector` in `namespace`, on container `port`."""

    namespace: str
    selector: str
    port: int


def targets(graph: ServiceGraph) -> dict[str, Target]:
    """Every Service of the graph: the pods behind it (an alias Service's are another Service's; a multi-node replica
    serves from its leader) and the container port (an alias on 11434 reaches vLLM's 8000)."""
    out = {}
    for name, ep in graph.endpoints.items():
        server = graph.endpoints[pod_service(ep)]
        selector = f"{SERVICE_LABEL}={server.name}" + (f",{ROLE_LABEL}=leader" if server.groups else "")
        out[name] = Target(ep.namespace, selector, pod_port(ep))
    return out


def outside_cluster() -> bool:
    """The kubelet sets KUBERNETES_SERVICE_HOST in every container, even with enableServiceLinks false
    (k8s.io/kubernetes v1.34.4 pkg/kubelet/kubelet_pods.go:700-709, getServiceEnvVarMap)."""
    return not os.environ.get("KUBERNETES_SERVICE_HOST")


def to_forward(services: dict[str, dict[str, Any]], graph: ServiceGraph, always: bool) -> tuple[dict[str, Target], dict[str, str]]:
    """The Services to reach through a forward, and why some cannot be. `always` forwards every Service of the outputs;
    otherwise only those whose URL is their in-cluster name (a URL already pointing elsewhere is left alone)."""
    found, missing = targets(graph), {}
    out = {}
    for name, service in services.items():
        ep = graph.endpoints.get(name)
        if ep is None:
            if always:
                missing[name] = "not in the stack's service graph (was the stack file changed since the deploy?)"
            continue
        if always or urlsplit(service["url"]).netloc == urlsplit(ep.url).netloc:
            out[name] = found[name]
    return out, missing


def local_url(url: str, port: int) -> str:
    """The same URL (its path kept: vLLM's `/v1`) on the loopback port of its forward."""
    parts = urlsplit(url)
    return urlunsplit(("http", f"127.0.0.1:{port}", parts.path, parts.query, parts.fragment))


def ready_pod(pods: list[Any]) -> str | None:
    """The first running pod (by name) whose Ready condition is true, as a Service would route to it."""
    def ready(p: Any) -> bool:
        return p.status.phase == "Running" and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])

    names = sorted(p.metadata.name for p in pods if ready(p))
    return names[0] if names else None


class Cluster(Protocol):
    def pods(self, namespace: str, selector: str) -> list[Any]: ...

    def connect(self, namespace: str, pod: str, port: int) -> socket.socket: ...


class KubeCluster:
    """The cluster of kubeconfig's current context (or $KUBECONFIG), through the official client."""

    def __init__(self, core: Any = None, timeout: float = 30.0):
        if core is None:
            from kubernetes import client, config

            config.load_kube_config()
            core = client.CoreV1Api()
        self.core, self.timeout = core, timeout

    def pods(self, namespace: str, selector: str) -> list[Any]:
        return self.core.list_namespaced_pod(namespace, label_selector=selector, _request_timeout=self.timeout).items

    def connect(self, namespace: str, pod: str, port: int) -> socket.socket:
        from kubernetes.stream import portforward  # kubernetes 36.0.3 stream/stream.py, ws_client.py PortForward

        forward = portforward(self.core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port))
        return forward.socket(port)


def _close(sock: Any) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
    with contextlib.suppress(OSError):
        sock.close()


class Forward:
    """A loopback listener whose every connection is piped to a new stream from `connect()`."""

    def __init__(self, connect: Callable[[], Any], name: str = ""):
        self._connect, self.name = connect, name
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.errors: list[str] = []
        self._open: set[Any] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            remote = self._connect()
        except Exception as exc:  # the API server refused the forward: the client sees the connection close
            self.errors.append((str(exc) or type(exc).__name__).splitlines()[0])
            print(f"smoke: port-forward to {self.name}: {self.errors[-1]}", file=sys.stderr, flush=True)
            _close(conn)
            return
        with self._lock:
            self._open.update((conn, remote))
        back = threading.Thread(target=self._pipe, args=(remote, conn), daemon=True)
        back.start()
        self._pipe(conn, remote)
        back.join()
        with self._lock:
            self._open.difference_update((conn, remote))

    @staticmethod
    def _pipe(src: Any, dst: Any) -> None:
        """Copies until either side ends, then ends both (an HTTP exchange needs no half-open connection)."""
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)

    def close(self) -> None:
        """Stops listening (shutdown wakes the accepting thread; the port refuses connections once it returns) and ends
        every open connection."""
        self._stopped.set()
        _close(self._listener)
        self._acceptor.join(timeout=5)
        with self._lock:
            for sock in list(self._open):
                _close(sock)


@contextlib.contextmanager
def forwarded(services: dict[str, dict[str, Any]], graph: ServiceGraph, cluster: Callable[[], Cluster], always: bool
              ) -> Iterator[tuple[dict[str, dict[str, Any]], dict[str, str]]]:
    """The services with each forwarded one's URL on its loopback port, and why a Service could not be forwarded
    (no ready pod, not in the graph). One forward per pod and port: alias Services share their server's. The cluster is
    reached (`cluster()`) only when a Service is to be forwarded."""
    chosen, problems = to_forward(services, graph, always)
    out = dict(services)
    kube = cluster() if chosen else None
    forwards: dict[tuple[str, str, int], Forward] = {}
    try:
        for name, t in sorted(chosen.items()):
            pod = ready_pod(kube.pods(t.namespace, t.selector))
            if pod is None:
                problems[name] = f"no ready pod with {t.selector} in namespace {t.namespace}"
                continue
            key = (t.namespace, pod, t.port)
            if key not in forwards:
                forwards[key] = Forward(lambda k=key: kube.connect(*k), f"pod/{pod}:{t.port}")
            out[name] = {**services[name], "url": local_url(services[name]["url"], forwards[key].port),
                         "via": f"pod/{pod}:{t.port}"}
        yield out, problems
    finally:
        for f in forwards.values():
            f.close()
