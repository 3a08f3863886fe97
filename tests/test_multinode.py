"""Models larger than a node (stack scale): the plan across nodes, the LeaderWorkerSet, its ranks' command lines as
vLLM 0.33's parser reads them, their network, cache, quota and alerts."""

from __future__ import annotations

import math

import pytest

from stacks.catalog import GIB, MIB
from stacks.plan.model import stage_layers
from stacks.loader import InvalidStack
from tests.conftest import env_of, plan_of, pod_templates, run_secret_raw, stack_of, stack_problems, stack_raw, variant
from tests.netpol import Pod, Policies
from tests.vllm_parser import Refused, expand, parse

M = "llm-infra:vllm.models.llama-405b"


def model(r, key="llama-405b"):
    return r["vllm"]["models"][key]


@pytest.fixture(scope="module")
def scale():
    return run_secret_raw(stack_raw("scale"), ["hfToken"])


def lws_env(lws: dict, worker_index: int) -> dict[str, str]:
    """What LeaderWorkerSet v0.10.0's pod webhook puts first in every container's env (pkg/utils/pod/pod_utils.go)."""
    name, ns = lws["metadata"]["name"], lws["metadata"]["namespace"]
    return {"LWS_LEADER_ADDRESS": f"{name}-0.{name}.{ns}", "LWS_GROUP_SIZE": str(lws["spec"]["leaderWorkerTemplate"]["size"]),
            "LWS_WORKER_INDEX": str(worker_index)}


def gpus_of(spec: dict) -> int:
    """GPUs a pod gets, in any pinning mode: nvidia.com/gpu, DRA claims, or the UUIDs the runtime injects."""
    (c,) = spec["containers"]
    if "nvidia.com/gpu" in c["resources"].get("limits", {}):
        return int(c["resources"]["limits"]["nvidia.com/gpu"])
    if spec.get("resourceClaims"):
        return len(spec["resourceClaims"])
    return len(env_of(c)["NVIDIA_VISIBLE_DEVICES"].split(","))


def ranks(objects: list[dict]) -> list[tuple[dict, int, dict]]:
    """(LeaderWorkerSet, worker index, pod spec) for every pod of every multi-node replica."""
    out = []
    for o in objects:
        if o["kind"] == "LeaderWorkerSet":
            lwt = o["spec"]["leaderWorkerTemplate"]
            out.append((o, 0, lwt["leaderTemplate"]["spec"]))
            out += [(o, i, lwt["workerTemplate"]["spec"]) for i in range(1, lwt["size"])]
    return out


def check_group(objects: list[dict]) -> int:
    """Parse every rank's command line as vLLM would and apply vLLM 0.33's own multi-node checks
    (engine/arg_utils.py:2399-2420, config/parallel.py:1106-1114, entrypoints/cli/serve.py:69-77)."""
    seen = 0
    for lws, index, spec in ranks(objects):
        (c,) = spec["containers"]
        ns = parse(expand(c["args"], lws_env(lws, index)))
        world = ns.tensor_parallel_size * ns.pipeline_parallel_size
        assert ns.nnodes == lws["spec"]["leaderWorkerTemplate"]["size"] > 1
        assert world % ns.nnodes == 0 and 0 <= ns.node_rank < ns.nnodes and ns.node_rank == index
        assert world // ns.nnodes == gpus_of(spec), "vLLM starts world/nnodes GPU workers on each node"
        assert ns.distributed_executor_backend in (None, "mp") and ns.headless == (index > 0)
        assert ns.master_addr == lws_env(lws, index)["LWS_LEADER_ADDRESS"] and ns.model_tag
        leader = parse(expand(lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]["args"], lws_env(lws, 0)))
        same = ("model_tag", "tensor_parallel_size", "pipeline_parallel_size", "master_port", "max_model_len", "nnodes")
        assert all(getattr(ns, k) == getattr(leader, k) for k in same), "every rank must start the same model and sizes"
        seen += 1
    return seen


def test_layers_split_over_stages_as_vllm_splits_them():
    """vllm/distributed/utils.py get_pp_indices: the remainder goes to the stages before the last."""
    assert stage_layers(126, 2) == [(0, 63), (63, 126)]
    assert [b - a for a, b in stage_layers(126, 4)] == [31, 32, 32, 31]
    assert [b - a for a, b in stage_layers(126, 8)] == [15, 16, 16, 16, 16, 16, 16, 15]
    assert [b - a for a, b in stage_layers(32, 3)] == [11, 11, 10]
    assert stage_layers(32, 1) == [(0, 32)]


def test_the_scale_plan_puts_each_stage_on_a_node_of_its_own_with_no_over_commit():
    plan = plan_of(stack_raw("scale"))
    (w,) = [v for v in plan.vllm if v.multi_node]
    assert [(r.rank, r.node, len(r.gpus), r.layers) for r in w.ranks] == [(0, "h100-a", 8, (0, 63)), (1, "h100-b", 8, (63, 126))]
    # The stages hold the whole checkpoint between them; each GPU its stage's eighth.
    assert sum(w.stage_weights_bytes(s) for s in range(2)) == w.weights_bytes
    # 405.85 B parameters at 1 B, and 2 B for the 90.23 B vLLM keeps 16 bit (calibrated on its 57.75 GiB per GPU at TP 8,
    # vllm-project/vllm#6746): 462.02 GiB.
    assert w.weights_bytes == round(405.8533888e9 + 90.23e9)
    for r in w.ranks:
        assert all(s.weights_bytes == math.ceil(w.stage_weights_bytes(r.rank) / 8) for s in r.shares)
        assert w.kv_bytes_per_token_of(r.rank) == 2 * 63 * 1 * 128 * 2  # 63 layers, 8 KV heads over TP 8, bf16
    # Only the last stage samples (1024 rows x vocab 128256 x 4 B x 4 + 0.05 GiB = 2.01 GiB), but the profile peak is the
    # larger of forward pass and sampler, and the forward pass (8192 tokens x hidden 16384 x 2 B x 18 = 4.5 GiB) is the
    # larger on both stages: the stages hold the same weights (63 layers and one 16-bit end each), so the same KV cache.
    lead, last = (min(s.kv_bytes for s in r.shares) for r in w.ranks)
    assert all(s.memory.sampler_bytes == 0 for s in w.ranks[0].shares)
    assert all(s.memory.sampler_bytes == 1024 * 128256 * 4 * 4 + round(0.05 * GIB) for s in w.ranks[1].shares)
    assert all(s.memory.peak_bytes == 8192 * 16384 * 2 * 18 for r in w.ranks for s in r.shares)
    assert last == lead
    assert w.blocks.num_blocks == (last - w.margin_bytes) // (16 * 63 * 2 * 128 * 2)
    assert w.max_full_context_seqs >= 8  # the full 128k context, several sequences at once (README)
    for g in plan.gpus:
        assert g.allocated_bytes + plan.vllm_margin_bytes <= g.gpu.capacity_bytes, g.gpu
        assert len(g.pods) == 1  # exclusive: one pod per GPU
    pools = {p.name: p for p in plan.pools()}
    assert (pools["h100"].gpus, pools["h100"].gpus_used, pools["l40s"].gpus, pools["l40s"].gpus_used) == (16, 16, 12, 12)
    assert pools["l40s"].reserved_bytes == 4 * plan.gpus[-1].allocated_bytes > 0  # 4 of 12 8B replicas wait for KEDA


def test_tied_embeddings_are_built_on_the_first_and_the_last_stage():
    """vLLM builds a tied embedding matrix on both ends of the pipeline: the stages hold one copy more than the checkpoint."""
    raw = variant(lambda r: r["vllm"]["models"].update(granite={
        "model": "ibm-granite/granite-3.1-8b-instruct", "pool": "h100", "pipelineParallel": 2, "tensorParallel": 8, "maxModelLen": 8192,
        "cpu": 4, "memoryGiB": 32}) or r["nodes"].extend([{**r["nodes"][0], "name": f"h100-{c}"} for c in "cd"]), "scale")
    w = next(v for v in plan_of(raw).vllm if v.key == "granite")
    edge = 49155 * 4096 * 2
    assert sum(w.stage_weights_bytes(s) for s in range(2)) == w.weights_bytes + edge
    assert w.stage_weights_bytes(0) == w.stage_weights_bytes(1) == round((w.weights_bytes - edge) / 2) + edge


def test_one_node_would_hold_the_405b_but_barely_one_long_sequence():
    """What keeping the 128k context takes (README): on one node of 8 H100s the weights leave about one 128k sequence."""
    (problem,) = stack_problems(variant(lambda r: model(r).update(pipelineParallel=1), "scale"))
    # 0.92 x 79.18 GiB (72.85) - 462.02 GiB / 8 (57.75) - the forward peak 8192 x 16384 x 2 B x 18 (4.5) - 2.3 non-torch
    # at TP 8 - 1.9 CUDA graphs above 30B = 6.39 GiB; less the margin, in blocks of 16 x 126 layers x 2 x 128 x 2 B,
    # one null block back: 5610 blocks, 89760 tokens (the old, smaller terms left 124640), under 131072.
    assert problem.startswith(f"{M}.maxModelLen: vllm-llama-405b's KV cache (6.39 GiB per GPU, profiled, less the 1.00 GiB margin) "
                              "holds 5610 blocks of 16 tokens after the null block, 89760 tokens: less than one 131072-token")
    fp8 = plan_of(variant(lambda r: model(r).update(pipelineParallel=1, kvCacheDtype="fp8"), "scale"))
    assert next(w for w in fp8.vllm if w.key == "llama-405b").max_full_context_seqs == 1


def test_a_rank_with_no_node_refuses_the_whole_group_naming_the_key():
    raw = variant(lambda r: r.update(nodes=[n for n in r["nodes"] if n["name"] != "h100-b"]), "scale")
    (problem,) = [p for p in stack_problems(raw) if p.startswith(M)]
    assert problem.startswith(f"{M}.pipelineParallel: no node for rank 1 of vllm-llama-405b-0 (stage 2 of 2, layers 63-125)")
    # 0.92 x 79.18 GiB + the 1.6 GiB context of a model across GPUs + the 1 GiB margin = 75.45 GiB.
    assert "a node of its own in pool h100 with 8 GPUs that no other pod uses and no model is pinned to, each with 75.45 GiB free" in problem
    assert "Free GPUs that fit, per node of pool h100: h100-a has rank 0;" in problem and "the whole group is refused" in problem
    # A second replica finds both nodes' GPUs held by the first: refused from its rank 0, the first one stays placed.
    (second,) = [p for p in stack_problems(variant(lambda r: model(r).update(replicas=2), "scale")) if p.startswith(M)]
    assert second.startswith(f"{M}.pipelineParallel: no node for rank 0 of vllm-llama-405b-1 (stage 1 of 2, layers 0-62)")
    assert "per node of pool h100: h100-a 0 of 8, h100-b 0 of 8;" in second
    # Through the real program (the token stored secret, as `pulumi config set --secret` does): refused before any object.
    with pytest.raises(InvalidStack) as exc:
        run_secret_raw(raw, ["hfToken"])
    assert any(p.startswith(f"{M}.pipelineParallel: no node for rank 1") for p in exc.value.problems)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(model="meta-llama/Llama-3.1-8B-Instruct", pipelineParallel=33),
     f"{M}.pipelineParallel: 33 stages for meta-llama/Llama-3.1-8B-Instruct's 32 layers would leave a stage with no layer; use at most 32"),
    (lambda m: m.update(node="h100-a"), f"{M}.node: with pipelineParallel 2 each of a replica's 2 ranks goes on a node of its own"),
    (lambda m: m.update(autoscale={"maxReplicas": 2}), f"{M}.autoscale: a multi-node replica (pipelineParallel 2) is a "
                                                       "LeaderWorkerSet group"),
    (lambda m: (m.update(pipelineParallel=1, multiNode={"hostNetwork": True})), f"{M}.multiNode: applies to the ranks of a model on "
                                                                                "several nodes"),
    (lambda m: m.update(tensorParallel=3), f"{M}.tensorParallel: 3 does not divide 128 attention heads"),
])
def test_multi_node_mistakes_name_the_key(edit, message):
    problems = stack_problems(variant(lambda r: edit(model(r)), "scale"))
    assert any(p.startswith(message) for p in problems), problems


def three_nodes(r, mode="exclusive", cache="rwx"):
    r["nodes"].append({**r["nodes"][1], "name": "h100-c"})
    model(r).update(pipelineParallel=3)
    r["gpuSharing"]["mode"] = mode
    r["modelCache"] = {"mode": cache, "storageClassName": "longhorn", "storageClassReclaimPolicy": "Retain", "size": "1Ti"}


def test_more_than_one_worker_needs_pinning_and_a_cache_one_template_can_hold():
    problems = stack_problems(variant(lambda r: three_nodes(r, "visible-devices", "hostPath"), "scale"))
    assert any(p.startswith("llm-infra:gpuSharing.mode: visible-devices pins each GPU by name, but the 2 workers of "
                            f"{M} share one pod template") for p in problems), problems
    assert any(p.startswith("llm-infra:modelCache.mode: hostPath gives each node (or pod) its own claim") for p in problems), problems


def test_three_stages_render_workers_spread_over_their_planned_nodes():
    raw = variant(three_nodes, "scale")
    objects = run_secret_raw(raw, ["hfToken"]).objects()
    assert check_group(objects) == 3
    (lws,) = [o for o in objects if o["kind"] == "LeaderWorkerSet"]
    worker = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
    assert "nodeSelector" not in worker
    (term,) = worker["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["h100-b", "h100-c"]}]
    (anti,) = worker["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti == {"labelSelector": {"matchLabels": {"llm-infra/group": "vllm-llama-405b-0"}}, "topologyKey": "kubernetes.io/hostname"}
    assert [b - a for a, b in (r.layers for r in plan_of(raw).vllm[0].ranks)] == [42, 42, 42]


def test_the_leader_worker_set(scale):
    lws = scale.find("LeaderWorkerSet", "vllm-llama-405b-0")
    spec = lws["spec"]
    assert (spec["replicas"], spec["startupPolicy"], spec["leaderWorkerTemplate"]["size"]) == (1, "LeaderCreated", 2)
    assert lws["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=Available"  # pulumi up waits for the group
    assert spec["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader, worker = (spec["leaderWorkerTemplate"][t]["spec"] for t in ("leaderTemplate", "workerTemplate"))
    assert leader["nodeSelector"] == {"kubernetes.io/hostname": "h100-a"} and worker["nodeSelector"] == {"kubernetes.io/hostname": "h100-b"}
    (lc,), (wc,) = leader["containers"], worker["containers"]
    assert lc["args"][-1] == "--allow-deprecated-quantization"  # the checkpoint's fbgemm_fp8 is deprecated in vLLM 0.33
    assert "--headless" in wc["args"] and "--headless" not in lc["args"]
    assert wc["args"][wc["args"].index("--node-rank") + 1] == "$(LWS_WORKER_INDEX)"
    # The leader serves and is probed; the worker has no API, no port, no probe and no API key.
    assert lc["ports"][0]["containerPort"] == 8000 and "startupProbe" in lc and "VLLM_API_KEY" in env_of(lc)
    assert not any(k in wc for k in ("ports", "startupProbe", "readinessProbe", "livenessProbe")) and "VLLM_API_KEY" not in env_of(wc)
    # Each rank reads the weights from its own node's cache and gets /dev/shm for its 8 GPUs.
    claims = [next(v["persistentVolumeClaim"]["claimName"] for v in s["volumes"] if v["name"] == "models") for s in (leader, worker)]
    assert claims == ["model-cache-h100-a", "model-cache-h100-b"]
    assert all(next(v for v in s["volumes"] if v["name"] == "dshm")["emptyDir"]["sizeLimit"] == "32Gi" for s in (leader, worker))
    # The Service reaches leaders only.
    assert scale.find("Service", "vllm-llama-405b")["spec"]["selector"]["llm-infra/role"] == "leader"
    assert spec["leaderWorkerTemplate"]["leaderTemplate"]["metadata"]["labels"]["llm-infra/role"] == "leader"


def test_the_start_up_budget_covers_every_rank_downloading_the_checkpoint_and_loading_its_stage(scale):
    stack = stack_of(stack_raw("scale"))
    w = next(v for v in stack.plan.vllm if v.multi_node)
    t = stack.config.vllm
    largest = max(w.stage_weights_bytes(s) for s in range(2))
    budget = math.ceil(w.weights_bytes / (t.download_mib_per_second * MIB) + largest / (t.load_mib_per_second * MIB) + t.compile_seconds)
    assert largest < w.weights_bytes  # a rank loads its stage, not the whole checkpoint
    lc = scale.find("LeaderWorkerSet", "vllm-llama-405b-0")["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    assert env_of(lc)["VLLM_ENGINE_READY_TIMEOUT_S"] == str(budget) and budget > 2500
    assert lc["startupProbe"]["failureThreshold"] * lc["startupProbe"]["periodSeconds"] >= budget


def test_every_rank_s_command_line_passes_vllm_s_parser_and_multi_node_checks(scale):
    assert check_group(scale.objects()) == 2
    for o in scale.objects():  # the single-node pods too
        if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("vllm-"):
            ns = parse(o["spec"]["template"]["spec"]["containers"][0]["args"])
            assert ns.tensor_parallel_size == 1 and ns.nnodes is None


def test_the_parser_refuses_what_vllm_refuses():
    with pytest.raises(Refused, match="unrecognized arguments: --swap-space"):
        parse(["m", "--swap-space", "4"])
    with pytest.raises(Refused, match="invalid int value"):
        parse(["m", "--node-rank", "$(LWS_WORKER_INDEX)"])  # unexpanded: only the kubelet's expansion makes it a number
    with pytest.raises(Refused, match="unrecognized arguments"):
        parse(["m", "--tensor-parallel", "8"])  # vLLM would take the abbreviation; the render must not rely on it
    assert stack_problems(variant(lambda r: model(r).update(extraArgs=["--enable-prefix-cachin"]), "scale")) == [
        f"{M}.extraArgs[0]: '--enable-prefix-cachin' is not a `vllm serve` option of vLLM 0.33 (the server would exit with "
        "'unrecognized arguments'); did you mean --enable-prefix-caching?"]


@pytest.mark.parametrize("mode", ["dra", "visible-devices"])
def test_two_stages_pin_each_rank_s_gpus_in_every_mode(mode):
    def edit(r):
        r["gpuSharing"]["mode"] = mode
        for n in r["nodes"]:
            for g in n["gpus"]:
                g["uuid"] = f"GPU-{r['nodes'].index(n):08x}-0000-0000-0000-{g['index']:012x}"
    objects = run_secret_raw(variant(edit, "scale"), ["hfToken"]).objects()
    assert check_group(objects) == 2
    (lws,) = [o for o in objects if o["kind"] == "LeaderWorkerSet"]
    leader, worker = (lws["spec"]["leaderWorkerTemplate"][t]["spec"] for t in ("leaderTemplate", "workerTemplate"))
    if mode == "dra":
        # Claims carry a digest of the device they select: compare by GPU slot.
        assert [c["resourceClaimName"].rsplit("-", 1)[0] for c in worker["resourceClaims"]] == [f"h100-b-gpu-{i}" for i in range(8)]
        assert {o["metadata"]["name"].rsplit("-", 1)[0] for o in objects if o["kind"] == "ResourceClaim"} >= {f"h100-a-gpu-{i}" for i in range(8)}
    else:
        assert env_of(leader["containers"][0])["NVIDIA_VISIBLE_DEVICES"].split(",")[0] == "GPU-00000000-0000-0000-0000-000000000000"
        assert env_of(worker["containers"][0])["NVIDIA_VISIBLE_DEVICES"].split(",")[7] == "GPU-00000001-0000-0000-0000-000000000007"


def test_ranks_talk_to_each_other_on_any_port_and_nobody_else_reaches_them(scale):
    objects = scale.objects()
    policies = Policies(objects)
    pods = pod_templates(objects)
    ns = "llm-scale"
    leader = Pod(ns, pods["vllm-llama-405b-0"]["metadata"]["labels"])
    worker = Pod(ns, pods["vllm-llama-405b-0/worker"]["metadata"]["labels"])
    replica = Pod(ns, pods["vllm-llama-8b"]["metadata"]["labels"])
    stranger = Pod(ns, {"app": "stranger"})
    for port in (29501, 8000, 41234):  # the master port, the API, a port NCCL or a message queue picked
        assert policies.allowed(worker, leader, port, stack_ns=ns) and policies.allowed(leader, worker, port, stack_ns=ns)
        assert not policies.allowed(stranger, worker, port, stack_ns=ns) and not policies.allowed(replica, leader, port, stack_ns=ns)
    assert not policies.allowed(worker, replica, 8000, stack_ns=ns)  # the group's rule is its own


def test_quota_names_and_alerts_count_every_rank():
    stack = stack_of(stack_raw("scale"))
    from stacks.names import planned_objects
    from stacks.observability import alert_rules
    from stacks.quota import quota

    hard = quota(stack.config, stack.plan, stack.graph)
    assert hard["requests.nvidia.com/gpu"] == str(16 + 12 + 8)  # every rank's 8 and every 8B replica's 1, plus the largest pod
    assert hard["pods"] == str(2 + 12 + 1 + 1)  # ranks, replicas, cert-manager's solver, one rolling
    claims = {(c.kind, c.name): c for c in planned_objects(stack.config, stack.plan, stack.graph)}
    assert claims[("Service", "vllm-llama-405b-0")].controller and ("LeaderWorkerSet", "vllm-llama-405b-0") in claims
    (rule,) = [r for r in alert_rules(stack.config, stack.plan, stack.graph)
               if r.alert == "LlmServiceHasNoReadyPod" and dict(r.labels)["service"] == "vllm-llama-405b"]
    assert rule.expr == 'sum(kube_statefulset_status_replicas_ready{namespace="llm-scale", statefulset=~"vllm-llama-405b-0"}) == 0'


def test_a_name_the_leader_worker_set_s_service_would_take_is_refused():
    def edit(r):
        model(r, "llama-8b")["autoscale"]["maxReplicas"] = 11
        r["vllm"]["models"]["llama-405b-0"] = {k: v for k, v in model(r, "llama-8b").items() if k not in ("autoscale", "replicas")}
        r["vllm"]["models"]["llama-405b-0"]["servedName"] = "llama-8b-copy"  # its own: two models under one name are refused
    raw = variant(edit, "scale")
    assert any("makes Service llm-scale/vllm-llama-405b-0" in p for p in stack_problems(raw))


def test_host_network_and_rdma_are_opt_in_and_host_network_says_what_it_costs():
    raw = variant(lambda r: model(r).update(multiNode={"hostNetwork": True, "rdmaResource": "rdma/rdma_shared_device_a"}), "scale")
    run = run_secret_raw(raw, ["hfToken"])
    labels = run.find("Namespace", "llm-scale")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged" and labels["pod-security.kubernetes.io/warn"] == "restricted"
    spec = run.find("LeaderWorkerSet", "vllm-llama-405b-0")["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    (c,) = spec["containers"]
    assert c["resources"]["limits"]["rdma/rdma_shared_device_a"] == c["resources"]["requests"]["rdma/rdma_shared_device_a"] == "1"
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}  # an added capability does nothing for a non-root user
    default = run_secret_raw(stack_raw("scale"), ["hfToken"]).find("LeaderWorkerSet", "vllm-llama-405b-0")
    assert "hostNetwork" not in default["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
    rdma_only = run_secret_raw(variant(lambda r: model(r).update(multiNode={"rdmaResource": "rdma/ib"}), "scale"), ["hfToken"])
    assert rdma_only.find("Namespace", "llm-scale")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_perpod_cache_gives_each_rank_its_claim():
    raw = variant(lambda r: r.update(modelCache={"mode": "perPod", "storageClassName": "local-path", "provisioner": "rancher.io/local-path", "size": "1Ti"}),
                  "scale")
    run = run_secret_raw(raw, ["hfToken"])
    claims = {o["metadata"]["name"] for o in run.objects() if o["kind"] == "PersistentVolumeClaim"}
    assert {"model-cache-vllm-llama-405b-0-0", "model-cache-vllm-llama-405b-0-0-1"} <= claims
    lwt = run.find("LeaderWorkerSet", "vllm-llama-405b-0")["spec"]["leaderWorkerTemplate"]
    worker_claim = next(v for v in lwt["workerTemplate"]["spec"]["volumes"] if v["name"] == "models")
    assert worker_claim["persistentVolumeClaim"]["claimName"] == "model-cache-vllm-llama-405b-0-0-1"


def test_status_plans_one_row_per_rank():
    from tools.status import planned

    rows = planned(stack_of(stack_raw("scale")))
    assert (rows["vllm-llama-405b-0-0"].node, rows["vllm-llama-405b-0-0-1"].node) == ("h100-a", "h100-b")
    assert rows["vllm-llama-405b-0-0-1"].kind == "vllm-worker" and "vllm-llama-405b-0" not in rows


def test_a_model_key_too_long_for_the_worker_statefulset_is_refused():
    key = "m" * 44  # vllm-<key>-0 is 51 characters, its worker StatefulSet vllm-<key>-0-0 53
    raw = variant(lambda r: r["vllm"]["models"].update({key: r["vllm"]["models"].pop("llama-405b")}), "scale")
    assert any(p.startswith(f"llm-infra:vllm.models.{key}.pipelineParallel: LeaderWorkerSet vllm-{key}-0 makes the StatefulSet")
               for p in stack_problems(raw))
    def shorter(r):  # 52 characters: accepted, and so is every name made from it (the ranks' policy allow-ranks-<lws>)
        r["vllm"]["models"][key[:43]] = r["vllm"]["models"].pop("llama-405b")
        r["ingress"].pop("routes")
    assert any(w.multi_node for w in plan_of(variant(shorter, "scale")).vllm)


def test_no_other_pod_shares_a_rank_s_gpus_in_any_mode():
    """visible-devices lets pods share GPUs; a rank's GPUs stay its own (one slow GPU slows the whole group)."""
    def edit(r):
        r["gpuSharing"]["mode"] = "visible-devices"
        for i, n in enumerate(r["nodes"]):
            for g in n["gpus"]:
                g["uuid"] = f"GPU-{i:08x}-0000-0000-0000-{g['index']:012x}"
        model(r).update(gpuMemoryUtilization=0.6)  # room left on every H100 for a small model
        r["vllm"]["models"]["small"] = {"model": "meta-llama/Llama-3.1-8B-Instruct", "pool": "h100", "maxModelLen": 8192,
                                        "gpuMemoryUtilization": 0.3, "cpu": 4, "memoryGiB": 16}
    problems = stack_problems(variant(edit, "scale"))
    assert problems[0].startswith("llm-infra:vllm.models.small: no room for vllm-small")
    assert "(held whole by vllm-llama-405b-0, a multi-node replica)" in problems[0]


def test_ranks_on_the_host_network_never_share_a_node():
    """Their API and master ports are the node's: two groups' leaders on one node would collide."""
    def edit(r, host):
        model(r).update(tensorParallel=4, replicas=2, maxModelLen=32768, multiNode={"hostNetwork": host})
    shared = [sorted(r.node for r in w.ranks) for w in plan_of(variant(lambda r: edit(r, False), "scale")).vllm if w.multi_node]
    assert shared == [["h100-a", "h100-b"], ["h100-a", "h100-b"]]  # 4 GPUs each: both groups fit on the same two nodes
    problems = stack_problems(variant(lambda r: edit(r, True), "scale"))
    assert any(p.startswith(f"{M}.pipelineParallel: no node for rank 0 of vllm-llama-405b-1") and
               "h100-a has another group's rank on the host network" in p for p in problems), problems


def test_the_tightest_rank_decides_whether_the_share_fits():
    """The last stage also holds the sampler's profile run: at a low utilization it is the one that does not fit."""
    # The profile peak is the larger of forward pass and sampler, and at the 405B's default 1024 rows the forward pass
    # (8192 x 16384 x 2 B x 18 = 4.5 GiB) is larger on both stages, which then hold the same. 4096 rows make the
    # sampler's the larger (4096 x 128256 x 4 B x 4 + 0.05 = 7.88 GiB), on the last stage only. Per GPU, besides 28.88
    # GiB of weights, 2.3 non-torch and 1.9 CUDA graphs, the first stage needs 4.5 (37.58 in all), the last 7.88
    # (40.95): at 0.5 x 79.18 = 39.59 GiB only the last does not fit.
    (problem,) = [p for p in stack_problems(variant(lambda r: model(r).update(gpuMemoryUtilization=0.5, maxNumSeqs=4096), "scale"))
                  if p.startswith(M)]
    assert problem.startswith(f"{M}.gpuMemoryUtilization: vllm-llama-405b-0-0-1 does not fit its share of a GPU: 0.5 x 79.18 GiB "
                              "= 39.59 GiB, but weights need 28.88 GiB per GPU")
    assert "+ 12.08 GiB profile peak, non-torch memory and CUDA graphs" in problem  # 7.88 + 2.3 + 1.9
    assert "of stage 2's" in problem and "(layers 63-125) over tensorParallel 8" in problem and "or pipelineParallel" in problem


def test_replicas_no_node_can_take_are_named_in_one_problem():
    problems = [p for p in stack_problems(variant(lambda r: model(r).update(replicas=4), "scale")) if p.startswith(M)]
    assert len(problems) == 1 and problems[0].endswith("; the same for vllm-llama-405b-2, vllm-llama-405b-3")


@pytest.mark.parametrize("extra", [["--max-logprobs", "-1"], ["--compilation-config.cudagraph_mode", "FULL"], ["-O3"], ["-O", "3"],
                                   ["--enable_prefix_caching"], ["--speculative-config={\"method\": \"ngram\"}"]])
def test_extra_args_vllm_accepts_are_accepted(extra):
    assert not [p for p in _problems_or_none(variant(lambda r: model(r, "llama-8b").update(extraArgs=extra), "scale")) if "extraArgs" in p]


@pytest.mark.parametrize("extra, message", [
    (["-O.mode=3"], "vLLM's -O takes an optimization level 0-3"),
    (["-Ofast"], "vLLM's -O takes an optimization level 0-3"),
    (["--served_model_name.x", "y"], "repeats a typed setting"),  # vLLM would turn it into a second --served-model-name
    (["--max-logprobs.x", "3"], "--max-logprobs takes a plain value; only JSON config options take keys"),
    (["--compilation-config+", "v"], "is not a `vllm serve` option"),  # vLLM strips `+` from dotted keys only
    (["--max-logprobs", "-1e3"], "'-1e3' is not a `vllm serve` option"),  # argparse reads it as an option, not a number
])
def test_extra_args_vllm_refuses_are_refused(extra, message):
    problems = stack_problems(variant(lambda r: model(r, "llama-8b").update(extraArgs=extra), "scale"))
    assert any(p.startswith("llm-infra:vllm.models.llama-8b.extraArgs[") and message in p for p in problems), problems


def test_a_group_leaves_the_gpus_a_model_is_pinned_to():
    """Groups are placed first; a GPU another model is pinned to is not theirs to take (in any mode)."""
    def edit(r):
        ms = r["vllm"]["models"]
        del ms["llama-8b"]
        r["modelCache"] = {"mode": "rwx", "storageClassName": "longhorn", "storageClassReclaimPolicy": "Retain", "size": "1Ti"}
        ms["granite-pp"] = {"model": "ibm-granite/granite-3.1-8b-instruct", "pool": "l40s", "pipelineParallel": 2, "maxModelLen": 4096,
                            "gpuMemoryUtilization": 0.45, "cpu": 2, "memoryGiB": 8}
        ms["pinned"] = {"model": "meta-llama/Llama-3.1-8B-Instruct", "node": "l40s-1", "gpus": [0], "maxModelLen": 4096,
                        "gpuMemoryUtilization": 0.45, "cpu": 2, "memoryGiB": 8}
    plan = plan_of(variant(edit, "scale"))
    group = next(w for w in plan.vllm if w.key == "granite-pp")
    assert ("l40s-1", 0) not in {(r.node, g.index) for r in group.ranks for g in r.gpus}
    pinned = next(w for w in plan.vllm if w.key == "pinned")
    assert (pinned.node, [g.index for g in pinned.gpus]) == ("l40s-1", [0])


def test_each_refused_model_gets_its_own_problem():
    def edit(r):
        model(r).update(replicas=2)
        r["vllm"]["models"]["zz-granite"] = {"model": "ibm-granite/granite-3.1-8b-instruct", "pool": "h100", "pipelineParallel": 2,
                                            "tensorParallel": 8, "maxModelLen": 8192, "cpu": 4, "memoryGiB": 32}
    problems = stack_problems(variant(edit, "scale"))
    assert any(p.startswith(f"{M}.pipelineParallel: no node for rank 0 of vllm-llama-405b-1") for p in problems), problems
    assert "llm-infra:vllm.models.zz-granite.pipelineParallel: no nodes for vllm-zz-granite-0: every node of pool h100 that could " \
           "take a rank of it is taken" in problems


def test_the_max_model_len_problem_names_the_rank_with_the_fewest_blocks():
    """Stages differ in layers: 40 layers over 3 stages are 13/14/13, so the middle rank holds the fewest blocks."""
    def edit(r):
        r["modelCache"] = {"mode": "rwx", "storageClassName": "longhorn", "storageClassReclaimPolicy": "Retain", "size": "1Ti"}
        model(r, "llama-8b").update(replicas=2, autoscale={"maxReplicas": 3})
        r["vllm"]["models"]["granite-pp"] = {"model": "ibm-granite/granite-3.1-8b-instruct", "pool": "l40s", "pipelineParallel": 3,
                                            "gpuMemoryUtilization": 0.3, "maxModelLen": 131072, "cpu": 2, "memoryGiB": 8}
    (problem,) = [p for p in stack_problems(variant(edit, "scale")) if "granite-pp" in p]
    assert problem.startswith("llm-infra:vllm.models.granite-pp.maxModelLen: vllm-granite-pp-0-0-1's KV cache"), problem
    assert "raise gpuMemoryUtilization / tensorParallel / pipelineParallel" in problem


def _problems_or_none(raw) -> list[str]:
    from stacks.errors import ConfigError
    try:
        stack_of(raw)
        return []
    except ConfigError as exc:
        return exc.problems


def test_the_master_port_is_not_the_api_port():
    assert f"{M}.multiNode.masterPort: 8000 is the leader's API port; use another (vLLM's default is 29501)" in stack_problems(
        variant(lambda r: model(r).update(multiNode={"masterPort": 8000}), "scale"))
