"""Settings that are each valid but contradict each other or the engine they are built for: the images' releases, two
models under one served name, a cache smaller than the weights it must hold, a multi-node port the node already uses,
and a Prometheus that KEDA asks but the rest of the monitoring settings do not describe."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from stacks.catalog import GIB, LLAMA_STACK_RELEASES, OLLAMA_RELEASES, VLLM_RELEASES
from stacks.config.base import key
from stacks.config.images import version_problems
from stacks.config.raw_checks import INT64

if TYPE_CHECKING:
    from stacks.config import StackConfig

NODE_PORTS = {
    10250: "the kubelet's API", 10255: "the kubelet's read-only API", 10248: "the kubelet's health check",
    10249: "kube-proxy's status", 10256: "kube-proxy's health check", 10257: "kube-controller-manager",
    10258: "cloud-controller-manager", 10259: "kube-scheduler", 6443: "kube-apiserver", 2379: "etcd (clients)",
    2380: "etcd (peers)",
}
"""Ports the node's own daemons listen on (Kubernetes v1.34.4 pkg/cluster/ports/ports.go, pkg/scheduler/apis/config/types.go,
cmd/kubeadm/app/constants/constants.go): a `hostNetwork` rank binding one fails with "address already in use"."""
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity_bytes(text: str) -> int:
    m = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi|Ti)", text)
    return int(m.group(1)) * UNITS[m.group(2)] if m else 0


def consistency_problems(cfg: StackConfig) -> list[str]:
    return _image_problems(cfg) + _served_name_problems(cfg) + _cache_size_problems(cfg) + _port_problems(cfg) \
        + _monitoring_problems(cfg)


def _image_problems(cfg: StackConfig) -> list[str]:
    out: list[str] = []
    if cfg.vllm is not None and (cfg.vllm.models or (cfg.ollama is not None and cfg.ollama.engine == "vllm")):
        out += version_problems(key("vllm", "image"), key("vllm", "acceptVersion"), cfg.vllm.image, "vLLM", VLLM_RELEASES,
                                cfg.vllm.accept_version, ("vllm/vllm-openai",))
    if cfg.ollama is not None and cfg.ollama.engine == "ollama":
        out += version_problems(key("ollama", "image"), key("ollama", "acceptVersion"), cfg.ollama.image, "Ollama",
                                OLLAMA_RELEASES, cfg.ollama.accept_version, ("ollama/ollama",))
    if cfg.llama_stack is not None:
        out += version_problems(key("llamaStack", "image"), key("llamaStack", "acceptVersion"), cfg.llama_stack.image,
                                "Llama Stack", LLAMA_STACK_RELEASES, cfg.llama_stack.accept_version,
                                ("llamastack/distribution-",))
    return out


def _served_name_problems(cfg: StackConfig) -> list[str]:
    """vLLM labels its metrics with the served name; the autoscaler's demand query and the dashboards select by it, so two
    models under one name would be counted as one (and clients could not tell them apart)."""
    if cfg.vllm is None:
        return []
    seen: dict[str, str] = {}
    out = []
    for name, m in sorted(cfg.vllm.models.items()):
        served = m.served_name or name
        if served in seen:
            out.append(f"{key('vllm', 'models', name, 'servedName')}: {served!r} is also the served name of "
                       f"{key('vllm', 'models', seen[served])}; vLLM's metrics and the autoscaler's query would count both as one "
                       "model: give each its own servedName")
        else:
            seen[served] = name
    return out


def _checkpoint_bytes(cfg: StackConfig) -> dict[str, tuple[str, int]]:
    """What each model's files take in the cache, at least: model key -> (what, bytes). The checkpoint on disk is in its
    own precision (16 bit unless pre-quantized), whatever the server quantizes to at load."""
    from stacks.config.vllm import hf_model
    from stacks.model_catalog import hf_models, ollama_models

    out: dict[str, tuple[str, int]] = {}
    if cfg.vllm is not None:
        for name, m in cfg.vllm.models.items():
            hf = hf_model(m)
            if hf is None:
                continue
            params = hf.arch.parameters_b * 1e9
            if hf.quant_bits:
                unq = hf.unquantized_parameters_b * 1e9
                size = (params - unq) * hf.quant_bits / 8 + unq * 2
            else:
                size = params * 2
            out[name] = (m.model, int(size))
    if cfg.ollama is not None:
        if cfg.ollama.engine == "ollama" and cfg.ollama.base_model in ollama_models():
            out["ollama"] = (cfg.ollama.base_model, ollama_models()[cfg.ollama.base_model].file_bytes)
        elif cfg.ollama.engine == "vllm" and cfg.ollama.vllm.model in hf_models():
            out["ollama"] = (cfg.ollama.vllm.model, int(hf_models()[cfg.ollama.vllm.model].arch.parameters_b * 2e9))
    return out


def _cache_size_problems(cfg: StackConfig) -> list[str]:
    cache = cfg.model_cache
    size = quantity_bytes(cache.size)
    at = key("modelCache", "size")
    if size > INT64:
        return [f"{at}: {cache.size} is past the largest quantity Kubernetes stores (8 EiB); give the volume's real size"]
    if cache.mode == "hostPath":
        return []  # the host directory has no quota: the size is the volume's label, not a limit
    need = _checkpoint_bytes(cfg)
    if cache.mode == "rwx":
        distinct = {what: b for what, b in need.values()}
        total = sum(distinct.values())
        if total > size:
            return [f"{at}: {cache.size} is smaller than the weights the one ReadWriteMany volume must hold ({total / GIB:.1f} GiB: "
                    f"{', '.join(sorted(distinct))}); raise it to at least {-(-total // GIB)}Gi"]
        return []
    return [f"{at}: {cache.size} is smaller than {what}'s weights ({b / GIB:.1f} GiB), which the claim of "
            f"{'the adapter pool' if name == 'ollama' else key('vllm', 'models', name)} must hold; raise it to at least "
            f"{-(-b // GIB)}Gi" for name, (what, b) in sorted(need.items()) if b > size]


def _port_problems(cfg: StackConfig) -> list[str]:
    if cfg.vllm is None:
        return []
    out = []
    for name, m in sorted(cfg.vllm.models.items()):
        port = m.multi_node.master_port
        if m.pipeline_parallel > 1 and m.multi_node.host_network and port in NODE_PORTS:
            out.append(f"{key('vllm', 'models', name, 'multiNode', 'masterPort')}: {port} is the port of {NODE_PORTS[port]} on "
                       "every node, and with hostNetwork the leader binds the node's own port; use another (vLLM's default is 29501)")
    return out


def _monitoring_problems(cfg: StackConfig) -> list[str]:
    """KEDA asks `prometheusUrl`; the NetworkPolicies let `monitoring.namespace` scrape. A URL naming a Service in another
    namespace, or the Operator's Service without the Operator, means KEDA asks a Prometheus the stack does not describe."""
    if cfg.vllm is None or not any(m.autoscale for m in cfg.vllm.models.values()):
        return []
    mon = cfg.monitoring
    host = (urlsplit(mon.prometheus_url).hostname or "").lower()
    parts = host.removesuffix(".cluster.local").removesuffix(".svc").split(".")
    out = []
    at = key("monitoring", "prometheusUrl")
    # Only the Operator's own Service says where its Prometheus runs (it is made in the Prometheus' namespace); a
    # Thanos, Mimir or VictoriaMetrics query front end may well live elsewhere than the Prometheus that scrapes.
    if parts[0] == "prometheus-operated" and len(parts) == 2 and parts[1] != mon.namespace:
        out.append(f"{at}: KEDA would ask the Prometheus in namespace {parts[1]!r}, but the network policies let only "
                   f"monitoring.namespace {mon.namespace!r} scrape the servers, so it would never see their metrics; make "
                   "them agree (or point prometheusUrl at a query front end such as Thanos)")
    if parts[0] == "prometheus-operated" and not mon.prometheus_operator:
        out.append(f"{at}: prometheus-operated is the Service the Prometheus Operator makes, but monitoring.prometheusOperator is "
                   "false; give your Prometheus' own Service, or turn prometheusOperator on")
    return out
