"""ModelCache: the three storage modes, and that model data survives `pulumi destroy`."""

from __future__ import annotations

import hashlib

from tests.conftest import run_raw, stack_raw, variant

NS = "llama3-multi-adapter"


def claims_mounted(run):
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
            for o in run.objects() if o["kind"] == "Deployment"}


def test_host_path_pv_shared_by_every_pod_and_retained(dev_run):
    pv = dev_run.find("PersistentVolume", f"{NS}-model-cache-workstation")
    assert pv["spec"]["hostPath"] == {"path": "/var/lib/llm-models", "type": "DirectoryOrCreate"}
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["claimRef"] == {"namespace": NS, "name": "model-cache-workstation"}
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert (term["key"], term["operator"], term["values"]) == ("kubernetes.io/hostname", "In", ["workstation"])
    pvc = dev_run.find("PersistentVolumeClaim", "model-cache-workstation")
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"] and pvc["spec"]["storageClassName"] == ""
    assert set(claims_mounted(dev_run).values()) == {"model-cache-workstation"}


def test_destroy_keeps_model_data(dev_run):
    for kind, name in (("PersistentVolume", f"{NS}-model-cache-workstation"),
                       ("PersistentVolumeClaim", "model-cache-workstation"),
                       ("Namespace", NS)):  # deleting the namespace would cascade into the claims
        opts = dev_run.resource(kind, name).options
        assert opts["retainOnDelete"] is True, kind
        # After a destroy the retained objects are adopted again instead of failing with "already exists".
        assert "::llm-infra-adopting::" in opts["provider"]
    provider = next(r for r in dev_run.resources if r.typ == "pulumi:providers:kubernetes")
    assert provider.inputs["upsertExistingObjects"] == "true"
    # Serving objects are not retained: destroy removes them.
    serving = dev_run.resource("Deployment", "ollama-base").options
    assert serving["retainOnDelete"] is False and "adopting" not in serving["provider"]


def test_rwx_one_shared_claim():
    run = run_raw(variant(lambda r: r.update(modelCache={"mode": "rwx", "storageClassName": "longhorn", "storageClassReclaimPolicy": "Retain", "size": "200Gi"})))
    pvc = run.find("PersistentVolumeClaim", "model-cache")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"] and pvc["spec"]["storageClassName"] == "longhorn"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "200Gi"
    assert set(claims_mounted(run).values()) == {"model-cache"}
    assert not [o for o in run.objects() if o["kind"] == "PersistentVolume"]
    assert run.resource("PersistentVolumeClaim", "model-cache").options["retainOnDelete"] is True


def test_per_pod_claims_and_retaining_storage_class():
    run = run_raw(variant(lambda r: r.update(
        modelCache={"mode": "perPod", "storageClassName": "llm-models-retain", "provisioner": "rancher.io/local-path"})))
    assert claims_mounted(run) == {d: f"model-cache-{d}" for d in
                                   ("ollama-adapter-chatbot", "ollama-adapter-code", "ollama-adapter-summarization", "ollama-base")}
    for d in claims_mounted(run).values():
        assert run.find("PersistentVolumeClaim", d)["spec"]["accessModes"] == ["ReadWriteOnce"]
    sc = run.find("StorageClass", "llm-models-retain")
    assert (sc["provisioner"], sc["reclaimPolicy"], sc["volumeBindingMode"]) == ("rancher.io/local-path", "Retain", "WaitForFirstConsumer")
    assert run.resource("StorageClass", "llm-models-retain").options["retainOnDelete"] is True


def test_another_host_directory_is_another_volume_and_claim_and_the_old_pair_stays():
    """A volume's hostPath and a claim's volumeName cannot change in place: moving the cache makes a new pair (named
    with a digest of the directory), the pods move to it, and the retained pair keeps the old data."""
    moved = run_raw(variant(lambda r: r["modelCache"].update(hostPath="/data/models")))
    digest = hashlib.sha256(b"/data/models").hexdigest()[:8]
    pv = moved.find("PersistentVolume", f"{NS}-model-cache-workstation-{digest}")
    assert pv["spec"]["hostPath"]["path"] == "/data/models"
    assert pv["spec"]["claimRef"] == {"namespace": NS, "name": f"model-cache-workstation-{digest}"}
    assert set(claims_mounted(moved).values()) == {f"model-cache-workstation-{digest}"}
    # The volume is replaced under its URN, the claim is a new resource; whatever the engine deletes of the old pair
    # is retained in the cluster (retainOnDelete), and the default directory keeps its plain names.
    cache = lambda run: {r.name: r for r in run.resources if r.inputs.get("kind") in ("PersistentVolume", "PersistentVolumeClaim")}  # noqa: E731
    before, after = cache(dev_default()), cache(moved)
    assert "model-cache-workstation-pv" in before and "model-cache-workstation-pv" in after
    assert before["model-cache-model-cache-workstation"].inputs["metadata"]["name"] == "model-cache-workstation"
    assert all(r.options["retainOnDelete"] for r in (*before.values(), *after.values()))


def dev_default():
    return run_raw(stack_raw("dev"))


def test_a_larger_cache_grows_the_volume_and_leaves_the_claim_alone():
    """A claim bound to a static volume can never be resized (the API server's PVC resize admission): modelCache.size
    is the hostPath volume's capacity, an ordinary update, and its claim requests a nominal 1Gi that never changes."""
    bigger = run_raw(variant(lambda r: r["modelCache"].update(size="250Gi")))
    for run, size in ((dev_default(), "100Gi"), (bigger, "250Gi")):
        assert run.find("PersistentVolume", f"{NS}-model-cache-workstation")["spec"]["capacity"] == {"storage": size}
        assert run.find("PersistentVolumeClaim", "model-cache-workstation")["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
