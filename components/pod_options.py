"""A workload's pod options (stacks/config/pod_options.py) and the stack's image pull secrets, on the pods it renders.

The program's own settings come first and win: the node the plan pins a pod to (`kubernetes.io/hostname`), the GPU
nodes' toleration, the labels its selectors use and the annotations it sets (the config refuses options that would
contradict them)."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi_kubernetes as k8s

from stacks.config.pod_options import HOSTNAME_LABEL, PodOptions

NO_OPTIONS = PodOptions()


def pull_secrets(names: Sequence[str]) -> list[k8s.core.v1.LocalObjectReferenceArgs] | None:
    """`imagePullSecrets`: the Secrets (by name, in the pod's namespace) the kubelet pulls every container's image with."""
    return [k8s.core.v1.LocalObjectReferenceArgs(name=n) for n in names] or None


def node_selector(pinned: str | None, options: PodOptions) -> dict[str, str] | None:
    """The node labels a pod requires: the workload's own, and the node the plan pinned it to (none for the workers of a
    multi-node replica, which node affinity spreads over their planned nodes)."""
    out = {**options.node_selector, **({HOSTNAME_LABEL: pinned} if pinned is not None else {})}
    return dict(sorted(out.items())) or None


def _signature(t: k8s.core.v1.TolerationArgs) -> tuple:
    return (t.key, t.operator, t.value, t.effect, t.toleration_seconds)


def tolerations(own: list[k8s.core.v1.TolerationArgs], options: PodOptions) -> list[k8s.core.v1.TolerationArgs]:
    """The program's tolerations, then the workload's (a repeat of one of the program's left out)."""
    extra = [k8s.core.v1.TolerationArgs(key=t.key, operator=t.operator, value=t.value, effect=t.effect,
                                        toleration_seconds=t.toleration_seconds) for t in options.tolerations]
    seen = {_signature(t) for t in own}
    return [*own, *(t for t in extra if _signature(t) not in seen)]


def template_metadata(labels: dict[str, str], annotations: dict[str, str] | None, options: PodOptions
                      ) -> k8s.meta.v1.ObjectMetaArgs:
    """A pod template's labels and annotations: the workload's extra ones under the program's."""
    return k8s.meta.v1.ObjectMetaArgs(labels={**options.labels, **labels},
                                      annotations={**options.annotations, **(annotations or {})} or None)
