"""AgentRoutes: seed 004's agent -> model map, one ConfigMap per agent.

Each ConfigMap `agent-<name>` holds the environment the agent's code reads (`envFrom`): the
OpenAI-compatible base URL and model id of its path (direct vLLM, or Llama Stack with
`<provider_id>/<provider_model_id>` ids), the fallback, `LLAMA_STACK_ENDPOINT`, `SAFETY_ENABLED`
with the shield id, and `RAG_ENABLED`. Everything comes from the service graph. With an API key, the
ConfigMap names its Secret and key (`API_KEY_SECRET`, `API_KEY_SECRET_KEY`) for the agent's pod to mount,
and says which pod label the network policies let through (`POD_LABEL`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.labels import labels, meta
from stacks.edge import AGENT_LABEL, API_KEY_KEY
from stacks.graph import AgentRoute
from stacks.names import agent_config_map


@dataclass(frozen=True)
class AgentRoutesArgs:
    namespace: str
    agents: tuple[AgentRoute, ...]
    api_key_secret: str | None = None


class AgentRoutes(pulumi.ComponentResource):
    routes: dict[str, dict[str, object]]
    """Per agent: endpoint, model id, fallback, shield, RAG (the `agents` stack output)."""
    config_maps: dict[str, k8s.core.v1.ConfigMap]

    def __init__(self, name: str, args: AgentRoutesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-infra:serving:AgentRoutes", name, None, opts)
        self.config_maps = {}
        for agent in args.agents:
            cm = agent_config_map(agent.name)
            self.config_maps[agent.name] = k8s.core.v1.ConfigMap(
                f"{name}-{agent.name}",
                metadata=meta(cm, args.namespace, labels("agent-routing", cm, "agent-config"),
                              {"llm-infra/description": agent.description} if agent.description else None),
                data=dict(sorted({**agent.env(), "POD_LABEL": f"{AGENT_LABEL}={agent.name}",
                                  **({"API_KEY_SECRET": args.api_key_secret, "API_KEY_SECRET_KEY": API_KEY_KEY}
                                     if args.api_key_secret else {})}.items())),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.routes = {a.name: a.to_dict() for a in args.agents}
        self.register_outputs({"routes": self.routes})
