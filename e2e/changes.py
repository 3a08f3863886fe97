"""The changes users make to a running stack, each applied with one `pulumi up` and no manual step (make e2e).

Each change edits what a user edits (the stack file, `pulumi config set --secret`, or the cluster's hardware for a
swapped GPU), then `pulumi up` must complete, the cluster must match the plan again (e2e/checks.py) and a preview must
find nothing left to change. Each also checks what the change is about: the object that must be kept is the same
object (its uid), the pods that must restart did.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubernetes import client, config
from kubernetes.utils.quantity import parse_quantity
from pulumi import automation as auto

from e2e import checks
from stacks.edge import API_KEY_KEY, API_KEY_SECRET
from stacks.errors import ConfigError
from stacks.loader import stack_from
from tools.offline import stack_config

if TYPE_CHECKING:
    from e2e.run import StackRun


@dataclass
class Change:
    what: str
    apply: Callable[["StackRun"], dict[str, Any]]
    """Makes the change; returns what `verify` compares after the up."""
    verify: Callable[["StackRun", dict[str, Any]], str]
    """Raises CheckFailed, or says what it saw."""


def _apis():
    config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    return client.CoreV1Api(), client.AppsV1Api(), client.CustomObjectsApi()


def _raw(run: "StackRun") -> dict[str, Any]:
    values, _ = stack_config(run.name, run.stack_file)
    return {k.split(":", 1)[1]: json.loads(v) if v[:1] in "{[" else v for k, v in values.items() if k.startswith("llm-infra:")}


def _fits(run: "StackRun", edit: Callable[[dict], None]) -> bool:
    raw = copy.deepcopy(_raw(run))
    edit(raw)
    try:
        stack_from(raw, frozenset({"llm-infra:apiKey", "llm-infra:hfToken"}))
    except ConfigError:
        return False
    return True


def _uid(kind: str, ns: str, name: str) -> str:
    core, apps, _ = _apis()
    obj = apps.read_namespaced_deployment(name, ns) if kind == "Deployment" else core.read_persistent_volume(name)
    return obj.metadata.uid


def _ns(run: "StackRun") -> str:
    return _raw(run).get("namespace", "llama3-multi-adapter")


def _pod_uids(ns: str, selector: str) -> set[str]:
    core, _, _ = _apis()
    return {p.metadata.uid for p in core.list_namespaced_pod(ns, label_selector=selector).items}


def _same(run: "StackRun", before: dict[str, Any], what: str) -> str:
    now = _uid("Deployment", _ns(run), before["deployment"])
    if now != before["uid"]:
        raise checks.CheckFailed(f"{run.name}: {what}: Deployment {before['deployment']} was replaced (uid {before['uid']} -> {now})")
    return f"Deployment {before['deployment']} kept (uid {now[:8]})"


# -- the changes ------------------------------------------------------------------------------------------------


def max_model_len(key: str) -> Change:
    def apply(run):
        def edit(raw):
            m = raw["vllm"]["models"][key]
            m["maxModelLen"] = int(m["maxModelLen"]) // 2
        run.edit(edit)
        return {"deployment": f"vllm-{key}", "uid": _uid("Deployment", _ns(run), f"vllm-{key}"),
                "want": str(int(_raw(run)["vllm"]["models"][key]["maxModelLen"]))}

    def verify(run, before):
        _, apps, _ = _apis()
        args = apps.read_namespaced_deployment(before["deployment"], _ns(run)).spec.template.spec.containers[0].args
        got = args[args.index("--max-model-len") + 1]
        if got != before["want"]:
            raise checks.CheckFailed(f"{run.name}: maxModelLen: the Deployment runs --max-model-len {got}, not {before['want']}")
        return f"--max-model-len {got}; " + _same(run, before, "maxModelLen")
    return Change(f"vllm.models.{key}.maxModelLen halved", apply, verify)


def replicas(path: tuple[str, ...], first: str, count: int) -> Change:
    """`replicas` of a vLLM model or an Ollama adapter to `count`: the first replica's Deployment is never renamed."""
    def apply(run):
        def edit(raw):
            node = raw
            for p in path:
                node = node[p]
            node["replicas"] = count
        run.edit(edit)
        return {"deployment": first, "uid": _uid("Deployment", _ns(run), first)}

    def verify(run, before):
        # vLLM: a Deployment per replica (each pinned to its own GPUs); Ollama: one Deployment with `replicas` pods.
        _, apps, _ = _apis()
        deps = {d.metadata.name: d.status.available_replicas or 0 for d in apps.list_namespaced_deployment(_ns(run)).items
                if d.metadata.name == first or (d.metadata.name.startswith(f"{first}-") and d.metadata.name[len(first) + 1:].isdigit())}
        if sum(deps.values()) != count:
            raise checks.CheckFailed(f"{run.name}: replicas {count}: available pods per Deployment {deps}")
        return f"available pods {deps}; " + _same(run, before, "replicas")
    return Change(f"{'.'.join(path)}.replicas -> {count}", apply, verify)


def shield(on: bool, saved: dict[str, Any]) -> Change:
    def apply(run):
        def edit(raw):
            # The agents that asked for the shield follow it (an agent with safety and no shield is refused).
            if on:
                raw["llamaStack"]["safety"] = saved["safety"]
                for name, agent in raw.get("agents", {}).items():
                    agent.pop("safety", None)
                    if saved["agents"][name] is not None:
                        agent["safety"] = saved["agents"][name]
            else:
                saved["safety"] = raw["llamaStack"].pop("safety")
                saved["agents"] = {n: a.get("safety") for n, a in raw.get("agents", {}).items()}
                for agent in raw.get("agents", {}).values():
                    if agent.get("safety", True):
                        agent["safety"] = False
        run.edit(edit)
        guard = f"vllm-{saved['safety']['model']}"
        return {"deployment": guard, "uid": _uid("Deployment", _ns(run), guard)}

    def verify(run, before):
        return _same(run, before, "shield")
    return Change(f"llamaStack.safety {'on' if on else 'off'}", apply, verify)


def rotate_api_key() -> Change:
    selector = "app.kubernetes.io/component in (model,orchestrator)"

    def apply(run):
        new = f"e2e-canary-apiKey-{secrets.token_hex(16)}"
        before = {"pods": _pod_uids(_ns(run), selector), "key": new}
        run.step("pulumi config set --secret apiKey (rotated)",
                 lambda: run.stack.set_config("llm-infra:apiKey", auto.ConfigValue(new, secret=True)))
        run.canaries["apiKey (rotated)"] = new
        return before

    def verify(run, before):
        core, _, _ = _apis()
        import base64
        secret = core.read_namespaced_secret(API_KEY_SECRET, _ns(run))
        value = base64.b64decode(secret.data[API_KEY_KEY]).decode()
        if value != before["key"]:
            raise checks.CheckFailed(f"{run.name}: apiKey rotated, but the cluster's Secret holds another value")
        now = _pod_uids(_ns(run), selector)
        kept = now & before["pods"]
        if not now and not before["pods"]:
            return "the Secret holds the new key; no pod reads it at start (the ingress checks it)"
        if kept or not now:
            raise checks.CheckFailed(f"{run.name}: apiKey rotated, but {len(kept)} of {len(now)} serving pods did not restart")
        return f"the Secret holds the new key; all {len(now)} serving pods restarted"
    return Change("apiKey rotated", apply, verify)


def replace_gpu_uuids() -> Change:
    """The GPUs are swapped: the DRA driver publishes the new UUIDs and the stack file is given them."""
    def apply(run):
        _, _, custom = _apis()
        new_uuid: dict[str, str] = {}

        def edit(raw):
            for node in raw["nodes"]:
                for g in node["gpus"]:
                    old = g["uuid"]
                    g["uuid"] = new_uuid[old] = f"GPU-{secrets.token_hex(4)}-0000-0000-0000-{secrets.token_hex(6)}"
        run.edit(edit)
        for s in custom.list_cluster_custom_object("resource.k8s.io", "v1", "resourceslices")["items"]:
            for d in s["spec"]["devices"]:
                uuid = d.get("attributes", {}).get("uuid", {}).get("string")
                if uuid in new_uuid:
                    d["attributes"]["uuid"]["string"] = new_uuid[uuid]
            s["spec"]["pool"]["generation"] += 1
            custom.replace_cluster_custom_object("resource.k8s.io", "v1", "resourceslices", s["metadata"]["name"], s)
        return {"uuids": sorted(new_uuid.values())}

    def verify(run, before):
        return f"claims allocated to the {len(before['uuids'])} new UUIDs (checked with the plan)"
    return Change("GPU UUIDs replaced (GPUs swapped)", apply, verify)


def raise_cache_size() -> Change:
    def apply(run):
        pvs = checks.cache_volumes()

        def edit(raw):
            size = parse_quantity(raw.get("modelCache", {}).get("size", "100Gi"))
            raw.setdefault("modelCache", {})["size"] = f"{int(size / 2**30) + 100}Gi"
        run.edit(edit)
        return {"pvs": pvs, "size": _raw(run)["modelCache"]["size"]}

    def verify(run, before):
        core, _, _ = _apis()
        now = {pv.metadata.name: pv for pv in core.list_persistent_volume().items}
        for name, uid in before["pvs"].items():
            pv = now.get(name)
            if (pv is None or pv.metadata.uid != uid or parse_quantity(pv.spec.capacity["storage"]) != parse_quantity(before["size"])
                    or pv.status.phase != "Bound"):
                raise checks.CheckFailed(f"{run.name}: modelCache.size: PersistentVolume {name} is "
                                         f"{'gone' if pv is None else (pv.metadata.uid, pv.spec.capacity, pv.status.phase)}")
        return f"{len(before['pvs'])} PersistentVolumes kept, bound, capacity {before['size']}"
    return Change("modelCache.size raised", apply, verify)


def move_cache_dir() -> Change:
    """modelCache.hostPath moved: new volumes and claims the pods move to; the old ones stay with their data."""
    def apply(run):
        old = checks.cache_volumes()
        run.edit(lambda raw: raw.setdefault("modelCache", {}).update(hostPath="/srv/llm-models"))
        return {"old": old}

    def verify(run, before):
        core, _, _ = _apis()
        now = {pv.metadata.name: pv for pv in core.list_persistent_volume().items}
        kept = [n for n, uid in before["old"].items() if n in now and now[n].metadata.uid == uid]
        new = [pv for n, pv in now.items() if n not in before["old"]]
        if len(kept) != len(before["old"]) or len(new) != len(before["old"]):
            raise checks.CheckFailed(f"{run.name}: modelCache.hostPath moved: kept {kept}, new {[p.metadata.name for p in new]}")
        if {pv.spec.host_path.path for pv in new} != {"/srv/llm-models"} or any(pv.status.phase != "Bound" for pv in new):
            raise checks.CheckFailed(f"{run.name}: modelCache.hostPath moved: new volumes {[(p.metadata.name, p.status.phase) for p in new]}")
        return f"{len(new)} new volumes on /srv/llm-models Bound; the {len(kept)} old ones retained with their data"
    return Change("modelCache.hostPath moved", apply, verify)


# -- which changes a stack gets ---------------------------------------------------------------------------------


def _at(raw: dict, path: tuple[str, ...]) -> dict:
    for p in path:
        raw = raw[p]
    return raw


def remove(path: tuple[str, ...], saved: dict[str, Any]) -> Change:
    """A model or adapter taken out of the stack (its objects deleted), to make room for another's replica."""
    def apply(run):
        run.edit(lambda raw: saved.update(spec=_at(raw, path[:-1]).pop(path[-1])))
        return {}

    def verify(run, before):
        _, apps, _ = _apis()
        names = {d.metadata.name for d in apps.list_namespaced_deployment(_ns(run)).items}
        gone = _deployment_of(path)
        if gone in names:
            raise checks.CheckFailed(f"{run.name}: {'.'.join(path)} removed, but Deployment {gone} is still there")
        return f"Deployment {gone} deleted"
    return Change(f"{'.'.join(path)} removed", apply, verify)


def add(path: tuple[str, ...], saved: dict[str, Any], name: str) -> Change:
    """A model or adapter added (the one removed before, under `name`)."""
    new = (*path[:-1], name)

    def apply(run):
        spec = copy.deepcopy(saved["spec"])
        if path[0] == "ollama":
            spec["file"] = f"adapters/{name}.gguf"
        run.edit(lambda raw: _at(raw, path[:-1]).update({name: spec}))
        return {}

    def verify(run, before):
        _, apps, _ = _apis()
        d = apps.read_namespaced_deployment(_deployment_of(new), _ns(run))
        return f"Deployment {d.metadata.name}: {d.status.available_replicas} of {d.spec.replicas} available"
    return Change(f"{'.'.join(new)} added", apply, verify)


def _deployment_of(path: tuple[str, ...]) -> str:
    return f"vllm-{path[-1]}" if path[0] == "vllm" else f"ollama-adapter-{path[-1]}"


def _replica_changes(run: "StackRun", raw: dict[str, Any]) -> list[Change]:
    """replicas 1 -> 2 -> 1 of a model or adapter, where the plan has room; if none has, another is removed first and
    added back after (an Ollama adapter under a new name): removing and adding are changes users make too."""
    models = (raw.get("vllm") or {}).get("models", {})
    adapters = (raw.get("ollama") or {}).get("adapters", {})
    paths = [("vllm", "models", k) for k, m in sorted(models.items())
             if int(m.get("pipelineParallel", 1)) == 1 and "autoscale" not in m and int(m.get("replicas", 1)) == 1]
    paths += [("ollama", "adapters", a) for a, s in sorted(adapters.items()) if int(s.get("replicas", 1)) == 1]

    def grow(path):
        return lambda r: _at(r, path).update(replicas=2)

    def cycle(path):
        return [replicas(path, _deployment_of(path), 2), replicas(path, _deployment_of(path), 1)]
    for path in paths:
        if _fits(run, grow(path)):
            return cycle(path)
    for other in paths:
        for path in paths:
            if path != other and _fits(run, lambda r, o=other, p=path: (_at(r, o[:-1]).pop(o[-1]), grow(p)(r))):
                saved: dict[str, Any] = {}
                back = other[-1] if other[0] == "vllm" else "translation"
                return [remove(other, saved), *cycle(path), add(other, saved, back)]
    return []


def plan_for(run: "StackRun") -> list[Change]:
    raw = _raw(run)
    out: list[Change] = []
    models = (raw.get("vllm") or {}).get("models", {})
    single = sorted(k for k, m in models.items() if int(m.get("pipelineParallel", 1)) == 1 and "autoscale" not in m
                    and int(m.get("replicas", 1)) == 1)
    if single:
        out.append(max_model_len(single[0]))
    out += _replica_changes(run, raw)
    if (raw.get("llamaStack") or {}).get("safety"):
        saved: dict[str, Any] = {}
        out += [shield(False, saved), shield(True, saved)]
    if "apiKey" in run.canaries:
        out.append(rotate_api_key())
    if (raw.get("gpuSharing") or {}).get("mode") == "dra":
        out.append(replace_gpu_uuids())
    out.append(raise_cache_size())
    if (raw.get("modelCache") or {}).get("mode", "hostPath") == "hostPath":
        out.append(move_cache_dir())
    return out
