"""NetworkPolicies: a default deny for the namespace and the allow rules the service graph implies.

The rules come from `stacks.edge.policy_rules` (calls of the graph, the ingress controller's routes,
the scraper, DNS, weight downloads); this component only writes them as `networking.k8s.io/v1` objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.labels import labels, meta
from stacks.edge import DEFAULT_DENY, PRIVATE_RANGES, PRIVATE_RANGES_V6, Allow, Peer

DNS_POD_LABELS = {"k8s-app": "kube-dns"}
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace (Kubernetes >= 1.22), so a policy can name a namespace."""


@dataclass(frozen=True)
class NetworkPoliciesArgs:
    namespace: str
    rules: list[Allow]


def peer_args(peer: Peer) -> list[k8s.networking.v1.NetworkPolicyPeerArgs]:
    if peer.kind == "pods":
        return [k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(peer.labels)))]
    if peer.kind == "cidr":
        return [k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=peer.cidr))]
    if peer.kind == "internet":  # IPv4 and, for dual-stack clusters, IPv6
        return [k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=cidr, except_=list(private)))
                for cidr, private in (("0.0.0.0/0", PRIVATE_RANGES), ("::/0", PRIVATE_RANGES_V6))]
    ns = k8s.meta.v1.LabelSelectorArgs(match_labels={NAMESPACE_NAME_LABEL: peer.namespace})
    if peer.kind == "dns":
        return [k8s.networking.v1.NetworkPolicyPeerArgs(namespace_selector=ns, pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=DNS_POD_LABELS))]
    return [k8s.networking.v1.NetworkPolicyPeerArgs(namespace_selector=ns)]


class NetworkPolicies(pulumi.ComponentResource):
    names: list[str]
    default_deny: k8s.networking.v1.NetworkPolicy
    """What serving objects wait for: depending on the component would make each wait on every policy (quadratic)."""

    def __init__(self, name: str, args: NetworkPoliciesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-infra:policy:NetworkPolicies", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.default_deny = k8s.networking.v1.NetworkPolicy(
            f"{name}-{DEFAULT_DENY}",
            metadata=meta(DEFAULT_DENY, args.namespace, labels("network-policy", DEFAULT_DENY, "policy"),
                          {"llm-infra/why": "nothing in the namespace talks or is talked to unless a rule below allows it"}),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(), policy_types=["Ingress", "Egress"]),
            opts=child,
        )
        self.names = [DEFAULT_DENY]
        for rule in args.rules:
            ports = [k8s.networking.v1.NetworkPolicyPortArgs(protocol=proto, port=port) for proto, port in rule.ports]
            peers = [a for p in rule.peers for a in peer_args(p)]
            into, out = rule.direction in ("ingress", "both"), rule.direction in ("egress", "both")
            spec = k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(rule.pod) or None),
                policy_types=[t for t, on in (("Ingress", into), ("Egress", out)) if on],
                ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=peers, ports=ports or None)] if into else None,
                egress=[k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=peers, ports=ports or None)] if out else None,
            )
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{rule.name}",
                metadata=meta(rule.name, args.namespace, labels("network-policy", rule.name, "policy"), {"llm-infra/why": rule.why}),
                spec=spec,
                opts=child,
            )
            self.names.append(rule.name)
        self.register_outputs({"names": self.names})
