"""OllamaAdapterPool content under mocks: env, probes, init, strategy, services, GPU pinning."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import env_of, problems_of, run_raw, stack_raw, variant

NS = "llama3-multi-adapter"
UUID0 = "GPU-00000000-0000-0000-0000-000000000000"
UUID1 = "GPU-00000000-0000-0000-0000-000000000001"


def pod_spec(run, name):
    return run.find("Deployment", name)["spec"]["template"]["spec"]


def server(run, name):
    (c,) = pod_spec(run, name)["containers"]
    return c


@pytest.mark.parametrize("name,parallel,queue,keep_alive,context", [
    ("ollama-base", "2", "128", "24h", "4096"),
    ("ollama-adapter-chatbot", "12", "256", "10m", "2048"),
    ("ollama-adapter-code", "6", "128", "15m", "4096"),
    ("ollama-adapter-summarization", "2", "64", "20m", "8192"),
])
def test_seed_concurrency_and_keep_alive_env(dev_run, name, parallel, queue, keep_alive, context):
    env = env_of(server(dev_run, name))
    assert env["OLLAMA_NUM_PARALLEL"] == parallel
    assert env["OLLAMA_MAX_QUEUE"] == queue
    assert env["OLLAMA_KEEP_ALIVE"] == keep_alive
    assert env["OLLAMA_CONTEXT_LENGTH"] == context
    assert env["OLLAMA_MAX_LOADED_MODELS"] == "1"
    assert env["OLLAMA_MODELS"] == "/models/ollama" and env["HOME"] == "/ollama-home"
    assert "OLLAMA_GPU_MEMORY_FRACTION" not in env
    names = [e["name"] for e in server(dev_run, name)["env"]]
    assert names == sorted(names)


def test_probes(dev_run):
    chat = server(dev_run, "ollama-adapter-chatbot")
    assert chat["readinessProbe"]["httpGet"] == {"path": "/v1/models/chatbot", "port": "http"}
    assert chat["livenessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    # serverStartSeconds 120 / period 5
    assert (chat["startupProbe"]["periodSeconds"], chat["startupProbe"]["failureThreshold"]) == (5, 24)
    assert server(dev_run, "ollama-base")["readinessProbe"]["httpGet"]["path"] == "/v1/models/llama3:8b"
    assert "lifecycle" not in chat


def test_startup_budget_follows_config():
    run = run_raw(variant(lambda r: r["ollama"].update(serverStartSeconds=300)))
    assert server(run, "ollama-base")["startupProbe"]["failureThreshold"] == 60


def test_ensure_model_init_container(dev_run):
    spec = pod_spec(dev_run, "ollama-adapter-code")
    (init,) = spec["initContainers"]
    env = env_of(init)
    assert init["command"] == ["/bin/sh", "/scripts/ensure-model.sh"]
    assert env["ADAPTER_FILE"] == "/models/adapters/code.gguf"
    assert env["MODEL_NAME"] == "code" and env["BASE_MODEL"] == "llama3:8b"
    assert env["CUDA_VISIBLE_DEVICES"] == "-1"  # the private server stays off the GPU
    assert env["OLLAMA_HOST"] == "127.0.0.1:11435"
    base_env = env_of(pod_spec(dev_run, "ollama-base")["initContainers"][0])
    assert "ADAPTER_FILE" not in base_env and base_env["MODEL_NAME"] == "llama3:8b"
    script = dev_run.find("ConfigMap", "ollama-ensure-model")["data"]["ensure-model.sh"]
    assert 'ollama create "$MODEL_NAME" -f "$work/Modelfile"' in script


def test_adapter_sha256_reaches_the_init_container():
    digest = "ab" * 32
    run = run_raw(variant(lambda r: r["ollama"]["adapters"]["code"].update(sha256=digest)))
    assert env_of(pod_spec(run, "ollama-adapter-code")["initContainers"][0])["ADAPTER_SHA256"] == digest


def test_rollout_cannot_deadlock_and_is_sized_for_the_pull(dev_run):
    dep = dev_run.find("Deployment", "ollama-adapter-chatbot")
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    # 4,661,211,424 B at 25 MiB/s = 177.8 s, + 2 x 120 s server starts = 418 s; Pulumi waits 1.5x.
    assert dep["spec"]["progressDeadlineSeconds"] == 600
    opts = dev_run.resource("Deployment", "ollama-adapter-chatbot").options
    assert opts["customTimeouts"] == {"create": "627s", "update": "627s"}
    slow = run_raw(variant(lambda r: r["ollama"].update(pullMiBPerSecond=2)))
    # 4,661,211,424 / (2 x 2^20) = 2222.6 s + 240 = 2463 s
    assert slow.find("Deployment", "ollama-base")["spec"]["progressDeadlineSeconds"] == 2463


def test_resources_and_placement(dev_run):
    chat = server(dev_run, "ollama-adapter-chatbot")
    assert chat["resources"] == {"requests": {"cpu": "4", "memory": "10240Mi"}, "limits": {"cpu": "4", "memory": "10240Mi"}}
    spec = pod_spec(dev_run, "ollama-adapter-chatbot")
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "workstation"}
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    # The GPU container's root stays writable for the NVIDIA runtime's hooks unless podSecurity.gpuReadOnlyRoot says otherwise.
    assert chat["securityContext"]["readOnlyRootFilesystem"] is False
    ro = run_raw(variant(lambda r: r.update(podSecurity={"gpuReadOnlyRoot": True})))
    assert server(ro, "ollama-adapter-chatbot")["securityContext"]["readOnlyRootFilesystem"] is True
    assert dev_run.find("Deployment", "ollama-adapter-chatbot")["spec"]["replicas"] == 1


def test_services_keep_the_seed_urls(dev_run):
    for role in ("base", "chatbot", "code", "summarization"):
        svc = dev_run.find("Service", f"ollama-{role}")
        assert svc["metadata"]["namespace"] == NS
        assert svc["spec"]["sessionAffinity"] == "ClientIP"
        assert svc["spec"]["ports"] == [{"name": "http", "port": 11434, "targetPort": "http", "protocol": "TCP"}]
        dep = dev_run.find("Deployment", "ollama-base" if role == "base" else f"ollama-adapter-{role}")
        assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    endpoints = dev_run.program["topology"].endpoints
    assert endpoints["ollama-chatbot"] == "http://ollama-chatbot.llama3-multi-adapter:11434"


def test_visible_devices_pins_by_uuid(dev_run):
    for name, uuid in (("ollama-base", UUID0), ("ollama-adapter-chatbot", UUID0), ("ollama-adapter-code", UUID1)):
        spec = pod_spec(dev_run, name)
        env = env_of(spec["containers"][0])
        assert spec["runtimeClassName"] == "nvidia"
        assert env["CUDA_VISIBLE_DEVICES"] == uuid and env["NVIDIA_VISIBLE_DEVICES"] == uuid
        assert "nvidia.com/gpu" not in spec["containers"][0]["resources"].get("limits", {})
        assert "resourceClaims" not in spec
    assert not [o for o in dev_run.objects() if o["kind"] == "ResourceClaim"]


def test_dra_one_shared_claim_per_gpu():
    run = run_raw(variant(lambda r: r["gpuSharing"].update(mode="dra")))
    # Named after the device each selects (a claim's spec is immutable: a new UUID is a new claim).
    claims = {o["metadata"]["name"].rsplit("-", 1)[0]: o for o in run.objects() if o["kind"] == "ResourceClaim"}
    assert sorted(claims) == ["workstation-gpu-0", "workstation-gpu-1"]
    assert claims["workstation-gpu-0"]["metadata"]["name"] == f"workstation-gpu-0-{hashlib.sha256(f'gpu.nvidia.com {UUID0}'.encode()).hexdigest()[:8]}"
    (req,) = claims["workstation-gpu-0"]["spec"]["devices"]["requests"]
    assert req["exactly"]["deviceClassName"] == "gpu.nvidia.com"
    assert req["exactly"]["selectors"] == [{"cel": {"expression": f'device.attributes["gpu.nvidia.com"].uuid == "{UUID0}"'}}]
    for name, claim in (("ollama-base", "workstation-gpu-0"), ("ollama-adapter-chatbot", "workstation-gpu-0"),
                        ("ollama-adapter-code", "workstation-gpu-1"), ("ollama-adapter-summarization", "workstation-gpu-1")):
        spec = pod_spec(run, name)
        ref = f"gpu-{claim[-1]}"
        assert spec["resourceClaims"] == [{"name": ref, "resourceClaimName": claims[claim]["metadata"]["name"]}]
        assert spec["containers"][0]["resources"]["claims"] == [{"name": ref}]
        assert "runtimeClassName" not in spec and "CUDA_VISIBLE_DEVICES" not in env_of(spec["containers"][0])
        assert "claims" not in spec["initContainers"][0]["resources"]


def test_dra_falls_back_to_pci_bus_id():
    def edit(r):
        r["gpuSharing"]["mode"] = "dra"
        r["nodes"][0]["gpus"][1].pop("uuid")

    run = run_raw(variant(edit))
    (req,) = run.find("ResourceClaim", f"workstation-gpu-1-{hashlib.sha256(b'gpu.nvidia.com 0000:02:00.0').hexdigest()[:8]}")["spec"]["devices"]["requests"]
    assert req["exactly"]["selectors"][0]["cel"]["expression"] == \
        'device.attributes["resource.kubernetes.io"].pciBusID == "0000:02:00.0"'


def one_pod_per_gpu(raw):
    raw["gpuSharing"]["mode"] = "exclusive"
    raw["ollama"]["adapters"] = {"code": raw["ollama"]["adapters"]["code"]}


def test_exclusive_requests_whole_gpus():
    run = run_raw(variant(one_pod_per_gpu))
    for name in ("ollama-base", "ollama-adapter-code"):
        spec = pod_spec(run, name)
        assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert spec["runtimeClassName"] == "nvidia"
        assert "CUDA_VISIBLE_DEVICES" not in env_of(spec["containers"][0])
    assert [o["metadata"]["name"] for o in run.objects() if o["kind"] == "Deployment"] == ["ollama-adapter-code", "ollama-base"]


def test_every_object_named_namespaced_and_labelled(dev_run):
    cluster_scoped = {"Namespace", "PersistentVolume", "StorageClass"}
    for o in dev_run.objects():
        meta = o["metadata"]
        assert meta["name"]
        assert ("namespace" in meta) == (o["kind"] not in cluster_scoped), o["kind"]
        if "namespace" in meta:
            assert meta["namespace"] == NS
        assert meta["labels"]["app.kubernetes.io/part-of"] == "llm-infra"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "pulumi"


def test_children_parented_to_their_components(dev_run):
    by_name = {r.name: r for r in dev_run.resources}
    assert by_name["ollama-chatbot"].options["parent"].endswith("OllamaAdapterPool::ollama")
    assert by_name["model-cache-workstation-pv"].options["parent"].endswith("ModelCache::model-cache")
    assert by_name["ollama"].options["parent"].endswith("Topology::llm-infra")


def test_stack_has_no_unpinned_image_or_nonexistent_setting(dev_run):
    text = repr(dev_run.objects())
    for bad in ("OLLAMA_GPU_MEMORY_FRACTION", ":latest", "postStart"):
        assert bad not in text
    images = {c["image"] for o in dev_run.objects() if o["kind"] == "Deployment"
              for c in o["spec"]["template"]["spec"]["containers"] + o["spec"]["template"]["spec"]["initContainers"]}
    assert images == {stack_raw("dev")["ollama"]["image"]} == {"ollama/ollama:0.32.15"}


def test_an_hpa_on_cpu_within_the_pods_the_plan_placed():
    raw = variant(lambda r: (r["ollama"]["adapters"].pop("summarization"),
                             r["ollama"]["adapters"]["code"].update(autoscale={"maxReplicas": 2, "cpuUtilization": 70})))
    run = run_raw(raw)
    hpa = run.find("HorizontalPodAutoscaler", "ollama-adapter-code")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ollama-adapter-code"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 2)
    assert hpa["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    # scale-down waits a pod's start-up budget: 4.34 GiB at 25 MiB/s plus two server starts = 418 s
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 418
    slow = run_raw(variant(lambda r: (r["ollama"].update(pullMiBPerSecond=0.5),
                                      r["ollama"]["adapters"]["code"].update(autoscale={"maxReplicas": 2}),
                                      r["ollama"]["adapters"].pop("summarization"))))
    assert slow.find("HorizontalPodAutoscaler", "ollama-adapter-code")["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 3600
    # the plan holds the second pod on the code server's GPU, and the quota has room for it
    gpu1 = [p["name"] for g in run.program["stack"].plan.to_dict()["gpus"] if g["index"] == 1 for p in g["pods"]]
    assert gpu1 == ["ollama-adapter-code#1", "ollama-adapter-code#2 (reserved)"]
    assert run.find("ResourceQuota", "llm-infra-quota")["spec"]["hard"]["pods"] == "5"  # base, chatbot, code x2, one rolling


def test_an_hpa_with_no_room_is_refused_naming_the_key():
    problems = problems_of(variant(lambda r: r["ollama"]["adapters"]["code"].update(autoscale={"maxReplicas": 3})))
    assert problems[0].startswith("llm-infra:ollama.adapters.code.autoscale.maxReplicas: no room on GPU 1 of node workstation for "
                                  "ollama-adapter-code#2 (reserved), ollama-adapter-code#3 (reserved)")
    assert "not one pod more fits" in problems[0]


def test_two_autoscaled_servers_on_one_full_gpu_are_each_named():
    problems = problems_of(variant(lambda r: (r["ollama"]["adapters"]["code"].update(autoscale={"maxReplicas": 2}),
                                              r["ollama"]["adapters"]["summarization"].update(autoscale={"maxReplicas": 2}))))
    assert [p.split(":", 2)[1] for p in problems[:2]] == ["ollama.adapters.code.autoscale.maxReplicas",
                                                          "ollama.adapters.summarization.autoscale.maxReplicas"]
    assert all("not one pod more fits" in p for p in problems[:2])
