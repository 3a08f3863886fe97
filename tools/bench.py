"""make bench: render time of each stack and of generated stacks of 50, 200 and 500 models, next
to a bare program that registers the same Kubernetes objects with no components and no checks,
measured in the same run. Render time must grow linearly with the number of models.

    python -m tools.bench [--sizes 50 200 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from typing import Any

import pulumi

from tools.offline import RecordingMocks, RecordingMonitor, run_program, stack_config

GENERATED_MODEL = "AMead10/Llama-3.2-3B-Instruct-AWQ"
MODELS_PER_GPU = 8


def generated_config(models: int) -> dict[str, str]:
    """A one-node stack of `models` small vLLM servers, 8 per 80 GiB GPU (8 x (0.11 share + 0.55 GiB context) + the 1 GiB margin)."""
    gpus = math.ceil(models / MODELS_PER_GPU)
    raw = {
        "namespace": "bench",
        "nodes": [{
            "name": "bench-node", "cpu": 4 * models + 8, "memoryGiB": 8 * models + 64,
            "gpus": [{"index": i, "vramGiB": 80, "uuid": f"GPU-00000000-0000-0000-0000-{i:012x}"} for i in range(gpus)],
        }],
        "vllm": {"models": {
            f"m{i:04d}": {"model": GENERATED_MODEL, "maxModelLen": 8192, "gpuMemoryUtilization": 0.11, "cpu": 2, "memoryGiB": 6}
            for i in range(models)
        }},
    }
    return {f"llm-infra:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


MULTI_NODE_MODEL = "ibm-granite/granite-3.1-8b-instruct"
"""Not gated (no token), 32 heads over tensor parallel 8: a stand-in for a model larger than a node."""


def fleet_config(nodes: int, models: int) -> dict[str, str]:
    """A fleet of `nodes` nodes of 8 GPUs in three pools: a fifth `xl` (80 GiB), where each pair of nodes serves a
    multi-node model (tensor parallel 8 x pipeline parallel 2: a LeaderWorkerSet over two whole nodes), and the rest in
    `big` (80 GiB) and `small` (44 GiB) serving the other `models` small vLLM servers, alternately."""
    xl = nodes // 5
    big = (nodes - xl) // 2
    multi = min(xl // 2, models)

    def pool(i: int) -> str:
        return "xl" if i < xl else "big" if i < xl + big else "small"

    raw = {
        "namespace": "fleet",
        "nodes": [{
            "name": f"gpu-{i:03d}", "cpu": 256, "memoryGiB": 2048, "pool": pool(i),
            "gpus": [{"index": g, "vramGiB": 44 if pool(i) == "small" else 80, "uuid": f"GPU-00000000-0000-0000-{i:04x}-{g:012x}"}
                     for g in range(8)],
        } for i in range(nodes)],
        "gpuSharing": {"mode": "visible-devices"},
        "vllm": {"models": {
            **{f"x{i:03d}": {"model": MULTI_NODE_MODEL, "maxModelLen": 32768, "tensorParallel": 8, "pipelineParallel": 2,
                             "gpuMemoryUtilization": 0.9, "cpu": 16, "memoryGiB": 64, "pool": "xl"} for i in range(multi)},
            **{f"m{i:04d}": {"model": GENERATED_MODEL, "maxModelLen": 8192, "gpuMemoryUtilization": 0.12 if i % 2 else 0.2,
                             "cpu": 2, "memoryGiB": 6, "pool": "small" if i % 2 else "big"} for i in range(models - multi)},
        }},
    }
    return {f"llm-infra:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def plan_seconds(nodes: int, models: int, repeat: int) -> float:
    """Best time to validate a generated fleet and build its plan, graph and name registry (no Pulumi)."""
    from stacks.loader import stack_from

    raw = {k.split(":", 1)[1]: json.loads(v) if v[:1] in "{[" else v for k, v in fleet_config(nodes, models).items()}
    best = math.inf
    for _ in range(repeat):
        _settle()
        started = time.perf_counter()
        stack_from(raw, frozenset())
        best = min(best, time.perf_counter() - started)
    return best


def _token(obj: dict[str, Any]) -> str:
    group, _, version = obj["apiVersion"].rpartition("/")
    return f"kubernetes:{group or 'core'}/{version}:{obj['kind']}"


def bare(objects: list[dict[str, Any]]) -> float:
    """Register the same objects as plain custom resources: no components, config, plan or checks."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="llm-infra", stack="bare", preview=False, monitor=RecordingMonitor(mocks))
    pulumi.runtime.set_all_config({})
    started = time.perf_counter()

    @pulumi.runtime.test
    def run():
        for o in objects:
            meta = o["metadata"]
            pulumi.CustomResource(_token(o), f"{o['kind']}-{meta.get('namespace', '')}-{meta['name']}",
                                  {k: v for k, v in o.items()})

    run()
    elapsed = time.perf_counter() - started
    assert len([r for r in mocks.resources if r.custom]) == len(objects)
    return elapsed


def _settle() -> None:
    """Start each measurement from the same heap: collect what earlier runs left, and keep the
    survivors (imports, caches) out of later collections. Without this, the cyclic GC rescans
    every earlier run's objects and later, larger runs look slower per object than they are."""
    gc.collect()
    gc.freeze()


def measure(config: dict[str, str], secrets: list[str], stack: str, repeat: int) -> tuple[int, float, float, float]:
    """(objects, program s, program s with the cyclic GC paused, bare s): best of `repeat` each."""
    best_prog = best_nogc = best_bare = math.inf
    objects: list[dict[str, Any]] = []
    for _ in range(repeat):
        _settle()
        started = time.perf_counter()
        run = run_program(config, secrets, stack)
        best_prog = min(best_prog, time.perf_counter() - started)
        objects = run.objects()
        del run
        _settle()
        gc.disable()
        started = time.perf_counter()
        run_program(config, secrets, stack)
        best_nogc = min(best_nogc, time.perf_counter() - started)
        gc.enable()
        _settle()
        best_bare = min(best_bare, bare(objects))
    return len(objects), best_prog, best_nogc, best_bare


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500])
    p.add_argument("--repeat", type=int, default=3, help="best of N runs")
    p.add_argument("--fleet", type=int, nargs=2, default=[100, 500], metavar=("NODES", "MODELS"),
                   help="a generated fleet of NODES nodes (three pools) and MODELS models (a tenth of them over two "
                        "nodes each), rendered too")
    a = p.parse_args(argv)
    measure(*stack_config("dev"), "dev", 1)  # warm up imports and schema of the SDK
    rows = []
    work = [(s, None, *stack_config(s)) for s in ("dev", "prod", "lab", "scale")]
    work += [(f"generated-{n}", n, generated_config(n), []) for n in a.sizes]
    work.append((f"fleet-{a.fleet[0]}", a.fleet[1], fleet_config(*a.fleet), []))
    for i, (name, models, config, secrets) in enumerate(work, 1):
        print(f"[{i}/{len(work)}] {name}: best of {a.repeat} ...", file=sys.stderr, flush=True)  # the 500-model one takes a while
        rows.append((name, models, *measure(config, secrets, name if models is None else "bench", a.repeat)))
    head = (f"{'stack':<15} {'models':>6} {'objects':>7} {'program s':>9} {'ms/object':>9} {'no-GC ms/obj':>12} "
            f"{'bare s':>7} {'ms/object':>9} {'ratio':>6}")
    print(head)
    print("-" * len(head))
    for stack, models, objects, prog, nogc, bare_s in rows:
        print(f"{stack:<15} {models if models else '':>6} {objects:>7} {prog:>9.3f} {1000 * prog / objects:>9.2f} "
              f"{1000 * nogc / objects:>12.2f} {bare_s:>7.3f} {1000 * bare_s / objects:>9.2f} {prog / bare_s:>6.2f}")
    print("ratio = program / bare, same objects, same run. no-GC = the program with Python's cyclic GC paused.")
    nodes, models = a.fleet
    small, large = plan_seconds(nodes, models, a.repeat), plan_seconds(4 * nodes, 4 * models, a.repeat)
    print(f"\nplan alone (config, plan, graph, names): fleet of {nodes} nodes / {models} models {small:.3f} s "
          f"({1000 * small / models:.3f} ms/model), {4 * nodes} / {4 * models} {large:.3f} s ({1000 * large / (4 * models):.3f} "
          f"ms/model): x{large / small / 4:.2f} per model for 4x the fleet")
    gen = [r for r in rows if r[0].startswith("generated-")]
    if len(gen) >= 2:
        (_, n0, o0, p0, g0, b0), (_, n1, o1, p1, g1, b1) = gen[0], gen[-1]
        scale = o1 / o0
        print(f"\n{n0} -> {n1} models (objects x{scale:.1f}), time per object grows: program x{p1 / p0 / scale:.2f}, "
              f"program without GC x{g1 / g0 / scale:.2f}, bare x{b1 / b0 / scale:.2f}")
        linear = g1 / g0 / scale <= 1.25
        print("the program's own work is " + ("linear" if linear else "SUPERLINEAR") +
              " in the number of models (no-GC time per object within 25 %); what grows with GC on is CPython's "
              "cyclic collector rescanning a larger heap, which the bare program shows too.")
        if not linear:
            return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
