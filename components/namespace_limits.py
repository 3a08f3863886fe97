"""NamespaceLimits: the stack namespace's ResourceQuota (from the plan) and LimitRange.

The quota (stacks/quota.py) holds exactly the planned pods and one rolling pod more; the LimitRange gives
containers that set no resources (a `kubectl debug` pod) small defaults, so the quota does not refuse them.
Not rendered into a namespace the stack does not own (`existingNamespace`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.labels import labels, meta
from stacks.names import LIMIT_RANGE, RESOURCE_QUOTA


@dataclass(frozen=True)
class NamespaceLimitsArgs:
    namespace: str
    hard: dict[str, str]
    """The quota's hard limits (stacks.quota.quota)."""


class NamespaceLimits(pulumi.ComponentResource):
    def __init__(self, name: str, args: NamespaceLimitsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-infra:policy:NamespaceLimits", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.quota = k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata=meta(RESOURCE_QUOTA, args.namespace, labels("llm-infra", RESOURCE_QUOTA, "quota")),
            spec=k8s.core.v1.ResourceQuotaSpecArgs(hard=args.hard),
            opts=child,
        )
        self.limit_range = k8s.core.v1.LimitRange(
            f"{name}-limits",
            metadata=meta(LIMIT_RANGE, args.namespace, labels("llm-infra", LIMIT_RANGE, "quota")),
            spec=k8s.core.v1.LimitRangeSpecArgs(limits=[k8s.core.v1.LimitRangeItemArgs(
                type="Container",
                default_request={"cpu": "100m", "memory": "128Mi"},
                default={"memory": "256Mi"},
            )]),
            opts=child,
        )
        self.register_outputs({"hard": args.hard})
