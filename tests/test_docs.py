"""Docs and code agree: the config reference and Pulumi.yaml are generated from the models."""

from __future__ import annotations

import pytest
import yaml

from stacks.config import StackConfig
from tools import gen_docs
from tools.offline import ROOT


def test_readme_and_pulumi_yaml_are_current():
    assert gen_docs.REFERENCE.read_text() == gen_docs.rendered_reference(), "docs/config-reference.md is stale: make docs"
    assert gen_docs.STACKS_DOC.read_text() == gen_docs.rendered_stacks_doc(), "docs/stacks.md's plan tables are stale: make docs"
    assert (ROOT / "Pulumi.yaml").read_text() == gen_docs.rendered_pulumi_yaml(), "Pulumi.yaml config is stale: make docs"


def test_pulumi_yaml_declares_every_top_level_key_with_cli_types_only():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "llm-infra" and project["runtime"]["name"] == "python"
    config = project["config"]
    # The CLI requires a declared key that has no default in every stack: only keys with a default are declared.
    assert list(config) == [f.alias for f in StackConfig.model_fields.values() if isinstance(f.default, str)] == ["namespace"]
    for entry in config.values():
        assert set(entry) == {"type", "default", "description"}
        assert entry["type"] in {"string", "integer", "boolean", "array"}
    assert config["namespace"]["default"] == StackConfig.model_fields["namespace"].default


def test_a_declared_key_without_default_is_required_as_the_cli_requires_it(tmp_path, monkeypatch):
    """tools.offline merges Pulumi.yaml as the CLI does: the mocks fail where `pulumi preview` would."""
    from tools import offline

    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    project["config"]["nodes"] = {"description": "declared with no default"}
    fake_root = tmp_path
    (fake_root / "Pulumi.yaml").write_text(yaml.safe_dump(project))
    (fake_root / "Pulumi.dev.yaml").write_text("config:\n  llm-infra:namespace: x\n")
    monkeypatch.setattr(offline, "ROOT", fake_root)
    with pytest.raises(offline.StackFileError, match="Stack 'dev' is missing configuration values 'nodes'"):
        offline.stack_config("dev", fake_root / "Pulumi.dev.yaml")


def test_readme_documents_every_nested_key():
    text = gen_docs.REFERENCE.read_text()
    for key in ("ollama.adapters.<name>.contextLength", "nodes[].gpus[].pciBusID", "gpuSharing.mode", "modelCache.provisioner"):
        assert f"| `{key}` |" in text
    assert (ROOT / "README.md").read_text().splitlines()[3:6] == ["make render   # renders stack dev offline: build/dev/manifests.yaml, build/dev/plan.json, and the GPU plan table",
                                      "make test     # the whole test suite (also what CI runs, through .ci/run)",
                                      "make e2e      # every stack through the real Pulumi engine against a real Kubernetes control plane on 127.0.0.1"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make test") < ci.index("make e2e")


def test_the_readmes_count_of_mistaken_stack_files_is_the_tables():
    import re

    from tests.test_mistakes import MISTAKES

    counts = re.findall(r"`tests/test_mistakes.py` renders (\d+) mistaken stack files", (ROOT / "docs" / "operations.md").read_text())
    assert counts == [str(len(MISTAKES))]
