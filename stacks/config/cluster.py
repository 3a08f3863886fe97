"""The cluster: nodes and their GPUs, GPU pinning, the model cache and plan settings."""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from stacks.catalog import GPU_MODELS, OLLAMA, DEFAULT_CUDA_CONTEXT_GIB, DEFAULT_VLLM_MARGIN_GIB
from stacks.config.base import DNS_LABEL, DNS_SUBDOMAIN, GPU_UUID, MAX_CPU, MAX_GIB, MIN_CPU, MIN_POD_GIB, PCI_BUS_ID, QUANTITY, key, _Model

if TYPE_CHECKING:
    from stacks.config import StackConfig


class Gpu(_Model):
    index: int = Field(ge=0, le=1023)
    """GPU index as `nvidia-smi -L` lists it on the node."""
    model: str | None = None
    """GPU model from the catalog (`A100-80GB`, `H100-80GB`, `L40S`, ...): the plan uses the memory CUDA reports for it."""
    vram_gib: float | None = None
    """Or the total memory in GiB as CUDA reports it (`torch.cuda.mem_get_info()[1] / 2**30`, or the `/<total> GiB` vLLM logs at start), not the nameplate."""
    uuid: str | None = Field(default=None, pattern=GPU_UUID)
    """GPU UUID (`GPU-...` from `nvidia-smi -L`): selects it in `dra` mode and pins it in `visible-devices` mode."""
    pci_bus_id: str | None = Field(default=None, pattern=PCI_BUS_ID)
    """PCI bus id (`0000:01:00.0`): an alternative selector for `dra` mode."""


    @field_validator("vram_gib")
    @classmethod
    def _plausible_vram(cls, v: float | None) -> float | None:
        if v is not None and not 1 <= v <= 1024:
            hint = f"; was it given in MiB? {v:g} MiB is {v / 1024:.2f} GiB" if v > 1024 else ""
            raise ValueError(f"{v:g} GiB is not a plausible GPU memory (1 to 1024 GiB){hint}")
        return v


class Reserve(_Model):
    cpu: float = Field(default=0, ge=0, le=MAX_CPU)
    """CPU cores kept for the OS, k3s and everything not planned here."""
    memory_gib: float = Field(default=0, ge=0, le=MAX_GIB)
    """RAM in GiB kept for the OS, k3s and everything not planned here."""


class Node(_Model):
    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253)
    """Kubernetes node name (`kubectl get nodes`); pods planned on it are scheduled there."""
    cpu: float = Field(ge=MIN_CPU, le=MAX_CPU)
    """CPU cores of the node."""
    memory_gib: float = Field(ge=MIN_POD_GIB, le=MAX_GIB)
    """RAM of the node in GiB."""
    reserve: Reserve = Reserve()
    """Capacity kept back from planning."""
    gpus: list[Gpu] = []
    """The node's GPUs."""
    pool: str | None = Field(default=None, pattern=DNS_LABEL, max_length=63)
    """Node pool (nodes of one GPU type): a vLLM model with `pool` is placed on one of its nodes; the plan sums each pool."""


class GpuSharing(_Model):
    mode: Literal["dra", "visible-devices", "exclusive"] = "visible-devices"
    """How pods are pinned to GPUs: `dra` (a ResourceClaim per GPU), `visible-devices` (env pinning, no GPU request) or `exclusive` (`nvidia.com/gpu`, one pod per GPU)."""
    device_class_name: str = Field(default="gpu.nvidia.com", pattern=DNS_SUBDOMAIN)
    """DeviceClass of the NVIDIA DRA driver (`dra` mode)."""
    runtime_class_name: str = Field(default="nvidia", pattern=DNS_SUBDOMAIN)
    """RuntimeClass of the NVIDIA container runtime (`visible-devices` and `exclusive` modes; k3s creates `nvidia`)."""


class ModelCache(_Model):
    mode: Literal["hostPath", "rwx", "perPod"] = "hostPath"
    """`hostPath` (one PV+PVC per node over a host directory), `rwx` (one ReadWriteMany claim) or `perPod` (a ReadWriteOnce claim per workload)."""
    host_path: str = Field(default="/var/lib/llm-models", pattern=r"^/[^\s]*$")
    """Host directory of the cache (`hostPath` mode)."""
    size: str = Field(default="100Gi", pattern=QUANTITY)
    """Requested size of each cache volume."""
    storage_class_name: str | None = Field(default=None, pattern=DNS_SUBDOMAIN)
    """StorageClass for `rwx`/`perPod` claims (e.g. `longhorn`, `local-path`)."""
    provisioner: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9./]*[a-z0-9])?$")
    """If set, the stack creates `storageClassName` itself with this provisioner and `reclaimPolicy: Retain`, so dynamically provisioned model data survives claim deletion."""
    storage_class_reclaim_policy: Literal["Retain", "Delete"] | None = None
    """For a StorageClass the stack does not create: its `reclaimPolicy` (`kubectl get storageclass <name> -o jsonpath='{.reclaimPolicy}'`); `Delete` loses the weights with their claim."""
    accept_delete_reclaim: bool = False
    """Use a StorageClass whose reclaimPolicy is Delete anyway: deleting the namespace or a claim then deletes the model data."""

    @field_validator("host_path")
    @classmethod
    def _not_a_system_path(cls, v: str) -> str:
        if ".." in v.split("/"):
            raise ValueError(f"{v!r} must not contain '..'; give the directory itself")
        # normpath keeps a leading `//` (POSIX leaves two leading slashes to the system): `//etc` is `/etc` on Linux.
        path = "/" + posixpath.normpath(v).lstrip("/")
        top = path.split("/")[1]
        if (path in SYSTEM_ROOTS or re.fullmatch(r"lib(32|64|x32|exec)?", top)
                or any(path == p or path.startswith(p + "/") for p in SYSTEM_DIRS)):
            raise ValueError(f"{v!r} is a system directory (or inside one); the pods would write model files into it. "
                             "Use a directory of its own such as /var/lib/llm-models")
        return v


# A hostPath cache may not be one of these directories, nor lie inside the second list or a top-level `/lib*`.
SYSTEM_ROOTS = frozenset({"/", "/var", "/var/lib", "/home", "/opt", "/srv", "/mnt", "/tmp", "/usr/local"})
SYSTEM_DIRS = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/boot", "/dev", "/proc", "/sys", "/run",
               "/root", "/var/run", "/var/log", "/var/lib/kubelet", "/var/lib/rancher", "/var/lib/containerd",
               "/var/lib/docker", "/var/lib/etcd", "/var/lib/cni", "/var/lib/calico", "/var/lib/cilium", "/var/lib/longhorn",
               "/opt/cni", "/opt/containerd")


class Plan(_Model):
    cuda_context_gib: float = Field(default=DEFAULT_CUDA_CONTEXT_GIB, ge=0, le=64)
    """VRAM each GPU process holds for its CUDA context, which Ollama's estimate leaves out."""
    ollama_fit_target_mib: int = Field(default=OLLAMA.fit_target_mib, ge=0, le=1024 * 1024)
    """`LLAMA_ARG_FIT_TARGET` on every Ollama pod: llama-server keeps this much of its GPU free, offloading layers to the CPU otherwise; the plan checks each pod loads within free memory minus it."""
    ollama_whole_load_rule: bool = False
    """Stricter policy: also require Ollama's multi-GPU rule (prediction at most 80 % of the memory free at load), which Ollama itself skips for a server that sees one GPU."""
    vllm_context_gib: float | None = Field(default=None, ge=0, le=64)
    """Per vLLM process and GPU: CUDA context, NCCL and cuBLAS, created before vLLM measures, so outside gpuMemoryUtilization.
    Default: calibrated on published startup logs, 0.55 GiB on one GPU, 1.6 with tensor or pipeline parallelism, 2.1 for
    an MoE model across GPUs (`make calibrate`); set it to override every model's."""
    vllm_margin_gib: float = Field(default=DEFAULT_VLLM_MARGIN_GIB, ge=0, le=64)
    """Kept free on every GPU a vLLM server uses (and off a profiled KV cache) for the accounting's estimates."""



def _node_problems(cfg: StackConfig) -> list[str]:
    problems: list[str] = []

    names = [n.name for n in cfg.nodes]
    for i, node in enumerate(cfg.nodes):
        if names.count(node.name) > 1:
            problems.append(f"{key('nodes', i, 'name')}: node {node.name!r} is listed twice; give each node once")
        indexes = [g.index for g in node.gpus]
        for j, gpu in enumerate(node.gpus):
            if (gpu.model is None) == (gpu.vram_gib is None):
                problems.append(f"{key('nodes', i, 'gpus', j)}: give the GPU's model (one of: {', '.join(GPU_MODELS)}) "
                                "or its vramGiB as CUDA reports it, not both")
            elif gpu.model is not None and gpu.model not in GPU_MODELS:
                problems.append(f"{key('nodes', i, 'gpus', j, 'model')}: {gpu.model!r} is not in the GPU catalog; use one of: "
                                f"{', '.join(GPU_MODELS)}, or set vramGiB as CUDA reports it")
            if indexes.count(gpu.index) > 1:
                problems.append(f"{key('nodes', i, 'gpus', j, 'index')}: GPU index {gpu.index} is listed twice on node {node.name}")
        if node.reserve.cpu >= node.cpu:
            problems.append(f"{key('nodes', i, 'reserve', 'cpu')}: reserve {node.reserve.cpu:g} leaves no CPU of the node's {node.cpu:g}")
        if node.reserve.memory_gib >= node.memory_gib:
            problems.append(f"{key('nodes', i, 'reserve', 'memoryGiB')}: reserve {node.reserve.memory_gib:g} GiB leaves no RAM of the node's {node.memory_gib:g} GiB")
    return problems



def _cache_problems(cfg: StackConfig) -> list[str]:
    problems: list[str] = []
    cache = cfg.model_cache
    if cache.mode in ("rwx", "perPod") and cache.storage_class_name is None:
        problems.append(f"{key('modelCache', 'storageClassName')}: modelCache.mode {cache.mode} needs a StorageClass (e.g. longhorn for rwx, local-path for perPod)")
    if cache.mode in ("rwx", "perPod") and cache.storage_class_name is not None and cache.provisioner is None:
        at = key("modelCache", "storageClassReclaimPolicy")
        if cache.storage_class_reclaim_policy is None:
            problems.append(f"{at}: modelCache.mode {cache.mode} uses StorageClass {cache.storage_class_name}, which the stack does not "
                            f"create; say its reclaimPolicy (kubectl get storageclass {cache.storage_class_name} -o jsonpath='{{.reclaimPolicy}}'), "
                            "or set provisioner so the stack creates it with Retain")
        elif cache.storage_class_reclaim_policy == "Delete" and not cache.accept_delete_reclaim:
            problems.append(f"{at}: with reclaimPolicy Delete, deleting the namespace or a claim deletes the model weights; use a Retain "
                            "class (or set provisioner), or set modelCache.acceptDeleteReclaim: true to accept that")
    if cache.provisioner is not None and cache.mode == "hostPath":
        problems.append(f"{key('modelCache', 'provisioner')}: hostPath mode provisions nothing; remove provisioner or use rwx/perPod")
    return problems
