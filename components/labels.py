"""Names, labels and metadata shared by every component."""

from __future__ import annotations

import pulumi_kubernetes as k8s

PART_OF = "llm-infra"


def labels(name: str, instance: str, component: str) -> dict[str, str]:
    """The recommended `app.kubernetes.io/*` labels, sorted for stable diffs."""
    return dict(
        sorted(
            {
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/instance": instance,
                "app.kubernetes.io/component": component,
                "app.kubernetes.io/part-of": PART_OF,
                "app.kubernetes.io/managed-by": "pulumi",
            }.items()
        )
    )


def selector(all_labels: dict[str, str]) -> dict[str, str]:
    """The stable subset used in selectors (never changes over an object's life)."""
    return {k: all_labels[k] for k in ("app.kubernetes.io/instance", "app.kubernetes.io/name")}


def meta(name: str, namespace: str | None, obj_labels: dict[str, str], annotations: dict[str, str] | None = None) -> k8s.meta.v1.ObjectMetaArgs:
    """Explicit name (and namespace, for namespaced kinds) on every object."""
    return k8s.meta.v1.ObjectMetaArgs(
        name=name,
        namespace=namespace,
        labels=obj_labels,
        annotations=dict(sorted(annotations.items())) if annotations else None,
    )


SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
"""For Services and Ingresses. pulumi-kubernetes (provider/pkg/await: service.go, ingress.go; metadata/annotations.go)
waits 10 minutes for a Service to have ready endpoints and for an Ingress to get a load-balancer address. A Service's
pods belong to its Deployment, which is awaited with the model's own start-up budget (a 70B loads for far longer than
10 minutes), and a bare-metal ingress controller may never write an address: waiting on either would fail a first
`pulumi up` that is going well."""
