"""Start-up budgets and the Kubernetes integer fields derived from them, checked before anything renders.

A first start downloads the weights, loads them and (vLLM) compiles; the startupProbe's
failureThreshold, `progressDeadlineSeconds`, `VLLM_ENGINE_READY_TIMEOUT_S` and Pulumi's wait all follow
the budget. Kubernetes stores those fields as int32: a rate typed a million times too small would make
the API server reject the objects at apply time, so the config is refused here, naming the key.
"""

from __future__ import annotations

import math

from stacks.catalog import MIB
from stacks.config import StackConfig, Vllm, key
from stacks.model_catalog import ollama_models
from stacks.plan import OllamaWorkload, Plan, VllmWorkload

INT32_MAX = 2**31 - 1
VLLM_PROBE_PERIOD_SECONDS = 10
OLLAMA_PROBE_PERIOD_SECONDS = 5
"""Periods of the servers' startupProbes; failureThreshold = budget / period."""


def vllm_startup_seconds(w: VllmWorkload, timing: Vllm) -> int:
    """First start: download the checkpoint, load it from the cache, compile and profile. A multi-node replica is ready
    when its slowest rank is: every node downloads the whole checkpoint into its cache (vLLM's loader fetches every
    weight file, not its stage's), then loads its own stage; the ranks do this at the same time. A model served from a
    copy on the cache (`path`) downloads nothing."""
    load = max(w.stage_weights_bytes(s) for s in range(w.spec.pipeline_parallel))
    return math.ceil(download_bytes(w) / (timing.download_mib_per_second * MIB) + load / (timing.load_mib_per_second * MIB)
                     + timing.compile_seconds)


def download_bytes(w: VllmWorkload) -> int:
    """What a first start fetches from the Hub: the checkpoint, or nothing for a copy already on the cache (`path`)."""
    return 0 if w.spec.path is not None else w.weights_bytes


def ollama_rollout_seconds(w: OllamaWorkload, pull_mib_per_second: float, server_start_seconds: int) -> int:
    """Worst case from rollout start to Ready: first pull of the weights, the private server's start and the real one's."""
    return math.ceil(ollama_models()[w.base_model].file_bytes / (pull_mib_per_second * MIB) + 2 * server_start_seconds)


def _too_large(seconds: float) -> bool:
    # progressDeadlineSeconds and VLLM_ENGINE_READY_TIMEOUT_S take the budget itself; Pulumi waits 1.5 x it.
    return seconds > INT32_MAX / 1.5


def timing_problems(cfg: StackConfig, plan: Plan) -> list[str]:
    problems: list[str] = []
    limit = f"beyond what Kubernetes' int32 fields (progressDeadlineSeconds, probe thresholds) hold, {INT32_MAX} s"
    if cfg.vllm is not None and plan.vllm:
        t = cfg.vllm
        w = max(plan.vllm, key=lambda x: vllm_startup_seconds(x, t))  # the longest budget (a `path` copy downloads nothing)
        budget = vllm_startup_seconds(w, t)
        if _too_large(budget):
            terms = {"downloadMiBPerSecond": download_bytes(w) / (t.download_mib_per_second * MIB),
                     "loadMiBPerSecond": w.weights_bytes / (t.load_mib_per_second * MIB), "compileSeconds": t.compile_seconds}
            worst = max(terms, key=terms.__getitem__)
            unit = "s" if worst == "compileSeconds" else "MiB/s"
            value = getattr(t, {"downloadMiBPerSecond": "download_mib_per_second", "loadMiBPerSecond": "load_mib_per_second",
                                "compileSeconds": "compile_seconds"}[worst])
            problems.append(f"{key('vllm', worst)}: {value:g} {unit} makes {w.deployment_name}'s start-up budget {budget:.3g} s, "
                            f"{limit}; was the unit wrong?")
    if cfg.ollama is not None and plan.workloads:
        o = cfg.ollama
        w = plan.workloads[0]
        budget = ollama_rollout_seconds(w, o.pull_mib_per_second, o.server_start_seconds)
        if _too_large(budget) or math.ceil(o.server_start_seconds / OLLAMA_PROBE_PERIOD_SECONDS) > INT32_MAX:
            pull = ollama_models()[w.base_model].file_bytes / (o.pull_mib_per_second * MIB)
            worst, value, unit = (("pullMiBPerSecond", o.pull_mib_per_second, "MiB/s") if pull > 2 * o.server_start_seconds
                                  else ("serverStartSeconds", o.server_start_seconds, "s"))
            problems.append(f"{key('ollama', worst)}: {value:g} {unit} makes the rollout budget {budget:.3g} s, {limit}; "
                            "was the unit wrong?")
    return problems


HPA_MAX_STABILIZATION_SECONDS = 3600
"""The API server's limit on behavior.scaleDown.stabilizationWindowSeconds (autoscaling/v2)."""


def ollama_scale_down_seconds(rollout_budget: int) -> int:
    """How long CPU must stay low before the HPA removes a pod: a pod's start-up budget (at least 5 minutes, at most
    the API's 1 hour), so a pod that takes minutes to pull and load is not removed and added again on every lull."""
    return min(HPA_MAX_STABILIZATION_SECONDS, max(300, rollout_budget))
