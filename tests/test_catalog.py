"""The model catalog as data, and `make catalog` (tools/catalog.py) on config.json fixtures, offline."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from stacks import model_catalog
from tests.conftest import plan_of, variant
from tools import catalog

FIXTURES = Path(__file__).parent / "fixtures" / "hf-config"
GiB = 2**30


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def kv_per_token(arch: dict) -> int:
    """bf16 KV bytes per token on one GPU: 2 x layers x KV heads x head dim x 2 B (MLA: layers x latent x 2 B)."""
    if "mlaKvDim" in arch:
        return arch["layers"] * arch["mlaKvDim"] * 2
    return 2 * arch["layers"] * arch["kvHeads"] * arch["headDim"] * 2


def test_every_catalog_file_is_valid_and_names_its_source():
    files = sorted((model_catalog.CATALOG_DIR / "hf").glob("*.yaml")) + sorted((model_catalog.CATALOG_DIR / "ollama").glob("*.yaml"))
    assert len(files) == 12
    for f in files:
        data = yaml.safe_load(f.read_text())
        assert data["source"], f
    models = model_catalog.hf_models()
    assert models["meta-llama/Llama-3.1-70B-Instruct"].arch.kv_bytes_per_token_per_rank(4, 2) == 80 * 1024
    assert models["meta-llama/Llama-Guard-3-8B"].safety_classifier and models["meta-llama/Llama-Guard-3-8B"].gated
    assert models["casperhansen/mixtral-instruct-awq"].quant_method == "awq"
    assert model_catalog.ollama_models()["llama3:8b"].file_bytes == 4_661_211_424


def test_a_broken_catalog_file_is_refused_naming_it(tmp_path, monkeypatch):
    shutil.copytree(model_catalog.CATALOG_DIR, tmp_path / "catalog")
    bad = tmp_path / "catalog" / "hf" / "meta-llama--Llama-3.1-8B-Instruct.yaml"
    bad.write_text(bad.read_text().replace("layers: 32", "layers: thirty-two"))
    monkeypatch.setattr(model_catalog, "CATALOG_DIR", tmp_path / "catalog")
    with pytest.raises(model_catalog.CatalogError, match="meta-llama--Llama-3.1-8B-Instruct.yaml: arch.layers: "):
        model_catalog.hf_models()


COUNTS = {  # parameter counts handed to the stand-in hub (round figures from the model cards)
    "llama-3.1-8b-instruct": {"BF16": 8_030_000_000},
    "qwen2.5-7b-instruct": {"BF16": 7_610_000_000},
    "mixtral-8x7b-instruct-v0.1": {"BF16": 46_700_000_000},
    "gemma-2-9b-it": {"BF16": 9_240_000_000},
    "deepseek-v2-lite": {"BF16": 15_700_000_000},
    # AWQ: 4-bit weights packed 8 to an int32, plus 16-bit embeddings, gates and scales
    "mixtral-instruct-awq": {"I32": 5_800_000_000, "F16": 300_000_000},
}


@pytest.mark.parametrize("name, repo, expected", [
    ("llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct",
     {"layers": 32, "attentionHeads": 32, "kvHeads": 8, "headDim": 128, "maxPosition": 131072, "parametersB": 8.03}),
    ("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct",
     {"layers": 28, "attentionHeads": 28, "kvHeads": 4, "headDim": 128, "maxPosition": 32768, "vocab": 152064}),
    ("mixtral-8x7b-instruct-v0.1", "mistralai/Mixtral-8x7B-Instruct-v0.1",
     {"kvHeads": 8, "ffn": 14336, "parametersB": 46.7, "experts": 8}),  # num_local_experts
    ("gemma-2-9b-it", "google/gemma-2-9b-it", {"headDim": 256, "kvHeads": 8, "layers": 42, "vocab": 256000}),
    ("deepseek-v2-lite", "deepseek-ai/DeepSeek-V2-Lite",
     {"mlaKvDim": 576, "layers": 27, "maxPosition": 163840, "experts": 64}),  # n_routed_experts
    ("mixtral-instruct-awq", "casperhansen/mixtral-instruct-awq", {"kvHeads": 8, "parametersB": 46.7, "experts": 8}),
])
def test_entries_from_config_json(name, repo, expected):
    entry = catalog.entry_from_config(repo, fixture(name), COUNTS[name], gated=repo.startswith("meta-llama/"))
    assert {k: entry["arch"][k] for k in expected} == expected
    model_catalog.CatalogModel.model_validate(entry)


def test_what_each_architecture_contributes():
    kv = {n: kv_per_token(catalog.entry_from_config(n, fixture(n), COUNTS[n], False)["arch"]) for n in COUNTS}
    assert kv == {
        "llama-3.1-8b-instruct": 2 * 32 * 8 * 128 * 2,       # GQA 8 KV heads: 128 KiB
        "qwen2.5-7b-instruct": 2 * 28 * 4 * 128 * 2,          # GQA 4 KV heads: 56 KiB
        "mixtral-8x7b-instruct-v0.1": 2 * 32 * 8 * 128 * 2,   # MoE does not change the KV
        "gemma-2-9b-it": 2 * 42 * 8 * 256 * 2,                # head_dim 256 from config.json, not 3584 / 16 = 224
        "deepseek-v2-lite": 27 * 576 * 2,                      # MLA: one 576-wide latent per token and layer
        "mixtral-instruct-awq": 2 * 32 * 8 * 128 * 2,
    }
    notes = {n: catalog.entry_from_config(n, fixture(n), COUNTS[n], False).get("note", "") for n in COUNTS}
    assert "sliding window of 4096 tokens" in notes["gemma-2-9b-it"]
    assert "sliding window" not in notes["qwen2.5-7b-instruct"]  # use_sliding_window: false
    assert "MoE: 8 experts, 2 active per token" in notes["mixtral-8x7b-instruct-v0.1"]
    assert "MLA: 576 values per token and layer" in notes["deepseek-v2-lite"]
    tied = {**fixture("qwen2.5-7b-instruct"), "tie_word_embeddings": True}  # config.json's flag becomes the arch's
    assert catalog.entry_from_config("q", tied, COUNTS["qwen2.5-7b-instruct"], False)["arch"]["tiedEmbeddings"] is True
    assert "tiedEmbeddings" not in catalog.entry_from_config("q", fixture("qwen2.5-7b-instruct"), COUNTS["qwen2.5-7b-instruct"], False)["arch"]
    awq = catalog.entry_from_config("casperhansen/mixtral-instruct-awq", fixture("mixtral-instruct-awq"), COUNTS["mixtral-instruct-awq"], False)
    assert awq["quantization"] == {"method": "awq", "bits": 4, "unquantizedParametersB": 0.3}
    assert awq["arch"]["parametersB"] == round((5_800_000_000 * 8 + 300_000_000) / 1e9, 3)


@pytest.mark.parametrize("drop, missing", [
    ("num_key_value_heads", None),  # no GQA: KV heads = attention heads, not an error
    ("num_hidden_layers", "num_hidden_layers"),
    ("max_position_embeddings", "max_position_embeddings"),
])
def test_a_config_the_plan_cannot_size_is_refused(drop, missing):
    config = fixture("qwen2.5-7b-instruct")
    config.pop(drop)
    if missing is None:
        assert catalog.entry_from_config("Qwen/Qwen2.5-7B-Instruct", config, COUNTS["qwen2.5-7b-instruct"], False)["arch"]["kvHeads"] == 28
        return
    with pytest.raises(catalog.CatalogError, match=f"config.json has no {missing}: the plan cannot size its KV cache"):
        catalog.entry_from_config("Qwen/Qwen2.5-7B-Instruct", config, COUNTS["qwen2.5-7b-instruct"], False)


def test_no_safetensors_metadata_is_refused():
    with pytest.raises(catalog.CatalogError, match="no safetensors metadata"):
        catalog.entry_from_config("Qwen/Qwen2.5-7B-Instruct", fixture("qwen2.5-7b-instruct"), None, False)


def test_make_catalog_adds_qwen_and_a_stack_renders_it_with_its_kv(tmp_path, monkeypatch, capsys):
    """`make catalog MODEL=Qwen/Qwen2.5-7B-Instruct` against a stand-in hub, then lab with Qwen placed like any model."""
    shutil.copytree(model_catalog.CATALOG_DIR, tmp_path / "catalog")
    monkeypatch.setattr(catalog, "fetch", lambda repo, revision: (fixture("qwen2.5-7b-instruct"), COUNTS["qwen2.5-7b-instruct"], False))
    assert catalog.main(["Qwen/Qwen2.5-7B-Instruct"], directory=tmp_path / "catalog") == 0
    written = tmp_path / "catalog" / "hf" / "Qwen--Qwen2.5-7B-Instruct.yaml"
    assert "wrote" in capsys.readouterr().out and written.is_file()

    monkeypatch.setattr(model_catalog, "CATALOG_DIR", tmp_path / "catalog")

    def with_qwen(r):
        models = r["vllm"]["models"]
        models.pop("llama-3b-awq"), models.pop("llama-8b-multi")
        models["qwen-7b"] = {"model": "Qwen/Qwen2.5-7B-Instruct", "maxModelLen": 32768, "gpuMemoryUtilization": 0.9,
                             "gpus": [3], "cpu": 4, "memoryGiB": 16}

    w = next(x for x in plan_of(variant(with_qwen, "lab")).vllm if x.key == "qwen-7b")
    assert w.kv_bytes_per_token_per_rank == 2 * 28 * 4 * 128 * 2
    share = math.ceil(round(44.40 * GiB) * 0.9)  # an L40, as CUDA reports it, x gpuMemoryUtilization
    # Profile peak: the larger of the forward pass (2048 batched tokens x hidden 3584 x 2 B x 18: 0.25 GiB) and the
    # sampler's fp32 buffers (256 rows x vocab 152064 x 4 B x 4, + 0.05 GiB: 0.63 GiB); the sampler's is larger.
    peak = max(2048 * 3584 * 2 * 18, 256 * 152064 * 4 * 4 + round(0.05 * GiB))
    # Less the weights (7.61 B x 2 B), non-torch memory at TP 1 (0.5 GiB) and the CUDA graphs of a dense model <= 30B (1.15 GiB).
    assert w.kv_budget_bytes_per_rank == share - math.ceil(7.61e9 * 2) - peak - GiB // 2 - round(1.15 * GiB)
    # Alone on GPU 3, vLLM profiles: the budget less the 1 GiB margin, in blocks of 16 x 56 KiB, one null block held
    # back, over 2048 blocks per 32768-token sequence: (25.24e9 - 1 GiB) // 917504 - 1 = 26334 blocks, 12.86 sequences
    # (13 with the old, smaller terms).
    assert w.max_full_context_seqs == 12


def test_make_catalog_reports_a_failure_in_one_line(tmp_path, monkeypatch, capsys):
    def offline(repo, revision):
        raise OSError("network unreachable")

    monkeypatch.setattr(catalog, "fetch", offline)
    assert catalog.main(["Qwen/Qwen2.5-7B-Instruct"], directory=tmp_path) == 2
    err = capsys.readouterr().err
    assert err.strip() == "catalog: Qwen/Qwen2.5-7B-Instruct: could not read it from Hugging Face: OSError: network unreachable"
    assert not (tmp_path / "hf").exists()


@pytest.fixture(autouse=True)
def fresh_catalog_cache():
    """Each test reads the catalog directory it set."""
    model_catalog._hf_models.cache_clear()
    model_catalog._ollama_models.cache_clear()
    yield
    model_catalog._hf_models.cache_clear()
    model_catalog._ollama_models.cache_clear()
