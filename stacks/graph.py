"""The service graph: which workload serves what, on which port, and who calls whom.

Built once from the validated config and the plan. Llama Stack's providers and registered models,
the shield, the agents' routing map (and later ingress routes, network policies, scrape targets and
smoke tests) are all read from here, never listed again by hand. Pure Python, no Pulumi.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stacks.catalog import EMBEDDING_MODELS, LLAMA_STACK, OLLAMA, VLLM, EmbeddingModel
from stacks.config import Agent, StackConfig
from stacks.config.smoke import JOB_NAME as SMOKE_CLIENT
from stacks.plan import LLAMA_STACK_NAME as LLAMA_STACK_SERVICE
from stacks.plan import Plan, pool_server_key, text_table

STACK_PATH = "llamaStack"
EMBEDDINGS_PROVIDER = "sentence-transformers"
"""Provider id of Llama Stack's inline embeddings (registered ids are `sentence-transformers/<model>`)."""


@dataclass(frozen=True)
class Endpoint:
    """One Service in the graph."""

    name: str
    kind: Literal["ollama", "vllm", "llama-stack"]
    port: int
    namespace: str
    models: tuple[str, ...]
    """The model names clients send to it."""
    workloads: tuple[str, ...]
    """Deployments behind the Service."""
    alias_of: str | None = None
    """Another Service name whose pods this one also selects (the adapter pool's task URLs on vLLM)."""
    groups: tuple[str, ...] = ()
    """Multi-node replicas (LeaderWorkerSets) behind it, whose ranks call each other."""

    @property
    def base_url(self) -> str:
        return f"http://{self.name}.{self.namespace}:{self.port}"

    @property
    def openai_url(self) -> str:
        """OpenAI-compatible base URL (`/v1`); Ollama serves one too."""
        return f"{self.base_url}/v1"

    @property
    def url(self) -> str:
        """What the `endpoints` stack output shows: vLLM's OpenAI base URL; Ollama's and Llama Stack's root."""
        return self.openai_url if self.kind == "vllm" else self.base_url


@dataclass(frozen=True)
class Route:
    """A call from a client (a Service, or `agent:<name>`) to a Service."""

    client: str
    server: str
    purpose: Literal["inference", "safety", "fallback", "rag", "smoke"]


@dataclass(frozen=True)
class StackModel:
    """A vLLM model registered in Llama Stack through its own `remote::vllm` provider."""

    key: str
    provider_id: str
    provider_model_id: str
    base_url: str
    max_tokens: int

    @property
    def identifier(self) -> str:
        """The id Llama Stack 0.7.3 registers and clients send: `<provider_id>/<provider_model_id>`."""
        return f"{self.provider_id}/{self.provider_model_id}"


@dataclass(frozen=True)
class Shield:
    shield_id: str
    model: StackModel
    """The Llama Guard model the shield calls (its full registered id is `provider_shield_id`)."""
    excluded_categories: tuple[str, ...]


@dataclass(frozen=True)
class LlamaStackPlan:
    endpoint: Endpoint
    node: str
    models: tuple[StackModel, ...]
    embedding: EmbeddingModel
    shield: Shield | None


@dataclass(frozen=True)
class AgentRoute:
    name: str
    path: Literal["direct", "llamaStack"]
    endpoint: str
    """OpenAI-compatible base URL the agent sends its requests to."""
    model_id: str
    """The model id exactly as that endpoint expects it."""
    fallback_endpoint: str | None
    fallback_model_id: str | None
    llama_stack_url: str | None
    shield_id: str | None
    rag: bool
    description: str

    def env(self) -> dict[str, str]:
        """The environment the agent's code reads (seed 004's names, plus the fallback and the shield)."""
        env = {
            "AGENT_NAME": self.name,
            "INFERENCE_PATH": self.path,
            "INFERENCE_BASE_URL": self.endpoint,
            "INFERENCE_MODEL": self.model_id,
            "SAFETY_ENABLED": "true" if self.shield_id else "false",
            "RAG_ENABLED": "true" if self.rag else "false",
        }
        if self.llama_stack_url:
            env["LLAMA_STACK_ENDPOINT"] = self.llama_stack_url
        if self.fallback_model_id:
            env["FALLBACK_BASE_URL"] = self.fallback_endpoint or ""
            env["FALLBACK_MODEL"] = self.fallback_model_id
        if self.shield_id:
            env["SAFETY_SHIELD_ID"] = self.shield_id
        return dict(sorted(env.items()))

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path, "endpoint": self.endpoint, "model": self.model_id,
            "fallbackEndpoint": self.fallback_endpoint, "fallbackModel": self.fallback_model_id,
            "llamaStack": self.llama_stack_url, "shield": self.shield_id, "rag": self.rag,
        }


@dataclass(frozen=True)
class ServiceGraph:
    endpoints: dict[str, Endpoint]
    routes: tuple[Route, ...]
    llama_stack: LlamaStackPlan | None
    agents: tuple[AgentRoute, ...]

    def callers_of(self, server: str) -> list[str]:
        return sorted({r.client for r in self.routes if r.server == server})

    def services(self) -> dict[str, dict[str, object]]:
        """Per Service: its API, URL and the model ids it answers for (the `services` output `make smoke` reads)."""
        out: dict[str, dict[str, object]] = {}
        for name, ep in sorted(self.endpoints.items()):
            entry: dict[str, object] = {"kind": ep.kind, "url": ep.url, "models": list(ep.models)}
            if ep.kind == "llama-stack" and self.llama_stack is not None and self.llama_stack.shield is not None:
                entry["shield"] = self.llama_stack.shield.shield_id
            out[name] = entry
        return out


def vllm_service(key: str) -> str:
    return f"vllm-{key}"


def build_graph(cfg: StackConfig, plan: Plan) -> ServiceGraph:
    ns = cfg.namespace
    endpoints: dict[str, Endpoint] = {}
    for w in plan.workloads:
        endpoints[w.service_name] = Endpoint(w.service_name, "ollama", OLLAMA.port, ns, (w.model_name,), (w.deployment_name,))
    by_service: dict[str, list] = {}
    for v in plan.vllm:
        by_service.setdefault(v.service_name, []).append(v)
    for name, pods in sorted(by_service.items()):
        endpoints[name] = Endpoint(name, "vllm", VLLM.port, ns, (pods[0].served_name,), tuple(p.deployment_name for p in pods),
                                   groups=tuple(p.deployment_name for p in pods if p.multi_node))
    if plan.engine == "vllm":
        # The seed's task URLs keep working: ollama-<role>:11434 reaches the vLLM server holding that role's
        # adapter, which answers for the adapter's LoRA name (the base: the served name), OpenAI API under /v1.
        for d in plan.designs:
            server = endpoints[vllm_service(pool_server_key(d, len(cfg.nodes) > 1))]
            for role in d.roles:
                model = role if role in d.adapters else server.models[0]
                endpoints[f"ollama-{role}"] = Endpoint(f"ollama-{role}", "vllm", OLLAMA.port, ns, (model,), server.workloads, server.name)

    routes: list[Route] = []
    stack = _llama_stack(cfg, endpoints, routes) if cfg.llama_stack is not None else None
    if stack is not None:
        endpoints[stack.endpoint.name] = stack.endpoint
    agents = tuple(_agent_route(name, a, stack, endpoints, routes) for name, a in sorted(cfg.agents.items()))
    if cfg.smoke.job:  # the in-cluster smoke Job calls every Service: a client of each, so the policies let it through
        routes += [Route(SMOKE_CLIENT, name, "smoke") for name in sorted(endpoints)]
    return ServiceGraph(endpoints, tuple(dict.fromkeys(routes)), stack, agents)


def _llama_stack(cfg: StackConfig, endpoints: dict[str, Endpoint], routes: list[Route]) -> LlamaStackPlan:
    """Llama Stack's registrations (one remote::vllm provider per fronted model), its shield, and its calls."""
    ls = cfg.llama_stack
    assert ls is not None
    models = tuple(_stack_model(cfg, endpoints, k, ls.max_tokens) for k in ls.models)
    shield = None
    if ls.safety is not None:
        guard = _stack_model(cfg, endpoints, ls.safety.model, ls.safety.max_tokens)
        shield = Shield(ls.safety.shield_id, guard, tuple(ls.safety.excluded_categories))
        routes.append(Route(LLAMA_STACK_SERVICE, guard.provider_id, "safety"))
    routes += [Route(LLAMA_STACK_SERVICE, m.provider_id, "inference") for m in models]
    ids = tuple(m.identifier for m in models) + ((shield.model.identifier,) if shield else ())
    endpoint = Endpoint(LLAMA_STACK_SERVICE, "llama-stack", LLAMA_STACK.port, cfg.namespace, ids, (LLAMA_STACK_SERVICE,))
    return LlamaStackPlan(endpoint, ls.node or cfg.nodes[0].name, models, EMBEDDING_MODELS[ls.embedding_model], shield)


def _target(path: str, model_key: str, stack: LlamaStackPlan | None, endpoints: dict[str, Endpoint]) -> tuple[str, str, str]:
    """(OpenAI base URL, model id as that endpoint expects it, Service called) for a model on an agent's path."""
    if path == STACK_PATH:
        assert stack is not None  # checked at the edge
        m = next(m for m in stack.models if m.key == model_key)
        return stack.endpoint.openai_url, m.identifier, stack.endpoint.name
    ep = endpoints[vllm_service(model_key)]
    return ep.openai_url, ep.models[0], ep.name


def _agent_route(name: str, a: Agent, stack: LlamaStackPlan | None, endpoints: dict[str, Endpoint],
                 routes: list[Route]) -> AgentRoute:
    client = f"agent:{name}"
    endpoint, model_id, server = _target(a.path, a.model, stack, endpoints)
    routes.append(Route(client, server, "inference"))
    fb_endpoint = fb_model = None
    if a.fallback is not None:
        fb_endpoint, fb_model, fb_server = _target(a.path, a.fallback, stack, endpoints)
        routes.append(Route(client, fb_server, "fallback"))
    shield_id = stack.shield.shield_id if a.safety and stack is not None and stack.shield is not None else None
    if shield_id:
        routes.append(Route(client, LLAMA_STACK_SERVICE, "safety"))
    if a.rag:
        routes.append(Route(client, LLAMA_STACK_SERVICE, "rag"))
    uses_stack = a.path == STACK_PATH or shield_id is not None or a.rag
    return AgentRoute(name, a.path, endpoint, model_id, fb_endpoint, fb_model,
                      stack.endpoint.base_url if uses_stack and stack is not None else None, shield_id, a.rag, a.description)


def _stack_model(cfg: StackConfig, endpoints: dict[str, Endpoint], key: str, max_tokens: int) -> StackModel:
    spec = cfg.vllm.models[key]  # type: ignore[union-attr]  (references checked at the edge)
    ep = endpoints[vllm_service(key)]
    return StackModel(key, ep.name, ep.models[0], ep.openai_url, min(max_tokens, spec.max_model_len // 2))


def format_routes(graph: ServiceGraph) -> str:
    """The Llama Stack registrations and the agents' routes as tables (printed by `make render`)."""
    out: list[str] = []
    stack = graph.llama_stack
    if stack is not None:
        rows = [("Llama Stack model id", "provider", "base_url", "max_tokens")]
        for m in stack.models + ((stack.shield.model,) if stack.shield else ()):
            rows.append((m.identifier, "remote::vllm", m.base_url, str(m.max_tokens)))
        rows.append((f"{EMBEDDINGS_PROVIDER}/{stack.embedding.provider_model_id}", "inline::sentence-transformers",
                     f"embedding, {stack.embedding.dimension} dims", ""))
        out += [f"Llama Stack ({stack.endpoint.base_url}, node {stack.node})", text_table(rows, left=4)]
        if stack.shield:
            out.append(f"shield {stack.shield.shield_id!r}: inline::llama-guard -> {stack.shield.model.identifier}")
    if graph.agents:
        rows = [("agent", "path", "model id", "endpoint", "fallback", "shield", "RAG")]
        for a in graph.agents:
            rows.append((a.name, a.path, a.model_id, a.endpoint, a.fallback_model_id or "-", a.shield_id or "-", "yes" if a.rag else "no"))
        out += ["", "Agents (ConfigMap agent-<name>; stack output `agents`)", text_table(rows, left=7)]
    return "\n".join(out)

