"""The add-ons `make render` says the cluster needs: from the config and the kinds of the objects the stack renders."""

from __future__ import annotations

from collections import Counter

import pytest

from stacks.names import planned_objects
from tests.conftest import stack_of, stack_raw, variant
from tests.test_render import run_render
from tools.addons import admitted_namespace, needed_addons

TRAEFIK = "Traefik, IngressClass traefik"
PROMETHEUS = "Prometheus Operator CRDs"
RUNTIME_CLASS = "RuntimeClass nvidia (NVIDIA container runtime)"
DRA = "NVIDIA DRA driver, DeviceClass gpu.nvidia.com"


def addons_of(raw) -> list[str]:
    """The add-on names, from the kinds the stack renders (stacks/names.py lists every object the components make)."""
    s = stack_of(raw)
    kinds = Counter(c.kind for c in planned_objects(s.config, s.plan, s.graph) if not c.controller)
    return [a.name for a in needed_addons(s.config, s.plan, kinds)]


@pytest.mark.parametrize(("stack", "want"), [
    ("dev", [TRAEFIK, RUNTIME_CLASS]),
    ("lab", [TRAEFIK, "cert-manager, ClusterIssuer university-ca", PROMETHEUS, "KEDA 2.x", RUNTIME_CLASS]),
    ("prod", ["ingress-nginx, IngressClass nginx", "cert-manager, ClusterIssuer letsencrypt-prod", PROMETHEUS, DRA]),
    ("scale", [TRAEFIK, "cert-manager, ClusterIssuer letsencrypt-prod", PROMETHEUS, "KEDA 2.x",
               "LeaderWorkerSet controller (kubernetes-sigs/lws)", "NVIDIA device plugin, RuntimeClass nvidia"]),
])
def test_each_stack_lists_the_addons_it_needs(stack, want):
    assert addons_of(stack_raw(stack)) == want


def test_the_gpu_addon_follows_the_sharing_mode_and_the_rest_follow_their_settings():
    dra = variant(lambda r: r["gpuSharing"].update(mode="dra", deviceClassName="gpu.example.com"))
    assert addons_of(dra) == [TRAEFIK, "NVIDIA DRA driver, DeviceClass gpu.example.com"]
    hpa = variant(lambda r: (r["ollama"]["adapters"].pop("summarization"),
                             r["ollama"]["adapters"]["code"].update(autoscale={"maxReplicas": 2})))
    assert "metrics-server (metrics.k8s.io)" in addons_of(hpa)  # the HPA reads CPU from metrics.k8s.io
    rwx = variant(lambda r: r["modelCache"].update(mode="rwx", storageClassName="longhorn", storageClassReclaimPolicy="Retain"))
    assert addons_of(rwx)[-1] == "StorageClass longhorn"
    bare = variant(lambda r: (r.pop("ingress"), r["networkPolicy"].pop("ingressNamespace")))
    assert addons_of(bare) == [RUNTIME_CLASS]


def test_the_summary_says_which_namespace_the_policies_admit_and_whether_the_controller_moves_it():
    prod = stack_of(stack_raw("prod")).config
    assert admitted_namespace(prod).startswith("the NetworkPolicies admit the ingress controller from namespace ingress-nginx, "
                                               "the default for nginx (networkPolicy.ingressNamespace unset): switching "
                                               "ingress.controller to traefik admits traefik instead")
    dev = stack_of(stack_raw("dev")).config
    assert admitted_namespace(dev) == ("the NetworkPolicies admit the ingress controller from namespace kube-system, set by "
                                       "networkPolicy.ingressNamespace (traefik's default: traefik); switching ingress.controller keeps it")
    off = stack_of(variant(lambda r: r["networkPolicy"].update(enabled=False))).config
    assert admitted_namespace(off).startswith("NetworkPolicies are off")


def test_render_prints_the_addons_counted_from_the_rendered_objects(tmp_path):
    code, printed = run_render(["--stack", "scale", "--out", str(tmp_path)])
    assert code == 0
    table = printed.split("Add-ons to install before `pulumi up`\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split("  ")[0] for line in table[2:-1]] == addons_of(stack_raw("scale"))
    assert "1 LeaderWorkerSet (leaderworkerset.x-k8s.io/v1)" in table[6] and "4 ScaledObject (keda.sh/v1alpha1)" in table[5]
    assert table[-1].startswith("  the NetworkPolicies admit the ingress controller from namespace traefik, the default for traefik")


def test_pull_secrets_and_priority_classes_must_exist_before_pulumi_up():
    from tests.conftest import stack_of, variant
    from tools.addons import needed_addons

    raw = variant(lambda r: (r.update(imagePullSecrets=["regcred"]),
                             r["vllm"]["models"]["llama-70b"].update(priorityClassName="llm-serving")), "prod")
    names = [a.name for a in needed_addons(stack_of(raw).config, stack_of(raw).plan, {})]
    assert "Secret regcred (registry credentials)" in names and "PriorityClass llm-serving" in names
