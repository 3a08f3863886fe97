"""Add a model to the catalog from its Hugging Face repo: config.json and the safetensors metadata, no weights.

    make catalog MODEL=Qwen/Qwen2.5-7B-Instruct [REVISION=<commit or branch>]
    HF_TOKEN=$(pulumi config get hfToken --stack prod) make catalog MODEL=meta-llama/...   # gated repos
    make catalog MODEL=./llama-3.1-8b [REPO=<org>/<name>] [PARAMS=<billions>]   # a local copy, no network (tools/catalog_local.py)

Writes catalog/hf/<org>--<name>.yaml (review it, then commit it). Renders never read the network: they read
the catalog. The architectures the KV formula treats differently are recognised from config.json:
grouped-query attention (`num_key_value_heads`), MLA (`kv_lora_rank` + `qk_rope_head_dim`, DeepSeek-V2/V3),
sliding windows and MoE (noted: the plan sizes every layer for the full context and every expert resident,
upper bounds), and pre-quantized checkpoints (`quantization_config`). A config the plan cannot size is
refused, saying what is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from stacks.model_catalog import CatalogModel, claimed_by, validation_problems

REQUIRED = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size", "max_position_embeddings")
SIXTEEN_BIT = ("BF16", "F16", "F32")
PACKED = ("I32", "U32")


class CatalogError(Exception):
    pass


def entry_from_config(repo: str, config: dict[str, Any], parameter_count: dict[str, int] | None, gated: bool,
                      revision: str | None = None, parameters_b: float | None = None, source: str | None = None) -> dict[str, Any]:
    """The catalog entry (as the YAML file holds it) for a repo's config.json and safetensors parameter counts
    (or, without them, `parameters_b` from the model card); `source` replaces the Hub's provenance (a local copy)."""
    cfg = dict(config)
    notes: list[str] = []
    if "text_config" in cfg and "num_hidden_layers" not in cfg:
        cfg = {**cfg["text_config"], "vocab_size": cfg["text_config"].get("vocab_size", cfg.get("vocab_size"))}
        notes.append("multimodal: sized from text_config; the vision tower's memory is not planned")
    missing = [k for k in REQUIRED if cfg.get(k) is None]
    if "kv_lora_rank" in cfg and cfg.get("qk_rope_head_dim") is None:
        missing.append("qk_rope_head_dim (an MLA model)")
    if missing:
        raise CatalogError(f"{repo}: config.json has no {', '.join(missing)}: the plan cannot size its KV cache; "
                           "describe it inline (vllm.models.<key>.arch) with the figures from the model card")
    heads = int(cfg["num_attention_heads"])
    arch: dict[str, Any] = {
        "layers": int(cfg["num_hidden_layers"]),
        "attentionHeads": heads,
        "kvHeads": int(cfg.get("num_key_value_heads") or heads),  # no GQA: one KV head per attention head
        "headDim": int(cfg.get("head_dim") or cfg["hidden_size"] // heads),
        "hidden": int(cfg["hidden_size"]),
        "maxPosition": int(cfg["max_position_embeddings"]),
        "vocab": int(cfg["vocab_size"]),
    }
    if cfg.get("kv_lora_rank"):
        arch["mlaKvDim"] = int(cfg["kv_lora_rank"]) + int(cfg["qk_rope_head_dim"])  # one latent per token and layer
        notes.append(f"MLA: {arch['mlaKvDim']} values per token and layer, not split by tensor parallelism")
    if cfg.get("intermediate_size"):
        arch["ffn"] = int(cfg["intermediate_size"])
    if cfg.get("tie_word_embeddings"):
        arch["tiedEmbeddings"] = True
    window = cfg.get("sliding_window")
    if window and cfg.get("use_sliding_window", True) and window < arch["maxPosition"]:
        notes.append(f"sliding window of {window} tokens: the plan sizes every layer for the full context (an upper bound)")
    experts = cfg.get("num_local_experts") or cfg.get("n_routed_experts") or cfg.get("num_experts")
    if experts:
        arch["experts"] = int(experts)
        active = cfg.get("num_experts_per_tok")
        notes.append(f"MoE: {experts} experts{f', {active} active per token' if active else ''}; all experts' weights are resident")

    quantization = None
    qc = cfg.get("quantization_config") or config.get("quantization_config")
    if qc:
        method = qc.get("quant_method")
        bits = qc.get("bits") or qc.get("w_bit") or (8 if method == "fp8" else None)
        if not method or not bits:
            raise CatalogError(f"{repo}: quantization_config has no quant_method or bits: describe it inline")
        quantization = {"method": method, "bits": int(bits)}
    if parameter_count:
        counts = {k.upper(): int(v) for k, v in parameter_count.items()}
        unquantized = sum(v for k, v in counts.items() if k in SIXTEEN_BIT)
        packed = sum(v for k, v in counts.items() if k in PACKED)
        other = sum(v for k, v in counts.items() if k not in SIXTEEN_BIT and k not in PACKED)
        if quantization is not None and quantization["bits"] < 8 and packed:
            # int4 weights are packed 32 / bits to an int32 element; the 16-bit rest (embeddings, scales) stays as is.
            total = unquantized + other + packed * (32 // quantization["bits"])
            quantization["unquantizedParametersB"] = round(unquantized / 1e9, 3)
        else:
            total = unquantized + packed + other
        figures = f"counts {counts}"
    elif parameters_b is not None:
        total, figures = round(parameters_b * 1e9), f"parametersB {parameters_b:g} given (PARAMS, the model card's)"
    else:
        raise CatalogError(f"{repo}: no safetensors metadata (parameter counts); describe it inline with parametersB from its model card")
    arch["parametersB"] = round(total / 1e9, 3)
    if gated:
        arch["gated"] = True
    entry: dict[str, Any] = {"repo": repo, "name": repo.split("/", 1)[-1], "arch": dict(sorted(arch.items(), key=_arch_order))}
    if quantization:
        entry["quantization"] = quantization
    if notes:
        entry["note"] = "; ".join(notes)
    hub = f"config.json and safetensors metadata of {repo} at {revision or 'main'} (make catalog)"
    entry["source"] = f"{source or hub}; {figures}"
    try:
        CatalogModel.model_validate(entry)  # the schema renders read
    except ValidationError as exc:
        raise CatalogError("; ".join(validation_problems(repo, CatalogModel, exc))) from None
    return entry


def _arch_order(item: tuple[str, Any]) -> int:
    order = ["parametersB", "layers", "attentionHeads", "kvHeads", "headDim", "hidden", "maxPosition", "vocab", "mlaKvDim", "ffn", "tiedEmbeddings", "experts", "gated"]
    return order.index(item[0])


def fetch(repo: str, revision: str | None) -> tuple[dict[str, Any], dict[str, int] | None, bool]:
    """config.json, the safetensors parameter counts and the gated flag, through the Hugging Face client (HF_TOKEN)."""
    from huggingface_hub import HfApi, get_safetensors_metadata, hf_hub_download
    from huggingface_hub.errors import NotASafetensorsRepoError

    config = json.loads(Path(hf_hub_download(repo, "config.json", revision=revision)).read_text())
    try:
        counts = get_safetensors_metadata(repo, revision=revision).parameter_count
    except NotASafetensorsRepoError:
        counts = None
    gated = bool(HfApi().model_info(repo, revision=revision).gated)
    return config, counts, gated


def file_for(repo: str, directory: Path) -> Path:
    return directory / "hf" / f"{repo.replace('/', '--')}.yaml"


def main(argv: list[str] | None = None, directory: Path | None = None) -> int:
    from stacks import model_catalog
    from tools.catalog_local import LocalCopyError, is_local, is_unreachable, no_counts_message, read_local, unreachable_message

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="Hugging Face repo id (e.g. Qwen/Qwen2.5-7B-Instruct), or a local config.json or its directory")
    p.add_argument("--revision", help="commit, tag or branch (default: main)")
    p.add_argument("--repo", help="the repo id a local copy is catalogued as (default: from a Hugging Face cache layout)")
    p.add_argument("--params", type=float, help="parameters in billions, when there are no safetensors headers to count")
    a = p.parse_args(argv)
    local = is_local(a.model)
    try:
        copy = read_local(a.model, a.repo) if local else None
    except LocalCopyError as exc:
        print(f"catalog: {exc}", file=sys.stderr)
        return 2
    repo = copy.repo if copy is not None else a.model
    target = file_for(repo, directory or model_catalog.CATALOG_DIR)
    others = [p for p in claimed_by(target.parent, "repo", repo) if p != target]
    if others:
        print(f"catalog: {repo} is described by {others[0]} already; edit that file, or delete it first", file=sys.stderr)
        return 2
    try:
        if copy is not None:
            if copy.counts is None and a.params is None:
                raise CatalogError(no_counts_message(a.model))
            # A local copy cannot say whether its Hub repo is gated: a model served from `path` needs no token anyway.
            entry = entry_from_config(repo, copy.config, copy.counts, False, copy.revision or a.revision, a.params, copy.where)
        else:
            config, counts, gated = fetch(a.model, a.revision)
            entry = entry_from_config(a.model, config, counts, gated, a.revision, a.params)
    except CatalogError as exc:
        print(f"catalog: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # network, auth, missing repo: one line, not a traceback
        if is_unreachable(exc):
            print(f"catalog: {unreachable_message(a.model, exc)}", file=sys.stderr)
        else:
            print(f"catalog: {a.model}: could not read it from Hugging Face: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(entry, sort_keys=False, width=120))
    arch = entry["arch"]
    per_token = arch.get("mlaKvDim", 0) * arch["layers"] * 2 or 2 * arch["layers"] * arch["kvHeads"] * arch["headDim"] * 2
    print(f"wrote {target}: {arch['parametersB']} B parameters, {arch['maxPosition']} tokens trained, "
          f"{per_token / 1024:g} KiB of bf16 KV per token (one GPU){'; ' + entry['note'] if 'note' in entry else ''}")
    if copy is not None:
        print(f"note: read from a local copy, which does not say whether {repo} is gated on Hugging Face; if it is and a "
              "stack downloads it (no vllm.models.<key>.path), add `gated: true` under arch in that file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
