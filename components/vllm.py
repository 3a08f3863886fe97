"""VllmModel: one model served by vLLM 0.33 (a Deployment per replica behind one Service).

Container args come from typed fields through one pure function (`vllm_args`), only with flags
vLLM 0.33.0 accepts (vllm/engine/arg_utils.py; catalog/vllm-flags.json); `extraArgs` may add others but never repeat a
typed one. Each replica is its own Deployment because the plan pins each replica to its own GPUs; the Service selects
them all. A replica over several nodes (`pipelineParallel`) is a LeaderWorkerSet instead (components/leader_worker.py):
one pod per rank, each from the same pod builder, the Service selecting the leaders. Weights live in the ModelCache (`HF_HOME`), the Hugging Face token comes from a Secret
through `secretKeyRef`, `/dev/shm` is a memory-backed emptyDir sized from tensor parallelism, and
the startup budget (startupProbe and `VLLM_ENGINE_READY_TIMEOUT_S`) is derived from the weights'
size: download + load + compile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.autoscaling import scaled_object, scaled_object_spec
from components.gpu import gpu_pod_fields
from components.labels import labels, meta, selector, SKIP_AWAIT
from components.model_cache import MOUNT_PATH, ModelCache
from components.pod_options import template_metadata
from components.pods import KEY_DIGEST, check_cache, disruption_budget, gpu_pod_spec, hardened, no_surge, pull_policy
from stacks.catalog import VLLM
from stacks.observability import demand_query
from stacks.config import GpuSharing, PodSecurity, Vllm
from stacks.config import VllmModel as VllmModelSpec
from stacks.edge import API_KEY_KEY, SERVICE_LABEL
from stacks.plan import VllmWorkload, shm_gib
from stacks.plan.model import VllmRank
from stacks.timing import VLLM_PROBE_PERIOD_SECONDS as PROBE_PERIOD_SECONDS
from stacks.timing import vllm_startup_seconds
from components.leader_worker import GROUP_LABEL, LWS_LEADER_ADDRESS, LWS_WORKER_INDEX, ROLE_LABEL, leader_worker_set

HF_HOME = f"{MOUNT_PATH}/huggingface"
HF_TOKEN_KEY = "HF_TOKEN"
HOME_DIR = "/home/vllm"
"""HOME of the non-root user (an emptyDir): vLLM's, Triton's and FlashInfer's caches go below it."""
HF_TOKEN_DIR = "/var/run/secrets/huggingface"
"""Where the token Secret is mounted; huggingface_hub (>= 1.31, what vLLM 0.33 requires) reads HF_TOKEN_PATH."""


def vllm_args(w: VllmWorkload, worker: bool = False) -> list[str]:
    """`vllm serve` arguments (after the image's ENTRYPOINT): the model first, then typed flags, then extraArgs.

    A multi-node replica adds vLLM's own multi-node flags (the mp backend, no Ray): every rank joins the leader's
    torch.distributed store at `--master-addr`, which is the leader pod's DNS name that LeaderWorkerSet gives every
    container as LWS_LEADER_ADDRESS (`<lws>-<group>.<lws>.<namespace>`, resolvable before the leader is Ready: the
    headless Service publishes not-ready addresses); the kubelet expands `$(VAR)` from the container's environment.
    Workers (`worker`) run `--headless` (no API server) with their node rank, LWS_WORKER_INDEX (1..size-1)."""
    s = w.spec
    args = [
        model_argument(s),
        "--served-model-name", w.served_name,
        "--tensor-parallel-size", str(s.tensor_parallel),
        "--max-model-len", str(s.max_model_len),
        "--gpu-memory-utilization", f"{s.gpu_memory_utilization:g}",
    ]
    if s.revision is not None:
        # vllm/config/model.py:238,609-610@0.33.0: the model's files at this revision; the tokenizer's follow it.
        args += ["--revision", s.revision]
    if w.multi_node:
        args += ["--pipeline-parallel-size", str(s.pipeline_parallel), "--distributed-executor-backend", "mp",
                 "--nnodes", str(s.pipeline_parallel), "--node-rank", f"$({LWS_WORKER_INDEX})" if worker else "0",
                 "--master-addr", f"$({LWS_LEADER_ADDRESS})", "--master-port", str(s.multi_node.master_port)]
        if worker:
            args.append("--headless")
    if w.hf.quant_method in VLLM.deprecated_quantization_methods:
        # The checkpoint's own method (read from its config.json), which vLLM 0.33 refuses without this flag.
        args.append("--allow-deprecated-quantization")
    if w.pinned_kv_bytes is not None:
        # A shared GPU: the KV size the plan computed, instead of vLLM's profile of the whole GPU's free memory
        # (which would charge a neighbour's load to this server). The utilization still sets the start check:
        # free memory >= its share, which holds in any start order when the plan's footprints fit.
        args += ["--kv-cache-memory-bytes", str(w.pinned_kv_bytes)]
    if s.max_num_seqs is not None:
        args += ["--max-num-seqs", str(s.max_num_seqs)]
    if s.max_num_batched_tokens is not None:
        args += ["--max-num-batched-tokens", str(s.max_num_batched_tokens)]
    if s.dtype != "auto":
        args += ["--dtype", s.dtype]
    if s.quantization is not None:
        args += ["--quantization", s.quantization]
    if s.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", s.kv_cache_dtype]
    if s.trust_remote_code:
        args += ["--trust-remote-code"]
    if s.lora_modules:
        args += ["--enable-lora", "--lora-modules", *(f"{n}={MOUNT_PATH}/{p}" for n, p in sorted(s.lora_modules.items()))]
        args += ["--max-loras", str(s.max_loras or len(s.lora_modules))]
        if s.max_lora_rank is not None:
            args += ["--max-lora-rank", str(s.max_lora_rank)]
    return args + list(s.extra_args)


def model_argument(s: VllmModelSpec) -> str:
    """The first `vllm serve` argument: the Hub repo id, or the directory of a copy on the model cache (`path`), which
    vLLM reads as it is (vllm/transformers_utils/repo_utils.py:286-288@0.33.0 get_model_path: an existing path)."""
    return f"{MOUNT_PATH}/{s.path}" if s.path is not None else s.model


def hub_repo_dir(repo: str) -> str:
    """A repo's folder in the Hugging Face cache under HF_HOME (huggingface_hub 2.4.0 constants.py:169 `<HF_HOME>/hub`,
    file_download.py:747 repo_folder_name `models--<org>--<name>`)."""
    return f"{HF_HOME}/hub/models--{repo.replace('/', '--')}"


def cache_check_env(s: VllmModelSpec, offline: bool) -> dict[str, str]:
    """What the check-cache init container looks for before vLLM starts (components/pods.py MODEL_CHECK): a `path`
    copy's config.json, or, with downloads off, the snapshot of the revision served."""
    if s.path is not None:
        return {"MODEL_DIR": model_argument(s)}
    if offline:
        return {"HUB_REPO_DIR": hub_repo_dir(s.model), "REVISION": s.revision or "main"}
    return {}


def vllm_env(budget: int) -> dict[str, str]:
    return dict(
        sorted(
            {
                "HF_HOME": HF_HOME,
                # A UID with no passwd entry: torch's getpass.getuser() reads USER first (else it raises, kserve#5666).
                "HOME": HOME_DIR,
                "USER": "vllm",
                "VLLM_ENGINE_READY_TIMEOUT_S": str(max(600, budget)),
                "VLLM_NO_USAGE_STATS": "1",
            }.items()
        )
    )


@dataclass(frozen=True)
class VllmModelArgs:
    namespace: str
    image: str
    replicas: list[VllmWorkload]
    """The model's placed pods (one per replica), from the plan."""
    gpu_sharing: GpuSharing
    cache: ModelCache
    timing: Vllm
    hf_token_secret: str | None
    """Name of the Secret holding HF_TOKEN, if the stack has a token."""
    security: PodSecurity = PodSecurity()
    api_key_secret: str | None = None
    """Name of the Secret holding the stack's API key: vLLM checks it as a Bearer token on /v1 (VLLM_API_KEY)."""
    aliases: tuple[tuple[str, int], ...] = ()
    """Further Services (name, port) selecting the same pods: the adapter pool's task URLs (ollama-<role>:11434)."""
    prometheus_url: str = ""
    """What KEDA asks for the model's requests in flight (monitoring.prometheusUrl), for the reserved replicas' ScaledObjects."""
    offline: bool = False
    """networkPolicy.downloadEgress is off: HF_HUB_OFFLINE=1, so the Hub client does not wait on blocked connections."""
    api_key_digest: str | None = None
    """The key's digest (components/pods.py key_digest): on the serving pods' template, so a rotated key restarts them."""
    image_pull_secrets: tuple[str, ...] = ()
    """The stack's `imagePullSecrets`, on every pod."""


class VllmModel(pulumi.ComponentResource):
    url: str
    """OpenAI-compatible base URL inside the cluster."""
    deployments: list[pulumi.CustomResource]
    """A Deployment per replica, or a LeaderWorkerSet per replica of a multi-node model."""
    service: k8s.core.v1.Service

    def __init__(self, name: str, args: VllmModelArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-infra:serving:VllmModel", name, None, opts)
        first = args.replicas[0]
        svc_labels = labels("vllm", first.service_name, "model")
        self.deployments = [self._leader_worker_set(name, args, w, svc_labels) if w.multi_node
                            else self._deployment(name, args, w, svc_labels) for w in args.replicas]
        reserved = [(w, d) for w, d in zip(args.replicas, self.deployments) if w.reserved]
        for step, (w, d) in enumerate(reserved, start=1):
            spec = scaled_object_spec(w.deployment_name, demand_query(args.namespace, w.served_name), args.prometheus_url,
                                      w.spec.autoscale.requests_per_replica, w.spec.replicas + step - 1,  # type: ignore[union-attr]
                                      max(300, vllm_startup_seconds(w, args.timing)))
            scaled_object(f"{name}-{w.replica}-scaler", w.deployment_name, args.namespace, spec, self, [d])
        # A multi-node model's Service reaches its leaders only: the workers serve no API.
        serving = {**selector(svc_labels), **({ROLE_LABEL: "leader"} if first.multi_node else {})}
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            # Scrape annotations on the pods only: a Prometheus that reads both would count every series twice.
            metadata=meta(first.service_name, args.namespace, svc_labels, SKIP_AWAIT),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=serving,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=VLLM.port, target_port="http", protocol="TCP")],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        disruption_budget(f"{name}-pdb", first.service_name, args.namespace, svc_labels, self)
        self.aliases = [
            k8s.core.v1.Service(
                f"{name}-alias-{alias}",
                metadata=meta(alias, args.namespace, labels("vllm", alias, "model-alias"), SKIP_AWAIT),
                spec=k8s.core.v1.ServiceSpecArgs(
                    type="ClusterIP",
                    selector=serving,
                    ports=[k8s.core.v1.ServicePortArgs(name="http", port=port, target_port="http", protocol="TCP")],
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for alias, port in args.aliases
        ]
        self.url = f"http://{first.service_name}.{args.namespace}:{VLLM.port}/v1"
        self.register_outputs({"url": self.url, "servedName": first.served_name, "aliases": [a for a, _ in args.aliases]})

    def _deployment(self, name, args: VllmModelArgs, w: VllmWorkload, svc_labels) -> k8s.apps.v1.Deployment:
        budget = vllm_startup_seconds(w, args.timing)
        pod_labels = {**svc_labels, "llm-infra/pod": w.deployment_name, SERVICE_LABEL: w.service_name}
        return k8s.apps.v1.Deployment(
            f"{name}-{w.replica}",
            metadata=meta(w.deployment_name, args.namespace, pod_labels, plan_note(w)),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                # A reserved replica has no pod until its ScaledObject starts one (KEDA owns the count then).
                replicas=0 if w.reserved else 1,
                revision_history_limit=3,
                progress_deadline_seconds=max(600, budget),
                strategy=no_surge(),
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels={**selector(pod_labels), "llm-infra/pod": w.deployment_name}),
                template=self._pod_template(args, w, w.ranks[0], pod_labels),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                custom_timeouts=pulumi.CustomTimeouts(create=f"{math.ceil(budget * 1.5)}s", update=f"{math.ceil(budget * 1.5)}s"),
                ignore_changes=["spec.replicas"] if w.reserved else None,
            ),
        )

    def _leader_worker_set(self, name, args: VllmModelArgs, w: VllmWorkload, svc_labels) -> pulumi.CustomResource:
        """One replica over `pipelineParallel` nodes: the leader (rank 0) serves the API, the workers run headless."""
        budget = vllm_startup_seconds(w, args.timing)
        common = {**svc_labels, "llm-infra/pod": w.deployment_name, SERVICE_LABEL: w.service_name, GROUP_LABEL: w.deployment_name}
        leader = self._pod_template(args, w, w.ranks[0], {**common, ROLE_LABEL: "leader"})
        worker = self._pod_template(args, w, w.ranks[1], {**common, ROLE_LABEL: "worker"}, workers=w.ranks[1:])
        timeouts = pulumi.CustomTimeouts(create=f"{math.ceil(budget * 1.5)}s", update=f"{math.ceil(budget * 1.5)}s")
        return leader_worker_set(f"{name}-{w.replica}", w.deployment_name, args.namespace, common, plan_note(w), w.spec.pipeline_parallel,
                                 leader, worker, pulumi.ResourceOptions(parent=self, custom_timeouts=timeouts))

    def _pod_template(self, args: VllmModelArgs, w: VllmWorkload, rank: VllmRank, pod_labels: dict[str, str],
                      workers: tuple[VllmRank, ...] = ()) -> k8s.core.v1.PodTemplateSpecArgs:
        """The pod of one rank (a single-node replica has one). `workers`: the ranks a LeaderWorkerSet's one worker
        template serves (the same GPUs count on each of their nodes; pinned by name only when there is one)."""
        s = w.spec
        is_worker = bool(workers)
        net = s.multi_node if w.multi_node else None
        gpu = gpu_pod_fields(args.gpu_sharing, rank.gpus, cuda_env=False)
        budget = vllm_startup_seconds(w, args.timing)
        shm = shm_gib(s)
        memory = f"{round((s.memory_gib + shm) * 1024)}Mi"
        # A copy on the cache (`path`) downloads nothing: no token, and the Hub client never asked.
        token_secret = args.hf_token_secret if s.path is None else None
        token_env = {"HF_TOKEN_PATH": f"{HF_TOKEN_DIR}/token"} if token_secret else {}
        if args.offline or s.path is not None:
            token_env["HF_HUB_OFFLINE"] = "1"  # huggingface_hub constants.py:194@2.4.0: serve from the cache, never call the Hub
        env = [k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in sorted({**vllm_env(budget), **gpu.env, **token_env}.items())]
        if args.api_key_secret and not is_worker:
            # vLLM 0.33 takes its key from --api-key (visible in the pod spec and `ps`) or VLLM_API_KEY (envs.py:829,
            # serve/middleware/register.py:32): the variable, from the Secret, never the flag.
            env.append(k8s.core.v1.EnvVarArgs(name="VLLM_API_KEY", value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=args.api_key_secret, key=API_KEY_KEY))))
        health = k8s.core.v1.HTTPGetActionArgs(path="/health", port="http")
        mounts = [
            k8s.core.v1.VolumeMountArgs(name="models", mount_path=MOUNT_PATH),
            k8s.core.v1.VolumeMountArgs(name="home", mount_path=HOME_DIR),
            k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
        ]
        volumes = [
            k8s.core.v1.VolumeArgs(
                name="models",
                persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(
                    claim_name=args.cache.claim_for(rank.node, rank.pod)
                ),
            ),
            k8s.core.v1.VolumeArgs(name="home", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
            k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
        ]
        if token_secret:
            # The token as a file the Hugging Face client reads (HF_TOKEN_PATH), not an environment variable.
            mounts.append(k8s.core.v1.VolumeMountArgs(name="hf-token", mount_path=HF_TOKEN_DIR, read_only=True))
            volumes.append(k8s.core.v1.VolumeArgs(name="hf-token", secret=k8s.core.v1.SecretVolumeSourceArgs(
                secret_name=token_secret, default_mode=0o400,
                items=[k8s.core.v1.KeyToPathArgs(key=HF_TOKEN_KEY, path="token")])))
        if shm:
            mounts.append(k8s.core.v1.VolumeMountArgs(name="dshm", mount_path="/dev/shm"))
            volumes.append(k8s.core.v1.VolumeArgs(name="dshm", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(medium="Memory", size_limit=f"{shm}Gi")))
        extra = {net.rdma_resource: "1"} if net is not None and net.rdma_resource else {}
        # No IPC_LOCK for RDMA: added capabilities are not effective for a non-root user (Kubernetes sets no ambient
        # capabilities); registering memory relies on the memlock limit the container runtime gives the pod.
        security = hardened(read_only_root=args.security.gpu_read_only_root)
        container = k8s.core.v1.ContainerArgs(
            name="vllm",
            image=args.image,
            image_pull_policy=pull_policy(args.image),
            args=vllm_args(w, worker=is_worker),
            # A headless worker listens only for its group (torch.distributed, NCCL, vLLM's message queues): no API port.
            ports=None if is_worker else [k8s.core.v1.ContainerPortArgs(name="http", container_port=VLLM.port, protocol="TCP")],
            env=env,
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": f"{s.cpu:g}", "memory": memory, **extra},
                limits={"cpu": f"{s.cpu:g}", "memory": memory, **gpu.limits, **extra},
                claims=gpu.container_claims,
            ),
            # The port refuses connections until the engine is loaded, so /health 200 means ready. On a multi-node
            # replica that is after every rank loaded its stage: the leader's engine waits for the whole group.
            startup_probe=None if is_worker else k8s.core.v1.ProbeArgs(
                http_get=health, period_seconds=PROBE_PERIOD_SECONDS, failure_threshold=math.ceil(budget / PROBE_PERIOD_SECONDS)),
            readiness_probe=None if is_worker else k8s.core.v1.ProbeArgs(http_get=health, period_seconds=5, failure_threshold=3),
            liveness_probe=None if is_worker else k8s.core.v1.ProbeArgs(http_get=health, period_seconds=10, timeout_seconds=5, failure_threshold=3),
            security_context=security,
            volume_mounts=mounts,
        )
        nodes = [r.node for r in workers] if workers else [rank.node]
        spec = gpu_pod_spec(
            nodes if len(nodes) > 1 else nodes[0], gpu, args.security, containers=[container], volumes=volumes,
            termination_grace_period_seconds=60,
            init_containers=[check_cache(args.image, [HF_HOME], mounts[:1], args.security.gpu_read_only_root,
                                         cache_check_env(s, args.offline))],
            spread_label=(GROUP_LABEL, w.deployment_name) if len(nodes) > 1 else None,
            host_network=net is not None and net.host_network, options=s, image_pull_secrets=args.image_pull_secrets)
        scrape = {} if is_worker else {"prometheus.io/scrape": "true", "prometheus.io/port": str(VLLM.port), "prometheus.io/path": "/metrics"}
        if args.api_key_digest is not None and args.api_key_secret and not is_worker:
            scrape[KEY_DIGEST] = args.api_key_digest
        # The model's own pod options (nodeSelector, tolerations, labels, annotations, priorityClassName) on every rank.
        return k8s.core.v1.PodTemplateSpecArgs(metadata=template_metadata(pod_labels, scrape, s), spec=spec)


def plan_note(w: VllmWorkload) -> dict[str, str]:
    """What the plan decided, as annotations a person reads with kubectl describe."""
    where = " ".join(f"{r.node}/{','.join(str(g.index) for g in r.gpus)}" for r in w.ranks)
    note = {
        "llm-infra/gpus": where,
        "llm-infra/kv-cache-gib-per-gpu": f"{w.kv_budget_bytes_per_rank / 1024**3:.2f}",
        "llm-infra/max-seqs-at-full-context": str(w.max_full_context_seqs),
        "llm-infra/kv-cache": "pinned" if w.pinned else "profiled",
    }
    if w.multi_node:
        note["llm-infra/stages"] = " ".join(f"rank{r.rank}:layers{r.layers[0]}-{r.layers[1] - 1}" for r in w.ranks)
    return note
