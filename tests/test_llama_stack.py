"""LlamaStack, SafetyModel and the agents' routing map: content of the prod render, Llama Stack 0.7.3's
own checks over the generated config, the seed's run.yaml failing them, and config mistakes refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import stack_of, plan_of, run_secret_raw, stack_problems, stack_raw, variant
from tests.llama_stack_check import check
from tools import render
from tools.offline import Run

SEED_RUN_YAML = """
version: '2'
image_name: remote-vllm-milvus
apis: [agents, inference, safety, vector_io, tool_runtime]
providers:
  inference:
  - provider_id: llama-3b
    provider_type: remote::vllm
    config: {url: '${env.LLAMA3B_URL}', max_tokens: 128000, api_token: fake, tls_verify: false}
  - provider_id: sentence-transformers
    provider_type: inline::sentence-transformers
    config: {}
  vector_io:
  - provider_id: milvus
    provider_type: inline::milvus
    config: {db_path: '${env.MILVUS_DB_PATH}'}
  safety:
  - provider_id: llama-guard
    provider_type: remote::vllm
    config: {url: '${env.SAFETY_MODEL_URL}', model: meta-llama/Llama-Guard-3-8B}
"""


def prod_run(edit=None) -> Run:
    raw = variant(edit, "prod") if edit else stack_raw("prod")
    return run_secret_raw(raw, ["hfToken"])


@pytest.fixture(scope="module")
def prod() -> Run:
    return prod_run()


def stack_config_of(run: Run) -> dict:
    return yaml.safe_load(run.find("ConfigMap", "llamastack-server-config")["data"]["config.yaml"])


def pod_env(run: Run) -> dict[str, str]:
    container = run.find("Deployment", "llamastack-server")["spec"]["template"]["spec"]["containers"][0]
    # A variable from a Secret is set in the pod (the kubelet resolves it); its value is the Secret's, not in the render.
    return {e["name"]: e["value"] if "value" in e else "secret:{name}/{key}".format(**e["valueFrom"]["secretKeyRef"])
            for e in container["env"]}


def test_generated_config_passes_llama_stack_0_7_3(prod):
    assert check(stack_config_of(prod), pod_env(prod)) == []


def test_checker_fails_on_a_silently_dropped_key(prod):
    """The check can fail: a vLLM `url:` (the seed's key) is dropped by pydantic, and caught here."""
    config = stack_config_of(prod)
    provider = config["providers"]["inference"][0]["config"]
    provider["url"] = provider.pop("base_url")
    assert check(config, pod_env(prod)) == [
        "providers.inference[0] (vllm-llama-3b).config.url: unknown key for VLLMInferenceAdapterConfig; the server would silently drop it"
    ]


def test_checker_needs_every_state_path_in_the_pod_env(prod):
    env = pod_env(prod)
    del env["SQLITE_STORE_DIR"]
    problems = check(stack_config_of(prod), env)
    assert len(problems) == 1 and "SQLITE_STORE_DIR" in problems[0]


def test_seed_run_yaml_fails_llama_stack_0_7_3():
    problems = check(yaml.safe_load(SEED_RUN_YAML),
                     {"LLAMA3B_URL": "http://vllm-llama-3b:8000/v1", "MILVUS_DB_PATH": "/data", "SAFETY_MODEL_URL": "http://g:8000/v1"})
    assert problems == [
        "apis: API 'agents' does not exist. Use Api.add() to register new APIs.",
        "providers.inference[0] (llama-3b).config.url: unknown key for VLLMInferenceAdapterConfig; the server would silently drop it",
        "providers.vector_io[0] (milvus).config.persistence: Field required",
        "providers.safety[0] (llama-guard): provider `remote::vllm` is not available for API `Api.safety`",
    ]


def test_one_vllm_provider_per_fronted_model_with_its_service_url_and_served_name(prod):
    config = stack_config_of(prod)
    raw = stack_raw("prod")
    models = raw["vllm"]["models"]
    fronted = raw["llamaStack"]["models"] + [raw["llamaStack"]["safety"]["model"]]
    vllm = [p for p in config["providers"]["inference"] if p["provider_type"] == "remote::vllm"]
    assert [p["provider_id"] for p in vllm] == [f"vllm-{k}" for k in fronted]
    for p, k in zip(vllm, fronted):
        assert p["config"]["base_url"] == f"http://vllm-{k}.llama-serve:8000/v1"
        assert p["config"]["max_tokens"] <= models[k]["maxModelLen"] // 2
    registered = {m["provider_id"]: m for m in config["registered_resources"]["models"]}
    for k in fronted:
        assert registered[f"vllm-{k}"]["provider_model_id"] == models[k]["servedName"]
    # The Service each provider points at exists in the render, on the port in the URL.
    for k in fronted:
        assert prod.find("Service", f"vllm-{k}")["spec"]["ports"][0]["port"] == 8000


def test_max_tokens_never_exceeds_the_models_context():
    run = prod_run(lambda r: r["llamaStack"].update(maxTokens=128000))  # the seed's value
    tokens = {p["provider_id"]: p["config"]["max_tokens"] for p in stack_config_of(run)["providers"]["inference"]
              if p["provider_type"] == "remote::vllm"}
    assert tokens == {"vllm-llama-3b": 16384, "vllm-llama-70b": 64000, "vllm-granite-8b": 16384, "vllm-llama-guard": 512}


def test_embeddings_vectors_files_responses_and_file_search(prod):
    config = stack_config_of(prod)
    types = {api: [p["provider_type"] for p in ps] for api, ps in config["providers"].items()}
    assert types["vector_io"] == ["inline::milvus"] and types["files"] == ["inline::localfs"]
    assert types["responses"] == ["inline::builtin"] and types["tool_runtime"] == ["inline::file-search"]
    assert "agents" not in config["apis"] and sorted(config["apis"]) == config["apis"] == sorted(types)
    emb = [m for m in config["registered_resources"]["models"] if m["model_type"] == "embedding"]
    assert emb == [{"model_id": "all-MiniLM-L6-v2", "provider_id": "sentence-transformers", "provider_model_id": "all-MiniLM-L6-v2",
                    "model_type": "embedding", "metadata": {"embedding_dimension": 384}}]
    assert config["providers"]["vector_io"][0]["config"]["persistence"] == {"namespace": "vector_io::milvus", "backend": "kv_default"}
    assert config["storage"]["backends"]["kv_default"] == {"type": "kv_sqlite", "db_path": "${env.SQLITE_STORE_DIR}/kvstore.db"}


def test_shield_calls_the_guard_by_its_full_registered_id(prod):
    config = stack_config_of(prod)
    assert config["providers"]["safety"] == [
        {"provider_id": "llama-guard", "provider_type": "inline::llama-guard", "config": {"excluded_categories": []}}]
    assert config["registered_resources"]["shields"] == [
        {"shield_id": "llama-guard", "provider_id": "llama-guard", "provider_shield_id": "vllm-llama-guard/llama-guard"}]
    assert config["safety"] == {"default_shield_id": "llama-guard"}


def test_guard_is_a_safety_model_served_by_vllm(prod):
    guard = prod.resource("Deployment", "vllm-llama-guard")
    assert "SafetyModel" in guard.options["parent"]
    assert prod.find("Deployment", "vllm-llama-guard")["spec"]["template"]["spec"]["containers"][0]["args"][:3] == [
        "meta-llama/Llama-Guard-3-8B", "--served-model-name", "llama-guard"]
    assert "SafetyModel" not in prod.resource("Deployment", "vllm-llama-3b").options["parent"]


def test_deployment_one_writer_state_on_the_cache_and_health_probes(prod):
    d = prod.find("Deployment", "llamastack-server")
    spec = d["spec"]
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert c["image"] == "llamastack/distribution-starter:0.7.3"
    assert c["command"] == ["llama", "stack", "run", "/etc/llama-stack/config.yaml", "--port", "8321"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/v1/health", "port": "http"}
    assert {k: v for k, v in pod_env(prod).items() if k != "HF_HOME"} == {
        "FILES_STORAGE_DIR": "/models/llama-stack/files", "LLAMA_STACK_CONFIG_DIR": "/models/llama-stack",
        "MILVUS_DB_PATH": "/models/llama-stack", "SQLITE_STORE_DIR": "/models/llama-stack", "HOME": "/home/llama-stack",
        # the vLLM providers' Bearer token, from the stack's API key Secret (never a literal in the pod spec)
        "VLLM_API_TOKEN": "secret:llm-infra-api-key/api-key"}
    assert stack_config_of(prod)["providers"]["inference"][0]["config"]["api_token"] == "${env.VLLM_API_TOKEN}"
    assert pod_env(prod)["HF_HOME"] == "/models/huggingface"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "model-cache-a100-node"
    assert volumes["config"]["configMap"]["name"] == "llamastack-server-config"
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "a100-node"}
    assert prod.find("Service", "llamastack-server")["spec"]["ports"] == [
        {"name": "http", "port": 8321, "protocol": "TCP", "targetPort": "http"}]
    claim = prod.resource("PersistentVolumeClaim", "model-cache-a100-node")
    assert claim.options["retainOnDelete"]


def test_config_change_rolls_the_pod(prod):
    def hash_of(run):
        return run.find("Deployment", "llamastack-server")["spec"]["template"]["metadata"]["annotations"]["llm-infra/config-hash"]

    changed = prod_run(lambda r: r["llamaStack"].update(maxTokens=2048))
    assert hash_of(changed) != hash_of(prod)
    assert hash_of(prod_run()) == hash_of(prod)


def test_per_pod_cache_gives_llama_stack_its_own_claim():
    run = prod_run(lambda r: r.update(modelCache={"mode": "perPod", "storageClassName": "local-path", "storageClassReclaimPolicy": "Retain", "size": "200Gi"}))
    pod = run.find("Deployment", "llamastack-server")["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["models"]["persistentVolumeClaim"]["claimName"] == "model-cache-llamastack-server"
    run.find("PersistentVolumeClaim", "model-cache-llamastack-server")


AGENT_ENV = {
    "workshop-chat": {
        "AGENT_NAME": "workshop-chat", "INFERENCE_PATH": "llamaStack",
        "INFERENCE_BASE_URL": "http://llamastack-server.llama-serve:8321/v1", "INFERENCE_MODEL": "vllm-llama-3b/llama-3b",
        "FALLBACK_BASE_URL": "http://llamastack-server.llama-serve:8321/v1", "FALLBACK_MODEL": "vllm-llama-70b/llama-3.1-70b",
        "LLAMA_STACK_ENDPOINT": "http://llamastack-server.llama-serve:8321",
        "SAFETY_ENABLED": "true", "SAFETY_SHIELD_ID": "llama-guard", "RAG_ENABLED": "true",
    },
    "content-creator": {
        "AGENT_NAME": "content-creator", "INFERENCE_PATH": "direct",
        "INFERENCE_BASE_URL": "http://vllm-llama-70b.llama-serve:8000/v1", "INFERENCE_MODEL": "llama-3.1-70b",
        "LLAMA_STACK_ENDPOINT": "http://llamastack-server.llama-serve:8321",
        "SAFETY_ENABLED": "true", "SAFETY_SHIELD_ID": "llama-guard", "RAG_ENABLED": "false",
    },
    "documentation-pipeline": {
        "AGENT_NAME": "documentation-pipeline", "INFERENCE_PATH": "direct",
        "INFERENCE_BASE_URL": "http://vllm-watt-8b.llama-serve:8000/v1", "INFERENCE_MODEL": "watt-8b",
        "LLAMA_STACK_ENDPOINT": "http://llamastack-server.llama-serve:8321",
        "SAFETY_ENABLED": "true", "SAFETY_SHIELD_ID": "llama-guard", "RAG_ENABLED": "false",
    },
}


def test_six_agent_config_maps_with_the_env_their_code_reads(prod):
    names = sorted(o["metadata"]["name"] for o in prod.objects() if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("agent-"))
    assert names == ["agent-content-creator", "agent-documentation-pipeline", "agent-research-validation",
                     "agent-source-manager", "agent-template-converter", "agent-workshop-chat"]
    for agent, env in AGENT_ENV.items():
        # plus where the agent's pod finds the key, and the label the network policies let through
        assert prod.find("ConfigMap", f"agent-{agent}")["data"] == {
            **env, "API_KEY_SECRET": "llm-infra-api-key", "API_KEY_SECRET_KEY": "api-key", "POD_LABEL": f"llm-infra/agent={agent}"}


def test_agent_model_ids_are_ones_their_endpoint_serves(prod):
    """Every INFERENCE_MODEL is a model the Llama Stack config registers, or the served name of its vLLM Service."""
    config = stack_config_of(prod)
    registered = {f"{m['provider_id']}/{m['provider_model_id']}" for m in config["registered_resources"]["models"]}
    for o in prod.objects():
        if o["kind"] != "ConfigMap" or not o["metadata"]["name"].startswith("agent-"):
            continue
        env = o["data"]
        if env["INFERENCE_PATH"] == "llamaStack":
            assert env["INFERENCE_MODEL"] in registered
        else:
            service = env["INFERENCE_BASE_URL"].split("//")[1].split(".")[0]
            args = prod.find("Deployment", service)["spec"]["template"]["spec"]["containers"][0]["args"]
            assert args[args.index("--served-model-name") + 1] == env["INFERENCE_MODEL"]


def test_agents_and_endpoints_are_stack_outputs(prod):
    agents = prod.program["topology"].agents
    assert agents["workshop-chat"]["model"] == "vllm-llama-3b/llama-3b"
    assert agents["research-validation"] == {
        "path": "direct", "endpoint": "http://vllm-llama-70b.llama-serve:8000/v1", "model": "llama-3.1-70b",
        "fallbackEndpoint": None, "fallbackModel": None, "llamaStack": "http://llamastack-server.llama-serve:8321",
        "shield": "llama-guard", "rag": False}
    assert prod.program["topology"].endpoints["llamastack-server"] == "http://llamastack-server.llama-serve:8321"


def test_plan_counts_llama_stack_on_its_node_and_no_gpu_is_over_committed():
    plan = plan_of(stack_raw("prod"))
    node = plan.nodes[0]
    assert "llamastack-server" in node.pods
    assert node.cpu_requests == 16 + 4 + 4 + 8 + 8 + 2
    # Llama Stack takes no GPU: each A100 holds the 70B's and one small model's share and contexts, as before
    assert len({g.allocated_bytes for g in plan.gpus}) == 1
    assert all(g.allocated_bytes + plan.vllm_margin_bytes <= g.gpu.capacity_bytes for g in plan.gpus)


def test_graph_records_who_calls_whom():
    graph = stack_of(stack_raw("prod")).graph
    assert graph.callers_of("vllm-llama-guard") == ["llamastack-server"]
    assert graph.callers_of("vllm-watt-8b") == ["agent:documentation-pipeline"]
    assert graph.callers_of("vllm-llama-70b") == ["agent:content-creator", "agent:research-validation", "llamastack-server"]
    assert graph.callers_of("llamastack-server") == sorted(f"agent:{a}" for a in stack_raw("prod")["agents"])


def _agents(r):
    return r["agents"]


MISTAKES = {
    "agent model unknown": (lambda r: _agents(r)["content-creator"].update(model="llama-405b"),
                            "llm-infra:agents.content-creator.model: 'llama-405b' is not a vllm.models key; use one of: "
                            "granite-8b, llama-3b, llama-70b, llama-guard, watt-8b"),
    "path not fronted": (lambda r: _agents(r)["documentation-pipeline"].update(path="llamaStack"),
                         "llm-infra:agents.documentation-pipeline.model: path llamaStack, but Llama Stack does not front 'watt-8b'"),
    "fallback unknown": (lambda r: _agents(r)["workshop-chat"].update(fallback="llama-7b"),
                         "llm-infra:agents.workshop-chat.fallback: 'llama-7b' is not a vllm.models key"),
    "fallback is itself": (lambda r: _agents(r)["workshop-chat"].update(fallback="llama-3b"),
                           "llm-infra:agents.workshop-chat.fallback: the fallback is the model itself"),
    "agent chats with the guard": (lambda r: _agents(r)["source-manager"].update(model="llama-guard"),
                                   "llm-infra:agents.source-manager.model: 'llama-guard' is the safety classifier"),
    "bad path": (lambda r: _agents(r)["source-manager"].update(path="stack"),
                 "llm-infra:agents.source-manager.path: Input should be 'direct' or 'llamaStack'"),
    "misspelt agent key": (lambda r: _agents(r)["source-manager"].update(modle="granite-8b"),
                           "llm-infra:agents.source-manager.modle: unknown key; did you mean 'model'?"),
    "safety without shield": (lambda r: r["llamaStack"].pop("safety"),
                              "llm-infra:agents.content-creator.safety: true needs a shield; configure llamaStack.safety"),
    "rag without stack": (lambda r: (r.pop("llamaStack"), [a.update(safety=False, path="direct") for a in _agents(r).values()]),
                          "llm-infra:agents.workshop-chat.rag: true needs Llama Stack's vector stores"),
    "stack model unknown": (lambda r: r["llamaStack"]["models"].append("mistral"),
                            "llm-infra:llamaStack.models[3]: 'mistral' is not a vllm.models key"),
    "stack model twice": (lambda r: r["llamaStack"]["models"].append("llama-3b"),
                          "llm-infra:llamaStack.models[3]: 'llama-3b' is listed twice"),
    "guard as a chat model": (lambda r: r["llamaStack"]["models"].append("llama-guard"),
                              "llm-infra:llamaStack.models[3]: 'llama-guard' serves a Llama Guard classifier; set it as llamaStack.safety.model"),
    "shield not a guard": (lambda r: r["llamaStack"]["safety"].update(model="granite-8b"),
                           "llm-infra:llamaStack.safety.model: 'granite-8b' serves ibm-granite/granite-3.1-8b-instruct, not a Llama Guard model"),
    "bad category": (lambda r: r["llamaStack"]["safety"].update(excludedCategories=["S15"]),
                     "llm-infra:llamaStack.safety.excludedCategories[0]: 'S15' is not a Llama Guard 3 category; use S1 ... S14"),
    "unknown embedding": (lambda r: r["llamaStack"].update(embeddingModel="bge-large"),
                          "llm-infra:llamaStack.embeddingModel: 'bge-large' is not in the catalog's embedding models"),
    "unpinned image": (lambda r: r["llamaStack"].update(image="llamastack/distribution-starter:latest"),
                       "llm-infra:llamaStack.image: 'llamastack/distribution-starter:latest' is not pinned"),
    "no node": (lambda r: r["llamaStack"].update(node="gpu-2"),
                "llm-infra:llamaStack.node: no node named 'gpu-2'; nodes are: a100-node"),
    "zero max tokens": (lambda r: r["llamaStack"].update(maxTokens=0),
                        "llm-infra:llamaStack.maxTokens: Input should be greater than or equal to 1"),
    "no models": (lambda r: r["llamaStack"].update(models=[]),
                  "llm-infra:llamaStack.models: List should have at least 1 item"),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_routing_and_stack_mistakes_name_the_key(name):
    edit, expected = MISTAKES[name]
    problems = stack_problems(variant(edit, "prod"))
    assert any(p.startswith(expected) for p in problems), problems


def test_a_routing_mistake_exits_2_and_writes_nothing(tmp_path, capsys):
    stack = yaml.safe_load(Path("Pulumi.prod.yaml").read_text())
    stack["config"]["llm-infra:agents"]["content-creator"]["model"] = "llama-405b"
    config = tmp_path / "Pulumi.bad.yaml"
    config.write_text(yaml.safe_dump(stack))
    out = tmp_path / "out"
    assert render.main(["--stack", "prod", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "llm-infra:agents.content-creator.model: 'llama-405b' is not a vllm.models key" in err
    assert "Traceback" not in err and not out.exists()


def test_endpoints_output_matches_what_each_component_serves(prod):
    """The endpoints output comes from the graph: every rendered Service is in it, on its own port."""
    endpoints = prod.program["topology"].endpoints
    assert sorted(endpoints) == ["llamastack-server", "vllm-granite-8b", "vllm-llama-3b", "vllm-llama-70b",
                                 "vllm-llama-guard", "vllm-watt-8b"]
    for o in prod.objects():
        if o["kind"] == "Service":
            name, port = o["metadata"]["name"], o["spec"]["ports"][0]["port"]
            assert endpoints[name].startswith(f"http://{name}.llama-serve:{port}")


STACK_VARIANTS = {
    "no shield": lambda r: (r["llamaStack"].pop("safety"), [a.update(safety=False) for a in r["agents"].values()]),
    "nomic embeddings": lambda r: r["llamaStack"].update(embeddingModel="nomic-ai/nomic-embed-text-v1.5"),
    "excluded categories": lambda r: r["llamaStack"]["safety"].update(excludedCategories=["S6", "S8"]),
    "one model": lambda r: (r["llamaStack"].update(models=["llama-3b"]), r["agents"]["workshop-chat"].pop("fallback")),
    "perPod cache": lambda r: r.update(modelCache={"mode": "perPod", "storageClassName": "local-path", "storageClassReclaimPolicy": "Retain", "size": "200Gi"}),
}


@pytest.mark.parametrize("name", sorted(STACK_VARIANTS))
def test_every_generated_config_passes_llama_stack_0_7_3(name):
    run = prod_run(STACK_VARIANTS[name])
    config = stack_config_of(run)
    assert check(config, pod_env(run)) == []
    if name == "no shield":
        assert "safety" not in config["apis"] and config["registered_resources"]["shields"] == []
    if name == "nomic embeddings":
        st = next(p for p in config["providers"]["inference"] if p["provider_type"] == "inline::sentence-transformers")
        assert st["config"] == {"trust_remote_code": True}  # the provider's own default model runs its repo's code
        assert {"model_id": "nomic-ai/nomic-embed-text-v1.5", "provider_id": "sentence-transformers",
                "provider_model_id": "nomic-ai/nomic-embed-text-v1.5", "model_type": "embedding",
                "metadata": {"embedding_dimension": 768}} in config["registered_resources"]["models"]
    if name == "excluded categories":
        assert config["providers"]["safety"][0]["config"] == {"excluded_categories": ["S6", "S8"]}
    if name == "one model":
        assert [p["provider_id"] for p in config["providers"]["inference"]] == ["vllm-llama-3b", "vllm-llama-guard", "sentence-transformers"]
