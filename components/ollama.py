"""OllamaAdapterPool: one Ollama server (Deployment + Service) for the base and for each adapter.

Ollama keys loaded runners by the base weights file, so a base and its adapters cannot stay
resident together in one server (Ollama 0.32.15 server/sched.go keys runners by the base file; ollama#10605): per-adapter concurrency and keep-alive mean one server
per adapter, each with its own copy of the base weights. The plan accounts for every copy.

Each pod makes its own model ready in an init container (`ensure-model`) that starts a private,
CPU-only `ollama serve` on loopback, finds or pulls the base, checks the adapter file and creates
the adapter model (`ollama create`, i.e. /api/blobs + /api/create). A failure stops the pod at
`Init:Error` with the reason in `kubectl logs -c ensure-model`; nothing is hidden in a postStart
hook. The server container's readiness then waits on `/v1/models/<model>`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.gpu import gpu_pod_fields
from components.labels import labels, meta, selector, SKIP_AWAIT
from components.model_cache import MOUNT_PATH, ModelCache
from components.pod_options import template_metadata
from components.pods import disruption_budget, gpu_pod_spec, hardened, no_surge, pull_policy
from stacks.timing import ollama_scale_down_seconds
from stacks.catalog import OLLAMA
from stacks.config import GpuSharing, PodSecurity
from stacks.edge import SERVICE_LABEL
from stacks.names import ENSURE_MODEL_CONFIG
from stacks.plan import OllamaWorkload
from stacks.timing import OLLAMA_PROBE_PERIOD_SECONDS as PROBE_PERIOD_SECONDS
from stacks.timing import ollama_rollout_seconds

MODELS_DIR = f"{MOUNT_PATH}/ollama"
HOME_DIR = "/ollama-home"
SCRIPTS_DIR = "/scripts"
INIT_PORT = 11435

ENSURE_MODEL_SH = r"""#!/bin/sh
# ensure-model: make this pod's model ready before the server container starts.
# A private, CPU-only `ollama serve` on loopback does the work, so a failed pull or create is
# this init container's failure: the pod stays at Init:Error and `kubectl logs -c ensure-model`
# says why.
set -eu
work="${TMPDIR:-/tmp}"
log() { echo "ensure-model: $*"; }
fail() { echo "ensure-model: ERROR: $*" >&2; exit 1; }

models="${OLLAMA_MODELS:-$HOME/.ollama/models}"
mkdir -p "$models" 2>/dev/null || true
touch "$models/.llm-infra-write-test" 2>/dev/null \
  || fail "the model cache $models is not writable by uid $(id -u) gid $(id -g); prepare the host directory once: sudo chown -R $(id -u):$(id -g) <modelCache.hostPath> (docs/operations.md, Before the first pulumi up)"
rm -f "$models/.llm-infra-write-test"

ollama serve >"$work/ensure-model-serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
tries=0
until ollama list >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 120 ]; then cat "$work/ensure-model-serve.log" >&2; fail "private ollama server did not start"; fi
  sleep 1
done

if ollama show "$BASE_MODEL" >/dev/null 2>&1; then
  log "base model $BASE_MODEL found in the cache"
else
  log "pulling base model $BASE_MODEL"
  ollama pull "$BASE_MODEL" || fail "pull of $BASE_MODEL failed (no registry access? pre-load it into the model cache)"
fi

if [ -n "${ADAPTER_FILE:-}" ]; then
  [ -f "$ADAPTER_FILE" ] || fail "adapter $ADAPTER_FILE is not in the model cache; copy it there (see docs/operations.md, Before the first pulumi up)"
  [ "$(head -c 4 "$ADAPTER_FILE")" = "GGUF" ] || fail "$ADAPTER_FILE is not a GGUF file; convert it with llama.cpp convert_lora_to_gguf.py"
  head -c 1048576 "$ADAPTER_FILE" | LC_ALL=C grep -a -q -E 'general\.type.{1,16}adapter' \
    || fail "$ADAPTER_FILE has no general.type=adapter; Ollama would import it as a model, not a LoRA"
  if [ -n "${ADAPTER_SHA256:-}" ]; then
    echo "$ADAPTER_SHA256  $ADAPTER_FILE" | sha256sum -c - >/dev/null || fail "$ADAPTER_FILE does not match sha256 $ADAPTER_SHA256"
  fi
  printf 'FROM %s\nADAPTER %s\n' "$BASE_MODEL" "$ADAPTER_FILE" >"$work/Modelfile"
  log "creating $MODEL_NAME from $BASE_MODEL + $ADAPTER_FILE"
  ollama create "$MODEL_NAME" -f "$work/Modelfile" || fail "ollama create $MODEL_NAME failed"
fi

ollama show "$MODEL_NAME" >/dev/null 2>&1 || fail "model $MODEL_NAME is still missing"
log "model $MODEL_NAME is ready"
"""


def server_env(w: OllamaWorkload) -> dict[str, str]:
    """The engine's settings for one server, from the validated config (sorted for stable diffs)."""
    s = w.server
    return dict(
        sorted(
            {
                "HOME": HOME_DIR,
                # llama-server keeps this much of the GPU free (in MiB), the margin the plan checked each pod against.
                "LLAMA_ARG_FIT_TARGET": str(w.fit_target_mib),
                "OLLAMA_CONTEXT_LENGTH": str(s.context_length),
                "OLLAMA_HOST": f"0.0.0.0:{OLLAMA.port}",
                "OLLAMA_KEEP_ALIVE": str(s.keep_alive),
                # One model per server: a request for another model evicts instead of loading a
                # second copy the plan does not know about.
                "OLLAMA_MAX_LOADED_MODELS": "1",
                "OLLAMA_MAX_QUEUE": str(s.queue),
                "OLLAMA_MODELS": MODELS_DIR,
                "OLLAMA_NO_CLOUD": "1",
                "OLLAMA_NUM_PARALLEL": str(s.parallel),
            }.items()
        )
    )


def ensure_model_env(w: OllamaWorkload) -> dict[str, str]:
    env = {
        "BASE_MODEL": w.base_model,
        "CUDA_VISIBLE_DEVICES": "-1",  # CPU only: the private server must not touch the GPU
        "HOME": HOME_DIR,
        "MODEL_NAME": w.model_name,
        "OLLAMA_HOST": f"127.0.0.1:{INIT_PORT}",
        "OLLAMA_MODELS": MODELS_DIR,
        "OLLAMA_NO_CLOUD": "1",
    }
    if w.adapter is not None:
        env["ADAPTER_FILE"] = f"{MOUNT_PATH}/{w.adapter.file}"
        if w.adapter.sha256:
            env["ADAPTER_SHA256"] = w.adapter.sha256
    return dict(sorted(env.items()))


@dataclass(frozen=True)
class OllamaAdapterPoolArgs:
    namespace: str
    image: str
    workloads: list[OllamaWorkload]
    gpu_sharing: GpuSharing
    cache: ModelCache
    pull_mib_per_second: float
    server_start_seconds: int
    security: PodSecurity
    image_pull_secrets: tuple[str, ...] = ()
    """The stack's `imagePullSecrets`, on every pod."""


class OllamaAdapterPool(pulumi.ComponentResource):
    endpoints: dict[str, str]
    """In-cluster URL of each server, by role (`base`, `chatbot`, ...)."""
    deployments: dict[str, k8s.apps.v1.Deployment]
    services: dict[str, k8s.core.v1.Service]

    def __init__(self, name: str, args: OllamaAdapterPoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-infra:serving:OllamaAdapterPool", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.script = k8s.core.v1.ConfigMap(
            f"{name}-ensure-model",
            metadata=meta(ENSURE_MODEL_CONFIG, args.namespace, labels("ollama", ENSURE_MODEL_CONFIG, "model-init")),
            data={"ensure-model.sh": ENSURE_MODEL_SH},
            opts=child,
        )
        self.endpoints, self.deployments, self.services = {}, {}, {}
        for w in args.workloads:
            self._server(name, args, w)
        self.register_outputs({"endpoints": self.endpoints})

    def _server(self, name: str, args: OllamaAdapterPoolArgs, w: OllamaWorkload) -> None:
        component = "base" if w.adapter is None else "adapter"
        lab = labels("ollama", w.deployment_name, component)
        gpu = gpu_pod_fields(args.gpu_sharing, [w.gpu], cuda_env=True)
        s = w.server
        budget = ollama_rollout_seconds(w, args.pull_mib_per_second, args.server_start_seconds)
        requests = {"cpu": f"{s.cpu:g}", "memory": f"{round(s.memory_gib * 1024)}Mi"}
        limits = {"memory": requests["memory"], "cpu": f"{s.cpu_limit or s.cpu:g}", **gpu.limits}
        mounts = [
            k8s.core.v1.VolumeMountArgs(name="models", mount_path=MOUNT_PATH),
            k8s.core.v1.VolumeMountArgs(name="home", mount_path=HOME_DIR),
            k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
        ]
        # Both containers run in the GPU pod, which the NVIDIA runtime hooks (podSecurity.gpuReadOnlyRoot).
        secured = hardened(read_only_root=args.security.gpu_read_only_root)
        http = lambda path: k8s.core.v1.HTTPGetActionArgs(path=path, port="http")  # noqa: E731
        plan_note = {
            "llm-infra/gpu": f"{w.gpu.node}/{w.gpu.index}",
            "llm-infra/vram-gib-per-pod": f"{w.pods[0].total_bytes / 1024**3:.2f}",
            "llm-infra/model": w.model_name,
        }
        init = k8s.core.v1.ContainerArgs(
            name="ensure-model",
            image=args.image,
            image_pull_policy=pull_policy(args.image),
            command=["/bin/sh", f"{SCRIPTS_DIR}/ensure-model.sh"],
            env=[k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in ensure_model_env(w).items()],
            resources=k8s.core.v1.ResourceRequirementsArgs(requests=requests, limits={"memory": requests["memory"], "cpu": requests["cpu"]}),
            security_context=secured,
            volume_mounts=[*mounts, k8s.core.v1.VolumeMountArgs(name="scripts", mount_path=SCRIPTS_DIR, read_only=True)],
        )
        server = k8s.core.v1.ContainerArgs(
            name="ollama",
            image=args.image,
            image_pull_policy=pull_policy(args.image),
            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=OLLAMA.port, protocol="TCP")],
            env=[k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in sorted({**server_env(w), **gpu.env}.items())],
            resources=k8s.core.v1.ResourceRequirementsArgs(requests=requests, limits=limits, claims=gpu.container_claims),
            startup_probe=k8s.core.v1.ProbeArgs(
                http_get=http("/"),
                period_seconds=PROBE_PERIOD_SECONDS,
                failure_threshold=math.ceil(args.server_start_seconds / PROBE_PERIOD_SECONDS),
            ),
            readiness_probe=k8s.core.v1.ProbeArgs(http_get=http(f"/v1/models/{w.model_name}"), period_seconds=10, failure_threshold=3),
            liveness_probe=k8s.core.v1.ProbeArgs(http_get=http("/"), period_seconds=10, timeout_seconds=5, failure_threshold=6),
            security_context=secured,
            volume_mounts=mounts,
        )
        claim = args.cache.claim_for(w.node, w.deployment_name)
        self.deployments[w.role] = k8s.apps.v1.Deployment(
            f"{name}-{w.role}",
            metadata=meta(w.deployment_name, args.namespace, lab, plan_note),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=s.replicas,
                revision_history_limit=3,
                progress_deadline_seconds=max(600, budget),
                strategy=no_surge(),
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(lab)),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    # The server's own pod options (nodeSelector, tolerations, labels, annotations, priorityClassName).
                    metadata=template_metadata({**lab, SERVICE_LABEL: w.service_name}, None, s),
                    spec=gpu_pod_spec(
                        w.node, gpu, args.security, containers=[server], init_containers=[init],
                        options=s, image_pull_secrets=args.image_pull_secrets,
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="models",
                                persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(claim_name=claim),
                            ),
                            k8s.core.v1.VolumeArgs(name="home", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                            k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                            k8s.core.v1.VolumeArgs(
                                name="scripts",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=ENSURE_MODEL_CONFIG, default_mode=0o555),
                            ),
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.script],
                ignore_changes=["spec.replicas"] if s.autoscale else None,  # the HorizontalPodAutoscaler owns the count
                custom_timeouts=pulumi.CustomTimeouts(create=f"{math.ceil(budget * 1.5)}s", update=f"{math.ceil(budget * 1.5)}s"),
            ),
        )
        self.services[w.role] = k8s.core.v1.Service(
            f"{name}-{w.role}-service",
            metadata=meta(w.service_name, args.namespace, lab, SKIP_AWAIT),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=selector(lab),
                session_affinity="ClientIP",
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=OLLAMA.port, target_port="http", protocol="TCP")],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.endpoints[w.role] = f"http://{w.service_name}.{args.namespace}:{OLLAMA.port}"
        disruption_budget(f"{name}-{w.role}-pdb", w.deployment_name, args.namespace, lab, self)
        if s.autoscale is not None:
            self._autoscaler(name, args, w, lab, budget)

    def _autoscaler(self, name: str, args: OllamaAdapterPoolArgs, w: OllamaWorkload, lab: dict[str, str], budget: int) -> None:
        """Seed 000's HPA on CPU, bounded by the pods the plan placed on the server's GPU (autoscale.maxReplicas); it scales
        down only after a pod's start-up budget, so a model that takes minutes to pull and load does not thrash."""
        s = w.server
        assert s.autoscale is not None
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-{w.role}-hpa",
            metadata=meta(w.deployment_name, args.namespace, lab),
            spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                    api_version="apps/v1", kind="Deployment", name=w.deployment_name),
                min_replicas=s.replicas,
                max_replicas=s.autoscale.max_replicas,
                metrics=[k8s.autoscaling.v2.MetricSpecArgs(type="Resource", resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
                    name="cpu", target=k8s.autoscaling.v2.MetricTargetArgs(type="Utilization",
                                                                           average_utilization=s.autoscale.cpu_utilization)))],
                behavior=k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs(
                    scale_down=k8s.autoscaling.v2.HPAScalingRulesArgs(stabilization_window_seconds=ollama_scale_down_seconds(budget))),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
