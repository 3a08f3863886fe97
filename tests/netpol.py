"""A NetworkPolicy evaluator over rendered manifests (networking.k8s.io/v1 semantics), for the tests.

A pod is isolated for a direction when any policy selecting it lists that policy type; isolated traffic
passes only when some policy rule of that direction matches the peer and the port. A connection between
two pods needs both the sender's egress and the receiver's ingress. Traffic to or from outside the
stack's namespace is judged on the stack's side only (the other namespace's policies are not ours).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

NS_NAME = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.namespace, tuple(sorted(self.labels.items()))))


@dataclass(frozen=True)
class Address:
    """An address outside the cluster's pods (the internet, a node, the metadata service)."""

    ip: str


Peer = Pod | Address


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    assert set(selector) <= {"matchLabels"}, f"evaluator handles matchLabels only, got {selector}"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def peer_matches(peer: dict[str, Any], policy_ns: str, other: Peer) -> bool:
    if "ipBlock" in peer:
        if not isinstance(other, Address):
            return False  # ipBlock is meant for traffic outside the cluster's pods
        ip = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
    if isinstance(other, Address):
        return False
    ns_sel = peer.get("namespaceSelector")
    ns_ok = other.namespace == policy_ns if ns_sel is None else selects(ns_sel, {NS_NAME: other.namespace})
    return ns_ok and selects(peer.get("podSelector"), other.labels)


def port_matches(ports: list[dict[str, Any]] | None, proto: str, port: int) -> bool:
    return not ports or any(p.get("protocol", "TCP") == proto and p.get("port") in (None, port) for p in ports)


class Policies:
    def __init__(self, objects: list[dict[str, Any]]):
        self.items = [o for o in objects if o["kind"] == "NetworkPolicy"]

    def _selecting(self, pod: Pod, kind: str) -> list[dict[str, Any]]:
        return [p for p in self.items if p["metadata"]["namespace"] == pod.namespace
                and kind in p["spec"].get("policyTypes", ["Ingress"]) and selects(p["spec"]["podSelector"], pod.labels)]

    def egress_ok(self, src: Pod, dst: Peer, proto: str, port: int) -> bool:
        policies = self._selecting(src, "Egress")
        return not policies or any(
            port_matches(rule.get("ports"), proto, port) and (not rule.get("to") or any(peer_matches(pr, src.namespace, dst) for pr in rule["to"]))
            for p in policies for rule in p["spec"].get("egress", []))

    def ingress_ok(self, src: Peer, dst: Pod, proto: str, port: int) -> bool:
        policies = self._selecting(dst, "Ingress")
        return not policies or any(
            port_matches(rule.get("ports"), proto, port) and (not rule.get("from") or any(peer_matches(pr, dst.namespace, src) for pr in rule["from"]))
            for p in policies for rule in p["spec"].get("ingress", []))

    def allowed(self, src: Peer, dst: Peer, port: int, proto: str = "TCP", stack_ns: str | None = None) -> bool:
        """Whether the stack's policies let `src` reach `dst` on `port` (the other side judged only inside `stack_ns`)."""
        out = isinstance(src, Address) or src.namespace != stack_ns or self.egress_ok(src, dst, proto, port)
        into = isinstance(dst, Address) or dst.namespace != stack_ns or self.ingress_ok(src, dst, proto, port)
        return out and into


def pods_of(objects: list[dict[str, Any]]) -> dict[str, Pod]:
    """Every Deployment's pod by Deployment name; a LeaderWorkerSet's leader by its name, its workers as `<name>/worker`."""
    from tests.conftest import pod_templates

    ns = next(o["metadata"]["namespace"] for o in objects if o["kind"] in ("Deployment", "LeaderWorkerSet"))
    return {name: Pod(ns, t["metadata"]["labels"]) for name, t in pod_templates(objects).items()}
