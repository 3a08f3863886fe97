"""Run the real program offline: Pulumi's mocks, a stack file as config, objects recorded.

Used by the renderer (`make render`) and by the tests. Nothing here reaches a cluster or needs the
Pulumi CLI. Mocks see no resource options (read off the registration by RecordingMonitor) and return numbers as floats.
"""

from __future__ import annotations

import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.mocks import MockMonitor

from stacks import yaml_file
from stacks.loader import missing_secrets

ROOT = Path(__file__).resolve().parent.parent
SECRET_SIG = "4dabf18193072939515e22adb298388d"

# Apply order: what others depend on first.
KIND_ORDER = [
    "Namespace", "ResourceQuota", "LimitRange", "StorageClass", "PersistentVolume", "PersistentVolumeClaim", "ResourceClaim",
    "Secret", "ConfigMap", "ServiceAccount", "Service", "Deployment",
]


class StackFileError(Exception):
    pass


def load_yaml(path: Path) -> object:
    """A YAML file read as the Pulumi CLI reads it (stacks/yaml_file.py); a mistake names the file and line."""
    try:
        return yaml_file.load(path)
    except yaml_file.YamlFileError as exc:
        raise StackFileError(str(exc)) from None


@dataclass
class Recorded:
    typ: str
    name: str
    inputs: dict[str, Any]
    custom: bool
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_k8s_object(self) -> bool:
        return self.custom and self.typ.startswith("kubernetes:") and "providers" not in self.typ


@dataclass
class Run:
    resources: list[Recorded]
    program: dict[str, Any]

    def objects(self) -> list[dict[str, Any]]:
        """Every Kubernetes object, cleaned for YAML, in apply order."""
        objs = [clean(r.inputs) for r in self.resources if r.is_k8s_object]
        return sorted(objs, key=_order)

    def find(self, kind: str, name: str) -> dict[str, Any]:
        for o in self.objects():
            if o["kind"] == kind and o["metadata"]["name"] == name:
                return o
        raise KeyError(f"no {kind} named {name}")

    def resource(self, kind: str, name: str) -> Recorded:
        for r in self.resources:
            if r.is_k8s_object and r.inputs.get("kind") == kind and r.inputs.get("metadata", {}).get("name") == name:
                return r
        raise KeyError(f"no {kind} named {name}")


def _order(o: dict[str, Any]) -> tuple:
    kind = o.get("kind", "")
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    meta = o.get("metadata", {})
    return (rank, kind, meta.get("namespace") or "", meta.get("name") or "")


REDACTED = "<redacted: Pulumi secret>"


def redact(value: Any) -> Any:
    """A secret's structure with every leaf replaced: secrets never reach a rendered file."""
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return REDACTED


def clean(value: Any) -> Any:
    """Redact secrets, turn integral floats back into ints, order the top-level keys."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return redact(clean(value.get("value")))
        out = {k: clean(v) for k, v in sorted(value.items())}
        if "apiVersion" in out and "kind" in out:
            head = {k: out.pop(k) for k in ("apiVersion", "kind", "metadata") if k in out}
            out = {**head, **dict(sorted(out.items()))}
        return out
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Recorded] = []
        self.options: dict[tuple[str, str], dict[str, Any]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        rec = Recorded(args.typ, args.name, args.inputs, bool(args.custom), self.options.get((args.typ, args.name), {}))
        self.resources.append(rec)
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class RecordingMonitor(MockMonitor):
    """Resource options never reach Mocks.new_resource; read them off the registration."""

    def RegisterResource(self, request):
        self.mocks.options[(request.type, request.name)] = {
            "retainOnDelete": bool(request.retainOnDelete),
            "protect": bool(request.protect),
            "customTimeouts": {"create": request.customTimeouts.create, "update": request.customTimeouts.update},
            "provider": request.provider,
            "parent": request.parent,
            "dependencies": list(request.dependencies),
            # What the engine matches against the old state (alias specs; the SDK resolves their parents to URNs).
            "aliases": [{"name": a.spec.name, "type": a.spec.type, "parentUrn": a.spec.parentUrn} if a.HasField("spec")
                        else {"urn": a.urn} for a in request.aliases],
        }
        return super().RegisterResource(request)


def raw_of(values: dict[str, str]) -> dict[str, Any]:
    """The `llm-infra:*` keys of a config map (stack_config's, or a generated one) as the program reads them: top-level
    key -> value, structured values JSON-decoded."""
    return {k.split(":", 1)[1]: json.loads(v) if v[:1] in "{[" else v for k, v in values.items() if k.startswith("llm-infra:")}


def stack_config(stack: str = "dev", config_file: Path | None = None, placeholders: bool = True) -> tuple[dict[str, str], list[str]]:
    """The config map the CLI would pass: Pulumi.yaml defaults overlaid by Pulumi.<stack>.yaml.

    `secure:` values cannot be decrypted offline; they become placeholders marked secret, and so do the secrets the
    stack needs but its file does not hold (`placeholders`; what `pulumi config set --secret` would add)."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    name = project["name"]
    full = lambda k: k if ":" in k else f"{name}:{k}"  # noqa: E731
    path = config_file or ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise StackFileError(f"no stack config file {path}; create it or pass CONFIG=<file>")
    try:
        data = yaml_file.load_stack_file(path)
    except yaml_file.YamlFileError as exc:
        raise StackFileError(str(exc)) from None
    given = {full(k) for k in (data.get("config") or {})}
    values: dict[str, Any] = {}
    missing = []
    for k, decl in (project.get("config") or {}).items():
        # As the CLI merges them (pkg/v3/workspace/config.go, ValidateStackConfigAndApplyProjectConfig, v3.274): a
        # declared key with neither `default` nor `value` is required of every stack.
        if isinstance(decl, dict) and not ({"default", "value"} & set(decl)):
            if full(k) not in given:
                missing.append(k)
        elif isinstance(decl, dict):
            values[full(k)] = decl.get("value", decl.get("default"))
        else:
            values[full(k)] = decl
    if missing:
        raise StackFileError(f"Stack '{stack}' is missing configuration values {', '.join(repr(k) for k in missing)} "
                             "(Pulumi.yaml declares them without a default, so the Pulumi CLI requires them in every stack)")
    secret_keys: list[str] = []
    for k, v in (data.get("config") or {}).items():
        if isinstance(v, dict) and set(v) == {"secure"}:
            secret_keys.append(full(k))
            v = f"<secret:{full(k)}>"
        values[full(k)] = v
    if placeholders:
        # The stack files ship no secrets (`pulumi config set --secret` writes them): fill in those the stack needs.
        raw = {k.split(":", 1)[1]: v for k, v in values.items() if k.startswith(f"{name}:")}
        for k in missing_secrets(raw, frozenset(secret_keys)):
            secret_keys.append(full(k))
            values[full(k)] = f"<secret:{full(k)}>"
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}, secret_keys


def run_program(config: dict[str, str], secret_keys: list[str] | None = None, stack: str = "dev") -> Run:
    """Run __main__.py under mocks with this config; raises what the program raises."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="llm-infra", stack=stack, preview=False, monitor=RecordingMonitor(mocks))
    pulumi.runtime.set_all_config(config, secret_keys or [])
    program: dict[str, Any] = {}

    @pulumi.runtime.test
    def run():
        program.update(runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"))

    run()
    return Run(mocks.resources, program)


def run_stack(stack: str = "dev", config_file: Path | None = None) -> Run:
    config, secrets = stack_config(stack, config_file)
    return run_program(config, secrets, stack)
