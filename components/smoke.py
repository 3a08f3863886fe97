"""SmokeJob: `make smoke`'s checks, run inside the cluster by a Job once every server is up (`smoke.job`).

A ConfigMap holds the checks (tools/smoke.py itself, which needs only Python and httpx) and the `services` the stack
outputs (from the service graph); the Job runs them with `python3` in an image the stack already pulls: Llama Stack's
(llama-stack 0.7.3 requires httpx: its wheel's METADATA; the image is python:3.12-slim plus llama-stack), or else
vLLM's (vllm 0.33.0 requires fastapi[standard]>=0.133,<0.137, whose `standard` extra requires httpx>=0.23: the
wheels' METADATA), on the node that already holds it. pulumi-kubernetes awaits a Job until it completes and fails the
update when it fails (provider/v4 pkg/await/job.go); with `pulumi.com/replaceUnready` a failed Job is replaced, so
run again, on the next `pulumi up` (pkg/provider/provider.go, Diff); a changed service list changes the pod template,
which is immutable, so the Job is replaced and runs again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from components.gpu import gpu_node_tolerations
from components.labels import labels, meta
from components.pod_options import NO_OPTIONS, node_selector, pull_secrets, tolerations
from components.pods import hardened, pod_security, pull_policy
from stacks.config import PodSecurity, Vllm
from stacks.config.pod_options import PodOptions
from stacks.config.smoke import CPU, JOB_NAME, MEMORY_MIB
from stacks.edge import API_KEY_KEY, client_labels
from stacks.loader import Stack
from tools import smoke as checks

MOUNT = "/smoke"
SCRIPT, SERVICES = "smoke.py", "services.json"


@dataclass(frozen=True)
class SmokeJobArgs:
    namespace: str
    image: str
    node: str
    services: dict[str, dict[str, object]]
    """The `services` stack output: every Service of the graph with its API, in-cluster URL and models."""
    security: PodSecurity
    api_key_secret: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    options: PodOptions = NO_OPTIONS
    """The pod options of the workload whose node it shares: its tolerations and node labels let the Job land there too."""


def smoke_job_args(stack: Stack, api_key_secret: str | None) -> SmokeJobArgs:
    """Llama Stack's image on its node, or else the first vLLM server's (stacks/config/smoke.py refuses an Ollama-only stack)."""
    cfg, plan, graph = stack.config, stack.plan, stack.graph
    if graph.llama_stack is not None and cfg.llama_stack is not None:
        image, options = cfg.llama_stack.image, cfg.llama_stack
    else:
        image, options = (cfg.vllm or Vllm()).image, plan.vllm[0].spec
    assert plan.smoke_node is not None  # the plan placed it (stacks/plan: Llama Stack's node or the first vLLM server's)
    return SmokeJobArgs(cfg.namespace, image, plan.smoke_node, graph.services(), cfg.pod_security, api_key_secret,
                        tuple(cfg.image_pull_secrets), options)


class SmokeJob(pulumi.ComponentResource):
    job: k8s.batch.v1.Job

    def __init__(self, name: str, args: SmokeJobArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-infra:check:SmokeJob", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        lab = labels("smoke", JOB_NAME, "smoke-test")
        data = {SCRIPT: Path(checks.__file__).read_text(), SERVICES: json.dumps({"services": args.services}, indent=1, sort_keys=True)}
        config = k8s.core.v1.ConfigMap(f"{name}-config", metadata=meta(JOB_NAME, args.namespace, lab), data=data, opts=child)
        env = [k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp")]
        if args.api_key_secret:  # vLLM checks the Bearer key; tools/smoke.py reads $API_KEY
            env.append(k8s.core.v1.EnvVarArgs(name="API_KEY", value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=args.api_key_secret, key=API_KEY_KEY))))
        size = {"cpu": f"{CPU:g}", "memory": f"{MEMORY_MIB}Mi"}
        container = k8s.core.v1.ContainerArgs(
            name="smoke",
            image=args.image,
            image_pull_policy=pull_policy(args.image),
            command=["python3", f"{MOUNT}/{SCRIPT}", "--endpoints", f"{MOUNT}/{SERVICES}"],
            env=env,
            resources=k8s.core.v1.ResourceRequirementsArgs(requests=size, limits=size),
            security_context=hardened(read_only_root=True),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="checks", mount_path=MOUNT, read_only=True),
                           k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")],
        )
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
        self.job = k8s.batch.v1.Job(
            f"{name}-job",
            metadata=meta(JOB_NAME, args.namespace, lab, {"pulumi.com/replaceUnready": "true"}),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=0,  # a failed check is the answer, not a flake to retry
                template=k8s.core.v1.PodTemplateSpecArgs(
                    # The graph's client label: the network policies let exactly it call every Service.
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels={**lab, **dict(client_labels(JOB_NAME))},
                                                        annotations={"llm-infra/config-hash": digest}),
                    spec=k8s.core.v1.PodSpecArgs(
                        restart_policy="Never",
                        # The node that pulled the image for its server; a GPU node, whose taint it tolerates.
                        node_selector=node_selector(args.node, args.options),
                        tolerations=tolerations(gpu_node_tolerations(), args.options),
                        image_pull_secrets=pull_secrets(args.image_pull_secrets),
                        automount_service_account_token=False,
                        enable_service_links=False,
                        security_context=pod_security(args.security),
                        containers=[container],
                        volumes=[k8s.core.v1.VolumeArgs(name="checks", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=JOB_NAME)),
                                 k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs())],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[config]),
        )
        self.register_outputs({})
