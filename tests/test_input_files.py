"""Input files read as the Pulumi CLI reads them (stacks/yaml_file.py), the catalog's files checked like stack config,
and architecture figures that contradict each other (stacks/config/arch.py). Every refusal names the file (or key) and
line, and `make render` shows it as one message, exit 2, no traceback."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from stacks import model_catalog, yaml_file
from stacks.config.arch import ModelArchSpec, arch_problems, minimum_parameters
from tests.conftest import problems_of, variant
from tools import catalog, offline, render
from tools.offline import ROOT, StackFileError

DEV_TEXT = (ROOT / "Pulumi.dev.yaml").read_text()
FIXTURES = Path(__file__).parent / "fixtures" / "hf-config"


def render_file(tmp_path: Path, content: str | bytes, name: str = "Pulumi.text.yaml") -> tuple[int, str, bool]:
    cfg = tmp_path / name
    cfg.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "out"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = render.main(["--stack", "text", "--config", str(cfg), "--out", str(out)])
    return code, err.getvalue(), out.exists()


def refused(tmp_path: Path, content: str | bytes) -> str:
    code, err, written = render_file(tmp_path, content)
    assert code == 2 and not written and "Traceback" not in err, err
    return err


def config_of(tmp_path: Path, content: str) -> dict[str, str]:
    path = tmp_path / "Pulumi.text.yaml"
    path.write_text(content)
    return offline.stack_config("text", path)[0]


def loaded(tmp_path: Path, content: str):
    path = tmp_path / "x.yaml"
    path.write_text(content)
    return yaml_file.load(path)


def with_namespace(value: str) -> str:
    return DEV_TEXT.replace("llm-infra:namespace: llama3-multi-adapter", f"llm-infra:namespace: {value}", 1)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# --------------------------------------------------------------------------------------------
# The stack file as YAML


@pytest.mark.parametrize("tag, fix", [
    ("!!binary bGxtLWluZnJh", "Pulumi config holds text; give the text itself"),
    ("!!set {a, b}", "use a list"),
    ("!!omap [{a: 1}]", "use a mapping"),
    ("!!python/tuple [a]", "remove the tag"),
    ("!Ref other", "remove the tag"),
])
def test_a_tag_config_cannot_hold_is_refused_naming_file_and_line(tmp_path, tag, fix):
    text = with_namespace(tag)
    err = refused(tmp_path, text)
    assert f"Pulumi.text.yaml line {line_of(text, tag)}: the tag {tag.split()[0]} makes a value Pulumi config cannot hold" in err
    assert fix in err


def test_an_unquoted_date_is_refused_as_pulumi_would_rewrite_it(tmp_path):
    text = with_namespace("2024-01-01")
    err = refused(tmp_path, text)
    assert (f"Pulumi.text.yaml line {line_of(text, '2024-01-01')}: 2024-01-01 is an unquoted date: Pulumi's YAML reader "
            "(yaml.v3) makes it a timestamp") in err
    assert "quote it: '2024-01-01'" in err


def test_a_quoted_date_stays_the_text_written(tmp_path):
    assert config_of(tmp_path, with_namespace("'2024-01-01'"))["llm-infra:namespace"] == "2024-01-01"


def test_plain_scalars_are_typed_as_yaml_v3_types_them(tmp_path):
    """yaml.v3 (resolve.go) is YAML 1.2-like: `yes`/`on` are strings, `1e3` and `0o17` numbers; PyYAML differs on each."""
    data = loaded(tmp_path, "a: yes\nb: on\nc: 1e3\nd: 0o17\ne: 1:30\nf: True\ng: ~\nh: 017\ni: 2024-02-30\n")
    assert data == {"a": "yes", "b": "on", "c": 1000.0, "d": 15, "e": "1:30", "f": True, "g": None, "h": 15, "i": "2024-02-30"}
    config = config_of(tmp_path, DEV_TEXT + "  llm-infra:existingNamespace: yes\n")
    assert config["llm-infra:existingNamespace"] == "yes"  # a string to Pulumi, not the boolean true


def test_nesting_deeper_than_the_limit_is_refused_without_a_recursion_error(tmp_path):
    deep = DEV_TEXT + "  llm-infra:deep: " + "[" * 5000 + "]" * 5000 + "\n"
    err = refused(tmp_path, deep)
    assert f"Pulumi.text.yaml line {line_of(deep, 'llm-infra:deep')}: nested deeper than 64 levels" in err


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    bomb = "  llm-infra:bomb:\n    a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdef":
        prev = chr(ord(level) - 1)
        bomb += f"    {level}: &{level} [{', '.join(['*' + prev] * 10)}]\n"
    with pytest.raises(StackFileError, match=r"Pulumi.text.yaml: more than 100000 values once its aliases are expanded"):
        config_of(tmp_path, DEV_TEXT + bomb)


def test_an_alias_that_contains_itself_is_refused(tmp_path):
    text = DEV_TEXT + "  llm-infra:loop: &a [*a]\n"
    err = refused(tmp_path, text)
    assert f"Pulumi.text.yaml line {line_of(text, 'llm-infra:loop')}: nested deeper than 64 levels once its aliases are expanded" in err


def test_a_file_over_the_size_limit_is_refused(tmp_path):
    err = refused(tmp_path, DEV_TEXT + "#" + "x" * (1 << 20) + "\n")
    assert f"Pulumi.text.yaml is {len(DEV_TEXT) + (1 << 20) + 2} bytes, more than the 1048576 (1 MiB)" in err


def test_a_key_that_is_not_a_string_is_refused(tmp_path):
    text = DEV_TEXT.replace("    mode: visible-devices", "    1: visible-devices", 1)
    err = refused(tmp_path, text)
    assert f"Pulumi.text.yaml line {line_of(text, '1: visible-devices')}: the key 1 is read as a number, not a string" in err


def test_a_key_given_twice_names_the_file_not_a_unicode_string(tmp_path):
    err = refused(tmp_path, DEV_TEXT + "  llm-infra:namespace: other\n")
    assert f"{tmp_path / 'Pulumi.text.yaml'} line {DEV_TEXT.count(chr(10)) + 1}: key 'llm-infra:namespace' is given twice" in err
    assert "<unicode string>" not in err


def test_merge_keys_load_and_explicit_keys_win(tmp_path):
    data = loaded(tmp_path, "base: &base {cpu: 2, memoryGiB: 8, gpu: 0}\nmore: &more {gpu: 1, queue: 4, cpu: 9}\n"
                            "one: {<<: *base, cpu: 4}\nboth: {<<: [*base, *more], memoryGiB: 16}\n")
    assert data["one"] == {"cpu": 4, "memoryGiB": 8, "gpu": 0}
    assert data["both"] == {"memoryGiB": 16, "cpu": 2, "gpu": 0, "queue": 4}  # the earlier merged mapping wins


def test_a_stack_file_using_merge_keys_gives_the_config_written_out(tmp_path):
    """The adapters' shared settings from one anchor, as a user would factor them: the same config reaches the program."""
    merged = DEV_TEXT.replace("      chatbot:\n        gpu: 0\n        replicas: 1\n",
                              "      chatbot: &adapter\n        gpu: 0\n        replicas: 1\n", 1)
    merged = merged.replace("      code:\n        gpu: 1\n        replicas: 1\n", "      code:\n        <<: *adapter\n        gpu: 1\n", 1)
    merged = merged.replace("        memoryGiB: 10\n        file: adapters/code.gguf\n        base: llama3:8b\n",
                            "        file: adapters/code.gguf\n", 1)
    assert merged.count("<<: *adapter") == 1 and merged.count("memoryGiB: 10") == 1
    decoded = lambda config: {k: json.loads(v) if v[:1] in "{[" else v for k, v in config.items()}  # noqa: E731
    assert decoded(config_of(tmp_path, merged)) == decoded(offline.stack_config("dev")[0])


def test_a_merge_key_twice_and_a_merge_of_a_scalar_are_refused(tmp_path):
    text = DEV_TEXT + "  llm-infra:x:\n    a: &a {x: 1}\n    b:\n      <<: *a\n      <<: *a\n"
    assert f"Pulumi.text.yaml line {len(text.splitlines())}: `<<` is given twice in one mapping" in refused(tmp_path, text)
    text = DEV_TEXT + "  llm-infra:x:\n    a: &a 3\n    b: {<<: *a}\n"
    assert f"Pulumi.text.yaml line {len(text.splitlines())}: `<<` merges mappings" in refused(tmp_path, text)


def test_an_empty_stack_file_is_refused_clearly(tmp_path):
    err = refused(tmp_path, "# nothing yet\n")
    assert "Pulumi.text.yaml is empty: a stack file holds a `config:` mapping" in err


def test_settings_outside_config_are_refused_as_pulumi_ignores_them(tmp_path):
    err = refused(tmp_path, "llm-infra:namespace: x\n")
    assert "Pulumi.text.yaml: top-level key 'llm-infra:namespace' is not read by Pulumi" in err
    assert "put the stack's settings under `config:`" in err


def test_a_stack_file_that_is_a_list_is_refused(tmp_path):
    assert "Pulumi.text.yaml: expected a mapping with a 'config:' mapping, not a list" in refused(tmp_path, "- config\n")


def test_every_shipped_stack_file_reads_as_before():
    import yaml
    for path in sorted(ROOT.glob("Pulumi.*.yaml")):
        assert yaml_file.load_stack_file(path) == yaml.safe_load(path.read_text()), path


# --------------------------------------------------------------------------------------------
# The catalog's files


@pytest.fixture
def catalog_dir(tmp_path, monkeypatch):
    """A copy of the catalog the program reads instead of catalog/."""
    model_catalog._hf_models.cache_clear()
    model_catalog._ollama_models.cache_clear()
    shutil.copytree(model_catalog.CATALOG_DIR, tmp_path / "catalog")
    monkeypatch.setattr(model_catalog, "CATALOG_DIR", tmp_path / "catalog")
    yield tmp_path / "catalog"
    model_catalog._hf_models.cache_clear()
    model_catalog._ollama_models.cache_clear()


EIGHT_B = "meta-llama--Llama-3.1-8B-Instruct.yaml"


def render_with_catalog(tmp_path: Path) -> str:
    """make render of the dev stack (Ollama and a vLLM adapter pool) against the catalog copy."""
    return refused(tmp_path, DEV_TEXT)


def test_a_catalog_file_that_is_not_yaml_is_refused_naming_file_and_line(tmp_path, catalog_dir):
    (catalog_dir / "hf" / "broken.yaml").write_text("repo: [unclosed\nname: x\n")
    err = render_with_catalog(tmp_path)
    assert f"{catalog_dir / 'hf' / 'broken.yaml'} line 2 is not valid YAML" in err


def test_a_catalog_file_lacking_a_field_names_the_file_and_field(tmp_path, catalog_dir):
    f = catalog_dir / "hf" / EIGHT_B
    f.write_text(f.read_text().replace("  kvHeads: 8\n", ""))
    err = render_with_catalog(tmp_path)
    assert f"{f}: arch.kvHeads: required field is missing" in err


def test_a_misspelt_catalog_field_is_named_with_the_allowed_ones(catalog_dir):
    f = catalog_dir / "ollama" / "llama3--8b.yaml"
    f.write_text(f.read_text().replace("fileBytes:", "fileByte:"))
    with pytest.raises(model_catalog.CatalogError) as exc:
        model_catalog.ollama_models()
    assert f"{f}: fileByte: unknown field; did you mean 'fileBytes'? allowed fields here: tag, name, arch" in str(exc.value)


def test_an_empty_catalog_file_is_refused(tmp_path, catalog_dir):
    (catalog_dir / "hf" / "empty.yaml").write_text("")
    err = render_with_catalog(tmp_path)
    assert f"{catalog_dir / 'hf' / 'empty.yaml'}: the file is empty; a catalog entry is a mapping of repo, name, arch" in err


def test_a_catalog_file_repeating_a_key_is_refused(catalog_dir):
    f = catalog_dir / "hf" / EIGHT_B
    f.write_text(f.read_text() + "arch: {}\n")
    with pytest.raises(model_catalog.CatalogError, match=rf"{EIGHT_B} line \d+: key 'arch' is given twice"):
        model_catalog.hf_models()


def test_a_repo_claimed_by_two_files_names_both(tmp_path, catalog_dir):
    """Before: the later file silently replaced the first (a copy claiming the 8B repo with 0.9 B parameters was planned)."""
    original = catalog_dir / "hf" / EIGHT_B
    (catalog_dir / "hf" / "zz-copy.yaml").write_text(original.read_text())
    err = render_with_catalog(tmp_path)
    assert (f"{catalog_dir / 'hf' / 'zz-copy.yaml'}: repo: 'meta-llama/Llama-3.1-8B-Instruct' is described by "
            f"{original} too; one file per model") in err


def test_a_repo_claimed_again_in_other_letter_case_names_both(catalog_dir):
    """The Hub does not tell repo ids apart by case: `meta-llama/llama-3.1-8b-instruct` is the same repo."""
    original = catalog_dir / "hf" / EIGHT_B
    (catalog_dir / "hf" / "zz-lower.yaml").write_text(original.read_text().replace("Llama-3.1-8B-Instruct", "llama-3.1-8b-instruct"))
    with pytest.raises(model_catalog.CatalogError, match=r"zz-lower.yaml: repo: 'meta-llama/llama-3.1-8b-instruct' is described by .* too"):
        model_catalog.hf_models()


def test_an_ollama_tag_claimed_by_two_files_names_both(catalog_dir):
    original = catalog_dir / "ollama" / "llama3--8b.yaml"
    (catalog_dir / "ollama" / "llama3-again.yaml").write_text(original.read_text())
    with pytest.raises(model_catalog.CatalogError, match=r"llama3-again.yaml: tag: 'llama3:8b' is described by .*llama3--8b.yaml too"):
        model_catalog.ollama_models()


def test_make_catalog_refuses_a_repo_another_file_describes(tmp_path, monkeypatch, capsys):
    shutil.copytree(model_catalog.CATALOG_DIR, tmp_path / "catalog")
    (tmp_path / "catalog" / "hf" / EIGHT_B).rename(tmp_path / "catalog" / "hf" / "llama-8b.yaml")
    monkeypatch.setattr(catalog, "fetch", lambda repo, revision: pytest.fail("fetched"))
    assert catalog.main(["meta-llama/Llama-3.1-8B-Instruct"], directory=tmp_path / "catalog") == 2
    assert capsys.readouterr().err.strip() == (f"catalog: meta-llama/Llama-3.1-8B-Instruct is described by "
                                               f"{tmp_path / 'catalog' / 'hf' / 'llama-8b.yaml'} already; edit that file, "
                                               "or delete it first")
    assert not (tmp_path / "catalog" / "hf" / EIGHT_B).exists()


def test_a_catalog_quantization_larger_than_the_model_is_refused(catalog_dir):
    f = catalog_dir / "hf" / "AMead10--Llama-3.2-3B-Instruct-AWQ.yaml"
    f.write_text(f.read_text().replace("unquantizedParametersB: 0.39", "unquantizedParametersB: 39"))
    with pytest.raises(model_catalog.CatalogError, match=r"AWQ.yaml: quantization.unquantizedParametersB: 39 B parameters kept "
                                                         r"in 16 bit is more than the model's 3.21 B"):
        model_catalog.hf_models()


def test_a_catalog_context_above_the_trained_one_is_refused(catalog_dir):
    f = catalog_dir / "hf" / "watt-ai--watt-tool-8B.yaml"
    f.write_text(f.read_text().replace("maxContext: 32768", "maxContext: 262144"))
    with pytest.raises(model_catalog.CatalogError, match=r"watt-tool-8B.yaml: maxContext: 262144 is above the trained context"):
        model_catalog.hf_models()


# --------------------------------------------------------------------------------------------
# Architecture figures


QWEN25_7B = {"parametersB": 7.61, "layers": 28, "attentionHeads": 28, "kvHeads": 4, "headDim": 128, "hidden": 3584,
             "maxPosition": 32768, "vocab": 152064, "ffn": 18944}  # Qwen/Qwen2.5-7B-Instruct config.json
V = "llm-infra:vllm.models.qwen-7b.arch"


def inline(**arch):
    def edit(r):
        r["vllm"]["models"].pop("llama-3b-awq")
        r["vllm"]["models"].pop("llama-8b-multi")
        r["vllm"]["models"]["qwen-7b"] = {"model": "Qwen/Qwen2.5-7B-Instruct", "arch": {**QWEN25_7B, **arch},
                                          "maxModelLen": 32768, "gpuMemoryUtilization": 0.9, "gpus": [3], "cpu": 4, "memoryGiB": 16}
    return problems_of(variant(edit, "lab"))


def test_inline_kv_heads_that_do_not_divide_the_heads_are_refused_at_their_key():
    assert f"{V}.kvHeads: 6 KV heads do not divide 28 attention heads" in "\n".join(inline(kvHeads=6))


def test_inline_head_width_far_from_hidden_is_refused_at_head_dim():
    problems = "\n".join(inline(headDim=3584))
    assert f"{V}.headDim: attentionHeads x headDim = 28 x 3584 = 100352 is more than 4 times hidden 3584" in problems


def test_inline_parameters_below_the_attention_and_embeddings_are_refused():
    problems = "\n".join(inline(parametersB=0.9))
    assert f"{V}.parametersB: 0.9 B parameters is fewer than the attention projections and embeddings alone hold (1.91 B" in problems


def test_a_catalog_file_with_contradicting_figures_names_file_and_field(catalog_dir):
    f = catalog_dir / "hf" / EIGHT_B
    f.write_text(f.read_text().replace("kvHeads: 8", "kvHeads: 5").replace("parametersB: 8.03", "parametersB: 0.9"))
    with pytest.raises(model_catalog.CatalogError) as exc:
        model_catalog.hf_models()
    assert exc.value.problems == [
        f"{f}: arch.kvHeads: 5 KV heads do not divide 32 attention heads: each KV head serves the same number of query "
        "heads, so config.json's num_key_value_heads divides num_attention_heads; copy both from config.json",
        f"{f}: arch.parametersB: 0.9 B parameters is fewer than the attention projections and embeddings alone hold "
        "(2.29 B for 32 layers, hidden 4096, 32/5 heads of 128, vocab 128256); parametersB is the model's total parameter "
        "count in billions (safetensors metadata, or the model card), not its active parameters or file size"]


def test_real_architectures_pass_gemma_head_width_moe_and_mla_included():
    """Every shipped catalog file and every config.json fixture: Gemma 2's 16 x 256 heads for hidden 3584, Mixtral's
    46.7 B far above any dense floor, DeepSeek's MLA."""
    counts = {"llama-3.1-8b-instruct": 8_030_000_000, "qwen2.5-7b-instruct": 7_610_000_000, "gemma-2-9b-it": 9_240_000_000,
              "mixtral-8x7b-instruct-v0.1": 46_700_000_000, "deepseek-v2-lite": 15_700_000_000}
    for name, count in counts.items():
        entry = catalog.entry_from_config(f"x/{name}", json.loads((FIXTURES / f"{name}.json").read_text()), {"BF16": count}, False)
        assert arch_problems(ModelArchSpec.model_validate(entry["arch"])) == [], name
    gemma = ModelArchSpec.model_validate(catalog.entry_from_config("g/g", json.loads((FIXTURES / "gemma-2-9b-it.json").read_text()),
                                                                   {"BF16": counts["gemma-2-9b-it"]}, False)["arch"])
    assert gemma.attention_heads * gemma.head_dim != gemma.hidden
    models = model_catalog.hf_models()
    assert len(models) == 11 and len(model_catalog.ollama_models()) == 1
    mixtral = ModelArchSpec.model_validate(yaml_file.load(ROOT / "catalog" / "hf" / "casperhansen--mixtral-instruct-awq.yaml")["arch"])
    assert mixtral.parameters_b * 1e9 > 8 * minimum_parameters(mixtral)  # MoE: no upper bound would hold
