"""VllmModel content under mocks (prod and lab stacks): args, secrets, shm, probes, pinning, replicas."""

from __future__ import annotations

import hashlib

import json

import pytest

from tests.conftest import env_of, plan_of, run_secret_raw, stack_problems, stack_raw, variant
from tools.offline import REDACTED

TOKEN = "hf_abcdefghijklmnopqrstuvwxyz0123456789"


def prod_run(raw):
    return run_secret_raw({**raw, "hfToken": TOKEN}, ["hfToken"])


@pytest.fixture(scope="module")
def prod():
    return prod_run(stack_raw("prod"))


@pytest.fixture(scope="module")
def lab():
    return run_secret_raw(stack_raw("lab"), ["hfToken"])


def container(run, name):
    (c,) = run.find("Deployment", name)["spec"]["template"]["spec"]["containers"]
    return c


def test_70b_args_are_typed_flags_only(prod):
    """It shares its GPUs, so its KV cache is pinned to the plan's figure (whole blocks of 16 x 80 KiB)."""
    w = next(x for x in plan_of(stack_raw("prod")).vllm if x.key == "llama-70b")
    assert container(prod, "vllm-llama-70b")["args"] == [
        "meta-llama/Llama-3.1-70B-Instruct",
        "--served-model-name", "llama-3.1-70b",
        "--tensor-parallel-size", "4",
        "--max-model-len", "128000",
        "--gpu-memory-utilization", "0.6",
        "--kv-cache-memory-bytes", str(w.blocks.num_blocks * 16 * 80 * 1024),
    ]
    assert w.blocks.num_blocks * 16 * 80 * 1024 <= w.kv_budget_bytes_per_rank < (w.blocks.num_blocks + 1) * 16 * 80 * 1024


def test_a_server_alone_on_its_gpu_keeps_vllms_profiling(lab):
    args = container(lab, "vllm-mixtral")["args"]
    assert "--kv-cache-memory-bytes" not in args and args[args.index("--gpu-memory-utilization") + 1] == "0.8"
    assert "--kv-cache-memory-bytes" in container(lab, "vllm-llama-8b-multi")["args"]


def test_no_removed_flag_env_or_metric_in_any_render(prod, lab):
    text = json.dumps(prod.objects()) + json.dumps(lab.objects())
    for bad in ("--swap-space", "--num-scheduler-steps", "--use-v2-block-manager", "--task", "VLLM_USE_V1",
                "gpu_cache_usage_perc", ":latest", "bitsandbytes"):
        assert bad not in text, bad
    from stacks.model_catalog import hf_models

    for run in (prod, lab):
        for o in run.objects():
            if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("vllm-"):
                args = o["spec"]["template"]["spec"]["containers"][0]["args"]
                assert args[0] in hf_models() and "serve" not in args  # the image's ENTRYPOINT is `vllm serve`


def test_hf_token_only_as_a_secret(prod):
    secret = prod.resource("Secret", "huggingface-token")
    # Passed to Pulumi as a secret (the mock sees the secret wrapper), rendered redacted, referenced by key.
    assert "4dabf18193072939515e22adb298388d" in json.dumps(secret.inputs["stringData"])
    assert prod.find("Secret", "huggingface-token")["stringData"] == {"HF_TOKEN": REDACTED}
    # A file the Hugging Face client reads (HF_TOKEN_PATH), never an environment variable of the pod
    c = container(prod, "vllm-llama-70b")
    assert env_of(c)["HF_TOKEN_PATH"] == "/var/run/secrets/huggingface/token" and "HF_TOKEN" not in env_of(c)
    assert {"name": "hf-token", "mountPath": "/var/run/secrets/huggingface", "readOnly": True} in c["volumeMounts"]
    volume = next(v for v in prod.find("Deployment", "vllm-llama-70b")["spec"]["template"]["spec"]["volumes"] if v["name"] == "hf-token")
    assert volume["secret"] == {"secretName": "huggingface-token", "defaultMode": 0o400, "items": [{"key": "HF_TOKEN", "path": "token"}]}
    assert TOKEN not in json.dumps(prod.objects())
    assert TOKEN not in json.dumps(prod.program["stack"].plan.to_dict())
    assert TOKEN not in json.dumps(prod.program["topology"].endpoints)


def test_plain_text_token_is_refused():
    raw = stack_raw("prod")
    problems = stack_problems(raw, secrets=("apiKey",))
    assert problems == ["llm-infra:hfToken: the token is in plain text in the stack file; store it with "
                        "`pulumi config set --secret hfToken hf_...`"]


def test_gated_model_without_token_is_refused():
    problems = stack_problems(variant(lambda r: r.pop("hfToken"), "lab"))
    assert problems == ["llm-infra:hfToken: llama-8b, llama-8b-multi are gated models on Hugging Face; "
                        "set a token with `pulumi config set --secret hfToken hf_...`"]


def test_shm_sized_from_tensor_parallelism(prod):
    spec = prod.find("Deployment", "vllm-llama-70b")["spec"]["template"]["spec"]
    dshm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert dshm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}  # 4 GiB x TP 4
    assert {"name": "dshm", "mountPath": "/dev/shm"} in spec["containers"][0]["volumeMounts"]
    # 64 GiB for the process + 16 GiB of memory-backed /dev/shm
    assert spec["containers"][0]["resources"]["limits"]["memory"] == "81920Mi"
    guard = prod.find("Deployment", "vllm-llama-guard")["spec"]["template"]["spec"]
    assert [v["name"] for v in guard["volumes"]] == ["models", "home", "tmp", "hf-token"]  # no /dev/shm volume at TP 1


def test_startup_budget_covers_download_and_load(prod):
    # 70.6e9 params x 2 B = 141.2e9 B: 2693.1 s at 50 MiB/s + 336.6 s at 400 MiB/s + 300 s compile = 3330 s
    c = container(prod, "vllm-llama-70b")
    assert c["startupProbe"] == {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10, "failureThreshold": 333}
    assert env_of(c)["VLLM_ENGINE_READY_TIMEOUT_S"] == "3330"
    assert c["readinessProbe"]["httpGet"]["path"] == c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert prod.resource("Deployment", "vllm-llama-70b").options["customTimeouts"] == {"create": "4995s", "update": "4995s"}
    # The 3B: 6.42e9 B -> 122.4 + 15.3 + 300 = 438 s; vLLM's own 600 s default is kept as the floor.
    small = container(prod, "vllm-llama-3b")
    assert small["startupProbe"]["failureThreshold"] == 44
    assert env_of(small)["VLLM_ENGINE_READY_TIMEOUT_S"] == "600"


def test_weights_in_the_model_cache_and_metrics_scraped(prod):
    dep = prod.find("Deployment", "vllm-watt-8b")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert env_of(c)["HF_HOME"] == "/models/huggingface"
    assert dep["spec"]["template"]["spec"]["volumes"][0] == {"name": "models", "persistentVolumeClaim": {"claimName": "model-cache-a100-node"}}
    assert dep["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/path": "/metrics", "prometheus.io/port": "8000", "prometheus.io/scrape": "true",
        "llm-infra/api-key-sha256": hashlib.sha256(b"<secret:llm-infra:apiKey>").hexdigest()[:16]}
    svc = prod.find("Service", "vllm-watt-8b")
    # The pods are scraped, not the Service as well (no double counting); the Service is not awaited (its pods are).
    assert svc["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "protocol": "TCP", "targetPort": "http"}]
    assert prod.program["topology"].endpoints["vllm-watt-8b"] == "http://vllm-watt-8b.llama-serve:8000/v1"


def claim(i: int, uuid: str | None = None) -> str:
    """prod's claim of GPU i: named after the device it selects (a claim's spec cannot change)."""
    uuid = uuid or f"GPU-00000000-0000-0000-0000-00000000a10{i}"
    return f"a100-node-gpu-{i}-{hashlib.sha256(f'gpu.nvidia.com {uuid}'.encode()).hexdigest()[:8]}"


def test_dra_claims_for_tensor_parallel_and_shared_gpus(prod):
    spec = prod.find("Deployment", "vllm-llama-70b")["spec"]["template"]["spec"]
    assert [c["resourceClaimName"] for c in spec["resourceClaims"]] == [claim(i) for i in range(4)]
    # The plan put granite on GPU 0, next to the 70B: both pods reference that GPU's one claim.
    granite = prod.find("Deployment", "vllm-granite-8b")["spec"]["template"]["spec"]
    assert granite["resourceClaims"] == [{"name": "gpu-0", "resourceClaimName": claim(0)}]
    assert sorted(o["metadata"]["name"] for o in prod.objects() if o["kind"] == "ResourceClaim") == [claim(i) for i in range(4)]


def test_a_new_gpu_uuid_is_a_new_claim_under_the_same_urn():
    """The API server refuses any update of a claim's spec: replacing a GPU's UUID must make a new claim (a replace
    of the same Pulumi resource) and move the pods to it, never update the old claim in place."""
    swap = lambda r: r["nodes"][0]["gpus"][0].update(uuid="GPU-11111111-2222-3333-4444-555555555555")  # noqa: E731
    before, after = prod_run(stack_raw("prod")), prod_run(variant(swap, "prod"))
    urns = lambda run: {r.name: r.inputs["metadata"]["name"] for r in run.resources if r.typ.endswith(":ResourceClaim")}  # noqa: E731
    old, new = urns(before), urns(after)
    assert old.keys() == new.keys() and [n for n in old if old[n] != new[n]] == ["gpu-claims-a100-node-gpu-0"]
    assert new["gpu-claims-a100-node-gpu-0"] == claim(0, "GPU-11111111-2222-3333-4444-555555555555")
    spec = after.find("Deployment", "vllm-granite-8b")["spec"]["template"]["spec"]
    assert spec["resourceClaims"][0]["resourceClaimName"] == claim(0, "GPU-11111111-2222-3333-4444-555555555555")


def test_visible_devices_for_vllm_sets_only_nvidia_visible_devices(lab):
    c = container(lab, "vllm-llama-8b")
    env = env_of(c)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "GPU-00000000-0000-0000-0000-0000000c1402"
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert lab.find("Deployment", "vllm-llama-8b")["spec"]["template"]["spec"]["runtimeClassName"] == "nvidia"


def test_exclusive_requests_as_many_gpus_as_ranks():
    # Alone on its GPUs the 70B is profiled, less the 1 GiB margin. At prod's 0.60 its KV cache is 0.60 x 79.15 GiB
    # - 70.6 B x 2 B / 4 (32.88) - the forward peak 2048 tokens x 8192 x 2 B x 18 (0.56, above the sampler's 256 rows x
    # 128256 x 4 B x 4 + 0.05 = 0.54) - 2.25 non-torch at TP 4 - 1.9 CUDA graphs above 30B = 9.90 GiB per GPU; less the
    # margin 8.90, under the 8000 blocks x 16 tokens x 80 KiB = 9.77 GiB of one 128000-token sequence. 0.62 adds
    # 0.02 x 79.15 = 1.58 GiB: 10.48 after the margin (0.61 is not enough: 9.69).
    raw = variant(lambda r: (r["gpuSharing"].update(mode="exclusive"),
                             r["vllm"].update(models={"llama-70b": {**r["vllm"]["models"]["llama-70b"], "gpuMemoryUtilization": 0.62}}),
                             r.pop("llamaStack"), r.pop("agents")), "prod")
    raw["hfToken"] = TOKEN
    run = run_secret_raw(raw, ["hfToken"])
    assert container(run, "vllm-llama-70b")["resources"]["limits"]["nvidia.com/gpu"] == "4"


def test_replicas_are_separate_pinned_pods_behind_one_service(lab):
    deps = [lab.find("Deployment", name) for name in ("vllm-llama-8b-multi", "vllm-llama-8b-multi-1")]
    svc = lab.find("Service", "vllm-llama-8b-multi")
    for dep in deps:
        assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    # replicas 1 runs; the second (autoscale.maxReplicas 2) is reserved: 0 pods until its ScaledObject starts one
    assert [d["spec"]["replicas"] for d in deps] == [1, 0]
    scaler = lab.find("ScaledObject", "vllm-llama-8b-multi-1")["spec"]
    assert scaler["scaleTargetRef"] == {"name": "vllm-llama-8b-multi-1"}
    assert (scaler["minReplicaCount"], scaler["maxReplicaCount"]) == (0, 1)
    trigger = scaler["triggers"][0]
    # the reserved replica starts when the in-flight requests pass what the one running replica carries (24)
    assert trigger["type"] == "prometheus" and trigger["metadata"]["activationThreshold"] == "24"
    assert trigger["metadata"]["threshold"] == "24"
    assert trigger["metadata"]["query"] == ('sum(vllm:num_requests_running{namespace="llm-lab", model_name="llama-8b-multi"}) + '
                                            'sum(vllm:num_requests_waiting{namespace="llm-lab", model_name="llama-8b-multi"})')
    assert trigger["metadata"]["serverAddress"] == "http://prometheus-operated.monitoring.svc:9090"
    # scale-down waits the model's start-up budget, so a replica that takes minutes to load does not thrash
    budget = next(c for c in deps[1]["spec"]["template"]["spec"]["containers"])["startupProbe"]
    assert scaler["cooldownPeriod"] >= budget["periodSeconds"] * budget["failureThreshold"] - budget["periodSeconds"]
    assert not [o for o in lab.objects() if o["kind"] == "ScaledObject" and o["metadata"]["name"] != "vllm-llama-8b-multi-1"]
    assert deps[0]["spec"]["selector"] != deps[1]["spec"]["selector"]  # two Deployments never adopt each other's pods
    assert [o for o in lab.objects() if o["kind"] == "Service" and o["metadata"]["name"].startswith("vllm-llama-8b-multi")] == [svc]


def test_awq_checkpoint_needs_no_quantization_flag_and_no_remote_code(lab):
    args = container(lab, "vllm-llama-3b-awq")["args"]
    assert args[0] == "AMead10/Llama-3.2-3B-Instruct-AWQ" and "--quantization" not in args
    assert "--trust-remote-code" not in container(lab, "vllm-deepseek-coder")["args"]


def test_optional_typed_flags_lora_and_extra_args():
    def edit(r):
        m = r["vllm"]["models"]["llama-8b"]
        m.update(maxNumBatchedTokens=4096, kvCacheDtype="fp8", dtype="bfloat16", loraModules={"sql": "loras/sql"},
                 maxLoraRank=32, extraArgs=["--enable-prefix-caching"])

    run = run_secret_raw(variant(edit, "lab"), ["hfToken"])
    args = container(run, "vllm-llama-8b")["args"]
    assert args[args.index("--max-num-seqs") + 1] == "256"
    assert args[args.index("--max-num-batched-tokens") + 1] == "4096"
    assert args[args.index("--kv-cache-dtype") + 1] == "fp8" and args[args.index("--dtype") + 1] == "bfloat16"
    assert args[args.index("--lora-modules") + 1] == "sql=/models/loras/sql"
    assert args[args.index("--max-loras") + 1] == "1" and args[args.index("--max-lora-rank") + 1] == "32"
    assert "--enable-lora" in args and args[-1] == "--enable-prefix-caching"


@pytest.mark.parametrize("extra,message", [
    ("--max_model_len=4096", "'--max_model_len=4096' repeats a typed setting"),
    ("-tp", "'-tp' repeats a typed setting"),
    ("--gpu-memory-utilization", "'--gpu-memory-utilization' repeats a typed setting"),
    ("--swap-space", "'--swap-space' was removed from vLLM 0.33"),
    ("--num-scheduler-steps=8", "'--num-scheduler-steps=8' was removed from vLLM 0.33"),
])
def test_extra_args_may_not_repeat_typed_or_removed_flags(extra, message):
    problems = stack_problems(variant(lambda r: r["vllm"]["models"]["mixtral"].update(extraArgs=["--enforce-eager", extra]), "lab"))
    assert problems == [f"llm-infra:vllm.models.mixtral.extraArgs[1]: {message}" + (
        "; set it through its own key instead" if "typed" in message else " and would stop the server; drop it")]


@pytest.mark.parametrize("model,quant,message", [
    ("llama-8b", "bitsandbytes", "vLLM 0.33 has no bitsandbytes; use a pre-quantized AWQ/GPTQ checkpoint"),
    ("llama-8b", "awq", "meta-llama/Llama-3.1-8B-Instruct is not an awq checkpoint"),
    ("llama-8b", "int4", "'int4' is not a vLLM 0.33 quantization method"),
    ("mixtral", "gptq", "casperhansen/mixtral-instruct-awq is a awq checkpoint"),
])
def test_quantization_is_checked(model, quant, message):
    problems = stack_problems(variant(lambda r: r["vllm"]["models"][model].update(quantization=quant), "lab"))
    assert len(problems) == 1 and problems[0].startswith(f"llm-infra:vllm.models.{model}.quantization: {message}")


def test_unknown_model_and_bad_lora_rank():
    def edit(r):
        r["vllm"]["models"]["mixtral"]["model"] = "mistralai/Mixtral-8x22B"
        r["vllm"]["models"]["llama-8b"].update(loraModules={"a": "loras/a"}, maxLoraRank=48)

    problems = stack_problems(variant(edit, "lab"))
    assert problems[0] == "llm-infra:vllm.models.llama-8b.maxLoraRank: 48 is not a vLLM choice; use one of 1, 8, 16, 32, 64, 128, 256, 320, 512"
    assert problems[1].startswith("llm-infra:vllm.models.mixtral.model: 'mistralai/Mixtral-8x22B' is not in the model catalog")


def test_another_device_class_is_another_claim():
    """The device class is in the claim's spec too (deviceClassName and the CEL attribute domain): a new class must be
    a new claim, never an update of the old one's spec, which the API server refuses."""
    other = prod_run(variant(lambda r: r["gpuSharing"].update(deviceClassName="gpu.example.com"), "prod"))
    names = sorted(o["metadata"]["name"] for o in other.objects() if o["kind"] == "ResourceClaim")
    assert not set(names) & {claim(i) for i in range(4)} and [n.rsplit("-", 1)[0] for n in names] == [f"a100-node-gpu-{i}" for i in range(4)]
