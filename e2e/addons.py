"""What a stack expects of its cluster, made on the e2e control plane from the stack's own config.

- Each `nodes[]` entry becomes a KWOK node with its name, CPU and memory (allocatable = capacity - reserve), its pool as
  the label `llm-infra/pool`, and on GPU nodes the taint `nvidia.com/gpu:NoSchedule` that GPU node pools carry.
- `exclusive`: the GPUs as `nvidia.com/gpu` capacity (what the NVIDIA device plugin publishes).
  `dra`: the DeviceClass and one ResourceSlice per node with a device per GPU, carrying the attributes the NVIDIA DRA
  driver (k8s-dra-driver-gpu 25.8) publishes - `uuid`, `productName`, `type`, `resource.kubernetes.io/pciBusID` -
  and the GPU's memory as capacity, so the real scheduler allocates the claims by uuid.
  `visible-devices` and `exclusive`: the RuntimeClass the pods name (the GPU operator or k3s creates it).
- The CRDs of every add-on kind the stacks use (the files the tests validate against, tests/schemas).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from e2e.cluster import KWOK_NODE_ANNOTATION
from stacks.catalog import GPU_MODELS
from stacks.config import GpuSharing, Node

ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "tests" / "schemas"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
DRIVER = "gpu.nvidia.com"
PRODUCT = {"A100-80GB": "NVIDIA A100-SXM4-80GB", "H100-80GB": "NVIDIA H100 80GB HBM3", "L40": "NVIDIA L40", "L40S": "NVIDIA L40S"}


def gib(value: float) -> str:
    return f"{round(value * 1024)}Mi"


def node_objects(nodes: list[Node], sharing: GpuSharing) -> tuple[list[dict], list[dict]]:
    """(Node objects, their status patches)."""
    objs, statuses = [], []
    for n in nodes:
        labels = {"kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok"}
        if n.pool:
            labels["llm-infra/pool"] = n.pool
        objs.append({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": n.name, "labels": labels, "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"taints": [GPU_TAINT]} if n.gpus else {}})
        capacity = {"cpu": f"{n.cpu:g}", "memory": gib(n.memory_gib), "pods": "110", "ephemeral-storage": "1Ti"}
        allocatable = {**capacity, "cpu": f"{round((n.cpu - n.reserve.cpu) * 1000)}m", "memory": gib(n.memory_gib - n.reserve.memory_gib)}
        if sharing.mode == "exclusive" and n.gpus:
            capacity["nvidia.com/gpu"] = allocatable["nvidia.com/gpu"] = str(len(n.gpus))
        statuses.append({"status": {"capacity": capacity, "allocatable": allocatable}})
    return objs, statuses


def gpu_memory_gib(gpu) -> float:
    return gpu.vram_gib if gpu.vram_gib is not None else GPU_MODELS[gpu.model].nvidia_smi_mib / 1024


def dra_objects(nodes: list[Node], sharing: GpuSharing) -> list[dict]:
    """The DeviceClass and a ResourceSlice per GPU node, as the NVIDIA DRA driver would publish them."""
    objs: list[dict] = [{"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": sharing.device_class_name},
                         "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]}}]
    for n in nodes:
        if not n.gpus:
            continue
        devices = []
        for g in n.gpus:
            attrs: dict[str, Any] = {"type": {"string": "gpu"}, "productName": {"string": PRODUCT.get(g.model or "", "NVIDIA GPU")}}
            if g.uuid:
                attrs["uuid"] = {"string": g.uuid}
            if g.pci_bus_id:
                attrs["resource.kubernetes.io/pciBusID"] = {"string": g.pci_bus_id}
            devices.append({"name": f"gpu-{g.index}", "attributes": attrs,
                            "capacity": {"memory": {"value": gib(gpu_memory_gib(g))}}})
        objs.append({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": f"{n.name}-{DRIVER}"},
                     "spec": {"driver": DRIVER, "nodeName": n.name, "pool": {"name": n.name, "generation": 1, "resourceSliceCount": 1},
                              "devices": devices}})
    return objs


def crds() -> list[dict]:
    return [d for f in sorted(CRD_DIR.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def install(kubeconfig: Path, nodes: list[Node], sharing: GpuSharing) -> list[str]:
    """Create everything above; returns a line per object made, for the log."""
    api = client.ApiClient(configuration=_config(kubeconfig))
    dyn = DynamicClient(api)
    core = client.CoreV1Api(api)
    made = []
    objs, statuses = node_objects(nodes, sharing)
    extra = [*crds()]
    if sharing.mode == "dra":
        extra += dra_objects(nodes, sharing)
    else:
        extra.append({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": sharing.runtime_class_name},
                      "handler": "nvidia"})
    for obj, status in zip(objs, statuses):
        core.create_node(obj)
        core.patch_node_status(obj["metadata"]["name"], status)
        made.append(f"Node {obj['metadata']['name']} {status['status']['allocatable']}")
    for obj in extra:
        dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"]).create(body=obj)
        made.append(f"{obj['kind']} {obj['metadata']['name']}")
    return made


def _config(kubeconfig: Path) -> client.Configuration:
    from kubernetes import config as kconfig
    cfg = client.Configuration()
    kconfig.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return cfg
