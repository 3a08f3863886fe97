"""SafetyModel: Llama Guard served by vLLM and registered as Llama Stack's shield.

The classifier is an ordinary `VllmModel` child (placed by the plan like any model); what makes it
a safety model is how Llama Stack reaches it, which the service graph records: its own
`remote::vllm` inference provider, the `inline::llama-guard` safety provider, and a shield whose
`provider_shield_id` is the guard's full registered id (`<provider_id>/<served name>`), because the
provider sends that id as the `model` of its chat completion.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.vllm import VllmModel, VllmModelArgs
from stacks.graph import Shield


@dataclass(frozen=True)
class SafetyModelArgs:
    server: VllmModelArgs
    """The Llama Guard model's vLLM server, as planned."""
    shield: Shield
    """The shield the graph derives from it."""
    server_aliases: tuple[pulumi.Alias, ...] = ()
    """Where the server was when it was an ordinary model (the shield turned on): it keeps its objects."""


class SafetyModel(pulumi.ComponentResource):
    TYPE = "llm-infra:serving:SafetyModel"
    server: VllmModel
    url: str
    shield_id: str
    model_id: str
    """The guard's registered Llama Stack id (the shield's provider_shield_id)."""

    def __init__(self, name: str, args: SafetyModelArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, None, opts)
        self.server = VllmModel(f"{name}-vllm", args.server, opts=pulumi.ResourceOptions(parent=self, aliases=list(args.server_aliases)))
        self.url = self.server.url
        self.shield_id = args.shield.shield_id
        self.model_id = args.shield.model.identifier
        self.register_outputs({
            "url": self.url, "shieldId": self.shield_id, "modelId": self.model_id,
            "excludedCategories": list(args.shield.excluded_categories),
        })
