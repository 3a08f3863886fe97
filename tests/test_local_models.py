"""Models already local and pinned (issue 22): `revision`, a model served from a directory of the cache (`path`), the
check-cache init container's look at the cache, and `make catalog` from a local copy or without the network."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import yaml

from components.pods import MODEL_CHECK, WRITE_CHECK
from stacks import model_catalog
from stacks.catalog import MIB
from stacks.config import Vllm
from stacks.timing import vllm_startup_seconds
from tests.conftest import env_of, plan_of, pod_templates, run_secret_raw, stack_of, stack_problems, stack_raw, variant
from tools import catalog

SHA = "0123456789abcdef0123456789abcdef01234567"
V = "llm-infra:vllm.models"
FIXTURES = Path(__file__).parent / "fixtures" / "hf-config"
ARCH_KEYS = "parametersB, layers, attentionHeads, kvHeads, headDim, hidden, maxPosition, vocab"


def lab_with(**fields_by_model):
    def edit(r):
        for name, fields in fields_by_model.items():
            r["vllm"]["models"][name].update(fields)
    return variant(edit, "lab")


def templates(raw):
    return pod_templates(run_secret_raw(raw, ["hfToken"]).objects())


def container(template):
    (c,) = template["spec"]["containers"]
    return c


def init(template):
    (c,) = template["spec"]["initContainers"]
    return c


# revision ------------------------------------------------------------------------------------------------------------

def test_a_commit_revision_is_on_the_command_line_after_the_model():
    args = container(templates(lab_with(mixtral={"revision": SHA}))["vllm-mixtral"])["args"]
    assert args[0] == "casperhansen/mixtral-instruct-awq"
    assert args[args.index("--revision") + 1] == SHA


def test_a_tag_is_taken_as_given():
    args = container(templates(lab_with(mixtral={"revision": "v1.0"}))["vllm-mixtral"])["args"]
    assert args[args.index("--revision") + 1] == "v1.0"


@pytest.mark.parametrize("revision, says", [
    ("main", "'main' is a branch: the files under it change without the stack changing; give the commit sha"),
    ("Master", "'Master' is a branch"),
    (SHA.upper(), "write the commit sha in lowercase"),
    ("0123456", "looks like a shortened commit sha; give all 40 characters"),
    ("refs/pr/3", "a ref with '/' (refs/pr/N, refs/convert/...) moves with new pushes; give its commit sha"),
    ("v1 final", "is not a commit sha or a tag name"),
])
def test_a_revision_that_does_not_pin_is_refused_naming_the_key(revision, says):
    problems = stack_problems(lab_with(mixtral={"revision": revision}))
    assert any(p.startswith(f"{V}.mixtral.revision: ") and says in p for p in problems), problems


def test_revision_in_extra_args_is_a_typed_flag():
    problems = stack_problems(lab_with(mixtral={"extraArgs": ["--revision", SHA]}))
    assert f"{V}.mixtral.extraArgs[0]: '--revision' repeats a typed setting" in "\n".join(problems), problems


# path ----------------------------------------------------------------------------------------------------------------

def test_a_model_from_the_cache_is_served_from_its_directory_offline_without_the_token():
    t = templates(lab_with(**{"llama-8b": {"path": "models/llama-3.1-8b"}}))
    c = container(t["vllm-llama-8b"])
    assert c["args"][:3] == ["/models/models/llama-3.1-8b", "--served-model-name", "llama-8b"]
    env = env_of(c)
    assert env["HF_HUB_OFFLINE"] == "1" and "HF_TOKEN_PATH" not in env
    assert "hf-token" not in [v["name"] for v in t["vllm-llama-8b"]["spec"]["volumes"]]
    assert {"name": "MODEL_DIR", "value": "/models/models/llama-3.1-8b"} in init(t["vllm-llama-8b"])["env"]
    # The same repo downloaded by another model keeps the token, and downloads stay on.
    other = env_of(container(t["vllm-llama-8b-multi"]))
    assert "HF_HUB_OFFLINE" not in other and "HF_TOKEN_PATH" in other
    assert "env" not in init(t["vllm-llama-8b-multi"])


def test_a_gated_model_from_the_cache_needs_no_token():
    def only(**fields):
        def edit(r):
            r.pop("hfToken", None)  # the offline render's placeholder
            r["vllm"]["models"] = {"llama-8b": {**r["vllm"]["models"]["llama-8b"], **fields}}
        return variant(edit, "lab")

    assert stack_problems(only(), secrets=()) == [
        "llm-infra:hfToken: llama-8b is a gated model on Hugging Face; set a token with `pulumi config set --secret hfToken hf_...`"]
    assert stack_of(only(path="models/llama-3.1-8b")).config.hf_token is None  # valid: no token asked for


@pytest.mark.parametrize("path, says", [
    ("../other", "'../other' must be a directory inside the model cache, relative and without '..'"),
    ("/models/llama", "'/models/llama' must be a directory inside the model cache"),
    ("models/../../etc", "must be a directory inside the model cache"),
    (".", "'.' is the model cache's root; give the model's own directory"),
])
def test_a_path_outside_the_cache_is_refused_naming_the_key(path, says):
    problems = stack_problems(lab_with(**{"llama-8b": {"path": path}}))
    assert any(p.startswith(f"{V}.llama-8b.path: ") and says in p for p in problems), problems


def test_a_copy_the_catalog_lacks_is_pointed_at_make_catalog_of_its_directory():
    problems = stack_problems(lab_with(**{"llama-8b": {"path": "models/ft", "model": "acme/llama-ft"}}))
    assert any(p.startswith(f"{V}.llama-8b.model: 'acme/llama-ft' is not in the model catalog")
               and p.endswith("without the network, `make catalog MODEL=<directory of a local copy> REPO=acme/llama-ft` "
                              "reads the copy") for p in problems), problems


def test_path_and_revision_together_are_refused():
    problems = stack_problems(lab_with(**{"llama-8b": {"path": "models/llama", "revision": SHA}}))
    assert any(p.startswith(f"{V}.llama-8b.revision: the model is served from path 'models/llama'") for p in problems), problems


def test_a_model_from_the_cache_has_no_download_in_its_start_up_budget():
    raw = lab_with(**{"llama-8b": {"path": "models/llama-3.1-8b"}})
    local = next(w for w in plan_of(raw).vllm if w.key == "llama-8b")
    hub = next(w for w in plan_of(stack_raw("lab")).vllm if w.key == "llama-8b")
    timing = Vllm()  # lab's rates are the defaults
    download = hub.weights_bytes / (timing.download_mib_per_second * MIB)
    assert download > 60  # 16 GB at 50 MiB/s: minutes
    assert vllm_startup_seconds(hub, timing) - vllm_startup_seconds(local, timing) in (int(download), int(download) + 1)
    t = templates(raw)
    failures = lambda n: container(t[n])["startupProbe"]["failureThreshold"]  # noqa: E731
    assert failures("vllm-llama-8b") < failures("vllm-llama-8b-multi")


# check-cache with downloads off ----------------------------------------------------------------------------------------

def offline_lab(**fields):
    raw = lab_with(**fields)
    raw["networkPolicy"] = {**raw.get("networkPolicy", {}), "downloadEgress": False}
    return raw


def test_with_downloads_off_the_init_container_looks_for_the_revisions_snapshot():
    t = templates(offline_lab(mixtral={"revision": SHA}))
    c = init(t["vllm-mixtral"])
    assert c["env"] == [{"name": "HUB_REPO_DIR", "value": "/models/huggingface/hub/models--casperhansen--mixtral-instruct-awq"},
                        {"name": "REVISION", "value": SHA}]
    assert MODEL_CHECK in c["command"][2]
    assert {"name": "REVISION", "value": "main"} in init(t["vllm-llama-8b"])["env"]


def check(tmp_path: Path, env: dict[str, str]) -> tuple[int, str]:
    r = subprocess.run(["/bin/sh", "-c", WRITE_CHECK + MODEL_CHECK, "check-cache", str(tmp_path / "hf")],
                       env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True)
    return r.returncode, r.stderr + r.stdout


def test_the_snapshot_check_reads_the_cache_as_the_hub_client_does(tmp_path):
    repo = tmp_path / "hf" / "hub" / "models--org--m"
    by_tag = {"HUB_REPO_DIR": str(repo), "REVISION": "v1.0"}
    code, out = check(tmp_path, by_tag)
    assert code == 1 and f"{repo}/refs/v1.0 is missing: seed the cache with revision v1.0" in out
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "v1.0").write_text(SHA)
    code, out = check(tmp_path, by_tag)
    assert code == 1 and f"{repo}/snapshots/{SHA}/config.json is missing" in out
    (repo / "snapshots" / SHA).mkdir(parents=True)
    (repo / "snapshots" / SHA / "config.json").write_text("{}")
    assert check(tmp_path, by_tag)[0] == 0
    assert check(tmp_path, {"HUB_REPO_DIR": str(repo), "REVISION": SHA})[0] == 0  # a commit needs no ref
    assert check(tmp_path, {"HUB_REPO_DIR": str(repo), "REVISION": "f" * 40})[0] == 1
    code, out = check(tmp_path, {"MODEL_DIR": str(tmp_path / "models" / "x")})
    assert code == 1 and "has no config.json: copy the model's files there" in out


# make catalog from a local copy, and offline -----------------------------------------------------------------------------

@pytest.fixture
def catalog_dir(tmp_path):
    shutil.copytree(model_catalog.CATALOG_DIR, tmp_path / "catalog")
    model_catalog._hf_models.cache_clear()
    yield tmp_path / "catalog"
    model_catalog._hf_models.cache_clear()


def safetensors_header(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    """A safetensors file's header alone (8-byte little-endian length, then JSON): all `make catalog` reads of it."""
    header = json.dumps({n: {"dtype": d, "shape": s, "data_offsets": [0, 0]} for n, (d, s) in tensors.items()}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def test_make_catalog_from_a_hub_cache_snapshot_counts_its_safetensors_headers(tmp_path, catalog_dir, capsys):
    snap = tmp_path / "hub" / "models--Qwen--Qwen2.5-7B-Instruct" / "snapshots" / SHA
    snap.mkdir(parents=True)
    shutil.copy(FIXTURES / "qwen2.5-7b-instruct.json", snap / "config.json")
    (snap / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors"}}))
    safetensors_header(snap / "m-1.safetensors", {"a": ("BF16", [7_000, 1_000_000])})
    safetensors_header(snap / "m-2.safetensors", {"b": ("BF16", [610, 1_000_000])})
    assert catalog.main([str(snap)], directory=catalog_dir) == 0
    entry = yaml.safe_load((catalog_dir / "hf" / "Qwen--Qwen2.5-7B-Instruct.yaml").read_text())
    hub = catalog.entry_from_config("Qwen/Qwen2.5-7B-Instruct", json.loads((FIXTURES / "qwen2.5-7b-instruct.json").read_text()),
                                    {"BF16": 7_610_000_000}, False)
    assert entry["arch"] == hub["arch"] and entry["arch"]["parametersB"] == 7.61
    assert entry["source"] == (f"config.json and safetensors headers of a local copy at {SHA} (make catalog MODEL=<dir>); "
                               "counts {'BF16': 7610000000}")
    assert "does not say whether Qwen/Qwen2.5-7B-Instruct is gated" in capsys.readouterr().out


def test_make_catalog_from_a_config_json_needs_a_name_and_parameters(catalog_dir, capsys):
    config = str(FIXTURES / "qwen2.5-7b-instruct.json")
    assert catalog.main([config], directory=catalog_dir) == 2
    assert "say which model this is with REPO=<org>/<name>" in capsys.readouterr().err
    assert catalog.main([config, "--repo", "acme/qwen-ft"], directory=catalog_dir) == 2
    err = capsys.readouterr().err
    assert "no safetensors headers to count the parameters" in err and "give PARAMS=<billions>" in err
    assert catalog.main([config, "--repo", "acme/qwen-ft", "--params", "7.62"], directory=catalog_dir) == 0
    entry = yaml.safe_load((catalog_dir / "hf" / "acme--qwen-ft.yaml").read_text())
    assert entry["arch"]["parametersB"] == 7.62 and entry["arch"]["kvHeads"] == 4
    assert entry["source"].endswith("parametersB 7.62 given (PARAMS, the model card's)")


def test_make_catalog_of_a_missing_path_says_so(catalog_dir, capsys):
    assert catalog.main(["./no-such-model"], directory=catalog_dir) == 2
    assert capsys.readouterr().err.strip() == "catalog: ./no-such-model: no such file or directory"


@pytest.mark.parametrize("error", ["local-entry", "connect"])
def test_make_catalog_offline_points_to_the_arch_block_and_a_local_copy(tmp_path, monkeypatch, capsys, error):
    import httpx2
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(repo, revision):
        if error == "connect":
            raise httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub and we cannot find the "
                                      "requested files in the local cache. Please check your connection and try again")

    monkeypatch.setattr(catalog, "fetch", offline)
    assert catalog.main(["Qwen/Qwen2.5-7B-Instruct"], directory=tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("catalog: Qwen/Qwen2.5-7B-Instruct: Hugging Face cannot be reached (")
    assert "make catalog MODEL=<directory with config.json and *.safetensors> REPO=Qwen/Qwen2.5-7B-Instruct" in err
    assert f"vllm.models.<key>.arch with {ARCH_KEYS} (from its config.json)" in err
    assert "\n" not in err and not (tmp_path / "hf").exists()


def test_path_needs_a_cache_that_can_be_seeded_before_the_pods_start():
    from tests.conftest import problems_of, variant

    def edit(r):
        r["modelCache"] = {"mode": "perPod", "storageClassName": "local-path", "provisioner": "rancher.io/local-path",
                           "size": "200Gi"}
        r["vllm"]["models"]["llama-3b"]["path"] = "models/llama-3.2-3b"
    problems = problems_of(variant(edit, "prod"))
    assert any(p.startswith("llm-infra:vllm.models.llama-3b.path: modelCache.mode perPod's claims are created by the same "
                            "pulumi up") for p in problems), problems
