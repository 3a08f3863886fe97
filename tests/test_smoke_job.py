"""The in-cluster smoke Job (`smoke.job`): rendered only on request, from the service graph, restricted like every pod,
let through by the network policies to exactly the Services it checks, and its script runs alone (Python and httpx)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.config.smoke import JOB_NAME
from stacks.edge import SERVICE_LABEL, pod_port, pod_service
from stacks.quota import quota
from tests.conftest import problems_of, run_secret_raw, stack_of, stack_raw, variant
from tests.netpol import Pod, Policies, pods_of
from tests.standin import StandIn
from tests.test_pod_security import restricted_violations
from tests.test_validate import planned_names, rendered_names, validate_all
from tools import smoke

ON = {"job": True}


def with_job(stack: str, edit=None) -> dict:
    def change(r):
        r["smoke"] = dict(ON)
        if edit:
            edit(r)
    return variant(change, stack)


@pytest.fixture(scope="module")
def prod():
    raw = with_job("prod")
    return raw, stack_of(raw), run_secret_raw(raw, ["hfToken"]).objects()


def find(objects, kind):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == JOB_NAME)


def test_the_job_renders_only_on_request(prod):
    _, _, objects = prod
    assert find(objects, "Job") and find(objects, "ConfigMap")
    for stack in ("prod", "lab"):
        off = run_secret_raw(stack_raw(stack), ["hfToken"]).objects()
        assert not [o for o in off if o["metadata"]["name"] == JOB_NAME or o["kind"] == "Job"], stack


def test_it_checks_every_service_of_the_graph_with_make_smokes_own_script(prod):
    raw, stack, objects = prod
    data = find(objects, "ConfigMap")["data"]
    assert json.loads(data["services.json"]) == {"services": stack.graph.services()}
    assert set(json.loads(data["services.json"])["services"]) == set(stack.graph.endpoints)
    assert data["smoke.py"] == Path(smoke.__file__).read_text()
    job = find(objects, "Job")
    assert job["metadata"]["namespace"] == raw["namespace"] and job["spec"]["backoffLimit"] == 0
    assert job["metadata"]["annotations"]["pulumi.com/replaceUnready"] == "true"
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["python3", "/smoke/smoke.py", "--endpoints", "/smoke/services.json"]
    # Llama Stack's image, on the node that pulled it; the stack's key for vLLM, from its Secret.
    assert c["image"] == stack.config.llama_stack.image
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": stack.graph.llama_stack.node}
    env = {e["name"]: e for e in c["env"]}
    assert env["API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llm-infra-api-key", "key": "api-key"}
    assert pod["volumes"][0]["configMap"]["name"] == JOB_NAME and pod["restartPolicy"] == "Never"


def test_a_changed_service_list_changes_the_pod_template():
    """The template is immutable: a new hash in it replaces the Job, so the checks run again."""
    def hash_of(raw):
        job = find(run_secret_raw(raw, ["hfToken"]).objects(), "Job")
        return job["spec"]["template"]["metadata"]["annotations"]["llm-infra/config-hash"]

    fewer = with_job("prod", lambda r: r["agents"].clear() or r["llamaStack"]["models"].pop())
    assert hash_of(with_job("prod")) != hash_of(fewer)


def test_a_stack_without_llama_stack_runs_it_in_the_vllm_image_and_ollama_only_is_refused():
    raw = with_job("lab")
    stack = stack_of(raw)
    pod = find(run_secret_raw(raw, ["hfToken"]).objects(), "Job")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == stack.config.vllm.image
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": stack.plan.vllm[0].node}
    (problem,) = problems_of(with_job("dev"))
    assert problem.startswith("llm-infra:smoke.job: the Job runs in the Llama Stack or vLLM image") and "make smoke" in problem


def test_the_pod_is_restricted_and_the_objects_pass_the_schema(prod):
    raw, _, objects = prod
    pod = find(objects, "Job")["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    psc = pod["securityContext"]
    assert (psc["runAsUser"], psc["fsGroup"]) == (10001, 10001) and pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    validate_all([o for o in objects if o["metadata"]["name"] == JOB_NAME or o["kind"] == "NetworkPolicy"])


def test_the_name_registry_and_the_quota_count_it(prod):
    raw, stack, _ = prod
    assert {("Job", raw["namespace"], JOB_NAME), ("ConfigMap", raw["namespace"], JOB_NAME)} <= planned_names(raw, {"llm-infra:hfToken"})
    assert planned_names(raw, {"llm-infra:hfToken"}) == rendered_names(run_secret_raw(raw, ["hfToken"]))
    off = stack_of(stack_raw("prod"))
    assert int(quota(stack.config, stack.plan, stack.graph)["pods"]) == int(quota(off.config, off.plan, off.graph)["pods"]) + 1


def test_the_network_policies_let_it_call_every_service_and_nothing_else(prod):
    raw, stack, objects = prod
    ns = raw["namespace"]
    policies, pods = Policies(objects), pods_of(objects)
    job = Pod(ns, find(objects, "Job")["spec"]["template"]["metadata"]["labels"])
    assert job.labels[SERVICE_LABEL] == JOB_NAME
    for name, ep in stack.graph.endpoints.items():
        server = pods[stack.graph.endpoints[pod_service(ep)].workloads[0]]
        assert policies.allowed(job, server, pod_port(ep), stack_ns=ns), name
        assert not policies.allowed(job, server, 22, stack_ns=ns), name
        assert not policies.allowed(server, job, 8000, stack_ns=ns), name
    # Without smoke.job the same pod reaches nothing.
    off = run_secret_raw(stack_raw("prod"), ["hfToken"]).objects()
    off_pods = pods_of(off)
    assert not any(Policies(off).allowed(job, p, port, stack_ns=ns) for p in off_pods.values() for port in (8000, 8321, 11434))


def test_the_configmaps_script_runs_alone_with_only_httpx(prod, tmp_path):
    """What the Job runs: the ConfigMap's two files, in a Python that has httpx but not this project (`-I`: no cwd, no
    PYTHONPATH on sys.path), against a stand-in for a vLLM Service."""
    _, _, objects = prod
    data = find(objects, "ConfigMap")["data"]
    served = StandIn("llama-3b").start()
    try:
        (tmp_path / "smoke.py").write_text(data["smoke.py"])
        (tmp_path / "services.json").write_text(json.dumps(
            {"services": {"vllm-llama-3b": {"kind": "vllm", "url": served.base_url, "models": ["llama-3b"]}}}))
        done = subprocess.run([sys.executable, "-I", "smoke.py", "--endpoints", "services.json", "--timeout", "10"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, env={"KUBERNETES_SERVICE_HOST": "10.96.0.1"})
    finally:
        served.stop()
    assert done.returncode == 0, done.stderr
    assert "2 checks ok, 0 failed" in done.stdout
    assert [r["path"] for r in served.requests] == ["/v1/models", "/v1/chat/completions"]


def test_the_job_lands_where_its_image_is_taking_that_workloads_tolerations_and_node_labels():
    """The node it shares with Llama Stack may carry a taint Llama Stack tolerates: the Job must tolerate it too, or it
    stays Pending and `pulumi up` waits out the Job's await."""
    toleration = {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}
    raw = with_job("prod", lambda r: r["llamaStack"].update(tolerations=[toleration], nodeSelector={"pool": "cpu"}))
    job = find(run_secret_raw(raw, ["hfToken"]).objects(), "Job")
    spec = job["spec"]["template"]["spec"]
    assert {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "a100-node", "pool": "cpu"}


def test_the_plan_counts_the_jobs_pod_on_its_node():
    """Its 100m CPU and 128 MiB are planned like any pod's: a node with no room left for them is refused, not a Job that
    can never be scheduled."""
    before = next(n for n in stack_of(variant(lambda r: None, "prod")).plan.nodes if n.node.name == "a100-node")
    after = next(n for n in stack_of(with_job("prod")).plan.nodes if n.node.name == "a100-node")
    assert round(after.cpu_requests - before.cpu_requests, 3) == 0.1 and JOB_NAME in after.pods
    assert round((after.memory_requests_gib - before.memory_requests_gib) * 1024) == 128
    from stacks.errors import ConfigError
    full = with_job("prod", lambda r: r["nodes"][0].update(cpu=r["nodes"][0]["reserve"]["cpu"] + before.cpu_requests))
    with pytest.raises(ConfigError) as exc:
        stack_of(full)
    assert any("pods request 42.1 CPU" in p for p in exc.value.problems), exc.value.problems
