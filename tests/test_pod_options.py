"""Pod options: `imagePullSecrets` on every pod, and each workload's nodeSelector, tolerations, labels, annotations and
priorityClassName on its own pods (Deployments, LeaderWorkerSet leader and worker templates), merged under what the
program sets; every input the API server or the program would refuse is refused naming its key."""

from __future__ import annotations

import pytest

from tests.conftest import pod_templates, run_secret_raw, stack_problems, variant
from tests.test_multinode import three_nodes
from tests.test_pod_security import restricted_violations
from tests.test_validate import multi_lora, validate_all

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
OPTIONS = {
    "nodeSelector": {"topology.kubernetes.io/zone": "zone-a", "example.com/fast-disk": ""},
    "tolerations": [{"key": "dedicated", "value": "llm", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                     "tolerationSeconds": 600},
                    GPU_TOLERATION],  # the program's own: not repeated
    "labels": {"team": "ml", "example.com/cost-center": "c42"},
    "annotations": {"example.com/owner": "ml-platform"},
    "priorityClassName": "llm-serving",
}
RENDERED_TOLERATIONS = [GPU_TOLERATION, {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"},
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 600}]
VLLM = "llm-infra:vllm.models.llama-3b"


def run(raw, stack):
    return run_secret_raw({**raw, "hfToken": "hf_x"} if stack != "dev" else raw, ["hfToken"] if stack != "dev" else [])


def templates(edit, stack):
    r = run(variant(edit, stack), stack)
    return r, pod_templates(r.objects())


def problems(edit, stack="prod"):
    return stack_problems(variant(lambda r: (r.update(hfToken="hf_x"), edit(r)), stack))


def assert_options(template, pinned: str | None):
    spec, meta = template["spec"], template["metadata"]
    assert spec["nodeSelector"] == {**OPTIONS["nodeSelector"], **({"kubernetes.io/hostname": pinned} if pinned else {})}
    assert spec["tolerations"] == RENDERED_TOLERATIONS
    assert spec["priorityClassName"] == "llm-serving"
    assert meta["labels"]["team"] == "ml" and meta["labels"]["example.com/cost-center"] == "c42"
    assert meta["annotations"]["example.com/owner"] == "ml-platform"


def assert_plain(template):
    spec, meta = template["spec"], template["metadata"]
    assert set(spec["nodeSelector"]) == {"kubernetes.io/hostname"} and spec["tolerations"] == [GPU_TOLERATION]
    assert "priorityClassName" not in spec and "team" not in meta["labels"]


@pytest.mark.parametrize("stack", ["dev", "prod", "scale"])
def test_every_pod_pulls_with_the_stack_s_secrets(stack):
    _, pods = templates(lambda r: r.update(imagePullSecrets=["regcred", "mirror-creds"]), stack)
    assert pods
    for name, t in pods.items():
        assert t["spec"]["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror-creds"}], name
    _, plain = templates(lambda r: None, stack)
    assert all("imagePullSecrets" not in t["spec"] for t in plain.values())


def test_a_model_s_options_are_on_its_pods_only():
    _, pods = templates(lambda r: r["vllm"]["models"]["llama-3b"].update(OPTIONS), "prod")
    assert_options(pods["vllm-llama-3b"], "a100-node")
    # Under the program's labels and annotations, which stay as they were.
    meta = pods["vllm-llama-3b"]["metadata"]
    assert meta["labels"]["app.kubernetes.io/instance"] == "vllm-llama-3b" and meta["annotations"]["prometheus.io/scrape"] == "true"
    assert_plain(pods["vllm-llama-70b"])


def test_a_multi_node_replica_s_leader_and_workers_carry_them():
    _, pods = templates(lambda r: r["vllm"]["models"]["llama-405b"].update(OPTIONS), "scale")
    leader, worker = pods["vllm-llama-405b-0"], pods["vllm-llama-405b-0/worker"]
    assert_options(leader, leader["spec"]["nodeSelector"]["kubernetes.io/hostname"])
    assert_options(worker, worker["spec"]["nodeSelector"]["kubernetes.io/hostname"])
    assert leader["spec"]["nodeSelector"]["kubernetes.io/hostname"] != worker["spec"]["nodeSelector"]["kubernetes.io/hostname"]


def test_three_stages_keep_the_workers_affinity_beside_the_selector():
    _, pods = templates(lambda r: (three_nodes(r), r["vllm"]["models"]["llama-405b"].update(OPTIONS)), "scale")
    worker = pods["vllm-llama-405b-0/worker"]
    assert_options(worker, None)  # no hostname: node affinity spreads the workers over their planned nodes
    assert worker["spec"]["affinity"]["nodeAffinity"]


def test_an_ollama_server_s_options_are_on_its_pods_only():
    _, pods = templates(lambda r: r["ollama"]["adapters"]["code"].update(OPTIONS), "dev")
    assert_options(pods["ollama-adapter-code"], "workstation")
    assert_plain(pods["ollama-base"])


def test_llama_stack_s_options():
    _, pods = templates(lambda r: r["llamaStack"].update(OPTIONS), "prod")
    assert_options(pods["llamastack-server"], "a100-node")
    assert pods["llamastack-server"]["metadata"]["annotations"]["llm-infra/config-hash"]


def test_the_adapter_pool_s_vllm_server_takes_the_options_of_the_roles_on_its_gpu():
    def edit(r):
        multi_lora(r)
        r["ollama"]["adapters"]["code"].update(OPTIONS)  # GPU 1, with summarization
    _, pods = templates(edit, "dev")
    assert_options(pods["vllm-adapters-gpu1"], "workstation")
    assert_plain(pods["vllm-adapters-gpu0"])


def test_roles_on_one_gpu_of_the_adapter_pool_must_agree():
    def edit(r):
        multi_lora(r)
        r["ollama"]["adapters"]["code"]["priorityClassName"] = "high"
        r["ollama"]["adapters"]["summarization"].update(priorityClassName="low", labels={"team": "b"})
        r["ollama"]["adapters"]["code"]["labels"] = {"team": "a"}
    assert problems(edit, "dev") == [
        "llm-infra:ollama.adapters.summarization: with ollama.engine vllm it shares GPU 1's one vLLM server with "
        "llm-infra:ollama.adapters.code, whose pod options differ (label 'team', priorityClassName); make them agree"]


@pytest.mark.parametrize("stack,edit", [
    ("prod", lambda r: (r.update(imagePullSecrets=["regcred"]), r["vllm"]["models"]["llama-3b"].update(OPTIONS),
                        r["llamaStack"].update(OPTIONS))),
    ("scale", lambda r: (r.update(imagePullSecrets=["regcred"]), r["vllm"]["models"]["llama-405b"].update(OPTIONS))),
    ("dev", lambda r: (r.update(imagePullSecrets=["regcred"]), r["ollama"]["base"].update(OPTIONS))),
])
def test_rendered_objects_still_pass_the_schema_and_restricted(stack, edit):
    r, pods = templates(edit, stack)
    validate_all(r.objects())
    for name, t in pods.items():
        assert restricted_violations(t["spec"]) == [], name


def model(edit):
    return lambda r: edit(r["vllm"]["models"]["llama-3b"])


BAD = [
    (model(lambda m: m.update(nodeSelector={"bad key": "x"})),
     f"{VLLM}.nodeSelector: node label key 'bad key' is not a Kubernetes label key: its name 'bad key' is not 1 to 63"),
    (model(lambda m: m.update(nodeSelector={"Example.com/zone": "a"})),
     f"{VLLM}.nodeSelector: node label key 'Example.com/zone' is not a Kubernetes label key: its prefix 'Example.com' is not"),
    (model(lambda m: m.update(nodeSelector={"zone": "a" * 64})), f"{VLLM}.nodeSelector: node label 'zone': the value 'aaaa"),
    (model(lambda m: m.update(nodeSelector={"nvidia.com/gpu.present": True})),
     f"{VLLM}.nodeSelector: node label 'nvidia.com/gpu.present': True is not a string; quote it in the YAML ('true')"),
    (model(lambda m: m.update(nodeSelector={"kubernetes.io/hostname": "other-node"})),
     f"{VLLM}.nodeSelector: kubernetes.io/hostname 'other-node' contradicts the node the pods are pinned to ('a100-node')"),
    (model(lambda m: m.update(tolerations=[{"key": "a", "operator": "Exists", "value": "x"}])),
     f"{VLLM}.tolerations[0]: value 'x' with operator Exists (any value); remove the value or use operator Equal"),
    (model(lambda m: m.update(tolerations=[{"key": "a", "effect": "NoSchedule", "tolerationSeconds": 60}])),
     f"{VLLM}.tolerations[0]: tolerationSeconds applies to effect NoExecute only"),
    (model(lambda m: m.update(tolerations=[{"key": "a", "effect": "NoAdmit"}])), f"{VLLM}.tolerations[0].effect: "),
    (model(lambda m: m.update(tolerations=[{"key": "a", "operator": "In"}])), f"{VLLM}.tolerations[0].operator: "),
    (model(lambda m: m.update(tolerations=[{"value": "x"}])), f"{VLLM}.tolerations[0]: a toleration without a key tolerates"),
    (model(lambda m: m.update(tolerations=[{"key": "a/b/c", "operator": "Exists"}])),
     f"{VLLM}.tolerations[0]: key 'a/b/c' is not a Kubernetes taint key: has more than one '/'"),
    (model(lambda m: m.update(tolerations=[{"key": "a", "value": "x y"}])), f"{VLLM}.tolerations[0]: value 'x y' is not empty or"),
    (model(lambda m: m.update(tolerations=[{"key": "a", "effect": "NoExecute", "tolerationSeconds": -1}])),
     f"{VLLM}.tolerations[0].tolerationSeconds: "),
    (model(lambda m: m.update(labels={"app.kubernetes.io/name": "x"})), f"{VLLM}.labels: label 'app.kubernetes.io/name' is the program's"),
    (model(lambda m: m.update(labels={"llm-infra/service": "x"})), f"{VLLM}.labels: label 'llm-infra/service' is the program's"),
    (model(lambda m: m.update(labels={"pod-template-hash": "x"})), f"{VLLM}.labels: label 'pod-template-hash' is the program's"),
    (model(lambda m: m.update(labels={"team": "a b"})), f"{VLLM}.labels: label 'team': the value 'a b' is not empty or"),
    (model(lambda m: m.update(annotations={"prometheus.io/scrape": "false"})),
     f"{VLLM}.annotations: annotation 'prometheus.io/scrape' is set by the program"),
    (model(lambda m: m.update(annotations={"container.apparmor.security.beta.kubernetes.io/vllm": "unconfined"})),
     f"{VLLM}.annotations: annotation 'container.apparmor.security.beta.kubernetes.io/vllm' is set by the program"),
    (model(lambda m: m.update(annotations={"a b": "x"})), f"{VLLM}.annotations: annotation key 'a b' is not a Kubernetes annotation key"),
    (model(lambda m: m.update(annotations={"big": "x" * (256 * 1024)})),
     f"{VLLM}.annotations: the annotations take 262147 bytes, above the 262144"),
    (model(lambda m: m.update(priorityClassName="High_Priority")), f"{VLLM}.priorityClassName: 'High_Priority' has the wrong form"),
    (lambda r: r.update(imagePullSecrets=["Reg_Cred"]), "llm-infra:imagePullSecrets[0]: 'Reg_Cred' has the wrong form"),
    (lambda r: r.update(imagePullSecrets=["huggingface-token"]),
     "llm-infra:imagePullSecrets[0]: 'huggingface-token' is the program's own Opaque Secret, not registry credentials"),
    (lambda r: r.update(imagePullSecrets=["regcred", "regcred"]), "llm-infra:imagePullSecrets[1]: 'regcred' is listed twice"),
    (lambda r: r["llamaStack"].update(annotations={"llm-infra/config-hash": "x"}),
     "llm-infra:llamaStack.annotations: annotation 'llm-infra/config-hash' is set by the program"),
    (lambda r: r["llamaStack"].update(nodeSelector={"kubernetes.io/hostname": "gpu-2"}),
     "llm-infra:llamaStack.nodeSelector: kubernetes.io/hostname 'gpu-2' contradicts the node the pods are pinned to ('a100-node')"),
]


@pytest.mark.parametrize("edit,message", BAD)
def test_each_invalid_option_is_refused_naming_its_key(edit, message):
    found = problems(edit)
    assert len(found) == 1 and found[0].startswith(message), found


def test_an_ollama_server_may_name_only_its_own_node():
    _, pods = templates(lambda r: r["ollama"]["adapters"]["code"].update(nodeSelector={"kubernetes.io/hostname": "workstation"}), "dev")
    assert pods["ollama-adapter-code"]["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "workstation"}
    (found,) = problems(lambda r: r["ollama"]["adapters"]["code"].update(nodeSelector={"kubernetes.io/hostname": "other"}), "dev")
    assert found.startswith("llm-infra:ollama.adapters.code.nodeSelector: kubernetes.io/hostname 'other' contradicts the node "
                            "the pods are pinned to ('workstation')")


def test_a_hostname_the_plan_may_not_choose_or_on_a_multi_node_model_is_refused():
    two = lambda r: (r["nodes"].append({**r["nodes"][0], "name": "a100-node-2"}), r["llamaStack"].update(node="a100-node"))  # noqa: E731
    (found,) = problems(lambda r: (two(r), r["vllm"]["models"]["llama-3b"].update(nodeSelector={"kubernetes.io/hostname": "a100-node"})))
    assert found.startswith(f"{VLLM}.nodeSelector: kubernetes.io/hostname 'a100-node' may contradict the node the plan chooses; "
                            "set node: a100-node instead")
    (found,) = problems(lambda r: r["vllm"]["models"]["llama-405b"].update(nodeSelector={"kubernetes.io/hostname": "h100-a"}), "scale")
    assert found.startswith("llm-infra:vllm.models.llama-405b.nodeSelector: kubernetes.io/hostname would put every rank on one node")


def test_cert_managers_solver_label_is_refused_since_a_policy_admits_it():
    from tests.conftest import problems_of, variant
    problems = problems_of(variant(lambda r: r["vllm"]["models"]["llama-3b"].update(
        labels={"acme.cert-manager.io/http01-solver": "true"}), "prod"))
    assert any(p.startswith("llm-infra:vllm.models.llama-3b.labels") and "acme.cert-manager.io/http01-solver" in p
               for p in problems), problems
