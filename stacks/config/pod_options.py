"""Pod options a workload may add to the pods the program builds: node selector, tolerations, labels, annotations and
priority class (each vLLM model, each Ollama server, Llama Stack), checked as the API server checks them.

What the API server refuses is refused here, naming the key:
- label keys, node-selector keys, annotation keys and toleration keys are qualified names: an optional DNS-subdomain
  prefix of at most 253 characters and `/`, then a name of at most 63 characters `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`;
  label and node-selector values are empty or such a name (k8s.io/apimachinery v0.34.4 pkg/util/validation/validation.go:
  29-33, 41-70 IsQualifiedName, 154-173 IsValidLabelValue; pkg/apis/meta/v1/validation/validation.go:104-122
  ValidateLabels). Annotation keys are checked lowercased, and all of a pod's annotations take at most 256 KiB
  (pkg/api/validation/objectmeta.go:36, 44-66).
- tolerations (k8s.io/kubernetes v1.34.4 pkg/apis/core/validation/validation.go:4268-4308 ValidateTolerations): no key
  only with `Exists`; `tolerationSeconds` only with effect `NoExecute`; no value with `Exists`; a value with `Equal` is a
  label value; effect one of NoSchedule, PreferNoSchedule, NoExecute (validateTaintEffect, :4187-4208).
- a priority class name is a DNS subdomain (validation.go:315 ValidatePriorityClassName, :4580-4583).

What the program owns is refused too: labels its selectors, Services and NetworkPolicies use, annotations it sets, and
those the controllers that run the pods set (Deployment, StatefulSet, LeaderWorkerSet).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from stacks.config.base import DNS_SUBDOMAIN, _Model, key

if TYPE_CHECKING:
    from stacks.config import StackConfig

NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
NAME_MAX = 63
SUBDOMAIN_MAX = 253
ANNOTATIONS_MAX_BYTES = 256 * 1024
HOSTNAME_LABEL = "kubernetes.io/hostname"

OWN_LABEL_PREFIXES = ("app.kubernetes.io/", "llm-infra/", "leaderworkerset.sigs.k8s.io/", "acme.cert-manager.io/")
"""The program's labels (components/labels.py, stacks/edge.py), LeaderWorkerSet's (lws v0.9.0
api/leaderworkerset/v1/leaderworkerset_types.go:37-86: name, group-index, worker-index, group-key ...), and cert-manager's
solver label, which a NetworkPolicy admits the ingress to (stacks/edge.py ACME_SOLVER_LABEL): on a model's pod it would
open that pod to the ingress namespace."""
OWN_LABELS = frozenset({"pod-template-hash", "controller-revision-hash", "statefulset.kubernetes.io/pod-name",
                        "apps.kubernetes.io/pod-index"})
"""What the Deployment and StatefulSet controllers put on their pods (k8s.io/api v0.34.4 apps/v1/types.go:27-32, 425)."""
OWN_ANNOTATION_PREFIXES = ("llm-infra/", "prometheus.io/", "leaderworkerset.sigs.k8s.io/",
                           "container.apparmor.security.beta.kubernetes.io/", "seccomp.security.alpha.kubernetes.io/",
                           "container.seccomp.security.alpha.kubernetes.io/")
"""The program's (the API-key digest, the config hash, the scrape annotations that match the NetworkPolicies),
LeaderWorkerSet's, and the security profiles, which the pods' securityContext sets (Pod Security `restricted`)."""


def qualified_name_problem(text: str) -> str | None:
    """Why `text` is not a Kubernetes qualified name (label, annotation or taint key), or None."""
    if text.count("/") > 1:
        return "has more than one '/'"
    prefix, slash, name = text.rpartition("/")
    if slash and not (prefix and len(prefix) <= SUBDOMAIN_MAX and re.fullmatch(DNS_SUBDOMAIN, prefix)):
        return f"its prefix {prefix!r} is not a lowercase DNS subdomain of at most {SUBDOMAIN_MAX} characters"
    if not (len(name) <= NAME_MAX and re.fullmatch(NAME, name)):
        return (f"its name {name!r} is not 1 to {NAME_MAX} letters, digits, '-', '_' or '.' starting and ending with a "
                "letter or digit")
    return None


def label_value_problem(text: str) -> str | None:
    if text == "" or (len(text) <= NAME_MAX and re.fullmatch(NAME, text)):
        return None
    return f"is not empty or 1 to {NAME_MAX} letters, digits, '-', '_' or '.' starting and ending with a letter or digit"


def _strings(v: Any, what: str) -> Any:
    """A before-validator: a map of strings; an unquoted YAML `true` or `8` is refused with the fix."""
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(x, str):
                raise ValueError(f"{what} {k!r}: {x!r} is not a string; quote it in the YAML ('{str(x).lower()}')")
    return v


def _labels(v: dict[str, str], what: str) -> dict[str, str]:
    for k, x in v.items():
        why = qualified_name_problem(k)
        if why:
            raise ValueError(f"{what} key {k!r} is not a Kubernetes label key: {why}")
        why = label_value_problem(x)
        if why:
            raise ValueError(f"{what} {k!r}: the value {x!r} {why}")
    return v


class Toleration(_Model):
    """A toleration as core/v1 Toleration defines it (k8s.io/api v0.34.4 core/v1/types.go:4044-4070)."""

    key: str | None = None
    """Taint key it tolerates; left out (with `operator: Exists`) it tolerates every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """`Equal` (the taint's value is `value`) or `Exists` (any value)."""
    value: str | None = None
    """Taint value, with `operator: Equal`."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect it tolerates (default: every effect)."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """With `effect: NoExecute`: how long the pod stays on a node that gets the taint (default: for ever)."""

    @model_validator(mode="after")
    def _as_the_api_server(self) -> Toleration:
        # k8s.io/kubernetes v1.34.4 pkg/apis/core/validation/validation.go:4268-4308 (ValidateTolerations).
        if self.key is not None:
            why = qualified_name_problem(self.key)
            if why:
                raise ValueError(f"key {self.key!r} is not a Kubernetes taint key: {why}")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without a key tolerates every taint and needs operator Exists; give the taint's key")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds applies to effect NoExecute only (the API server refuses it with "
                             f"{self.effect or 'no effect'}); set effect: NoExecute or remove tolerationSeconds")
        if self.operator == "Exists" and self.value:
            raise ValueError(f"value {self.value!r} with operator Exists (any value); remove the value or use operator Equal")
        if self.operator == "Equal":
            why = label_value_problem(self.value or "")
            if why:
                raise ValueError(f"value {self.value!r} {why}")
        return self


class PodOptions(_Model):
    """What a workload adds to its pods; mixed into VllmModel, OllamaServer and LlamaStack."""

    node_selector: dict[str, str] = {}
    """Node labels the pods require (`nodeSelector`), on top of the node the plan pins them to; `kubernetes.io/hostname`
    only as that node (set `node` instead)."""
    tolerations: list[Toleration] = []
    """Further taints the pods tolerate (`key`, `operator` Exists|Equal, `value`, `effect`, `tolerationSeconds`), beside
    the GPU nodes' `nvidia.com/gpu:NoSchedule` the program tolerates."""
    labels: dict[str, str] = {}
    """Extra pod labels; not `app.kubernetes.io/*`, `llm-infra/*` or a controller's, which the program's selectors use."""
    annotations: dict[str, str] = {}
    """Extra pod annotations; not `llm-infra/*`, `prometheus.io/*` (the program's scrape settings), LeaderWorkerSet's or
    security profiles."""
    priority_class_name: str | None = Field(default=None, pattern=DNS_SUBDOMAIN, max_length=SUBDOMAIN_MAX)
    """An existing PriorityClass of the pods: without one a pod of higher priority may preempt a model in the middle of a
    load that takes up to an hour, which then starts over."""

    _node_selector_strings = field_validator("node_selector", mode="before")(lambda v: _strings(v, "node label"))
    _label_strings = field_validator("labels", mode="before")(lambda v: _strings(v, "label"))
    _annotation_strings = field_validator("annotations", mode="before")(lambda v: _strings(v, "annotation"))

    @field_validator("node_selector")
    @classmethod
    def _node_labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _labels(v, "node label")

    @field_validator("labels")
    @classmethod
    def _pod_labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if k.startswith(OWN_LABEL_PREFIXES) or k in OWN_LABELS:
                raise ValueError(f"label {k!r} is the program's or its controllers' (selectors, Services and NetworkPolicies "
                                 f"use {', '.join(p + '*' for p in OWN_LABEL_PREFIXES)}); use a key of your own")
        return _labels(v, "label")

    @field_validator("annotations")
    @classmethod
    def _pod_annotations(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            # Annotation keys are qualified names checked lowercased (apimachinery pkg/api/validation/objectmeta.go:48).
            why = qualified_name_problem(k.lower())
            if why:
                raise ValueError(f"annotation key {k!r} is not a Kubernetes annotation key: {why}")
            if k.lower().startswith(OWN_ANNOTATION_PREFIXES):
                raise ValueError(f"annotation {k!r} is set by the program or LeaderWorkerSet, or is a security profile "
                                 "(the pods' securityContext sets theirs); use a key of your own")
        size = sum(len(k.encode()) + len(x.encode()) for k, x in v.items())
        if size > ANNOTATIONS_MAX_BYTES:
            raise ValueError(f"the annotations take {size} bytes, above the {ANNOTATIONS_MAX_BYTES} the API server allows a pod")
        return v


def pod_options_problems(cfg: StackConfig) -> list[str]:
    """What the options contradict: the node the plan pins a pod to, the program's own Secrets, and (ollama.engine vllm)
    the other roles that share a GPU's one vLLM server."""
    from stacks.config.ollama import node_of, servers
    from stacks.edge import API_KEY_SECRET, AUTH_SECRET
    from stacks.names import HF_SECRET

    own_secrets = (HF_SECRET, API_KEY_SECRET, AUTH_SECRET)  # Opaque Secrets the program makes
    out = [f"{key('imagePullSecrets', i)}: {name!r} is the program's own Opaque Secret, not registry credentials; give a "
           "kubernetes.io/dockerconfigjson Secret (kubectl create secret docker-registry)"
           for i, name in enumerate(cfg.image_pull_secrets) if name in own_secrets]
    out += [f"{key('imagePullSecrets', i)}: {name!r} is listed twice; list it once"
            for i, name in enumerate(cfg.image_pull_secrets) if name in cfg.image_pull_secrets[:i]]
    single = cfg.nodes[0].name if len(cfg.nodes) == 1 else None
    if cfg.vllm is not None:
        for name, m in sorted(cfg.vllm.models.items()):
            at = key("vllm", "models", name, "nodeSelector")
            if m.pipeline_parallel > 1 and HOSTNAME_LABEL in m.node_selector:
                out.append(f"{at}: {HOSTNAME_LABEL} would put every rank on one node, but the {m.pipeline_parallel} ranks of a "
                           "replica go on nodes of their own; remove it and choose the nodes with pool")
            else:
                out += _hostname_problems(at, m.node_selector, m.node or single)
    for path, _, server in servers(cfg):
        node = node_of(cfg, server)
        if node is not None:
            out += _hostname_problems(key(*path, "nodeSelector"), server.node_selector, node.name)
    if cfg.llama_stack is not None:
        out += _hostname_problems(key("llamaStack", "nodeSelector"), cfg.llama_stack.node_selector,
                                  cfg.llama_stack.node or cfg.nodes[0].name)
    if cfg.ollama is not None and cfg.ollama.engine == "vllm":
        out += _shared_server_problems(cfg)
    return out


def _hostname_problems(at: str, selector: dict[str, str], pinned: str | None) -> list[str]:
    """The plan pins each pod to a node by kubernetes.io/hostname (components/pods.py gpu_pod_spec); a selector on it
    may only repeat that node."""
    want = selector.get(HOSTNAME_LABEL)
    if want is None or want == pinned:
        return []
    if pinned is None:
        return [f"{at}: {HOSTNAME_LABEL} {want!r} may contradict the node the plan chooses; set node: {want} instead "
                "and remove it"]
    return [f"{at}: {HOSTNAME_LABEL} {want!r} contradicts the node the pods are pinned to ({pinned!r}); set node to "
            "the node you want and remove it"]


def merged_options(options: list[PodOptions]) -> dict[str, Any]:
    """One pod's options from several (the roles the adapter pool's vLLM server on one GPU serves), as config keys."""
    out: dict[str, Any] = {
        "nodeSelector": {k: v for o in options for k, v in o.node_selector.items()},
        "tolerations": list({t: None for o in options for t in o.tolerations}),
        "labels": {k: v for o in options for k, v in o.labels.items()},
        "annotations": {k: v for o in options for k, v in o.annotations.items()},
    }
    priority = next((o.priority_class_name for o in options if o.priority_class_name), None)
    return {**{k: v for k, v in out.items() if v}, **({"priorityClassName": priority} if priority else {})}


def _shared_server_problems(cfg: StackConfig) -> list[str]:
    """ollama.engine vllm: the roles on one GPU share one vLLM pod, which carries all their options; they must agree."""
    from stacks.config.ollama import node_of, servers

    out: list[str] = []
    taken: dict[tuple[str, int], dict[str, tuple[str, tuple[str, ...]]]] = {}  # GPU -> option -> (value, whose)
    for path, _, server in servers(cfg):
        node = node_of(cfg, server)
        if node is None:
            continue  # _ollama_problems names the missing node
        mine = {**{f"nodeSelector {k!r}": v for k, v in server.node_selector.items()},
                **{f"label {k!r}": v for k, v in server.labels.items()},
                **{f"annotation {k!r}": v for k, v in server.annotations.items()},
                **({"priorityClassName": server.priority_class_name} if server.priority_class_name else {})}
        on_gpu = taken.setdefault((node.name, server.gpu), {})
        clash = {what: on_gpu[what][1] for what, v in mine.items() if what in on_gpu and on_gpu[what][0] != v}
        for what, v in mine.items():
            on_gpu.setdefault(what, (v, path))
        if clash:
            others = ", ".join(key(*p) for p in dict.fromkeys(clash.values()))
            out.append(f"{key(*path)}: with ollama.engine vllm it shares GPU {server.gpu}'s one vLLM server with {others}, "
                       f"whose pod options differ ({', '.join(clash)}); make them agree")
    return out
