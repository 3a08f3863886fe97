"""ResourceQuota and LimitRange from the plan, and a PodDisruptionBudget per serving workload."""

from __future__ import annotations

from tests.conftest import run_raw, run_secret_raw, stack_raw, variant

Mi = 1024


def pod_templates(run):
    return [o for o in run.objects() if o["kind"] == "Deployment"]


def test_dev_quota_holds_the_plan_and_one_rolling_pod_more(dev_run):
    hard = dev_run.find("ResourceQuota", "llm-infra-quota")["spec"]["hard"]
    # base 2 CPU / 8 GiB, chatbot 4 / 10, code 3 / 10, summarization 2 / 8; the largest (chatbot) once more
    assert hard["requests.cpu"] == str(2 + 4 + 3 + 2 + 4)
    assert hard["requests.memory"] == hard["limits.memory"] == f"{(8 + 10 + 10 + 8 + 10) * Mi}Mi"
    assert hard["pods"] == "5"
    counted = {k: sum(1 for o in dev_run.objects() if o["kind"] == kind) for k, kind in
               (("services", "Service"), ("persistentvolumeclaims", "PersistentVolumeClaim"), ("count/deployments.apps", "Deployment"))}
    # Twice each count: room for every object to be replaced in one update (REPLACE_ROOM)
    assert all(hard[k] == str(2 * v) for k, v in counted.items())
    # ollama-ensure-model, the Grafana dashboard, and the kube-root-ca.crt every namespace gets
    assert hard["configmaps"] == str(2 * (2 + 1))
    # the API key, the ingress's htpasswd line and the TLS Secret the stack uses (ollama-local-tls, made by you)
    assert hard["secrets"] == str(2 * 3)
    assert "requests.nvidia.com/gpu" not in hard  # visible-devices: no GPU requests to count


def cores(quantity: str) -> float:
    """A CPU quantity: `2`, `1.5` or `100m`."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_every_pod_fits_the_quota_even_while_one_rolls():
    for raw, secrets in ((stack_raw("dev"), []), (stack_raw("prod"), ["hfToken"]), (stack_raw("lab"), ["hfToken"])):
        run = run_secret_raw(raw, secrets)
        hard = run.find("ResourceQuota", "llm-infra-quota")["spec"]["hard"]
        cpu = mem = 0.0
        biggest = (0.0, 0.0)
        for d in pod_templates(run):
            spec = d["spec"]["template"]["spec"]
            main = spec["containers"]
            c = sum(cores(x["resources"]["requests"]["cpu"]) for x in main)
            m = sum(int(x["resources"]["requests"]["memory"].removesuffix("Mi")) for x in main)
            for init in spec.get("initContainers", []):  # a pod's request is the larger of its init and main containers
                c = max(c, cores(init["resources"]["requests"]["cpu"]))
                m = max(m, int(init["resources"]["requests"]["memory"].removesuffix("Mi")))
            replicas = d["spec"]["replicas"]
            cpu, mem = cpu + c * replicas, mem + m * replicas
            biggest = max(biggest, (m, c))
        assert cpu + biggest[1] <= float(hard["requests.cpu"])
        assert mem + biggest[0] <= int(hard["requests.memory"].removesuffix("Mi"))
        # every planned pod, a reserved replica (0 pods until its autoscaler starts it) included, and one rolling pod
        reserved = sum(1 for o in run.objects() if o["kind"] == "ScaledObject")
        acme = 1 if raw.get("ingress", {}).get("tls", {}).get("clusterIssuer") else 0  # cert-manager's solver pod
        assert int(hard["pods"]) == sum(d["spec"]["replicas"] for d in pod_templates(run)) + reserved + acme + 1


def test_exclusive_mode_counts_gpus_and_dra_counts_claims():
    run = run_raw(variant(lambda r: (r["gpuSharing"].update(mode="exclusive"),
                                     r["ollama"].update(adapters={"code": r["ollama"]["adapters"]["code"]}))))
    requested = sum(int(d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) for d in pod_templates(run))
    assert requested == 2  # base and code, one GPU each
    assert run.find("ResourceQuota", "llm-infra-quota")["spec"]["hard"]["requests.nvidia.com/gpu"] == str(requested + 1)
    prod = run_secret_raw(stack_raw("prod"), ["hfToken"])
    assert prod.find("ResourceQuota", "llm-infra-quota")["spec"]["hard"]["count/resourceclaims.resource.k8s.io"] == str(2 * 4)
    # Alone on its GPUs the 70B is profiled, less the 1 GiB margin. At prod's 0.60 its KV cache is 0.60 x 79.15 GiB
    # - 70.6 B x 2 B / 4 (32.88) - the forward peak 2048 tokens x 8192 x 2 B x 18 (0.56, above the sampler's 256 rows x
    # 128256 x 4 B x 4 + 0.05 = 0.54) - 2.25 non-torch at TP 4 - 1.9 CUDA graphs above 30B = 9.90 GiB per GPU; less the
    # margin 8.90, under the 8000 blocks x 16 tokens x 80 KiB = 9.77 GiB of one 128000-token sequence. 0.62 adds
    # 0.02 x 79.15 = 1.58 GiB: 10.48 after the margin (0.61 is not enough: 9.69).
    excl = run_secret_raw(variant(lambda r: (r["gpuSharing"].update(mode="exclusive"),
                                             r["vllm"].update(models={"llama-70b": {**r["vllm"]["models"]["llama-70b"], "gpuMemoryUtilization": 0.62}}),
                                             r.pop("llamaStack"), r.pop("agents")), "prod"), ["hfToken"])
    assert excl.find("ResourceQuota", "llm-infra-quota")["spec"]["hard"]["requests.nvidia.com/gpu"] == str(4 + 4)


def test_containers_without_resources_get_defaults(dev_run):
    item = dev_run.find("LimitRange", "llm-infra-defaults")["spec"]["limits"][0]
    assert item == {"type": "Container", "defaultRequest": {"cpu": "100m", "memory": "128Mi"}, "default": {"memory": "256Mi"}}


def test_one_disruption_budget_per_workload_that_never_blocks_a_drain():
    run = run_secret_raw(stack_raw("prod"), ["hfToken"])
    pdbs = {o["metadata"]["name"]: o for o in run.objects() if o["kind"] == "PodDisruptionBudget"}
    assert sorted(pdbs) == sorted({"llamastack-server", *(o["metadata"]["name"] for o in run.objects() if o["kind"] == "Service")})
    for pdb in pdbs.values():
        assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
        selected = [d["metadata"]["name"] for d in pod_templates(run)
                    if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())]
        assert selected, pdb["metadata"]["name"]
    sel = pdbs["vllm-llama-70b"]["spec"]["selector"]["matchLabels"]
    assert [d["metadata"]["name"] for d in pod_templates(run)
            if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())] == ["vllm-llama-70b"]


def test_no_quota_in_a_namespace_the_stack_does_not_own():
    run = run_raw(variant(lambda r: r.update(namespace="default", existingNamespace=True)))
    kinds = {o["kind"] for o in run.objects()}
    assert "ResourceQuota" not in kinds and "LimitRange" not in kinds and "Namespace" not in kinds
    assert "PodDisruptionBudget" in kinds


def test_cert_manager_has_room_to_issue():
    """Its solver pod and Service and a temporary key Secret live in the namespace while it issues the certificate."""
    prod = run_secret_raw(stack_raw("prod"), ["hfToken"])
    hard = prod.find("ResourceQuota", "llm-infra-quota")["spec"]["hard"]
    rendered = {k: sum(1 for o in prod.objects() if o["kind"] == kind) for k, kind in (("secrets", "Secret"), ("services", "Service"))}
    assert int(hard["secrets"]) == 2 * (rendered["secrets"] + 2)  # the certificate's Secret and cert-manager's temporary key
    assert int(hard["services"]) == 2 * (rendered["services"] + 1)  # the HTTP-01 solver's Service
