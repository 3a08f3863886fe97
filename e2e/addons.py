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
from stacks.catalog import GPU_MODELS, NVIDIA_DRA_DRIVER
from stacks.config import GpuSharing, Node

ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "tests" / "schemas"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
DRIVER = NVIDIA_DRA_DRIVER
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
    """The add-on CRDs the tests validate against; LeaderWorkerSet's comes with its controller (start_lws)."""
    return [d for f in sorted(CRD_DIR.glob("*.yaml")) if not f.name.startswith("leaderworkerset")
            for d in yaml.safe_load_all(f.read_text()) if d]


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


# -- LeaderWorkerSet ------------------------------------------------------------------------------------------------
# The real controller (sigs.k8s.io/lws v0.9.0, built by e2e/build-tools.sh) with its CRDs and its admission webhooks,
# which it needs: the pod webhook gives each rank its group and worker index and the LWS_* variables. The API server
# calls the webhooks at https://127.0.0.1:<port> with a certificate made here (its own cert rotation is for an
# in-cluster Service), configured as the release's config/webhook manifests are, pod webhook's objectSelector included.

LWS_MODULE = "sigs.k8s.io/lws"


def lws_crds() -> list[dict]:
    from e2e.cluster import module_dir
    bases = module_dir("lws", LWS_MODULE) / "config" / "crd" / "bases"
    return [d for f in sorted(bases.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def start_lws(cluster, kubeconfig: Path) -> list[str]:
    import base64
    import subprocess

    from e2e.cluster import HOST, free_port, module_dir
    work = cluster.workdir / "lws"
    certs = work / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=lws-webhook",
                    "-addext", f"subjectAltName=IP:{HOST}", "-keyout", str(certs / "tls.key"), "-out", str(certs / "tls.crt")],
                   check=True, capture_output=True)
    port = free_port()
    (work / "config.yaml").write_text(yaml.safe_dump({
        "apiVersion": "config.lws.x-k8s.io/v1alpha1", "kind": "Configuration",
        "internalCertManagement": {"enable": False}, "leaderElection": {"leaderElect": False},
        "webhook": {"host": HOST, "port": port, "certDir": str(certs)},
        "metrics": {"bindAddress": f"{HOST}:{free_port()}"}, "health": {"healthProbeBindAddress": f"{HOST}:{free_port()}"}}))
    api = client.ApiClient(configuration=_config(kubeconfig))
    dyn = DynamicClient(api)
    made = []
    for crd in lws_crds():
        dyn.resources.get(api_version=crd["apiVersion"], kind=crd["kind"]).create(body=crd)
        made.append(f"CustomResourceDefinition {crd['metadata']['name']} (lws v0.9.0)")
    cluster.spawn("lws-controller", ["--config", str(work / "config.yaml"), "--kubeconfig", str(kubeconfig)])
    ca = base64.b64encode((certs / "tls.crt").read_bytes()).decode()
    manifests = module_dir("lws", LWS_MODULE) / "config" / "webhook" / "manifests.yaml"
    for hook in (d for d in yaml.safe_load_all(manifests.read_text()) if d):
        hook["metadata"]["name"] = f"lws-{hook['metadata']['name']}"
        for w in hook["webhooks"]:
            path = w["clientConfig"]["service"]["path"]
            w["clientConfig"] = {"url": f"https://{HOST}:{port}{path}", "caBundle": ca}
            if w["rules"][0]["resources"] == ["pods"]:  # config/webhook/*-patch.yaml: only the pods of a LeaderWorkerSet
                w["objectSelector"] = {"matchExpressions": [{"key": "leaderworkerset.sigs.k8s.io/name", "operator": "Exists"}]}
        dyn.resources.get(api_version=hook["apiVersion"], kind=hook["kind"]).create(body=hook)
        made.append(f"{hook['kind']} {hook['metadata']['name']} -> https://{HOST}:{port}")
    _wait_for_webhook(HOST, port)
    return made


def _wait_for_webhook(host: str, port: int, timeout: float = 60) -> None:
    import socket
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the LeaderWorkerSet webhook did not listen on {host}:{port} within {timeout:.0f} s")
