"""What `make e2e` checks on the cluster after each `pulumi up`, and that no secret leaked.

- Every Deployment has the replicas it asks for available; every pod is Running and Ready on the node the plan chose
  (tools/status.py's reading of the plan), and under `dra` each GPU claim is allocated the device whose `uuid` the
  plan named; the namespace enforces its Pod Security level; the ResourceQuota's use is within its hard limits.
- The canary secrets, as they are and base64-encoded (as a Secret's `data` holds them), appear in no `pulumi stack
  export`, no stack output, no CLI output and no file the run wrote (the state among them), except the cluster's own
  storage (etcd holds Secrets as the API server stores them).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from typing import TYPE_CHECKING

from kubernetes import client, config
from kubernetes.utils.quantity import parse_quantity

from components.topology import pod_security_level
from tools import status

if TYPE_CHECKING:
    from e2e.run import StackRun


class CheckFailed(Exception):
    pass


def _apis():
    config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    return client.CoreV1Api(), client.AppsV1Api(), client.CustomObjectsApi()


def _problems(run: "StackRun") -> tuple[list[str], list[str]]:
    core, apps, custom = _apis()
    stack = status.load(run.name, run.stack_file)
    ns = stack.config.namespace
    plan = status.planned(stack)
    problems, notes = [], []
    for d in apps.list_namespaced_deployment(ns).items:
        want = d.spec.replicas or 0
        have = d.status.available_replicas or 0
        if have != want:
            problems.append(f"Deployment {d.metadata.name}: {have} of {want} replicas available")
    pods = core.list_namespaced_pod(ns).items
    for pod in pods:
        labels = pod.metadata.labels or {}
        owner = pod.metadata.name if pod.metadata.name in plan else labels.get("llm-infra/pod") or labels.get("app.kubernetes.io/instance", "")
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if pod.status.phase != "Running" or not ready:
            problems.append(f"pod {pod.metadata.name}: {pod.status.phase}, ready {ready}")
        if owner in plan and pod.spec.node_name != plan[owner].node:
            problems.append(f"pod {pod.metadata.name}: on {pod.spec.node_name}, planned on {plan[owner].node}")
    notes.append(f"{len(pods)} pods Running and Ready on their planned nodes")
    if stack.config.gpu_sharing.mode == "dra":
        slices = custom.list_cluster_custom_object("resource.k8s.io", "v1", "resourceslices")["items"]
        attrs = {(s["spec"]["pool"]["name"], d["name"]): d.get("attributes", {}) for s in slices for d in s["spec"].get("devices", [])}

        def selected(a: dict) -> str | None:  # what the plan selects a GPU by: its uuid, else its PCI bus id
            return (a.get("uuid") or a.get("resource.kubernetes.io/pciBusID") or {}).get("string")
        gpus = {g.gpu.claim_name: g for g in stack.plan.used_gpus()}
        for claim in custom.list_namespaced_custom_object("resource.k8s.io", "v1", ns, "resourceclaims")["items"]:
            name = claim["metadata"]["name"]
            results = ((claim.get("status") or {}).get("allocation") or {}).get("devices", {}).get("results", [])
            got = [selected(attrs.get((r["pool"], r["device"]), {})) for r in results]
            want = (gpus[name].gpu.uuid or gpus[name].gpu.pci_bus_id) if name in gpus else "(a claim the plan does not have)"
            if got != [want]:
                problems.append(f"ResourceClaim {name}: allocated {got or 'nothing'}, the plan named {want}")
            users = len((claim.get("status") or {}).get("reservedFor") or [])
            notes.append(f"ResourceClaim {name} -> {got[0] if got else '-'} (reserved for {users} pods)")
    level = (core.read_namespace(ns).metadata.labels or {}).get("pod-security.kubernetes.io/enforce")
    if level != pod_security_level(stack.plan):
        problems.append(f"namespace {ns}: Pod Security enforce label is {level!r}, not {pod_security_level(stack.plan)!r}")
    for q in core.list_namespaced_resource_quota(ns).items:
        for res, hard in sorted((q.status.hard or {}).items()):
            used = (q.status.used or {}).get(res, "0")
            if parse_quantity(used) > parse_quantity(hard):
                problems.append(f"ResourceQuota {q.metadata.name}: {res} used {used} > hard {hard}")
        notes.append(f"ResourceQuota {q.metadata.name}: " + ", ".join(
            f"{r} {(q.status.used or {}).get(r, '0')}/{h}" for r, h in sorted((q.status.hard or {}).items()) if r in ("pods", "requests.cpu", "requests.memory")))
    return problems, notes


def unschedulable(namespace: str, for_seconds: float = 45) -> list[str]:
    """Pods the scheduler has refused for a while, with its reason: `pulumi up` would wait out their budget."""
    core, _, _ = _apis()
    out = []
    now = time.time()
    for pod in core.list_namespaced_pod(namespace).items:
        for c in pod.status.conditions or []:
            since = c.last_transition_time.timestamp() if c.last_transition_time else now
            if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable" and now - since > for_seconds:
                out.append(f"pod {pod.metadata.name}: {c.message}")
    return out


def cache_volumes() -> dict[str, str]:
    """PersistentVolume name -> uid."""
    core, _, _ = _apis()
    return {pv.metadata.name: pv.metadata.uid for pv in core.list_persistent_volume().items}


def same_volumes(run: "StackRun", before: dict[str, str]) -> None:
    """After `pulumi destroy` and `pulumi up`, the model cache is the same volumes, bound again."""
    core, _, _ = _apis()
    now = {pv.metadata.name: pv for pv in core.list_persistent_volume().items}
    for name, uid in before.items():
        pv = now.get(name)
        if pv is None or pv.metadata.uid != uid or pv.status.phase != "Bound":
            raise CheckFailed(f"{run.name}: after destroy + up, PersistentVolume {name} is "
                              f"{'gone' if pv is None else f'uid {pv.metadata.uid} (was {uid}), {pv.status.phase}'}")
    run.say(f"  after destroy + up: the {len(before)} cache PersistentVolumes are the same objects, Bound")


def converged(run: "StackRun", timeout: float = 120, quiet: bool = False) -> None:
    """The cluster matches the plan (pods become Ready a moment after their Deployment is created)."""
    deadline = time.monotonic() + timeout
    while True:
        problems, notes = _problems(run)
        if not problems:
            break
        if time.monotonic() > deadline:
            raise CheckFailed(f"{run.name}: the cluster did not converge:\n  " + "\n  ".join(problems))
        time.sleep(2)
    if quiet:
        return
    for n in notes:
        run.say(f"  {n}")
    status.main(["--stack", run.name, "--config", str(run.stack_file), "--timeout", "1"])
    sys.stdout.flush()


def no_canary(run: "StackRun") -> None:
    """No secret in plain text anywhere the run can read."""
    # The CLI's `pulumi stack export` as a user runs it. Not Stack.export_stack(): the Automation API exports with
    # --show-secrets (pulumi/automation/_local_workspace.py), which decrypts every secret on purpose.
    exported = run.stack.workspace._run_pulumi_cmd_sync(["stack", "export", "--stack", run.name]).stdout
    outputs = json.dumps({k: v.value for k, v in run.stack.outputs().items() if not v.secret}, default=str)
    places = {"pulumi stack export": exported, "stack outputs": outputs, "CLI output": "\n".join(run.log)}
    for path in run.work.rglob("*"):
        if path.is_file() and "etcd" not in path.relative_to(run.work).parts:
            places[str(path.relative_to(run.work))] = path.read_bytes().decode("utf-8", "replace")
    forms = {key: (value, base64.b64encode(value.encode()).decode()) for key, value in run.canaries.items()}
    leaks = [f"{key} in {where}" for key, values in forms.items() for where, text in places.items() if any(v in text for v in values)]
    if leaks:
        raise CheckFailed(f"{run.name}: secrets in plain text: {', '.join(leaks)}")
    run.say(f"  no canary ({', '.join(run.canaries) or 'no secrets'}) in the state export, outputs, CLI output or "
            f"{len(places) - 3} files")
