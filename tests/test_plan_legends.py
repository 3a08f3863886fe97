"""The plan tables (stacks/plan/report.py) explain only what they show: each legend line only where its table uses it."""

from __future__ import annotations

from stacks.plan import GpuPlan, format_table
from tests.conftest import plan_of, stack_raw, variant

NO_FIT = "  ! = does not fit the GPU's capacity"
SPILL = "; NO: it would spill layers to the CPU"


def test_the_not_fit_mark_is_explained_only_where_a_design_is_marked():
    dev = format_table(plan_of(stack_raw("dev")))
    assert "21.52 !" in dev and NO_FIT in dev.splitlines()  # the bf16 multi-LoRA design does not fit 20 GiB
    roomy = format_table(plan_of(variant(lambda r: [g.update(vramGiB=48) for g in r["nodes"][0]["gpus"]])))
    assert "Adapter pool designs" in roomy and " !" not in roomy and NO_FIT not in roomy


def test_the_spill_legend_only_with_a_pod_marked_no(monkeypatch):
    plan = plan_of(stack_raw("dev"))
    text = format_table(plan)
    assert "whole: it then loads every layer on the GPU" in text and SPILL not in text
    monkeypatch.setattr(GpuPlan, "loads_whole", lambda self, pod: False)  # the table of a plan that spills (a refused one)
    assert SPILL in format_table(plan)


def test_the_kv_column_explains_only_the_kinds_it_shows():
    def legend(stack: str) -> str:
        return [line for line in format_table(plan_of(stack_raw(stack))).splitlines() if line.startswith("vLLM (")][0]

    assert "KV pinned = --kv-cache-memory-bytes on a shared GPU;" in legend("prod") and "profiled =" not in legend("prod")
    assert "KV profiled = vLLM measures, the plan counts the margin off;" in legend("scale") and "pinned =" not in legend("scale")
    assert "KV pinned = --kv-cache-memory-bytes on a shared GPU, profiled = vLLM measures" in legend("lab")
