"""`make calibrate`: the plan's vLLM memory terms next to published startup logs, term by term, with the deviations.

    make calibrate                       every entry of calibration/vllm-startup-logs.yaml
    make calibrate LOG=<file> [STACK=s]  your own vLLM startup log against the stack's pod that serves its model

A log is read as vLLM's V1 engine prints it (0.17 and later: "Model loading took", "Memory profiling takes ... torch
peak memory increase ... non-torch forward increase memory", "CUDA graph pool memory: X GiB (actual)", "worker init
memory snapshot: ... free_memory=..., total_memory=..."). A log without those lines, of another engine or version, or of
a model no pod of the stack serves is refused with what is missing: nothing is guessed.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import yaml

from stacks.calibration import FROM_VERSION, TERMS, TOLERANCE_GIB, WEIGHTS_TOLERANCE, Row, compare, entries, gpu_key
from stacks.catalog import GIB
from stacks.plan.report import text_table
from tools.status import load  # the stack as the program reads it (Pulumi.yaml defaults, the stack file, secret placeholders)

LINES = {
    "weights_gib": r"Model loading took ([\d.]+) GiB",
    "activation_peak_gib": r"torch peak memory increase: ([\d.]+)GiB",
    "non_torch_gib": r"non-torch forward increase memory: ([\d.]+)GiB",
    "cudagraph_gib": r"CUDA graph pool memory: ([\d.]+) GiB \(actual\)",
}
SNAPSHOT = r"init memory snapshot: .*?free_memory=([\d.]+)GiB, total_memory=([\d.]+)GiB"
VERSION = r"Initializing a V1 LLM engine \(v([\d.]+)[^)]*\)"
ARGS = r"non-default args: (\{.*\})"


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def table(rows: list[tuple[str, list[Row]]]) -> str:
    out = [("log", "term", "plan GiB", "log GiB", "plan - log", "")]
    for name, terms in rows:
        for r in terms:
            if r.log_gib is None or r.plan_gib is None:
                continue
            out.append((name, r.term, _fmt(r.plan_gib), _fmt(r.log_gib), "-" if r.deviation is None else f"{r.deviation:+.2f}", r.verdict))
    return text_table(out, left=2, right=[2, 3, 4])


class LogError(Exception):
    pass


CONTEXT_AT_MOST_GIB = 3.0
"""A context outside the share above this (the logs: 0.51-2.07) means other processes held the GPU when vLLM started."""


def parse_log(text: str) -> dict:
    """The settings and per-GPU figures of one vLLM V1 start-up: the log's last start (a restart after a crash repeats every
    line), each figure the largest any rank printed (ranks differ a little; the plan must hold the largest)."""
    starts = [m.start() for m in re.finditer(r"non-default args: ", text)]
    if not starts:
        raise LogError("no 'non-default args:' line: give the log from the server's first line (a text log, not JSON)")
    text = text[starts[-1]:]
    version = re.search(VERSION, text)
    if version is None:
        raise LogError("no 'Initializing a V1 LLM engine (vX.Y.Z)' line: not a vLLM V1 engine start-up log (vLLM 0.17 or later "
                       "at the default log level)")
    release = tuple(int(p) for p in version.group(1).split(".")[:2])
    if release < FROM_VERSION:
        raise LogError(f"vLLM {version.group(1)} profiles differently (its activation figure was about 2.5 x today's); the plan "
                       f"is calibrated on {'.'.join(map(str, FROM_VERSION))} and later")
    if re.search(r"skipped memory profiling", text):
        raise LogError("this start pinned its KV cache (--kv-cache-memory-bytes, as the plan does on a shared GPU), so vLLM "
                       "skipped profiling and printed no peak or non-torch figures: start the same model once alone on a GPU "
                       "of the same kind, at the pod's settings but without the pin, and give that log")
    measured = {}
    missing = []
    for key_, pattern in LINES.items():
        found = [float(x) for x in re.findall(pattern, text)]
        if not found:
            missing.append(pattern.split("(")[0].strip().rstrip(":"))
        else:
            measured[key_] = max(found)
    if missing:
        raise LogError(f"the log has no {', '.join(repr(x) for x in missing)} line: start vLLM with VLLM_LOGGING_LEVEL=DEBUG "
                       "and without --enforce-eager, and give the whole start-up log")
    snaps = re.findall(SNAPSHOT, text)
    try:
        args = ast.literal_eval(re.search(ARGS, text).group(1))  # type: ignore[union-attr]
    except (ValueError, SyntaxError, AttributeError):
        raise LogError("the 'non-default args:' line cannot be read") from None
    tokens = re.search(r"max_num_batched_tokens[ =]+(\d+)", text)
    seqs = re.search(r"max_num_seqs to (\d+)|'max_num_seqs': (\d+)", text)
    total = max(float(t) for _, t in snaps) if snaps else None
    context = round(max(float(t) - float(f) for f, t in snaps), 2) if snaps else None
    if context is not None and context > CONTEXT_AT_MOST_GIB:
        raise LogError(f"{context:.2f} GiB of the GPU was in use when vLLM took its first snapshot: other processes held the "
                       "GPU; give the log of a start on an idle GPU")
    return {
        "vllm_version": version.group(1), "release": release, "model": args.get("model") or args.get("model_tag"),
        "quantization": args.get("quantization"), "dtype": args.get("dtype", "auto"),
        "tensor_parallel": int(args.get("tensor_parallel_size", 1)), "pipeline_parallel": int(args.get("pipeline_parallel_size", 1)),
        "max_num_batched_tokens": int(tokens.group(1)) if tokens else None,
        "max_num_seqs": int(next(g for g in seqs.groups() if g)) if seqs else None,
        "cuda_total_gib": total, "context_gib": context, "measured": measured,
    }


OLLAMA_BUFFERS = r"CUDA(\d+) (model|KV|compute) buffer size\s*=\s*([\d.]+) MiB"
"""llama-server's buffer lines, which Ollama parses after a load for /api/ps (server/llama_server.go, Ollama 0.32)."""


def from_ollama_log(path: Path, text: str, stack: str, config: Path | None, role: str) -> int:
    """An Ollama server's log: llama-server's model, KV and compute buffers against the plan's pod of `role`."""
    found: dict[str, float] = {}
    for _, kind, mib in re.findall(OLLAMA_BUFFERS, text):
        if kind == "model" and "compute" in found:  # a new load: keep the last one only (every GPU of a load is summed)
            found = {}
        found[kind] = found.get(kind, 0.0) + float(mib) / 1024
    missing = [k for k in ("model", "KV", "compute") if k not in found]
    if missing:
        print(f"calibrate: {path}: no 'CUDA0 {missing[0]} buffer size = ... MiB' line: give the log of a model load "
              "(OLLAMA_DEBUG=1 is not needed; the lines come with every load)", file=sys.stderr)
        return 2
    plan = load(stack, config).plan
    pods = [w for w in plan.workloads if w.role == role]
    if not pods:
        print(f"calibrate: {path}: stack {stack} has no Ollama server {role!r} (roles: "
              f"{', '.join(sorted(w.role for w in plan.workloads)) or 'none'}); give ROLE=<role>", file=sys.stderr)
        return 2
    pod = pods[0].pods[0]
    rows = [Row("weights", pod.weights_bytes / GIB, round(found["model"], 2)), Row("kv", pod.kv_bytes / GIB, round(found["KV"], 2)),
            Row("compute", pod.surcharge_bytes / GIB, round(found["compute"], 2))]
    print(f"{path}: Ollama server {role} of stack {stack} (the plan: Ollama 0.32's PredictServerVRAM; the log: llama-server's buffers)")
    out = [("term", "plan GiB", "log GiB", "plan - log")]
    for r in rows:
        out.append((r.term, _fmt(r.plan_gib), _fmt(r.log_gib), f"{r.deviation:+.2f}"))  # type: ignore[str-format]
    print(text_table(out, left=1))
    under = [r for r in rows if (r.deviation or 0) < -0.005]
    if any(r.term == "compute" for r in under):
        gap = -next(r.deviation for r in under if r.term == "compute")  # type: ignore[operator]
        print(f"the compute buffers are {gap:.2f} GiB above the plan's surcharge: raise plan.cudaContextGiB by that much")
    if any(r.term in ("weights", "kv") for r in under):
        print(f"the log's weights or KV cache differ from the plan's: is it a load of ollama.baseModel with server {role}'s "
              "contextLength x parallel? (the log's last load is compared)")
    return 0


def from_log(path: Path, stack: str, config: Path | None = None, write: Path | None = None, role: str = "base") -> int:
    from stacks.calibration import Entry
    from stacks.model_catalog import hf_models

    text = path.read_text(errors="replace")
    if re.search(OLLAMA_BUFFERS, text) and "V1 LLM engine" not in text:
        return from_ollama_log(path, text, stack, config, role)
    try:
        got = parse_log(text)
    except LogError as exc:
        print(f"calibrate: {path}: {exc}", file=sys.stderr)
        return 2
    planned = load(stack, config)
    cfg = planned.config
    ours = {k: m for k, m in (cfg.vllm.models.items() if cfg.vllm else []) if m.model == got["model"]}
    if not ours:
        served = ", ".join(sorted({m.model for m in cfg.vllm.models.values()})) if cfg.vllm else "none"
        print(f"calibrate: {path}: the log serves {got['model']}, which no vLLM model of stack {stack} serves ({served})", file=sys.stderr)
        return 2
    key_, spec = next(iter(sorted(ours.items())))
    if (spec.tensor_parallel, spec.pipeline_parallel) != (got["tensor_parallel"], got["pipeline_parallel"]):
        print(f"calibrate: {path}: the log runs TP {got['tensor_parallel']} PP {got['pipeline_parallel']}, the stack's "
              f"{key_} TP {spec.tensor_parallel} PP {spec.pipeline_parallel}: the terms would not compare", file=sys.stderr)
        return 2
    from stacks.catalog import VLLM_RELEASES
    from stacks.config.images import _release

    accepted = VLLM_RELEASES + ((_release(cfg.vllm.accept_version)[:2],) if cfg.vllm.accept_version else ())  # type: ignore[index, union-attr]
    differs = [f"{what} {mine!r} (the stack's {key_}: {theirs!r})" for what, mine, theirs in (
        ("vLLM", ".".join(map(str, got["release"])), " or ".join(".".join(map(str, r)) for r in accepted)),
        ("quantization", got["quantization"], spec.quantization), ("dtype", got["dtype"], spec.dtype))
        if (mine not in theirs if what == "vLLM" else mine != theirs)]
    if differs:
        print(f"calibrate: {path}: the log's {'; '.join(differs)} differ: its figures would not be the pod's", file=sys.stderr)
        return 2
    w = next(x for x in planned.plan.vllm if x.key == key_)
    gpu = next(g for g in planned.plan.gpus if any(p.workload == w.deployment_name for p in g.pods)).gpu
    if got["cuda_total_gib"] is not None and abs(got["cuda_total_gib"] - gpu.capacity_bytes / GIB) > 0.5:
        print(f"calibrate: {path}: the log's GPU has {got['cuda_total_gib']:.2f} GiB, the stack's {key_} runs on "
              f"{gpu.model or 'a GPU'} of {gpu.capacity_bytes / GIB:.2f} GiB: a log of another GPU would not calibrate it", file=sys.stderr)
        return 2
    hf = hf_models().get(got["model"])
    entry = Entry(id=f"{stack}-{key_}", source=str(path), vllm_version=got["vllm_version"], engine="V1", gpu=gpu_key(gpu),
                  model=got["model"], arch_from=got["model"] if hf else None, same_checkpoint=True, moe=bool(hf and hf.arch.moe),
                  parameters_b=hf.arch.parameters_b if hf else 0.0, quantization=spec.quantization,
                  tensor_parallel=got["tensor_parallel"], pipeline_parallel=got["pipeline_parallel"],
                  max_num_batched_tokens=got["max_num_batched_tokens"], max_num_seqs=got["max_num_seqs"],
                  measured=got["measured"], context_gib=got["context_gib"])
    print(f"{path}: vLLM {got['vllm_version']}, {got['model']} TP {got['tensor_parallel']} PP {got['pipeline_parallel']}, "
          f"GPU total {_fmt(got['cuda_total_gib'])} GiB; stack {stack}'s vllm.models.{key_}")
    print(table([(path.stem, compare(entry))]))
    if write is not None:
        from stacks.vllm_memory import batch_defaults
        tokens, seqs = batch_defaults(gpu.capacity_bytes, gpu.model)
        pod = (spec.max_num_batched_tokens or tokens, spec.max_num_seqs or seqs)
        if (got["max_num_batched_tokens"], got["max_num_seqs"]) != pod:
            print(f"calibrate: the log ran {got['max_num_batched_tokens']} batched tokens and {got['max_num_seqs']} sequences, "
                  f"the pod {pod[0]} and {pod[1]}: the plan would never use the entry; nothing written (start vLLM at the "
                  "pod's settings)", file=sys.stderr)
            return 2
        return write_entry(entry, got, write)
    return 0


def write_entry(entry, got: dict, directory: Path) -> int:
    """The log's figures as a local calibration entry: the plan then uses them for this model, GPU and settings."""
    if entry.pipeline_parallel != 1 or entry.context_gib is None or entry.max_num_batched_tokens is None or entry.max_num_seqs is None:
        print("calibrate: only a single-stage log with its init snapshot and batch settings can stand for the pod (a pipeline "
              "stage's figures differ per rank); nothing written", file=sys.stderr)
        return 2
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{entry.id}.yaml"
    data = {"entries": [{
        "id": entry.id, "source": entry.source, "vllm_version": entry.vllm_version, "engine": "V1", "gpu": entry.gpu,
        "cuda_total_gib": got["cuda_total_gib"], "model": entry.model, "moe": entry.moe, "parameters_b": entry.parameters_b,
        "quantization": entry.quantization, "tensor_parallel": entry.tensor_parallel, "pipeline_parallel": 1,
        "max_num_batched_tokens": entry.max_num_batched_tokens, "max_num_seqs": entry.max_num_seqs,
        "measured": entry.measured,
        "derived": {"context_outside_share_gib": {"value": entry.context_gib, "formula": "total_memory - free_memory of the init snapshot"}},
    }]}
    out.write_text("# Written by make calibrate LOG=... WRITE=1 from a team's own vLLM start-up log: the plan uses these\n"
                   "# figures for this model, GPU, parallelism and batch settings (stacks/calibration.py local_entries).\n"
                   + yaml.safe_dump(data, sort_keys=False))
    print(f"wrote {out}: the plan now takes the log's context, profile peak, non-torch and CUDA graph figures for {entry.model} "
          f"on {entry.gpu} at TP {entry.tensor_parallel} with {entry.max_num_batched_tokens} batched tokens and "
          f"{entry.max_num_seqs} sequences (commit it to keep it)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make calibrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--log", type=Path, help="a vLLM startup log of your own")
    ap.add_argument("--stack", default="prod")
    ap.add_argument("--config", type=Path, help="a stack file other than Pulumi.<stack>.yaml")
    ap.add_argument("--role", default="base", help="the Ollama server an Ollama log is of")
    ap.add_argument("--write", action="store_true", help="keep the log's figures as a calibration entry the plan uses")
    ap.add_argument("--local-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.log is not None:
        from stacks.calibration import LOCAL
        return from_log(args.log, args.stack, args.config, (args.local_dir or LOCAL) if args.write else None, args.role)
    rows = [(e.id, compare(e)) for e in entries()]
    print(f"The plan's vLLM terms against {len(rows)} published startup logs (calibration/vllm-startup-logs.yaml; per GPU, "
          "the last pipeline stage's)")
    print(table(rows))
    bad = [(n, r) for n, rs in rows for r in rs if r.verdict in ("UNDER", "OVER")]
    tol = ", ".join(f"{t} +{v:g}" for t, v in TOLERANCE_GIB.items())
    print(f"\nUNDER: the plan is below the log (the pod would not start, or squeeze its neighbours); OVER: more than the "
          f"tolerance above it ({tol} GiB; weights within {WEIGHTS_TOLERANCE:.0%}). Terms: {', '.join(TERMS)}; a term the "
          f"log does not print, or that needs an architecture the catalog lacks, is left out.")
    print(f"{len(bad)} term(s) out of tolerance" if bad else "every term within tolerance")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
