"""llm-infra: validate the stack's config, plan it, and build the topology."""

import pulumi

from components.topology import Topology
from stacks.loader import load_stack

stack = load_stack()
topology = Topology("llm-infra", stack)
pulumi.export("endpoints", topology.endpoints)
pulumi.export("agents", topology.agents)
pulumi.export("urls", topology.urls)
pulumi.export("services", stack.graph.services())
pulumi.export("gpuPlan", stack.plan.to_dict())
