"""Every pod of every stack and mode meets the Pod Security Standards' `restricted` profile (Kubernetes 1.34,
kubernetes.io/docs/concepts/security/pod-security-standards), which the namespace now enforces, and runs as
the configured non-root user with its volumes' group set."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import pod_templates, run_raw, run_secret_raw, stack_raw, variant
from tests.test_validate import STACKS, VARIANTS

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The restricted profile's controls (baseline's included), for one pod spec."""
    out: list[str] = []
    psc = pod.get("securityContext") or {}
    containers = pod.get("initContainers", []) + pod["containers"] + pod.get("ephemeralContainers", [])
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            out.append(f"{flag} is set")
    for v in pod.get("volumes", []):
        kind = next(k for k in v if k != "name")
        if kind not in RESTRICTED_VOLUMES:
            out.append(f"volume {v['name']}: type {kind} is not allowed")
    for s in psc.get("sysctls", []):
        if s["name"] not in SAFE_SYSCTLS:
            out.append(f"sysctl {s['name']}")
    if (psc.get("seccompProfile") or {}).get("type") == "Unconfined":
        out.append("pod seccomp Unconfined")
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    for c in containers:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess") or (psc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{name}: hostProcess")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{name}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{name}: procMount")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        if not (sc.get("runAsNonRoot") is True or (psc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is not False)):
            out.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost, is {seccomp}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities {caps['add']}")
    return out


def pod_specs(run) -> dict[str, dict[str, Any]]:
    """Deployments' and LeaderWorkerSets' (leader and worker) pod specs."""
    return {name: t["spec"] for name, t in pod_templates(run.objects()).items()}


def secrets_of(raw):
    return ["hfToken"] if "hfToken" in raw else []


@pytest.mark.parametrize("stack", STACKS)
def test_every_pod_of_every_stack_is_restricted(stack):
    raw = stack_raw(stack)
    run = run_secret_raw(raw, secrets_of(raw))
    specs = pod_specs(run)
    assert specs
    for name, spec in specs.items():
        assert restricted_violations(spec) == [], name
        psc = spec["securityContext"]
        assert (psc["runAsUser"], psc["runAsGroup"], psc["fsGroup"]) == (10001, 10001, 10001), name
        assert psc["runAsUser"] >= 10000  # checkov CKV_K8S_40: clear of the host's users
    ns = run.find("Namespace", raw["namespace"])["metadata"]["labels"]
    assert ns["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_mode_is_restricted(name):
    raw = variant(VARIANTS[name])
    for pod, spec in pod_specs(run_secret_raw(raw, secrets_of(raw))).items():
        assert restricted_violations(spec) == [], (name, pod)


def test_the_check_catches_what_restricted_forbids():
    spec = pod_specs(run_raw(stack_raw("dev")))["ollama-base"]
    assert restricted_violations(spec) == []
    cases = {
        "privileged": lambda s: s["containers"][0]["securityContext"].update(privileged=True),
        "hostPath": lambda s: s["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
        "root": lambda s: s["initContainers"][0]["securityContext"].update(runAsNonRoot=False),
        "escalation": lambda s: s["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
        "capability": lambda s: s["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        "seccomp": lambda s: s["securityContext"].update(seccompProfile={"type": "Unconfined"}),
    }
    for case, edit in cases.items():
        bad = copy.deepcopy(spec)
        edit(bad)
        assert restricted_violations(bad), case


def test_the_user_and_group_come_from_config():
    raw = variant(lambda r: r.update(podSecurity={"runAsUser": 20000, "fsGroup": 20001}))
    for spec in pod_specs(run_raw(raw)).values():
        psc = spec["securityContext"]
        assert (psc["runAsUser"], psc["runAsGroup"], psc["fsGroup"], psc["runAsNonRoot"]) == (20000, 20001, 20001, True)
        assert psc["fsGroupChangePolicy"] == "OnRootMismatch"


def test_engines_have_writable_home_and_tmp_and_llama_stack_a_read_only_root():
    raw = stack_raw("prod")
    specs = pod_specs(run_secret_raw(raw, ["hfToken"]))
    for name, spec in specs.items():
        main = spec["containers"][0]
        mounts = {m["mountPath"] for m in main["volumeMounts"]}
        assert {"/tmp", "/models"} <= mounts, name
        env = {e["name"]: e.get("value") for e in main["env"]}
        assert env["HOME"] in mounts, name  # a UID with no passwd entry still has a writable HOME
        # Every pod first checks that its user can write the model cache, and says how to fix it if not.
        assert spec["initContainers"][0]["name"] == "check-cache"
        if name.startswith("vllm-"):
            assert env["USER"] == "vllm"  # torch's getpass.getuser() reads USER for a UID with no passwd entry
            assert main["securityContext"]["readOnlyRootFilesystem"] is False  # GPU: the NVIDIA runtime hook writes the root
        else:
            assert main["securityContext"]["readOnlyRootFilesystem"] is True
