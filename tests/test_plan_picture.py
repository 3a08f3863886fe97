"""The plan picture (tools/plan_picture.py): a panel per node on one GiB scale, every GPU labelled, bounded for fleets."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

from stacks.loader import stack_from
from tests.conftest import plan_of, stack_raw
from tools import plan_picture
from tools.bench import fleet_config
from tools.offline import raw_of

SVG = "{http://www.w3.org/2000/svg}"


def panels(svg: str) -> list[list[str]]:
    """The texts of each panel (matplotlib's SVG: a group `axes_<n>` per subplot), in order."""
    root = ET.fromstring(svg)
    return [[t.text or "" for t in g.iter(f"{SVG}text")] for g in root.iter(f"{SVG}g") if g.get("id", "").startswith("axes_")]


def fleet_plan(nodes: int):
    return stack_from(raw_of(fleet_config(nodes, 4 * nodes))).plan


def test_the_scale_picture_has_a_panel_per_node_with_its_name_and_every_gpu_labelled():
    plan = plan_of(stack_raw("scale"))
    svg = plan_picture.plan_svg(plan, "GPU plan of stack scale")
    got = panels(svg)
    assert len(got) == len(plan.nodes) == 5
    for texts, n in zip(got, plan.nodes):
        assert f"{n.node.name} (pool {n.node.pool})" in texts  # the panel's title
        gpus = [g for g in plan.gpus if g.gpu.node == n.node.name]
        assert [t for t in texts if "/" in t] == [f"{n.node.name}/{g.gpu.index}" for g in gpus]  # one tick per GPU, in order
    assert svg == plan_picture.plan_svg(plan, "GPU plan of stack scale")  # deterministic: the docs compare files


def test_one_node_is_one_panel_titled_by_the_node():
    assert [texts[-1] for texts in panels(plan_picture.plan_svg(plan_of(stack_raw("dev")), "dev"))] == ["workstation"]


def test_a_fleet_is_drawn_in_bounded_time_and_size(monkeypatch):
    plan = fleet_plan(12)
    started = time.perf_counter()
    svg = plan_picture.plan_svg(plan, "fleet")
    assert time.perf_counter() - started < 60 and len(svg) < 2_000_000
    assert len(panels(svg)) == 12
    height_pt = float(ET.fromstring(svg).get("height").removesuffix("pt"))
    assert height_pt < 6 * plan_picture.ROW_IN * 72 + 150  # two 8-GPU nodes a row
    monkeypatch.setattr(plan_picture, "MAX_PANELS", 4)  # past the cap: the first panels, and what was left out
    svg = plan_picture.plan_svg(plan, "fleet")
    texts = [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert len(panels(svg)) == 4
    assert "fleet: the first 4 panels (8 more node(s), 64 GPUs, in the render's GPU table and plan.json)" in texts
