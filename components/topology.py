"""Topology: the whole stack's objects, composed from a validated Stack."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.agents import AgentRoutes, AgentRoutesArgs
from components.edge import Edge, EdgeArgs
from components.gpu import GpuClaims, GpuClaimsArgs
from components.labels import labels, meta
from components.llama_stack import LlamaStack, LlamaStackArgs
from components.model_cache import ModelCache, ModelCacheArgs
from components.namespace_limits import NamespaceLimits, NamespaceLimitsArgs
from components.monitoring import MonitoringArgs, Observability
from components.network_policy import NetworkPolicies, NetworkPoliciesArgs
from components.ollama import OllamaAdapterPool, OllamaAdapterPoolArgs
from components.pods import key_digest
from components.safety import SafetyModel, SafetyModelArgs
from components.smoke import SmokeJob, smoke_job_args
from components.vllm import HF_TOKEN_KEY, VllmModel, VllmModelArgs
from stacks.config import Vllm
from stacks.edge import API_KEY_KEY, API_KEY_SECRET, policy_rules
from stacks.loader import PROVIDER_SETTINGS, Stack
from stacks.names import HF_SECRET, cache_users
from stacks.observability import alert_rules, panels, scrape_targets
from stacks.quota import quota



def pod_security_level(plan) -> str:
    """`restricted`, or `privileged` when a multi-node model's ranks use the host's network (no other level admits it)."""
    host = any(w.multi_node and w.spec.multi_node.host_network for w in plan.vllm)
    return "privileged" if host else "restricted"


class Topology(pulumi.ComponentResource):
    namespace: str
    endpoints: dict[str, str]
    agents: dict[str, dict[str, object]]

    def __init__(self, name: str, stack: Stack, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-infra:stack:Topology", name, None, opts)
        cfg, plan, graph = stack.config, stack.plan, stack.graph
        self.namespace = cfg.namespace

        # Objects that hold model data are adopted again after a destroy (they were retained),
        # instead of failing `pulumi up` with "already exists". It gets the stack's `kubernetes:` settings (an explicit
        # provider reads none): the same cluster and context as the default provider, and with
        # kubernetes:renderYamlToDirectory (a preview with no cluster) it renders too.
        adopting = k8s.Provider(f"{name}-adopting", upsert_existing_objects=True,
                                **{PROVIDER_SETTINGS[k]: v for k, v in sorted(stack.kubernetes.items())},
                                opts=pulumi.ResourceOptions(parent=self))
        keep = pulumi.ResourceOptions(parent=self, provider=adopting, retain_on_delete=True)

        # The namespace holds the cache claims: deleting it would delete them, so destroy keeps it.
        # An existing namespace (existingNamespace) is used as it is: never created, adopted or relabelled.
        ns = None if cfg.existing_namespace else k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=meta(
                cfg.namespace,
                None,
                {
                    **labels("llm-infra", cfg.namespace, "namespace"),
                    # Every pod qualifies for `restricted` (non-root, no capabilities, RuntimeDefault seccomp,
                    # no privilege escalation, only PVC/emptyDir/ConfigMap/Secret volumes), unless a multi-node
                    # model's ranks use the host's network (multiNode.hostNetwork): no level but privileged admits it.
                    "pod-security.kubernetes.io/enforce": pod_security_level(plan),
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                },
            ),
            opts=keep,
        )
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns] if ns else [])

        cache = ModelCache(
            "model-cache",
            ModelCacheArgs(
                namespace=cfg.namespace,
                spec=cfg.model_cache,
                nodes=sorted({node for _, node, _ in cache_users(plan, graph)}),
                workloads=[name for name, _, _ in cache_users(plan, graph)],
            ),
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(provider=adopting)),
        )
        depends: list[pulumi.Resource] = [r for r in (ns, cache) if r is not None]
        if not cfg.existing_namespace:  # never constrain a namespace the stack does not own
            depends.append(NamespaceLimits("limits", NamespaceLimitsArgs(cfg.namespace, quota(cfg, plan, graph)), opts=in_ns))
        if cfg.gpu_sharing.mode == "dra":
            depends.append(
                GpuClaims("gpu-claims", GpuClaimsArgs(cfg.namespace, cfg.gpu_sharing, [g.gpu for g in plan.used_gpus()]), opts=in_ns)
            )
        if cfg.network_policy.enabled:
            # Before any serving pod: a pod never runs without its policies.
            depends.append(NetworkPolicies("network-policies", NetworkPoliciesArgs(
                cfg.namespace, policy_rules(cfg, graph, list(stack.routes))), opts=in_ns).default_deny)
        self.api_key_secret = None
        self.api_key_digest = None
        if cfg.api_key is not None:
            self.api_key_secret = API_KEY_SECRET
            self.api_key_digest = key_digest(cfg.api_key)
            depends.append(k8s.core.v1.Secret(
                f"{name}-api-key",
                metadata=meta(API_KEY_SECRET, cfg.namespace, labels("api-key", API_KEY_SECRET, "credentials")),
                type="Opaque",
                string_data={API_KEY_KEY: pulumi.Output.secret(cfg.api_key)},
                opts=in_ns,
            ))
        serving = pulumi.ResourceOptions(parent=self, depends_on=depends)
        # Every Service's URL, as the graph names them (the components serve exactly these).
        self.endpoints = {name: ep.url for name, ep in sorted(graph.endpoints.items())}
        servers: list[pulumi.Resource] = []  # what the smoke Job waits for
        if cfg.ollama is not None and plan.workloads:  # none with ollama.engine vllm
            servers.append(OllamaAdapterPool(
                "ollama",
                OllamaAdapterPoolArgs(
                    namespace=cfg.namespace,
                    image=cfg.ollama.image,
                    workloads=plan.workloads,
                    gpu_sharing=cfg.gpu_sharing,
                    cache=cache,
                    pull_mib_per_second=cfg.ollama.pull_mib_per_second,
                    server_start_seconds=cfg.ollama.server_start_seconds,
                    security=cfg.pod_security,
                    image_pull_secrets=tuple(cfg.image_pull_secrets),
                ),
                opts=serving,
            ))
        models = self._vllm_layer(name, stack, cache, serving, in_ns) if plan.vllm else []
        if graph.llama_stack is not None and cfg.llama_stack is not None:
            ls = cfg.llama_stack
            servers.append(LlamaStack(
                "llama-stack",
                LlamaStackArgs(cfg.namespace, ls.image, graph.llama_stack, cache, ls.cpu, ls.memory_gib, cfg.pod_security,
                               self.api_key_secret, offline=not cfg.network_policy.download_egress, api_key_digest=self.api_key_digest,
                               options=ls, image_pull_secrets=tuple(cfg.image_pull_secrets)),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*depends, *models]),
            ))
        self.agents = {}
        if graph.agents:
            self.agents = AgentRoutes("agents", AgentRoutesArgs(cfg.namespace, graph.agents, self.api_key_secret), opts=in_ns).routes
        Observability("monitoring", MonitoringArgs(cfg.namespace, cfg.monitoring, [ep.name for ep in scrape_targets(graph)],
                                                   panels(cfg, plan), alert_rules(cfg, plan, graph)), opts=in_ns)
        self.urls: dict[str, str] = {}
        if cfg.ingress is not None and stack.routes:
            self.urls = Edge("edge", EdgeArgs(cfg.namespace, cfg.ingress, list(stack.routes), cfg.api_key), opts=in_ns).urls
        if cfg.smoke.job:  # once every server is up: the checks call them all
            SmokeJob("smoke", smoke_job_args(stack, self.api_key_secret), opts=pulumi.ResourceOptions(parent=self, depends_on=[*depends, *models, *servers]))
        self.register_outputs({"namespace": self.namespace, "endpoints": self.endpoints, "agents": self.agents, "urls": self.urls})

    def _vllm_layer(self, name: str, stack: Stack, cache: ModelCache, serving: pulumi.ResourceOptions,
                    in_ns: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """A VllmModel per model (a SafetyModel for the shield's guard), and the Hugging Face token Secret."""
        cfg, plan, graph = stack.config, stack.plan, stack.graph
        vllm = cfg.vllm or Vllm()
        secret_name = None
        if cfg.hf_token is not None:
            secret_name = HF_SECRET
            k8s.core.v1.Secret(
                f"{name}-hf-token",
                metadata=meta(HF_SECRET, cfg.namespace, labels("huggingface-token", HF_SECRET, "credentials")),
                type="Opaque",
                string_data={HF_TOKEN_KEY: pulumi.Output.secret(cfg.hf_token)},
                opts=in_ns,
            )
        by_model: dict[str, list] = {}
        for w in plan.vllm:
            by_model.setdefault(w.key, []).append(w)
        shield = graph.llama_stack.shield if graph.llama_stack else None
        models: list[pulumi.Resource] = []
        for model, replicas in sorted(by_model.items()):
            aliases = tuple((ep.name, ep.port) for ep in graph.endpoints.values() if ep.alias_of == replicas[0].service_name)
            server = VllmModelArgs(cfg.namespace, vllm.image, replicas, cfg.gpu_sharing, cache, vllm, secret_name,
                                   cfg.pod_security, self.api_key_secret, aliases, cfg.monitoring.prometheus_url,
                                   offline=not cfg.network_policy.download_egress, api_key_digest=self.api_key_digest,
                                   image_pull_secrets=tuple(cfg.image_pull_secrets))
            # Turning the shield off or on moves the guard's server between the SafetyModel and the Topology: each way
            # the server's URN names its other place as an alias, so its Deployment, Service and PDB (whose children
            # the engine aliases alike) are updated in place instead of created again beside the old ones.
            plain, as_shield = f"vllm-{model}", f"safety-{model}"
            if shield is not None and shield.model.key == model:
                was = pulumi.Alias(name=plain, parent=self)
                models.append(SafetyModel(as_shield, SafetyModelArgs(server, shield, (was,)), opts=serving))
            else:
                was = pulumi.Alias(name=f"{as_shield}-vllm", parent=pulumi.create_urn(as_shield, SafetyModel.TYPE, parent=self))
                models.append(VllmModel(plain, server, opts=pulumi.ResourceOptions.merge(serving, pulumi.ResourceOptions(aliases=[was]))))
        return models
