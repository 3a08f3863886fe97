"""The plan's vLLM memory terms against published startup logs (calibration/vllm-startup-logs.yaml).

Each entry of the data file is one real vLLM start: its GPU, model, parallelism and batch settings, and every per-GPU
figure its log prints. `compare(entry)` renders the plan's own terms for that configuration (stacks/vllm_memory.py, the
same functions the plan calls) next to the measured ones; tests/test_calibration.py keeps every plan term at or above
the log (below it, a pod would not start or would squeeze its neighbours) and within TOLERANCE_GIB above it (more is
GPU memory wasted); `make calibrate` prints the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from stacks import yaml_file
from stacks.catalog import GIB, HfModel, ModelArch
from stacks.vllm_memory import context_gib, rank_memory

DATA = Path(__file__).resolve().parent.parent / "calibration" / "vllm-startup-logs.yaml"
LOCAL = DATA.parent / "local"
"""Entries `make calibrate LOG=... WRITE=1` writes from a team's own logs, one file each: the plan takes their figures
for the same model, GPU, parallelism and batch settings instead of the calibrated terms."""

TERMS = ("context", "weights", "peak", "non_torch", "cudagraph")
"""The plan's terms, in the order of the table: the context outside the share, then what the share holds besides the KV cache."""
MEASURED = {"weights": "weights_gib", "peak": "activation_peak_gib", "non_torch": "non_torch_gib", "cudagraph": "cudagraph_gib"}
TOLERANCE_GIB = {"context": 0.6, "peak": 0.75, "non_torch": 0.5, "cudagraph": 0.75}
"""How far above a log a term may be before the memory it holds back is called waste."""
WEIGHTS_TOLERANCE = 0.03
"""Weights: within 3 % of the log, above or below (the checkpoint's size is a fact, not an allowance)."""
FROM_VERSION = (0, 17)
"""The V1 engine's profiling as the plan models it: vLLM <= 0.16 reported about 2.5 x the activation peak."""


@dataclass(frozen=True)
class Entry:
    id: str
    source: str
    vllm_version: str | None
    engine: str | None
    gpu: str
    model: str
    arch_from: str | None
    same_checkpoint: bool
    moe: bool
    parameters_b: float
    quantization: str | None
    tensor_parallel: int
    pipeline_parallel: int
    max_num_batched_tokens: int | None
    max_num_seqs: int | None
    measured: dict[str, float]
    context_gib: float | None

    @property
    def version(self) -> tuple[int, ...] | None:
        if not self.vllm_version:
            return None
        return tuple(int(p) for p in self.vllm_version.split(".")[:2] if p.isdigit())

    @property
    def modelled(self) -> bool:
        """A V1-engine log of a version whose profiling the plan models: its peak and non-torch lines mean what the plan's do."""
        return self.engine == "V1" and self.version is not None and self.version >= FROM_VERSION


def _entry(raw: dict[str, Any]) -> Entry:
    derived = raw.get("derived") or {}
    ctx = derived.get("context_outside_share_gib")
    return Entry(
        id=raw["id"], source=raw["source"], vllm_version=None if raw.get("vllm_version") is None else str(raw["vllm_version"]),
        engine=raw.get("engine"), gpu=raw["gpu"], model=raw["model"], arch_from=raw.get("arch_from"),
        same_checkpoint=bool(raw.get("same_checkpoint")), moe=bool(raw["moe"]),
        parameters_b=float(raw["parameters_b"]), quantization=raw.get("quantization"),
        tensor_parallel=int(raw["tensor_parallel"]), pipeline_parallel=int(raw.get("pipeline_parallel") or 1),
        max_num_batched_tokens=raw.get("max_num_batched_tokens"), max_num_seqs=raw.get("max_num_seqs"),
        measured={k: float(v) for k, v in (raw.get("measured") or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        context_gib=float(ctx["value"]) if isinstance(ctx, dict) else None,
    )


@cache
def entries(path: Path = DATA) -> tuple[Entry, ...]:
    return tuple(_entry(e) for e in yaml_file.load(path)["entries"])


@dataclass(frozen=True)
class Measured:
    """A team's own log's figures for one configuration, which the plan uses in place of the calibrated terms."""

    source: str
    """The entry's file (calibration/local/<id>.yaml)."""
    context_gib: float
    peak_gib: float
    non_torch_gib: float
    cudagraph_gib: float


def gpu_key(gpu: Any) -> str:
    """How a local entry names a GPU: its catalog model, or its size for a GPU given by vramGiB."""
    return gpu.model or f"{gpu.capacity_bytes / GIB:.2f} GiB"


@cache
def local_entries(directory: Path = LOCAL) -> dict[tuple[str, str, int, int, int, int], Measured]:
    """(model, GPU, TP, PP, batched tokens, seqs) -> the figures of the local entry for it. A file that cannot be read
    stops the plan naming the file (a config error, not a traceback)."""
    from stacks.errors import ConfigError

    out = {}
    for f in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        try:
            data = yaml_file.load(f)
            raws = data["entries"] if isinstance(data, dict) and isinstance(data.get("entries"), list) else None
            if raws is None:
                raise ValueError("it holds no `entries:` list")
            parsed = [_entry(r) for r in raws]
        except (yaml_file.YamlFileError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError([f"{f}: not a calibration entry ({exc}); write it again with make calibrate LOG=... WRITE=1, "
                               "or delete it"]) from None
        for e in parsed:
            m = e.measured
            if e.context_gib is None or not all(k in m for k in ("activation_peak_gib", "non_torch_gib", "cudagraph_gib")):
                raise ConfigError([f"{f}: entry {e.id} lacks the context, peak, non-torch or CUDA graph figure; write it "
                                   "again with make calibrate LOG=... WRITE=1, or delete it"])
            out[(e.model, e.gpu, e.tensor_parallel, e.pipeline_parallel, int(e.max_num_batched_tokens or 0), int(e.max_num_seqs or 0))] = \
                Measured(str(f.relative_to(directory.parent.parent)) if f.is_relative_to(directory.parent.parent) else str(f),
                         e.context_gib, m["activation_peak_gib"], m["non_torch_gib"], m["cudagraph_gib"])
    return out


def measured_for(model: str, gpu: str, tp: int, pp: int, tokens: int, seqs: int) -> Measured | None:
    """The local entry for exactly this configuration, if a team wrote one."""
    return local_entries(LOCAL).get((model, gpu, tp, pp, tokens, seqs))


def _hf(e: Entry) -> tuple[HfModel | None, bool]:
    """The model as the plan sees it, and whether its weights are comparable (the catalog's own checkpoint, or the same
    architecture in 16 bit)."""
    from stacks.model_catalog import hf_models

    if e.arch_from is None or e.arch_from not in hf_models():
        return None, False
    hf = hf_models()[e.arch_from]
    if e.model == e.arch_from or e.same_checkpoint:
        return hf, True
    a = hf.arch
    arch = ModelArch(a.name, e.parameters_b, a.layers, a.attention_heads, a.kv_heads, a.head_dim, a.hidden, a.max_position,
                     mla_kv_dim=a.mla_kv_dim, ffn=a.ffn, vocab=a.vocab, tied_embeddings=a.tied_embeddings, experts=a.experts)
    return HfModel(e.model, arch, gated=False), e.quantization in (None, "fp8")


@dataclass(frozen=True)
class Row:
    term: str
    plan_gib: float | None
    log_gib: float | None

    @property
    def deviation(self) -> float | None:
        return None if self.plan_gib is None or self.log_gib is None else self.plan_gib - self.log_gib

    @property
    def verdict(self) -> str:
        d = self.deviation
        if d is None:
            return ""
        if self.term == "weights":
            return "ok" if abs(d) <= WEIGHTS_TOLERANCE * self.log_gib else ("UNDER" if d < 0 else "OVER")  # type: ignore[operator]
        if d < -0.005:
            return "UNDER"
        return "OVER" if d > TOLERANCE_GIB[self.term] else "ok"


def compare(e: Entry) -> list[Row]:
    """The plan's terms for the entry's configuration next to the log's, per GPU (the last pipeline stage's)."""
    from stacks.config.vllm import VllmModel
    from stacks.plan.model import stage_weights_bytes, vllm_weights_bytes

    hf, weights_comparable = _hf(e)
    tp, pp = e.tensor_parallel, e.pipeline_parallel
    rows = [Row("context", context_gib(tp, pp, e.moe), e.context_gib if e.modelled else None)]
    arch = hf.arch if hf is not None else ModelArch(e.model, e.parameters_b, 1, 1, 1, 1, 1, 256, experts=int(e.moe))
    spec = VllmModel.model_validate({"model": "x/y", "maxModelLen": 256, "cpu": 1, "memoryGiB": 1,
                                     **({"quantization": "fp8"} if e.quantization == "fp8" and hf is not None and hf.quant_bits is None else {})})
    weights = stage_weights_bytes(vllm_weights_bytes(spec, hf), hf.arch, pp, pp - 1) if hf is not None and weights_comparable else 0
    m = rank_memory(hf or HfModel(e.model, arch, gated=False), round(weights), tp, 1.0, 80 * GIB, e.gpu,
                    e.max_num_batched_tokens, e.max_num_seqs, 0, last_stage=True, pp=pp)
    rows.append(Row("weights", m.weights_bytes / GIB if hf is not None and weights_comparable else None,
                    e.measured.get("weights_gib")))
    modelled = e.modelled
    rows.append(Row("peak", m.peak_bytes / GIB if hf is not None and e.max_num_batched_tokens else None,
                    e.measured.get("activation_peak_gib") if modelled else None))
    rows.append(Row("non_torch", m.non_torch_bytes / GIB, e.measured.get("non_torch_gib") if modelled else None))
    rows.append(Row("cudagraph", m.cudagraph_bytes / GIB, e.measured.get("cudagraph_gib")))
    return rows
