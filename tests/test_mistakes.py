"""A table of mistaken stack files, rendered as a user would (`make render CONFIG=...`): each exits 2,
names the key at fault, prints no traceback, keeps every line short, and writes nothing."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tests.conftest import stack_raw
from tools import render
from tools.offline import ROOT

MAX_LINE = 700


def to_file(raw: dict[str, Any]) -> str:
    """A stack file for the raw config; the token stays a `secure:` value as the CLI stores it."""
    config = {}
    for k, v in raw.items():
        config[f"llm-infra:{k}"] = {"secure": "v1:x"} if k in ("hfToken", "apiKey") and isinstance(v, str) and v.startswith("<secret:") else v
    return yaml.safe_dump({"config": config}, sort_keys=False)


def edited(stack: str, edit: Callable[[dict[str, Any]], Any]) -> str:
    raw = copy.deepcopy(stack_raw(stack))
    edit(raw)
    return to_file(raw)


def text(stack: str, change: Callable[[str], str]) -> str:
    return change((ROOT / f"Pulumi.{stack}.yaml").read_text())


def chat(r):
    return r["ollama"]["adapters"]["chatbot"]


def models(r):
    return r["vllm"]["models"]


def dup_nested(t: str) -> str:
    lines = t.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("queue:"))
    return "\n".join(lines[: at + 1] + [lines[at]] + lines[at + 1:]) + "\n"


D, P, L, S = "dev", "prod", "lab", "scale"
A = "llm-infra:ollama.adapters"
V = "llm-infra:vllm.models"

MISTAKES: dict[str, tuple[str, str]] = {
    # Lost or ignored input
    "key given twice": (text(D, lambda t: t + "  llm-infra:namespace: other\n"), "key 'llm-infra:namespace' is given twice"),
    "nested key given twice": (text(D, dup_nested), "key 'queue' is given twice"),
    "misspelt project llm-infr": (text(D, lambda t: t + "  llm-infr:gpuSharing: {mode: dra}\n"), "llm-infr:gpuSharing: config namespace"),
    "misspelt project llm_infra": (text(D, lambda t: t + "  llm_infra:namespace: x\n"), "did you mean 'llm-infra:namespace'"),
    "namespace null": (edited(D, lambda r: r.update(namespace=None)), "llm-infra:namespace: empty value"),
    "vllm null": (edited(P, lambda r: r.update(vllm=None)), "llm-infra:vllm: empty value"),
    "empty token": (edited(P, lambda r: r.update(hfToken="")), "llm-infra:hfToken: empty value"),
    "unknown top-level key": (edited(D, lambda r: r.update(vllmm={})), "llm-infra:vllmm: unknown key"),
    "unknown nested key": (edited(D, lambda r: chat(r).update(gpuu=1)), f"{A}.chatbot.gpuu: unknown key; did you mean 'gpu'?"),
    "unknown agent key": (edited(P, lambda r: r["agents"]["content-creator"].update(modle="x")), "llm-infra:agents.content-creator.modle: unknown key"),
    "YAML syntax error": ("config:\n  llm-infra:namespace: [unclosed\n", "line 3 is not valid YAML"),
    # Implausible numbers
    "VRAM in MiB": (edited(D, lambda r: r["nodes"][0]["gpus"][0].update(vramGiB=20480)), "20480 GiB is not a plausible GPU memory (1 to 1024 GiB); was it given in MiB?"),
    "VRAM of half a GiB": (edited(D, lambda r: r["nodes"][0]["gpus"][0].update(vramGiB=0.5)), "llm-infra:nodes[0].gpus[0].vramGiB: 0.5 GiB is not a plausible"),
    "zero CPU node": (edited(D, lambda r: r["nodes"][0].update(cpu=0)), "llm-infra:nodes[0].cpu: Input should be greater than or equal to 0.001"),
    "reserve eats the node": (edited(D, lambda r: r["nodes"][0]["reserve"].update(cpu=16)), "llm-infra:nodes[0].reserve.cpu: reserve 16 leaves no CPU"),
    "pull rate a billion times too small": (edited(D, lambda r: r["ollama"].update(pullMiBPerSecond=1e-9)), "llm-infra:ollama.pullMiBPerSecond: 1e-09 MiB/s makes the rollout budget"),
    "server start in milliseconds": (edited(D, lambda r: r["ollama"].update(serverStartSeconds=120_000_000_000)), "llm-infra:ollama.serverStartSeconds: 1.2e+11 s makes the rollout budget"),
    "download rate too small": (edited(P, lambda r: r["vllm"].update(downloadMiBPerSecond=1e-6)), "llm-infra:vllm.downloadMiBPerSecond: 1e-06 MiB/s makes vllm-llama-70b's start-up budget"),
    "load rate too small": (edited(P, lambda r: r["vllm"].update(loadMiBPerSecond=1e-6)), "llm-infra:vllm.loadMiBPerSecond: 1e-06 MiB/s"),
    "compile seconds in microseconds": (edited(P, lambda r: r["vllm"].update(compileSeconds=300_000_000_000)), "llm-infra:vllm.compileSeconds: 3e+11 s"),
    "context above trained": (edited(D, lambda r: chat(r).update(contextLength=16384)), f"{A}.chatbot.contextLength: 16384 is above llama3:8b's trained context"),
    "maxModelLen above trained": (edited(P, lambda r: models(r)["watt-8b"].update(maxModelLen=65536)), f"{V}.watt-8b.maxModelLen: 65536 is above"),
    "utilization above 1": (edited(P, lambda r: models(r)["llama-3b"].update(gpuMemoryUtilization=1.5)), f"{V}.llama-3b.gpuMemoryUtilization: Input should be less than or equal to 1"),
    "zero replicas": (edited(D, lambda r: chat(r).update(replicas=0)), f"{A}.chatbot.replicas: Input should be greater than or equal to 1"),
    "a thousand Ollama replicas": (edited(D, lambda r: chat(r).update(replicas=1000)), "over-committed: 1001 pods need"),
    "a thousand vLLM replicas": (edited(L, lambda r: models(r)["llama-3b-awq"].update(replicas=1000)), f"{V}.llama-3b-awq: no room for"),
    "zero parallel": (edited(D, lambda r: chat(r).update(parallel=0)), f"{A}.chatbot.parallel: Input should be greater than or equal to 1"),
    "negative GPU index": (edited(D, lambda r: chat(r).update(gpu=-1)), f"{A}.chatbot.gpu: node workstation has no GPU -1 (it has: 0, 1)"),
    "vLLM pinned to a GPU that does not exist": (edited(L, lambda r: models(r)["mixtral"].update(gpus=[5])), f"{V}.mixtral.gpus: node l40-node has no GPU 5 (it has: 0, 1, 2, 3)"),
    "adding a model that does not fit": (edited(L, lambda r: models(r).update(granite={"model": "ibm-granite/granite-3.1-8b-instruct", "maxModelLen": 8192,
                                                                                       "gpuMemoryUtilization": 0.4, "cpu": 2, "memoryGiB": 8})),
                                         f"{V}.granite: no room for vllm-granite: each needs 0.4 of 1 GPU(s)"),
    "an added model that takes another's room": (edited(L, lambda r: models(r).update(granite={"model": "ibm-granite/granite-3.1-8b-instruct", "maxModelLen": 8192,
                                                                                             "gpuMemoryUtilization": 0.3, "cpu": 2, "memoryGiB": 8})),
                                                 "(held by vllm-llama-8b, vllm-granite)"),
    "huge list echoed": (edited(D, lambda r: r["ollama"].update(image=["x"] * 5000)), "llm-infra:ollama.image: Input should be a valid string, got ['x', "),
    # Collisions and invalid names
    "replica name taken by another model": (edited(L, lambda r: models(r).update({"llama-8b-multi-1": models(r).pop("llama-3b-awq")})),
                                            f"{V}.llama-8b-multi-1: makes Deployment llm-lab/vllm-llama-8b-multi-1, which {V}.llama-8b-multi makes too"),
    "model named like the adapter pool's server": (edited(D, lambda r: (r.update(hfToken="<secret:llm-infra:hfToken>"), r["ollama"].update(engine="vllm", vllm={"quantization": "fp8"}),
                                                                        [a.update(loraDir=f"l/{n}") for n, a in r["ollama"]["adapters"].items()],
                                                                        r.update(vllm={"models": {"adapters-gpu0": {"model": "ibm-granite/granite-3.1-8b-instruct", "maxModelLen": 1024,
                                                                                                                    "gpuMemoryUtilization": 0.05, "cpu": 1, "memoryGiB": 1}}}))),
                                                   f"{V}.adapters-gpu0: the name is taken by the adapter pool's own server"),
    "node name too long for a label": (edited(D, lambda r: r["nodes"][0].update(name="n" * 70)), "llm-infra:nodes[0].name: nnnn"),
    "uppercase model key": (edited(P, lambda r: models(r).update({"Big": models(r).pop("watt-8b")})), f"{V}.Big: model key must be a DNS label"),
    "model key too long": (edited(P, lambda r: models(r).update({"m" * 50: models(r).pop("watt-8b")})), "model key must be a DNS label of at most 47 characters"),
    "adapter named base": (edited(D, lambda r: r["ollama"]["adapters"].update(base=r["ollama"]["adapters"].pop("code"))), f"{A}.base: 'base' is the base server's name"),
    "adapter name with underscore": (edited(D, lambda r: r["ollama"]["adapters"].update(chat_bot=r["ollama"]["adapters"].pop("chatbot"))), f"{A}.chat_bot: adapter name must be a DNS label"),
    "uppercase agent": (edited(P, lambda r: r["agents"].update({"Chat": r["agents"].pop("workshop-chat")})), "llm-infra:agents.Chat: agent name must be a DNS label"),
    "node listed twice": (edited(D, lambda r: r["nodes"].append(copy.deepcopy(r["nodes"][0]))), "llm-infra:nodes[1].name: node 'workstation' is listed twice"),
    "GPU index twice": (edited(D, lambda r: r["nodes"][0]["gpus"][1].update(index=0)), "llm-infra:nodes[0].gpus[1].index: GPU index 0 is listed twice"),
    "namespace with a dot": (edited(D, lambda r: r.update(namespace="llm.infra")), "llm-infra:namespace: 'llm.infra' has the wrong form"),
    # Dangerous targets
    "namespace kube-system": (edited(D, lambda r: r.update(namespace="kube-system")), "llm-infra:namespace: 'kube-system' is a system namespace"),
    "namespace default": (edited(D, lambda r: r.update(namespace="default")), "llm-infra:namespace: 'default' is a system namespace"),
    "namespace kube-public": (edited(D, lambda r: r.update(namespace="kube-public")), "set existingNamespace: true"),
    "hostPath root": (edited(D, lambda r: r["modelCache"].update(hostPath="/")), "llm-infra:modelCache.hostPath: '/' is a system directory"),
    "hostPath in etc": (edited(D, lambda r: r["modelCache"].update(hostPath="/etc/models")), "'/etc/models' is a system directory"),
    "hostPath in kubelet's dir": (edited(D, lambda r: r["modelCache"].update(hostPath="/var/lib/kubelet/models")), "'/var/lib/kubelet/models' is a system directory"),
    "hostPath with dot-dot": (edited(D, lambda r: r["modelCache"].update(hostPath="/var/lib/llm/../../../etc")), "must not contain '..'"),
    "hostPath relative": (edited(D, lambda r: r["modelCache"].update(hostPath="models")), "llm-infra:modelCache.hostPath: 'models' has the wrong form"),
    "adapter file outside the cache": (edited(D, lambda r: chat(r).update(file="../etc/x.gguf")), f"{A}.chatbot.file: '../etc/x.gguf' must be a path inside the model cache"),
    # Durability
    "rwx without a class": (edited(D, lambda r: r.update(modelCache={"mode": "rwx"})), "llm-infra:modelCache.storageClassName: modelCache.mode rwx needs a StorageClass"),
    "rwx class of unknown reclaim": (edited(D, lambda r: r.update(modelCache={"mode": "rwx", "storageClassName": "longhorn"})), "llm-infra:modelCache.storageClassReclaimPolicy: modelCache.mode rwx uses StorageClass longhorn"),
    "perPod class that deletes": (edited(D, lambda r: r.update(modelCache={"mode": "perPod", "storageClassName": "local-path", "storageClassReclaimPolicy": "Delete"})),
                                  "with reclaimPolicy Delete, deleting the namespace or a claim deletes the model weights"),
    "provisioner in hostPath mode": (edited(D, lambda r: r["modelCache"].update(provisioner="rancher.io/local-path")), "llm-infra:modelCache.provisioner: hostPath mode provisions nothing"),
    # Engines and wiring
    "GPU that does not exist": (edited(D, lambda r: chat(r).update(gpu=2)), f"{A}.chatbot.gpu: node workstation has no GPU 2 (it has: 0, 1)"),
    "unknown GPU model": (edited(P, lambda r: r["nodes"][0]["gpus"][0].update(model="A100")), "llm-infra:nodes[0].gpus[0].model: 'A100' is not in the GPU catalog"),
    "GPU model and vramGiB": (edited(P, lambda r: r["nodes"][0]["gpus"][0].update(vramGiB=80)), "llm-infra:nodes[0].gpus[0]: give the GPU's model"),
    "tensor parallel 3": (edited(P, lambda r: models(r)["llama-70b"].update(tensorParallel=3)), f"{V}.llama-70b.tensorParallel: 3 does not divide 64 attention heads"),
    "bitsandbytes": (edited(L, lambda r: models(r)["llama-8b"].update(quantization="bitsandbytes")), f"{V}.llama-8b.quantization: vLLM 0.33 has no bitsandbytes"),
    "extraArgs repeats a typed flag": (edited(P, lambda r: models(r)["llama-3b"].update(extraArgs=["--max_model_len=4096"])), f"{V}.llama-3b.extraArgs[0]: '--max_model_len=4096' repeats a typed setting"),
    "extraArgs pins the KV size": (edited(P, lambda r: models(r)["llama-3b"].update(extraArgs=["--kv-cache-memory-bytes", "1"])), f"{V}.llama-3b.extraArgs[0]: '--kv-cache-memory-bytes' repeats a typed setting"),
    "removed vLLM flag": (edited(P, lambda r: models(r)["llama-3b"].update(extraArgs=["--swap-space", "4"])), "'--swap-space' was removed from vLLM 0.33"),
    "unpinned Ollama image": (edited(D, lambda r: r["ollama"].update(image="ollama/ollama:latest")), "llm-infra:ollama.image: 'ollama/ollama:latest' is not pinned"),
    "unpinned vLLM image": (edited(P, lambda r: r["vllm"].update(image="vllm/vllm-openai")), "llm-infra:vllm.image: 'vllm/vllm-openai' is not pinned"),
    "token in plain text": (to_file({**stack_raw(P), "hfToken": "hf_plain"}), "llm-infra:hfToken: the token is in plain text"),
    "keep-alive not a duration": (edited(D, lambda r: chat(r).update(keepAlive="ten minutes")), f"{A}.chatbot.keepAlive: 'ten minutes' is not a duration"),
    "adapter trained on another base": (edited(D, lambda r: chat(r).update(base="llama3.1:8b")), f"{A}.chatbot.base: adapter was trained on 'llama3.1:8b'"),
    "dra without GPU ids": (edited(D, lambda r: (r["gpuSharing"].update(mode="dra"), [(g.pop("uuid"), g.pop("pciBusID")) for g in r["nodes"][0]["gpus"]])), "gpuSharing.mode dra selects GPUs by uuid or pciBusID"),
    "unknown sharing mode": (edited(D, lambda r: r["gpuSharing"].update(mode="mig")), "llm-infra:gpuSharing.mode: Input should be 'dra', 'visible-devices' or 'exclusive'"),
    "agent on an unknown model": (edited(P, lambda r: r["agents"]["content-creator"].update(model="llama-405b")), "llm-infra:agents.content-creator.model: 'llama-405b' is not a vllm.models key"),
    "shield on a chat model": (edited(P, lambda r: r["llamaStack"]["safety"].update(model="granite-8b")), "llm-infra:llamaStack.safety.model: 'granite-8b' serves"),
    "70B share too small for 128k": (edited(P, lambda r: models(r)["llama-70b"].update(gpuMemoryUtilization=0.58)), f"{V}.llama-70b.maxModelLen: vllm-llama-70b's KV cache"),
    "over-committed shared GPU": (edited(P, lambda r: models(r)["granite-8b"].update(gpus=[0], gpuMemoryUtilization=0.39)), f"{V}.granite-8b: no room for vllm-granite-8b"),
    "nothing served": (edited(D, lambda r: r.pop("ollama")), "llm-infra:ollama: the stack serves nothing"),
    # The edge (issue 9)
    "two routes on one path": (edited(D, lambda r: r["ingress"].update(routes={"ollama-code": {"path": "/chatbot"}})),
                               "llm-infra:ingress.routes.ollama-code.path: /chatbot is also the path of ollama-chatbot"),
    "rate limit of 0": (edited(P, lambda r: r["ingress"]["routes"]["vllm-llama-70b"].update(rateLimit=0)),
                        "llm-infra:ingress.routes.vllm-llama-70b.rateLimit: Input should be greater than or equal to 1"),
    "TLS on with no secret or issuer": (edited(L, lambda r: r["ingress"].update(tls={"enabled": True})),
                                        "llm-infra:ingress.tls: TLS is on but has no certificate"),
    "API key in plain text": (text(D, lambda t: t.replace("config:\n", f"config:\n  llm-infra:apiKey: {'x' * 40}\n", 1)),
                              "llm-infra:apiKey: the key is in plain text in the stack file"),
    "route to a Service the stack lacks": (edited(P, lambda r: r["ingress"]["routes"].update({"vllm-llama-7b": {"rateLimit": 3}})),
                                           "llm-infra:ingress.routes.vllm-llama-7b: no such Service in the stack; did you mean 'vllm-llama-70b'?"),
    # Beyond one node (issue 14)
    "a rank with no node to land on": (edited(S, lambda r: r.update(nodes=[n for n in r["nodes"] if n["name"] != "h100-b"])),
                                       f"{V}.llama-405b.pipelineParallel: no node for rank 1 of vllm-llama-405b-0"),
    "more stages than layers": (edited(S, lambda r: models(r)["llama-8b"].update(pipelineParallel=33)),
                                f"{V}.llama-8b.pipelineParallel: 33 stages for meta-llama/Llama-3.1-8B-Instruct's 32 layers"),
    "a multi-node model pinned to a node": (edited(S, lambda r: models(r)["llama-405b"].update(node="h100-a")),
                                            f"{V}.llama-405b.node: with pipelineParallel 2 each of a replica's 2 ranks goes on a node"),
    "a flag vLLM does not have": (edited(S, lambda r: models(r)["llama-8b"].update(extraArgs=["--max-num-seq", "8"])),
                                  f"{V}.llama-8b.extraArgs[0]: '--max-num-seq' is not a `vllm serve` option of vLLM 0.33"),
    # Hostile and mistaken values, round three (issue 20)
    "adapter name ending in a newline": (edited(D, lambda r: r["ollama"]["adapters"].update({"chatbot\n": r["ollama"]["adapters"].pop("chatbot")})),
                                         f"{A}.chatbot\\n: the key holds U+000A"),
    "zero-width space in the namespace": (edited(D, lambda r: r.update(namespace="llm\u200binfra")), "llm-infra:namespace: the value holds U+200B"),
    "infinite CPU in YAML": (text(P, lambda t: t.replace("cpu: 8", "cpu: .inf", 1)), ": inf is not a finite number"),
    "memory that rounds to 0Mi": (edited(P, lambda r: models(r)["llama-3b"].update(memoryGiB=0.0001)),
                                  f"{V}.llama-3b.memoryGiB: Input should be greater than or equal to 0.0625"),
    "a count past int64": (edited(P, lambda r: models(r)["llama-3b"].update(maxNumSeqs=2**63)), f"{V}.llama-3b.maxNumSeqs: 9.22e+18 is past the 64-bit integers"),
    "keep-alive past Go's range": (edited(D, lambda r: chat(r).update(keepAlive="3000000h")), f"{A}.chatbot.keepAlive: '3000000h' is past Go's duration range"),
    "nightly vLLM image": (edited(P, lambda r: r["vllm"].update(image="vllm/vllm-openai:nightly")), "llm-infra:vllm.image: 'vllm/vllm-openai:nightly' is not pinned"),
    "vLLM older than the plan's flags": (edited(P, lambda r: r["vllm"].update(image="vllm/vllm-openai:v0.6.3")), "llm-infra:vllm.image: vLLM 0.6.3 is older than 0.33"),
    "vLLM newer than the plan's accounting": (edited(P, lambda r: r["vllm"].update(image="vllm/vllm-openai:v0.34.0")), "or set llm-infra:vllm.acceptVersion: \"0.34.0\""),
    "ROCm Ollama on NVIDIA GPUs": (edited(D, lambda r: r["ollama"].update(image="ollama/ollama:0.32.15-rocm")), "llm-infra:ollama.image: 'ollama/ollama:0.32.15-rocm' is a build for rocm"),
    "two models under one served name": (edited(P, lambda r: models(r)["granite-8b"].update(servedName="watt-8b")), f"{V}.watt-8b.servedName: 'watt-8b' is also the served name"),
    "rwx cache smaller than the weights": (edited(P, lambda r: r.update(modelCache={"mode": "rwx", "storageClassName": "longhorn", "provisioner": "driver.longhorn.io", "size": "100Gi"})),
                                           "llm-infra:modelCache.size: 100Gi is smaller than the weights"),
    "master port on the kubelet's port": (edited(S, lambda r: models(r)["llama-405b"].update(multiNode={"hostNetwork": True, "masterPort": 10250})),
                                          f"{V}.llama-405b.multiNode.masterPort: 10250 is the port of the kubelet's API"),
    "binary YAML value": (text(D, lambda t: t + "  llm-infra:apiKey: !!binary aGVsbG8=\n"), "!!binary"),
    "unquoted date": (text(D, lambda t: t + "  llm-infra:existingNamespace: 2024-01-01\n"), "is an unquoted date"),
    "alias bomb": (text(D, lambda t: t + "  llm-infra:x:\n" + "".join(
        f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10) if i else '1'}]\n" for i in range(8))), "an alias bomb?"),
    "inline arch whose KV heads do not divide": (edited(P, lambda r: models(r).update(custom={
        "model": "example/custom-7b", "maxModelLen": 4096, "gpuMemoryUtilization": 0.1, "cpu": 2, "memoryGiB": 8,
        "arch": {"parametersB": 7, "layers": 32, "attentionHeads": 32, "kvHeads": 6, "headDim": 128, "hidden": 4096,
                 "maxPosition": 8192, "vocab": 32000}})), f"{V}.custom.arch.kvHeads: 6 KV heads do not divide 32"),
    "API key expanded into argv": (edited(P, lambda r: models(r)["llama-3b"].update(extraArgs=["--api-key-file", "$(VLLM_API_KEY)"])),
                                   f"{V}.llama-3b.extraArgs[1]: '$(VLLM_API_KEY)': the kubelet expands $(VAR)"),
    "TLS key file in extraArgs": (edited(P, lambda r: models(r)["llama-3b"].update(extraArgs=["--ssl-keyfile", "/tls/key.pem"])),
                                  f"{V}.llama-3b.extraArgs[0]: --ssl-keyfile turns on TLS in the server"),
    "data parallelism beyond the pod's GPUs": (edited(P, lambda r: models(r)["llama-3b"].update(extraArgs=["--data-parallel-size", "2"])),
                                               f"{V}.llama-3b.extraArgs[0]: --data-parallel-size 2 needs 2 x tensorParallel"),
    "look-alike dash in extraArgs": (edited(P, lambda r: models(r)["llama-3b"].update(extraArgs=["\u2014enforce-eager"])), "EM DASH (U+2014)"),
    "a value of the wrong type in extraArgs": (edited(P, lambda r: models(r)["llama-3b"].update(extraArgs=["--max-logprobs", "many"])),
                                               "--max-logprobs takes an integer; 'many' is not"),
    "more sequences than batched tokens": (edited(P, lambda r: models(r)["llama-3b"].update(maxNumSeqs=4097, maxNumBatchedTokens=4096)),
                                           f"{V}.llama-3b.maxNumSeqs: 4097 is above maxNumBatchedTokens 4096"),
    "Prometheus URL with a password": (edited(S, lambda r: r.update(monitoring={"prometheusUrl": "http://admin:hunter2@prometheus-operated.monitoring.svc:9090"})),
                                       "llm-infra:monitoring.prometheusUrl: the URL holds a user name or password"),
    "ingress host that is an IP address": (edited(D, lambda r: r["ingress"].update(hosts=["10.0.0.1"])), "is an IP address"),
    "node CIDR of the whole internet": (edited(D, lambda r: r["networkPolicy"].update(nodeCidrs=["0.0.0.0/0"])), "llm-infra:networkPolicy.nodeCidrs[0]: 0.0.0.0/0 lets 4.29e+09 addresses reach every serving port"),
    "ingress namespace is the stack's own": (edited(D, lambda r: r["networkPolicy"].update(ingressNamespace=r.get("namespace", "llama3-multi-adapter"))),
                                             "is the stack's own namespace"),
}


def render_text(tmp_path: Path, content: str) -> tuple[int, str, str, bool]:
    cfg = tmp_path / "Pulumi.mistake.yaml"
    cfg.write_text(content)
    out = tmp_path / "out"
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        code = render.main(["--stack", "mistake", "--config", str(cfg), "--out", str(out)])
    return code, err.getvalue(), std.getvalue(), out.exists()


def test_the_table_is_large_enough():
    assert len(MISTAKES) >= 60


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistake_exits_2_names_the_key_and_writes_nothing(tmp_path, name):
    content, expected = MISTAKES[name]
    code, err, out, written = render_text(tmp_path, content)
    assert code == 2, f"rendered with exit {code}:\n{out[-500:]}"
    assert expected in err, err
    assert "Traceback" not in err + out
    assert not written
    assert all(len(line) <= MAX_LINE for line in err.splitlines()), max(err.splitlines(), key=len)


def test_a_secret_the_file_does_not_hold_renders_with_a_placeholder_and_pulumi_refuses_it(tmp_path):
    """Stack files hold no secrets (the CLI writes them encrypted): the render fills in a placeholder and says which
    `pulumi config set --secret` to run; the program itself, as `pulumi preview` runs it, refuses naming the key."""
    code, err, out, written = render_text(tmp_path, text(P, lambda t: t))
    assert code == 0 and written
    assert "llm-infra:hfToken is not set (rendered with a placeholder); before `pulumi up`: pulumi config set --secret hfToken" in out
    assert "llm-infra:apiKey is not set" in out
    from stacks.loader import missing_secrets
    raw = {k: v for k, v in stack_raw(P).items() if k not in ("hfToken", "apiKey")}
    assert missing_secrets(raw) == ["apiKey", "hfToken"]
    assert missing_secrets(stack_raw(P), frozenset({"llm-infra:hfToken", "llm-infra:apiKey"})) == []
