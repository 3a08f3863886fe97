"""What `make e2e` makes of a stack's config before `pulumi up` (e2e/addons.py), and what the e2e found that the
program now does (Llama Stack on a tainted GPU node)."""

from __future__ import annotations

from e2e import addons
from stacks.config import GpuSharing, Node
from tests.conftest import run_secret_raw, stack_raw


def nodes_of(stack: str) -> tuple[list[Node], GpuSharing]:
    raw = stack_raw(stack)
    return [Node.model_validate(n) for n in raw["nodes"]], GpuSharing.model_validate(raw.get("gpuSharing", {}))


def test_nodes_carry_the_configs_capacity_reserve_pool_and_the_gpu_taint():
    nodes, sharing = nodes_of("scale")
    objs, statuses = addons.node_objects(nodes, sharing)
    h100 = next(i for i, o in enumerate(objs) if o["metadata"]["name"] == "h100-a")
    node, status = objs[h100], statuses[h100]["status"]
    assert node["metadata"]["labels"]["llm-infra/pool"] == "h100" and node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    cfg = next(n for n in nodes if n.name == "h100-a")
    assert status["capacity"]["cpu"] == f"{cfg.cpu:g}" and status["allocatable"]["cpu"] == f"{round((cfg.cpu - cfg.reserve.cpu) * 1000)}m"
    assert status["capacity"]["nvidia.com/gpu"] == "8"  # scale is exclusive: the device plugin's resource


def test_dra_slices_publish_each_gpu_by_uuid_for_the_real_scheduler():
    nodes, sharing = nodes_of("prod")
    objs = addons.dra_objects(nodes, sharing)
    assert objs[0]["kind"] == "DeviceClass" and objs[0]["metadata"]["name"] == "gpu.nvidia.com"
    (slice_,) = objs[1:]
    assert slice_["spec"]["nodeName"] == "a100-node" and slice_["spec"]["driver"] == "gpu.nvidia.com"
    uuids = [d["attributes"]["uuid"]["string"] for d in slice_["spec"]["devices"]]
    assert uuids == [g.uuid for g in nodes[0].gpus]
    assert {d["capacity"]["memory"]["value"] for d in slice_["spec"]["devices"]} == {"81920Mi"}
    assert "index" not in slice_["spec"]["devices"][0]["attributes"]  # gone from the NVIDIA DRA driver 25.8


def test_llama_stack_tolerates_the_taint_of_the_gpu_node_it_is_placed_on():
    prod = run_secret_raw(stack_raw("prod"), ["hfToken"])
    spec = prod.find("Deployment", "llamastack-server")["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "a100-node"}
    assert spec["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]


def test_a_claim_name_too_long_for_its_label_is_refused_naming_the_gpu():
    """A claim's name (node + '-gpu-N-' + digest) is also its instance label: over 63 characters the API server would
    refuse the object, so the config check does."""
    from tests.conftest import stack_problems, variant
    long = "n" * 50
    problems = stack_problems(variant(lambda r: r["nodes"][0].update(name=long), "prod"))
    assert any(p.startswith("llm-infra:nodes[0].gpus[0]") and "used as a label value" in p for p in problems), problems
