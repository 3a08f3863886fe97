"""Pod-level settings every GPU server shares: placement, pinning, hardening, rollout."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.gpu import GpuPodFields
from components.labels import meta, selector
from components.pod_options import NO_OPTIONS, node_selector, pull_secrets, tolerations
from stacks.config import PodOptions, PodSecurity
from stacks.config.pod_options import HOSTNAME_LABEL

WRITE_CHECK = r"""set -eu
for d in "$@"; do
  mkdir -p "$d" 2>/dev/null || true
  if ! touch "$d/.llm-infra-write-test" 2>/dev/null; then
    echo "check-cache: $d is not writable by uid $(id -u) gid $(id -g) (groups: $(id -G))." >&2
    echo "check-cache: prepare the host directory once: sudo chown -R $(id -u):$(id -g) <modelCache.hostPath> (docs/operations.md, Before the first pulumi up)" >&2
    exit 1
  fi
  rm -f "$d/.llm-infra-write-test"
done
echo "check-cache: $* writable by uid $(id -u)"
"""

MODEL_CHECK = r"""
if [ -n "${MODEL_DIR:-}" ] && [ ! -f "$MODEL_DIR/config.json" ]; then
  echo "check-cache: $MODEL_DIR has no config.json: copy the model's files there (config.json, tokenizer files, *.safetensors) (docs/operations.md, Air-gapped clusters)" >&2
  exit 1
fi
if [ -n "${HUB_REPO_DIR:-}" ]; then
  rev="$REVISION"
  sha="$rev"
  case "$rev" in *[!0-9a-f]*) sha="" ;; esac
  if [ "${#sha}" -ne 40 ]; then
    if [ ! -f "$HUB_REPO_DIR/refs/$rev" ]; then
      echo "check-cache: downloads are off and $HUB_REPO_DIR/refs/$rev is missing: seed the cache with revision $rev (docs/operations.md, Air-gapped clusters)" >&2
      exit 1
    fi
    sha="$(cat "$HUB_REPO_DIR/refs/$rev")"
  fi
  if [ ! -f "$HUB_REPO_DIR/snapshots/$sha/config.json" ]; then
    echo "check-cache: downloads are off and $HUB_REPO_DIR/snapshots/$sha/config.json is missing: seed the cache with revision $rev (docs/operations.md, Air-gapped clusters)" >&2
    exit 1
  fi
  echo "check-cache: snapshot $sha of revision $rev is in the cache"
fi
"""
"""With MODEL_DIR: a model served from a directory of the cache has its config.json. With HUB_REPO_DIR and REVISION (downloads
off): the revision's snapshot is in the Hugging Face cache as huggingface_hub 2.4.0 looks it up offline
(_snapshot_download.py:335-346, file_download.py:1140-1152): a 40-hex commit is `snapshots/<sha>`, any other name is
resolved through `refs/<name>`. Values come as environment variables, never spliced into the script."""


def pod_security(sec: PodSecurity) -> k8s.core.v1.PodSecurityContextArgs:
    """The fixed non-root user and group of every pod (Pod Security `restricted`), RuntimeDefault seccomp."""
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=sec.run_as_user,
        run_as_group=sec.fs_group,
        fs_group=sec.fs_group,
        fs_group_change_policy="OnRootMismatch",
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def hardened(read_only_root: bool = True) -> k8s.core.v1.SecurityContextArgs:
    """No privilege escalation, no capabilities, non-root; a read-only root filesystem unless the NVIDIA runtime needs it
    writable (`podSecurity.gpuReadOnlyRoot`)."""
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=read_only_root,
        run_as_non_root=True,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
    )


def check_cache(image: str, dirs: list[str], mounts: list, read_only_root: bool,
                model: dict[str, str] | None = None) -> k8s.core.v1.ContainerArgs:
    """An init container that stops the pod at Init:Error, saying how to fix it, when the model cache is not writable
    by the pods' user (a hostPath directory made by root before the pods ran as non-root), or when `model` (MODEL_CHECK's
    variables) names files the server needs and the cache lacks."""
    return k8s.core.v1.ContainerArgs(
        name="check-cache",
        image=image,
        image_pull_policy=pull_policy(image),
        command=["/bin/sh", "-c", WRITE_CHECK + (MODEL_CHECK if model else ""), "check-cache", *dirs],
        env=[k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in sorted(model.items())] if model else None,
        resources=k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "100m", "memory": "64Mi"},
                                                       limits={"cpu": "100m", "memory": "64Mi"}),
        security_context=hardened(read_only_root),
        volume_mounts=mounts,
    )


def pull_policy(image: str) -> str:
    """`Always` for a tag (a tag can move; the registry is asked each start, layers stay cached); a digest cannot move."""
    return "IfNotPresent" if "@sha256:" in image else "Always"


def no_surge() -> k8s.apps.v1.DeploymentStrategyArgs:
    """Replace pods one at a time without a surge: a new pod never needs GPU memory the old one still holds."""
    return k8s.apps.v1.DeploymentStrategyArgs(
        type="RollingUpdate",
        rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=0, max_unavailable=1),
    )


def disruption_budget(resource_name: str, name: str, namespace: str, obj_labels: dict[str, str], parent: pulumi.Resource
                      ) -> k8s.policy.v1.PodDisruptionBudget:
    """A node drain may take one pod of the workload at a time, and never waits forever: maxUnavailable 1, not
    minAvailable 1 (which would block the drain of a single-replica GPU server for good)."""
    return k8s.policy.v1.PodDisruptionBudget(
        resource_name,
        metadata=meta(name, namespace, obj_labels),
        spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
            max_unavailable=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(obj_labels))),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def spread_over(nodes: list[str], label: tuple[str, str]) -> k8s.core.v1.AffinityArgs:
    """One pod per node among `nodes`: the planned nodes, and never two pods carrying `label` on one node."""
    return k8s.core.v1.AffinityArgs(
        node_affinity=k8s.core.v1.NodeAffinityArgs(
            required_during_scheduling_ignored_during_execution=k8s.core.v1.NodeSelectorArgs(node_selector_terms=[
                k8s.core.v1.NodeSelectorTermArgs(match_expressions=[
                    k8s.core.v1.NodeSelectorRequirementArgs(key=HOSTNAME_LABEL, operator="In", values=sorted(nodes))])])),
        pod_anti_affinity=k8s.core.v1.PodAntiAffinityArgs(required_during_scheduling_ignored_during_execution=[
            k8s.core.v1.PodAffinityTermArgs(topology_key=HOSTNAME_LABEL,
                                            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict([label])))]),
    )


def gpu_pod_spec(node: str | list[str], gpu: GpuPodFields, sec: PodSecurity, containers: list, volumes: list,
                 init_containers: list | None = None, termination_grace_period_seconds: int | None = None,
                 spread_label: tuple[str, str] | None = None, host_network: bool = False,
                 options: PodOptions = NO_OPTIONS, image_pull_secrets: Sequence[str] = ()) -> k8s.core.v1.PodSpecArgs:
    """A pod on its planned node and GPUs (or, for the workers of a multi-node replica, one per planned node: `node` a
    list, `spread_label` their group): no service-account token, no service-link env, non-root, RuntimeDefault seccomp;
    the workload's pod `options` and the stack's `image_pull_secrets` added (components/pod_options.py)."""
    many = isinstance(node, list)
    return k8s.core.v1.PodSpecArgs(
        node_selector=node_selector(None if many else node, options),
        affinity=spread_over(node, spread_label) if many and spread_label else None,
        host_network=host_network or None,
        # On the host's network a pod still resolves Service names (LWS_LEADER_ADDRESS) through the cluster DNS.
        dns_policy="ClusterFirstWithHostNet" if host_network else None,
        runtime_class_name=gpu.runtime_class_name,
        resource_claims=gpu.resource_claims,
        tolerations=tolerations(gpu.tolerations, options),
        priority_class_name=options.priority_class_name,
        image_pull_secrets=pull_secrets(image_pull_secrets),
        automount_service_account_token=False,
        enable_service_links=False,
        termination_grace_period_seconds=termination_grace_period_seconds,
        security_context=pod_security(sec),
        init_containers=init_containers,
        containers=containers,
        volumes=volumes,
    )


KEY_DIGEST = "llm-infra/api-key-sha256"
"""Pod-template annotation of the pods that read the API key at start (vLLM's VLLM_API_KEY, Llama Stack's providers)."""


def key_digest(key: str) -> str:
    """A digest of the API key: a Secret read through env reaches a running pod only when it restarts, so the
    templates that read it carry this, and a rotated key rolls them. 64 bits of SHA-256 of a key of 128 or more random
    bits (apiKey needs 32 characters) say nothing of it, so it stays readable in diffs."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]
