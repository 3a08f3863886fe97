"""A real Kubernetes 1.34 control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and KWOK (simulated kubelets), built by e2e/build-tools.sh into .tools/bin.

Nothing listens on another address; every process is in its own process group and `Cluster.stop()` (also called on
exit and on SIGTERM/SIGINT) ends them all. The API server authenticates one static token (group system:masters)
and serves a certificate it makes itself (--cert-dir), which the kubeconfig trusts as its CA.
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".tools" / "bin"
HOST = "127.0.0.1"

# KWOK's own stages (kustomize/stage in its module): nodes become Ready and keep a lease; pods on them become
# Running and Ready (init containers completed), and go away when deleted.
KWOK_STAGES = ("node/fast/node-initialize.yaml", "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
               "pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml")
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def module_dir(tool: str, module: str) -> Path:
    """Where Go keeps the pinned module of e2e/go/<tool> (downloaded if missing)."""
    out = subprocess.run(["go", "mod", "download", "-json", module], cwd=ROOT / "e2e" / "go" / tool,
                         check=True, capture_output=True, text=True).stdout
    import json
    return Path(json.loads(out)["Dir"])


@dataclass
class Cluster:
    workdir: Path
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    api_port: int = 0
    pulumi_home: Path | None = None
    """The PULUMI_HOME of the run using this cluster: its CLI and plugins are stopped with it on a signal."""

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def stop_kept(self) -> None:
        """Stop a cluster an earlier `make e2e KEEP=1` left running in this folder."""
        kept = self.workdir / "pids"
        if not kept.exists():
            return
        for line in kept.read_text().split("\n"):
            if line.strip():
                try:
                    os.kill(int(line.split()[0]), signal.SIGTERM)
                except ProcessLookupError:
                    pass
        kept.unlink()
        time.sleep(2)

    def start(self) -> "Cluster":
        missing = [b for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok") if not (BIN / b).exists()]
        if missing:
            raise SystemExit(f"missing {', '.join(missing)} in {BIN}: run e2e/build-tools.sh (make e2e does)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        atexit.register(self.stop)  # unless the caller keeps the cluster: then it calls detach()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        sa_key = pki / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(sa_key), "-pubout", "-out", str(pki / "sa.pub")], check=True, capture_output=True)
        (pki / "tokens.csv").write_text(f'{self.token},e2e-admin,e2e-admin,"system:masters"\n')

        etcd_port, peer_port = free_port(), free_port()
        self._spawn("etcd", [
            "--name", "e2e", "--data-dir", str(self.workdir / "etcd"), "--unsafe-no-fsync",
            "--listen-client-urls", f"http://{HOST}:{etcd_port}", "--advertise-client-urls", f"http://{HOST}:{etcd_port}",
            "--listen-peer-urls", f"http://{HOST}:{peer_port}", "--initial-advertise-peer-urls", f"http://{HOST}:{peer_port}",
            "--initial-cluster", f"e2e=http://{HOST}:{peer_port}", "--listen-metrics-urls", f"http://{HOST}:{free_port()}",
            "--log-level", "warn",
        ])
        self._wait(f"http://{HOST}:{etcd_port}/health", "etcd")

        self.api_port = free_port()
        self._spawn("kube-apiserver", [
            "--etcd-servers", f"http://{HOST}:{etcd_port}",
            "--bind-address", HOST, "--advertise-address", HOST, "--secure-port", str(self.api_port),
            "--cert-dir", str(pki), "--token-auth-file", str(pki / "tokens.csv"),
            "--authorization-mode", "Node,RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(pki / "sa.pub"), "--service-account-signing-key-file", str(sa_key),
            "--service-cluster-ip-range", "10.96.0.0/16", "--allow-privileged=true",
            "--profiling=false", "--v=1",
        ])
        self._wait(f"https://{HOST}:{self.api_port}/readyz", "kube-apiserver", timeout=120, auth=True)
        self._write_kubeconfig(pki / "apiserver.crt")

        kc = str(self.kubeconfig)
        self._spawn("kube-controller-manager", [
            "--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
            "--bind-address", HOST, "--secure-port", str(free_port()), "--leader-elect=false",
            "--service-account-private-key-file", str(sa_key), "--root-ca-file", str(pki / "apiserver.crt"),
            "--use-service-account-credentials=false", "--controllers", "*,-nodeipam,-service-lb-controller",
            "--concurrent-deployment-syncs", "10", "--v=1",
        ])
        self._spawn("kube-scheduler", [
            "--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
            "--bind-address", HOST, "--secure-port", str(free_port()), "--leader-elect=false", "--v=1",
        ])
        stages = module_dir("kwok", "sigs.k8s.io/kwok") / "kustomize" / "stage"
        config = [arg for s in KWOK_STAGES for arg in ("--config", str(stages / s))]
        self._spawn("kwok", [
            "--kubeconfig", kc, *config, "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector", f"{KWOK_NODE_ANNOTATION}=fake",
            "--cidr", "10.244.0.1/16", "--node-ip", HOST, "--server-address", f"{HOST}:{free_port()}",
            # Renew each node's Lease as a kubelet does (kwokctl's 40 s): without it the node lifecycle controller
            # finds the nodes silent after its grace period and marks every pod not ready.
            "--node-lease-duration-seconds", "40",
        ])
        return self

    def spawn(self, name: str, args: list[str]) -> None:
        """Start another of .tools/bin's programs beside the control plane (stopped with it)."""
        self._spawn(name, args)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "w")
        proc = subprocess.Popen([str(BIN / name), *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((name, proc))

    def _wait(self, url: str, name: str, timeout: float = 60, auth: bool = False) -> None:
        ctx = ssl._create_unverified_context()  # only to poll readiness on 127.0.0.1; clients use the kubeconfig's CA
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pname, proc in self.procs:
                if proc.poll() is not None:
                    tail = (self.logs / f"{pname}.log").read_text()[-3000:]
                    raise SystemExit(f"{pname} exited with {proc.returncode}:\n{tail}")
            try:
                req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"} if auth else {})
                with urllib.request.urlopen(req, timeout=2, context=ctx) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"{name} not ready at {url} after {timeout:.0f} s (log: {self.logs / (name + '.log')})")

    def _write_kubeconfig(self, ca: Path) -> None:
        import base64
        import yaml
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
            "clusters": [{"name": "e2e", "cluster": {
                "server": f"https://{HOST}:{self.api_port}",
                "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode()}}],
            "users": [{"name": "e2e-admin", "user": {"token": self.token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e-admin"}}],
        }
        self.kubeconfig.write_text(yaml.safe_dump(cfg))
        self.kubeconfig.chmod(0o600)

    def detach(self) -> None:
        """Leave the processes running after this program exits (make e2e KEEP=1); `kill` their pids to stop them."""
        atexit.unregister(self.stop)
        (self.workdir / "pids").write_text("".join(f"{p.pid} {n}\n" for n, p in self.procs))
        self.procs.clear()

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} (log: {self.logs / (name + '.log')})")

    def _on_signal(self, signum, _frame) -> None:
        self.stop()
        if self.pulumi_home is not None:
            stop_tools(self.pulumi_home)  # the CLI and its provider plugins, which outlive a killed parent
        raise SystemExit(128 + signum)

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


PULUMI_TOOLS = ("pulumi", "pulumi-resource-kubernetes")


def stop_tools(pulumi_home: Path, names: tuple[str, ...] = PULUMI_TOOLS) -> None:
    """End this run's Pulumi CLI and provider plugins (the processes of .tools/bin's `names` whose PULUMI_HOME is the
    run's own): a killed CLI leaves its plugins running, and no other run's or user's processes are touched."""
    me, exes, marker = os.getpid(), {str((BIN / n).resolve()) for n in names}, f"PULUMI_HOME={pulumi_home}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            exe = os.readlink(entry / "exe")
            mine = exe in exes and marker in (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if mine:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass
