"""Hostile and mistaken values (issue 20): strings that look valid but are not, numbers past what the engines take or that
round to nothing, images that are not what the plan is built for, and settings that contradict each other."""

from __future__ import annotations

import pytest

from stacks.config.images import check_image, parse_image
from tests.conftest import problems_of, stack_of, variant

V = "llm-infra:vllm.models"


def models(r):
    return r["vllm"]["models"]


def chat(r):
    return r["ollama"]["adapters"]["chatbot"]


def one(problems: list[str], expected: str) -> str:
    hits = [p for p in problems if expected in p]
    assert hits, problems
    return hits[0]


# ---------------------------------------------------------------------------------------------------------------------
# 1. Strings: a trailing newline passed every `re.match(...$)`; control and invisible characters anywhere are refused.

@pytest.mark.parametrize("stack,edit,at", [
    ("dev", lambda r: r["ollama"]["adapters"].update({"chatbot\n": r["ollama"]["adapters"].pop("chatbot")}), "llm-infra:ollama.adapters.chatbot\\n"),
    ("prod", lambda r: r["agents"].update({"workshop-chat\n": r["agents"].pop("workshop-chat")}), "llm-infra:agents.workshop-chat\\n"),
    ("prod", lambda r: models(r).update({"watt-8b\n": models(r).pop("watt-8b")}), f"{V}.watt-8b\\n"),
    ("prod", lambda r: models(r)["llama-3b"].update(servedName="llama-3b\n"), f"{V}.llama-3b.servedName"),
    ("dev", lambda r: chat(r).update(keepAlive="10m\n"), "llm-infra:ollama.adapters.chatbot.keepAlive"),
    ("dev", lambda r: r["ingress"].update(hosts=["llm.example.edu\n"]), "llm-infra:ingress.hosts[0]"),
    ("dev", lambda r: r.update(namespace="llm\u200binfra"), "llm-infra:namespace"),
    ("prod", lambda r: models(r)["llama-3b"].update(extraArgs=["--enforce-eager\u202e"]), f"{V}.llama-3b.extraArgs[0]"),
])
def test_a_control_or_invisible_character_is_refused_naming_the_key(stack, edit, at):
    problem = one(problems_of(variant(edit, stack)), at)
    assert "U+" in problem and ("remove it" in problem or "type it again" in problem)


def test_a_secret_with_a_trailing_newline_is_refused_without_echoing_it():
    problems = problems_of(variant(lambda r: r.update(apiKey="s3cr3t" * 8 + "\n"), "prod"))
    problem = one(problems, "llm-infra:apiKey: the value holds U+000A")
    assert "s3cr3t" not in " ".join(problems)
    assert "echo -n" in problem


def test_free_text_may_hold_line_breaks():
    stack_of(variant(lambda r: r["agents"]["workshop-chat"].update(description="Line one.\nLine two."), "prod"))



# ---------------------------------------------------------------------------------------------------------------------
# 3. Numbers: finite, within what the consumer stores, meaningful after rounding.

@pytest.mark.parametrize("stack,edit,expected", [
    ("prod", lambda r: models(r)["llama-3b"].update(cpu=float("inf")), f"{V}.llama-3b.cpu: inf is not a finite number"),
    ("prod", lambda r: models(r)["llama-3b"].update(memoryGiB=float("nan")), f"{V}.llama-3b.memoryGiB: nan is not a finite number"),
    ("prod", lambda r: models(r)["llama-3b"].update(maxNumSeqs=2**64), f"{V}.llama-3b.maxNumSeqs: 1.84e+19 is past the 64-bit integers"),
    ("prod", lambda r: models(r)["llama-3b"].update(memoryGiB=0.0001), f"{V}.llama-3b.memoryGiB: Input should be greater than or equal to 0.0625"),
    ("dev", lambda r: chat(r).update(cpu=0.0001), "llm-infra:ollama.adapters.chatbot.cpu: Input should be greater than or equal to 0.001"),
    ("dev", lambda r: r["nodes"][0].update(memoryGiB=1e300), "llm-infra:nodes[0].memoryGiB: Input should be less than or equal to 65536"),
    ("prod", lambda r: models(r)["llama-3b"].update(replicas=2**40), f"{V}.llama-3b.replicas: Input should be less than or equal to 10000"),
    ("dev", lambda r: chat(r).update(keepAlive="3000000h"), "llm-infra:ollama.adapters.chatbot.keepAlive: '3000000h' is past Go's duration range"),
    ("dev", lambda r: chat(r).update(keepAlive=10**12), "keepAlive: 1000000000000 is past Go's duration range"),
    ("dev", lambda r: r["modelCache"].update(size="9" * 30 + "Ti"), "llm-infra:modelCache.size: 9999"),
])
def test_a_number_out_of_range_is_refused_naming_its_own_key(stack, edit, expected):
    one(problems_of(variant(edit, stack)), expected)


def test_a_duration_of_a_year_still_loads():
    stack_of(variant(lambda r: chat(r).update(keepAlive="8760h"), "dev"))


# ---------------------------------------------------------------------------------------------------------------------
# 9. Images: the OCI reference grammar, pinned releases, the engine release the plan is built for, NVIDIA builds.

@pytest.mark.parametrize("ref,registry,path,tag", [
    ("registry.internal:5000/vllm/vllm-openai:v0.33.0", "registry.internal:5000", "vllm/vllm-openai", "v0.33.0"),
    ("localhost:5000/ollama/ollama:0.32.15", "localhost:5000", "ollama/ollama", "0.32.15"),
    ("localhost/ollama/ollama:0.32.15", "localhost", "ollama/ollama", "0.32.15"),
    ("[fd00::1]:5000/vllm/vllm-openai:v0.33.0", "[fd00::1]:5000", "vllm/vllm-openai", "v0.33.0"),
    ("ghcr.io/org/team__x/vllm-openai:v0.33.0", "ghcr.io", "org/team__x/vllm-openai", "v0.33.0"),
    ("vllm/vllm-openai:v0.33.0", None, "vllm/vllm-openai", "v0.33.0"),
])
def test_image_references_parse_as_the_oci_grammar_defines_them(ref, registry, path, tag):
    got = parse_image(ref)
    assert (got.registry, got.path, got.tag) == (registry, path, tag)


def test_an_image_from_a_registry_with_a_port_renders():
    image = "registry.internal:5000/vllm/vllm-openai:v0.33.0@sha256:" + "a" * 64
    stack = stack_of(variant(lambda r: r["vllm"].update(image=image), "prod"))
    assert stack.config.vllm.image == image


@pytest.mark.parametrize("ref,expected", [
    ("vllm/vllm-openai:nightly", "is not pinned: 'nightly' moves"),
    ("vllm/vllm-openai:latest", "is not pinned"),
    ("vllm/vllm-openai:nightly-2026-11-30", "moves to new builds"),
    ("vllm/vllm-openai", "is not pinned"),
    (" vllm/vllm-openai:v0.33.0", "has spaces around it"),
    ("vllm/VLLM-openai:v0.33.0", "must be lowercase path components"),
    ("vllm/vllm-openai:v0.33.0@sha256:abc", "is not <algorithm>:<hex>"),
    ("vllm/vllm-openai:-x", "is not a valid tag"),
    ("vllm/vllm-openai-rocm:v0.33.0", "is a build for rocm"),
    ("ollama/ollama:0.32.15-rocm", "is a build for rocm"),
    ("vllm/vllm-openai:v0.33.0-cpu", "is a build for cpu"),
    ("registry:5000:6000/x:1", "is not a host name"),
    # found in review: pre-releases and non-ASCII tags
    ("vllm/vllm-openai:v0.33.0rc1", "is a pre-release build"),
    ("vllm/vllm-openai:v0.33.0-\u00fc", "is not a valid tag"),
    ("vllm/vllm-openai:v0.\u0663\u0663.0", "is not a valid tag"),
])
def test_bad_or_moving_or_foreign_images_are_refused(ref, expected):
    with pytest.raises(ValueError) as exc:
        check_image(ref, "vllm/vllm-openai:v0.33.0")
    assert expected in str(exc.value)


def test_a_moving_tag_with_the_tested_digest_is_pinned():
    assert check_image("vllm/vllm-openai:latest@sha256:" + "b" * 64, "x") .endswith("b" * 64)


@pytest.mark.parametrize("stack,edit,expected", [
    ("prod", lambda r: r["vllm"].update(image="vllm/vllm-openai:v0.6.3"),
     "llm-infra:vllm.image: vLLM 0.6.3 is older than 0.33, whose flags and memory accounting the plan uses"),
    ("prod", lambda r: r["vllm"].update(image="vllm/vllm-openai:v0.34.0"),
     "llm-infra:vllm.image: vLLM 0.34.0 is not 0.33, which the plan's accounting and flag list are built for; use 0.33, or set llm-infra:vllm.acceptVersion: \"0.34.0\""),
    ("prod", lambda r: r["vllm"].update(image="registry.internal:5000/mirror/vllm:prod"),
     "llm-infra:vllm.image: the tag of 'registry.internal:5000/mirror/vllm:prod' does not say which vLLM release"),
    ("prod", lambda r: r["vllm"].update(image="vllm/vllm-openai:v0.34.0", acceptVersion="0.35.0"),
     "llm-infra:vllm.acceptVersion: '0.35.0' contradicts the image's tag 'v0.34.0'"),
    ("prod", lambda r: r["vllm"].update(image="registry.internal/vllm@sha256:" + "c" * 64, acceptVersion="0.6"),
     "llm-infra:vllm.image: vLLM 0.6 is older than 0.33"),
    ("dev", lambda r: r["ollama"].update(image="ollama/ollama:0.5.7"), "llm-infra:ollama.image: Ollama 0.5.7 is older than 0.32 or 0.33"),
    ("prod", lambda r: r["llamaStack"].update(image="llamastack/distribution-starter:0.2.0"), "llm-infra:llamaStack.image: Llama Stack 0.2.0 is older than 0.7"),
])
def test_an_engine_release_other_than_the_plans_is_refused_naming_the_key(stack, edit, expected):
    one(problems_of(variant(edit, stack)), expected)


@pytest.mark.parametrize("edit", [
    lambda r: r["vllm"].update(image="vllm/vllm-openai:v0.34.0", acceptVersion="0.34.0"),
    lambda r: r["vllm"].update(image="registry.internal:5000/mirror/vllm:prod", acceptVersion="0.33.0"),
    lambda r: r["vllm"].update(image="vllm/vllm-openai:v0.33.2"),
])
def test_a_stated_release_is_accepted(edit):
    stack_of(variant(edit, "prod"))


# ---------------------------------------------------------------------------------------------------------------------
# 8. Settings that contradict each other.

def test_two_models_under_one_served_name_are_refused():
    problem = one(problems_of(variant(lambda r: models(r)["granite-8b"].update(servedName="watt-8b"), "prod")),
                  f"{V}.watt-8b.servedName: 'watt-8b' is also the served name of {V}.granite-8b")
    assert "autoscaler" in problem


def test_a_served_name_equal_to_another_models_key_is_refused():
    one(problems_of(variant(lambda r: models(r)["llama-3b"].pop("servedName") and
                            models(r)["granite-8b"].update(servedName="llama-3b"), "prod")), "is also the served name of")


def test_an_rwx_cache_smaller_than_all_the_weights_is_refused():
    raw = variant(lambda r: r.update(modelCache={"mode": "rwx", "storageClassName": "longhorn", "provisioner": "driver.longhorn.io",
                                                 "size": "100Gi"}), "prod")
    problem = one(problems_of(raw), "llm-infra:modelCache.size: 100Gi is smaller than the weights the one ReadWriteMany volume must hold")
    assert "meta-llama/Llama-3.1-70B-Instruct" in problem
    raw["modelCache"]["size"] = "400Gi"
    stack_of(raw)


def test_a_per_pod_cache_smaller_than_one_models_weights_names_that_model():
    raw = variant(lambda r: r.update(modelCache={"mode": "perPod", "storageClassName": "local-path", "provisioner": "rancher.io/local-path",
                                                 "size": "20Gi"}), "prod")
    problems = problems_of(raw)
    one(problems, f"llm-infra:modelCache.size: 20Gi is smaller than meta-llama/Llama-3.1-70B-Instruct's weights (131.")
    assert not any("Llama-3.2-3B" in p for p in problems)  # 6 GiB fits in 20Gi


def test_a_host_network_master_port_on_the_kubelets_port_is_refused():
    def edit(r):
        models(r)["llama-405b"]["multiNode"] = {"hostNetwork": True, "masterPort": 10250}
    one(problems_of(variant(edit, "scale")), f"{V}.llama-405b.multiNode.masterPort: 10250 is the port of the kubelet's API")


def test_keda_asking_a_prometheus_in_another_namespace_is_refused():
    raw = variant(lambda r: r.update(monitoring={"namespace": "observability"}), "scale")
    one(problems_of(raw), "llm-infra:monitoring.prometheusUrl: KEDA would ask the Prometheus in namespace 'monitoring', but the network policies")
    raw = variant(lambda r: r.update(monitoring={"prometheusOperator": False}), "scale")
    one(problems_of(raw), "prometheus-operated is the Service the Prometheus Operator makes")


def test_dra_claims_select_in_the_drivers_domain_whatever_the_device_class_is_called():
    from components.gpu import cel_selector
    from stacks.plan import GpuRef
    gpu = GpuRef("n", 0, 80 * 2**30, "GPU-00000000-0000-0000-0000-000000000001", None, (), device_class="a100-gpus")
    assert cel_selector(gpu) == 'device.attributes["gpu.nvidia.com"].uuid == "GPU-00000000-0000-0000-0000-000000000001"'


# ---------------------------------------------------------------------------------------------------------------------
# 5. Model ids and cache paths: a path never becomes the server's model argument or a directory outside the cache.

ARCH_3B = {"parametersB": 3, "layers": 28, "attentionHeads": 24, "kvHeads": 8, "headDim": 128, "hidden": 3072,
           "maxPosition": 131072, "vocab": 128256}


@pytest.mark.parametrize("repo", ["../../etc/passwd", "meta-llama/../x", "/models/llama", "a/b/c", "org/name--x"])
def test_a_model_id_that_is_a_path_is_refused_even_with_an_inline_arch(repo):
    problem = one(problems_of(variant(lambda r: models(r)["llama-3b"].update(model=repo, arch=ARCH_3B), "prod")),
                  f"{V}.llama-3b.model: {repo!r} is not a Hugging Face repo id")
    assert "<org>/<name>" in problem


def test_the_adapter_pools_base_repo_is_checked_too():
    one(problems_of(variant(lambda r: r["ollama"].update(vllm={"model": "../base"}), "dev")),
        "llm-infra:ollama.vllm.model: '../base' is not a Hugging Face repo id")


def test_a_lora_directory_outside_the_cache_is_refused():
    one(problems_of(variant(lambda r: chat(r).update(loraDir="adapters/../../etc"), "dev")),
        "llm-infra:ollama.adapters.chatbot.loraDir: 'adapters/../../etc' must be a path inside the model cache")


# ---------------------------------------------------------------------------------------------------------------------
# Found in review: variants of the families above.

def test_another_vendors_tag_is_not_read_as_the_engines_release():
    ngc = "nvcr.io/nvidia/vllm:25.09-py3"
    one(problems_of(variant(lambda r: r["vllm"].update(image=ngc), "prod")), "does not say which vLLM release it holds")
    one(problems_of(variant(lambda r: r["vllm"].update(image=ngc, acceptVersion="0.10.1"), "prod")), "vLLM 0.10.1 is older than 0.33")
    stack_of(variant(lambda r: r["vllm"].update(image=ngc, acceptVersion="0.33.1"), "prod"))
    stack_of(variant(lambda r: r["vllm"].update(image="registry.internal:5000/mirror/vllm/vllm-openai:v0.33.0"), "prod"))


def test_an_unquoted_accepted_version_is_read_as_the_release_it_spells():
    stack = stack_of(variant(lambda r: r["vllm"].update(image="vllm/vllm-openai:v0.34.0", acceptVersion=0.34), "prod"))
    assert stack.config.vllm.accept_version == "0.34"


def test_an_inline_arch_of_absurd_size_is_refused_not_a_traceback():
    arch = {**ARCH_3B, "parametersB": 1e307}
    one(problems_of(variant(lambda r: models(r)["llama-3b"].update(model="example/huge", arch=arch), "prod")),
        f"{V}.llama-3b.arch.parametersB: Input should be less than or equal to 100000")


def test_a_query_front_end_elsewhere_is_taken_and_the_operators_service_elsewhere_is_not():
    stack_of(variant(lambda r: r.update(monitoring={"prometheusUrl": "http://thanos-query.thanos.svc:9090"}), "scale"))
    one(problems_of(variant(lambda r: r.update(monitoring={"prometheusUrl": "http://prometheus-operated.other:9090"}), "scale")),
        "KEDA would ask the Prometheus in namespace 'other'")


def test_free_text_may_hold_windows_line_breaks_and_emoji_but_not_bidi_overrides():
    stack_of(variant(lambda r: r["agents"]["workshop-chat"].update(description="One.\r\nTwo \U0001F469\u200d\U0001F4BB"), "prod"))
    one(problems_of(variant(lambda r: r["agents"]["workshop-chat"].update(description="evil\u202etxt"), "prod")), "U+202E")


def test_a_host_directory_that_merely_starts_with_lib_is_fine():
    stack_of(variant(lambda r: r["modelCache"].update(hostPath="/library/llm-models"), "dev"))
    one(problems_of(variant(lambda r: r["modelCache"].update(hostPath="/libx32/models"), "dev")), "is a system directory")


def test_a_url_query_is_not_echoed():
    def edit(r):
        r["ingress"]["auth"] = {"mode": "oidc", "oidcUrl": "https://sso.example.edu/oauth2?token=SECRETXYZ"}
        r.pop("apiKey", None)
    problems = problems_of(variant(edit, "prod"))
    one(problems, "has a query or fragment")
    assert "SECRETXYZ" not in " ".join(problems)
