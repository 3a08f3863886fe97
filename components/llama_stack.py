"""LlamaStack: Llama Stack 0.7.3 in front of the vLLM models (seed 004's orchestration layer).

Its `config.yaml` is generated from the service graph by one pure function (`run_config`), in the
0.7.3 schema (`llama_stack.core.datatypes.StackConfig`, `version: 2`): one `remote::vllm` inference
provider per fronted model (`base_url` = the model's Service URL ending in `/v1`, `max_tokens` at most
half its `maxModelLen`), the model registered under its served name (clients send
`<provider_id>/<provider_model_id>`), `inline::sentence-transformers` embeddings, `inline::milvus`
vectors, `inline::localfs` files, `inline::builtin` responses and `inline::file-search`; with a
shield, Llama Guard's own `remote::vllm` provider plus `inline::llama-guard` and the registered
shield. The APIs are those 0.7.3 has: `responses`, not the seed's `agents`.

One replica with `Recreate`: inline Milvus (milvus-lite) and SQLite are single-writer. Its state
and the embedding model's weights live on the model cache volume, so they survive `pulumi destroy`.
A hash of the config on the pod template rolls the pod when the config changes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.gpu import gpu_node_tolerations
from components.labels import labels, meta, selector, SKIP_AWAIT
from components.model_cache import MOUNT_PATH, ModelCache
from components.pod_options import NO_OPTIONS, node_selector, pull_secrets, template_metadata, tolerations
from components.pods import KEY_DIGEST, check_cache, disruption_budget, hardened, pod_security, pull_policy
from components.vllm import HF_HOME
from stacks.catalog import LLAMA_STACK
from stacks.config import PodOptions, PodSecurity
from stacks.edge import API_KEY_KEY, SERVICE_LABEL
from stacks.graph import EMBEDDINGS_PROVIDER, LlamaStackPlan
from stacks.names import stack_config_map

STATE_DIR = f"{MOUNT_PATH}/llama-stack"
"""Llama Stack's SQLite stores, Milvus database and uploaded files, on the model cache volume."""
VECTOR_PROVIDER = "milvus"
SAFETY_PROVIDER = "llama-guard"
STARTUP_SECONDS = 300
PROBE_PERIOD_SECONDS = 5
HOME_DIR = "/home/llama-stack"
API_TOKEN_ENV = "VLLM_API_TOKEN"
"""The vLLM providers' `api_token` (the stack's API key, from its Secret): the config reads it as `${env.VLLM_API_TOKEN}`."""


def state_env() -> dict[str, str]:
    """The environment the config's `${env.X}` references read: every state path on the volume."""
    return {
        "FILES_STORAGE_DIR": f"{STATE_DIR}/files",
        "HF_HOME": HF_HOME,
        "LLAMA_STACK_CONFIG_DIR": STATE_DIR,
        "MILVUS_DB_PATH": STATE_DIR,
        "SQLITE_STORE_DIR": STATE_DIR,
    }


def _vllm_provider(provider_id: str, base_url: str, max_tokens: int, api_key: bool) -> dict[str, Any]:
    config: dict[str, Any] = {"base_url": base_url, "max_tokens": max_tokens}
    if api_key:
        config["api_token"] = "${env.%s}" % API_TOKEN_ENV
    return {"provider_id": provider_id, "provider_type": "remote::vllm", "config": config}


def run_config(stack: LlamaStackPlan, api_key: bool = False) -> dict[str, Any]:
    """The server's config.yaml for this graph (llama-stack 0.7.3)."""
    emb = stack.embedding
    served = list(stack.models) + ([stack.shield.model] if stack.shield else [])
    providers: dict[str, list[dict[str, Any]]] = {
        "inference": [_vllm_provider(m.provider_id, m.base_url, m.max_tokens, api_key) for m in served]
        + [{"provider_id": EMBEDDINGS_PROVIDER, "provider_type": "inline::sentence-transformers",
            "config": {"trust_remote_code": emb.trust_remote_code}}],
        "vector_io": [{"provider_id": VECTOR_PROVIDER, "provider_type": "inline::milvus", "config": {
            "db_path": "${env.MILVUS_DB_PATH}/milvus.db",
            "persistence": {"namespace": "vector_io::milvus", "backend": "kv_default"},
        }}],
        "files": [{"provider_id": "localfs", "provider_type": "inline::localfs", "config": {
            "storage_dir": "${env.FILES_STORAGE_DIR}",
            "metadata_store": {"table_name": "files_metadata", "backend": "sql_default"},
        }}],
        "responses": [{"provider_id": "builtin", "provider_type": "inline::builtin", "config": {"persistence": {
            "agent_state": {"namespace": "agents", "backend": "kv_default"},
            "responses": {"table_name": "responses", "backend": "sql_default"},
        }}}],
        "tool_runtime": [{"provider_id": "file-search", "provider_type": "inline::file-search", "config": {}}],
    }
    models: list[dict[str, Any]] = [
        {"model_id": m.key, "provider_id": m.provider_id, "provider_model_id": m.provider_model_id, "model_type": "llm"}
        for m in served
    ]
    models.append({"model_id": emb.provider_model_id, "provider_id": EMBEDDINGS_PROVIDER, "provider_model_id": emb.provider_model_id,
                   "model_type": "embedding", "metadata": {"embedding_dimension": emb.dimension}})
    shields: list[dict[str, Any]] = []
    config: dict[str, Any] = {}
    if stack.shield is not None:
        providers["safety"] = [{"provider_id": SAFETY_PROVIDER, "provider_type": "inline::llama-guard",
                                "config": {"excluded_categories": list(stack.shield.excluded_categories)}}]
        # inline::llama-guard sends provider_shield_id as the `model` of a chat completion: the full registered id.
        shields.append({"shield_id": stack.shield.shield_id, "provider_id": SAFETY_PROVIDER,
                        "provider_shield_id": stack.shield.model.identifier})
        config["safety"] = {"default_shield_id": stack.shield.shield_id}
    return {
        "version": LLAMA_STACK.config_version,
        "distro_name": "llm-infra",
        "apis": sorted(providers),
        "providers": dict(sorted(providers.items())),
        "storage": {
            "backends": {
                "kv_default": {"type": "kv_sqlite", "db_path": "${env.SQLITE_STORE_DIR}/kvstore.db"},
                "sql_default": {"type": "sql_sqlite", "db_path": "${env.SQLITE_STORE_DIR}/sql_store.db"},
            },
            "stores": {
                "metadata": {"namespace": "registry", "backend": "kv_default"},
                "inference": {"table_name": "inference_store", "backend": "sql_default"},
                "conversations": {"table_name": "openai_conversations", "backend": "sql_default"},
                "prompts": {"namespace": "prompts", "backend": "kv_default"},
                "connectors": {"namespace": "connectors", "backend": "kv_default"},
            },
        },
        "registered_resources": {"models": models, "shields": shields, "vector_stores": []},
        "server": {"port": LLAMA_STACK.port},
        "vector_stores": {
            "default_provider_id": VECTOR_PROVIDER,
            "default_embedding_model": {"provider_id": EMBEDDINGS_PROVIDER, "model_id": emb.provider_model_id},
        },
        **config,
    }


def config_yaml(stack: LlamaStackPlan, api_key: bool = False) -> str:
    return "# Generated by llm-infra from the service graph; llama-stack 0.7.3 schema.\n" + yaml.safe_dump(
        run_config(stack, api_key), sort_keys=False, width=120)


@dataclass(frozen=True)
class LlamaStackArgs:
    namespace: str
    image: str
    stack: LlamaStackPlan
    """The graph's Llama Stack: the models it fronts, its shield and embedding model."""
    cache: ModelCache
    cpu: float
    memory_gib: float
    security: PodSecurity = PodSecurity()
    api_key_secret: str | None = None
    """The stack's API key Secret: the vLLM providers send it as their Bearer token."""
    api_key_digest: str | None = None
    """The key's digest (components/pods.py key_digest): a rotated key restarts the server, which reads it at start."""
    offline: bool = False
    """networkPolicy.downloadEgress is off: HF_HUB_OFFLINE=1 (the embedding model comes from the cache only)."""
    options: PodOptions = NO_OPTIONS
    """`llamaStack`'s pod options: nodeSelector, tolerations, labels, annotations, priorityClassName."""
    image_pull_secrets: tuple[str, ...] = ()
    """The stack's `imagePullSecrets`."""


class LlamaStack(pulumi.ComponentResource):
    url: str
    """Base URL inside the cluster (`/v1/...` below it)."""
    model_ids: list[str]
    """Registered model ids (`<provider_id>/<provider_model_id>`) clients send."""
    config_map: k8s.core.v1.ConfigMap
    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service

    def __init__(self, name: str, args: LlamaStackArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-infra:serving:LlamaStack", name, None, opts)
        stack = args.stack
        svc = stack.endpoint.name
        lab = labels("llama-stack", svc, "orchestrator")
        child = pulumi.ResourceOptions(parent=self)
        text = config_yaml(stack, args.api_key_secret is not None)
        self.config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=meta(stack_config_map(svc), args.namespace, lab),
            data={LLAMA_STACK.config_key: text},
            opts=child,
        )
        health = k8s.core.v1.HTTPGetActionArgs(path=LLAMA_STACK.health_path, port="http")
        memory = f"{round(args.memory_gib * 1024)}Mi"
        offline = {"HF_HUB_OFFLINE": "1"} if args.offline else {}
        env = [k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in sorted({**state_env(), "HOME": HOME_DIR, **offline}.items())]
        if args.api_key_secret:
            # Llama Stack reads provider credentials only through ${env.X} in its config.
            env.append(k8s.core.v1.EnvVarArgs(name=API_TOKEN_ENV, value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=args.api_key_secret, key=API_KEY_KEY))))
        models_mount = k8s.core.v1.VolumeMountArgs(name="models", mount_path=MOUNT_PATH)
        container = k8s.core.v1.ContainerArgs(
            name="llama-stack",
            image=args.image,
            image_pull_policy=pull_policy(args.image),
            # The config is positional (there is no --config); calling the CLI directly avoids the image
            # entrypoint's silent fallback to the starter distro when RUN_CONFIG_PATH is missing.
            command=["llama", "stack", "run", f"{LLAMA_STACK.config_dir}/{LLAMA_STACK.config_key}", "--port", str(LLAMA_STACK.port)],
            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=LLAMA_STACK.port, protocol="TCP")],
            env=env,
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": f"{args.cpu:g}", "memory": memory}, limits={"cpu": f"{args.cpu:g}", "memory": memory}),
            startup_probe=k8s.core.v1.ProbeArgs(http_get=health, period_seconds=PROBE_PERIOD_SECONDS,
                                                failure_threshold=math.ceil(STARTUP_SECONDS / PROBE_PERIOD_SECONDS)),
            readiness_probe=k8s.core.v1.ProbeArgs(http_get=health, period_seconds=10, failure_threshold=3),
            liveness_probe=k8s.core.v1.ProbeArgs(http_get=health, period_seconds=20, timeout_seconds=5, failure_threshold=3),
            security_context=hardened(read_only_root=True),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="config", mount_path=LLAMA_STACK.config_dir, read_only=True),
                models_mount,
                k8s.core.v1.VolumeMountArgs(name="home", mount_path=HOME_DIR),
                k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
            ],
        )
        pod = k8s.core.v1.PodSpecArgs(
            # The plan puts it on a GPU node (it shares that node's model cache), whose taint it must tolerate.
            node_selector=node_selector(stack.node, args.options),
            tolerations=tolerations(gpu_node_tolerations(), args.options),
            priority_class_name=args.options.priority_class_name,
            image_pull_secrets=pull_secrets(args.image_pull_secrets),
            automount_service_account_token=False,
            enable_service_links=False,
            security_context=pod_security(args.security),
            init_containers=[check_cache(args.image, sorted(set(state_env().values())), [models_mount], True)],
            containers=[container],
            volumes=[
                k8s.core.v1.VolumeArgs(name="config", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=stack_config_map(svc))),
                k8s.core.v1.VolumeArgs(name="models", persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(
                    claim_name=args.cache.claim_for(stack.node, svc))),
                k8s.core.v1.VolumeArgs(name="home", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
            ],
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(svc, args.namespace, lab),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=1,
                revision_history_limit=3,
                # Inline Milvus and SQLite allow one writer: the old pod stops before the new one starts.
                strategy=k8s.apps.v1.DeploymentStrategyArgs(type="Recreate"),
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(lab)),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=template_metadata(
                        {**lab, SERVICE_LABEL: svc}, {"llm-infra/config-hash": hashlib.sha256(text.encode()).hexdigest()[:16],
                                                      **({KEY_DIGEST: args.api_key_digest} if args.api_key_digest is not None else {})},
                        args.options),
                    spec=pod,
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.config_map]),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(svc, args.namespace, lab, SKIP_AWAIT),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP", selector=selector(lab),
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=LLAMA_STACK.port, target_port="http", protocol="TCP")],
            ),
            opts=child,
        )
        disruption_budget(f"{name}-pdb", svc, args.namespace, lab, self)
        self.url = stack.endpoint.base_url
        self.model_ids = list(stack.endpoint.models)
        self.register_outputs({
            "url": self.url, "modelIds": self.model_ids,
            "shieldId": stack.shield.shield_id if stack.shield else None,
        })
