"""The plan as a picture: a panel per node, one bar per GPU stacked by pod (weights, KV cache, overhead), the capacity as a line.

Drawn with matplotlib (SVG, text kept as text, ids salted and no date, so the same plan gives the same file). Every panel
has the same GiB scale and the same bar width, so GPUs compare across nodes. Whatever lies above a GPU's capacity is
drawn red; a plan the program accepts has none, but the margin a vLLM GPU keeps free is drawn as a dashed line below it.
A node of more than PANEL_GPUS GPUs takes several panels; past MAX_PANELS panels the picture stops and says how many
nodes it left out (the render's GPU table and plan.json hold every GPU).
"""

from __future__ import annotations

import io

from stacks.catalog import GIB
from stacks.plan import GpuPlan, Plan, VllmShare

COLORS = {"weights": "#4c72b0", "kv": "#55a868", "overhead": "#c4a464"}
OVER = "#c44e52"
PANEL_GPUS = 8
"""GPUs per panel: a node with more takes several panels."""
ROW_GPUS = 16
"""GPU slots per row of panels: panels share a row while their GPUs fit."""
MAX_PANELS = 24
"""Panels drawn at most: a bigger fleet is read in its table; the picture keeps a bounded size."""
SLOT_IN = 1.0
ROW_IN = 3.2


def panels(plan: Plan) -> list[tuple[str, list[GpuPlan]]]:
    """(title, GPUs) per panel: a node each (with its pool), in the plan's order; at most PANEL_GPUS GPUs a panel."""
    pool = {n.node.name: n.node.pool for n in plan.nodes}
    by_node: dict[str, list[GpuPlan]] = {}
    for g in plan.gpus:
        by_node.setdefault(g.gpu.node, []).append(g)
    out = []
    for node, gpus in by_node.items():
        name = f"{node} (pool {pool[node]})" if pool.get(node) else node
        if len(gpus) <= PANEL_GPUS:
            out.append((name, gpus))
            continue
        for i in range(0, len(gpus), PANEL_GPUS):
            chunk = gpus[i:i + PANEL_GPUS]
            out.append((f"{name}, GPUs {chunk[0].gpu.index}-{chunk[-1].gpu.index}", chunk))
    return out


def short(pod: str) -> str:
    return pod.removeprefix("vllm-").removeprefix("ollama-adapter-").removeprefix("ollama-")


def plan_svg(plan: Plan, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "llm-infra", "font.size": 9}):
        fig = plan_figure(plan, title)
        out = io.StringIO()
        fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": "llm-infra"})
        plt.close(fig)
    return out.getvalue()


def rows_of(shown: list[tuple[str, list[GpuPlan]]]) -> list[list[tuple[str, list[GpuPlan]]]]:
    """Panels in rows of at most ROW_GPUS GPU slots, in order: a row of 8-GPU nodes holds two, of 4-GPU nodes four."""
    rows: list[list[tuple[str, list[GpuPlan]]]] = [[]]
    for panel in shown:
        if rows[-1] and sum(len(g) for _, g in rows[-1]) + len(panel[1]) > ROW_GPUS:
            rows.append([])
        rows[-1].append(panel)
    return rows


def plan_figure(plan: Plan, title: str):
    """The figure: the panels in a grid whose columns are GPU slots, so a bar is as wide in every panel."""
    import matplotlib.pyplot as plt

    every = panels(plan)
    shown = every[:MAX_PANELS]
    rows = rows_of(shown)
    slots = max(sum(len(g) for _, g in row) for row in rows)
    if len(shown) == 1:  # one node: the picture of a workstation, as wide as its GPUs need
        size, axes_in = (max(5.0, 1.5 * slots + 2), 5.4), 4.3
    else:
        size, axes_in = (slots * SLOT_IN + 0.8 * max(len(r) for r in rows), len(rows) * ROW_IN + 1.0), ROW_IN * 0.7
    fig = plt.figure(figsize=size, layout="constrained")
    grid = fig.add_gridspec(len(rows), slots)
    ymax = max(g.gpu.capacity_bytes for _, gpus in shown for g in gpus) / GIB * (1.1 if len(shown) == 1 else 1.16)
    bar_in = 0.6 * size[0] / slots * 0.85
    first = None
    for r, row in enumerate(rows):
        col = 0
        for i, (name, gpus) in enumerate(row):
            ax = fig.add_subplot(grid[r, col:col + len(gpus)], sharey=first)
            first = first or ax
            col += len(gpus)
            draw_panel(ax, plan, gpus, ymax, bar_in, axes_in / ymax, wide=len(shown) == 1 and slots <= 4)
            ax.set_title(name, fontsize=9)
            if i == 0:
                ax.set_ylabel("GiB")
            else:
                ax.tick_params(labelleft=False)
    left = every[MAX_PANELS:]
    fig.suptitle(title if not left else
                 f"{title}: the first {len(shown)} panels ({len({g.gpu.node for _, gpus in left for g in gpus})} more node(s), "
                 f"{sum(len(g) for _, g in left)} GPUs, in the render's GPU table and plan.json)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLORS.values()] + [plt.Line2D([], [], color="black", linewidth=1.5)]
    names = ["weights", "KV cache", "overhead (context, activations, engine)", "capacity (as CUDA reports it)"]
    if plan.vllm:
        handles.append(plt.Line2D([], [], color="black", linewidth=0.8, linestyle="dashed"))
        names.append("capacity less the vLLM margin")
    if any(g.allocated_bytes > g.gpu.capacity_bytes for _, gpus in shown for g in gpus):
        handles.append(plt.Rectangle((0, 0), 1, 1, color=OVER))
        names.append("above the capacity")
    fig.legend(handles, names, loc="outside lower center", ncol=2 if len(shown) == 1 else 3, frameon=False, fontsize=7)
    return fig


def draw_panel(ax, plan: Plan, gpus: list[GpuPlan], ymax: float, bar_in: float, in_per_gib: float, wide: bool) -> None:
    """One bar per GPU, stacked by pod, its capacity as a line and `allocated of capacity` above it (on one line if `wide`)."""
    xs, heights, bottoms, colors = [], [], [], []
    tops, caps, margins = [], [], []  # (y, x) of the lines between pods, of the capacities, of the vLLM margins
    for x, g in enumerate(gpus):
        bottom = 0.0
        cap = g.gpu.capacity_bytes / GIB
        for p in g.pods:
            for part, value in (("weights", p.weights_bytes), ("kv", p.kv_bytes), ("overhead", p.overhead_bytes)):
                height = value / GIB
                over = max(0.0, bottom + height - cap)
                xs.append(x), heights.append(height - over), bottoms.append(bottom), colors.append(COLORS[part])
                if over:
                    xs.append(x), heights.append(over), bottoms.append(max(cap, bottom)), colors.append(OVER)
                bottom += height
            pod_label(ax, x, bottom - p.total_bytes / GIB / 2, short(p.name), bar_in, p.total_bytes / GIB * in_per_gib)
            tops.append((bottom, x))
        caps.append((cap, x))
        if plan.vllm_margin_bytes and any(isinstance(p, VllmShare) for p in g.pods):
            margins.append((cap - plan.vllm_margin_bytes / GIB, x))
        ax.text(x, cap + ymax * 0.01, f"{g.allocated_bytes / GIB:.2f}{' ' if wide else chr(10)}of {cap:.2f} GiB", ha="center",
                va="bottom", fontsize=8 if wide else 7, linespacing=1.0)
    ax.bar(xs, heights, bottom=bottoms, width=0.6, color=colors, edgecolor="white", linewidth=0.5)
    for lines, half, style in ((tops, 0.3, dict(colors="white", linewidth=2)), (caps, 0.4, dict(colors="black", linewidth=1.5)),
                               (margins, 0.4, dict(colors="black", linewidth=0.8, linestyles="dashed"))):
        if lines:
            ax.hlines([y for y, _ in lines], [x - half for _, x in lines], [x + half for _, x in lines], **style)
    ax.set_xticks(range(len(gpus)), [f"{g.gpu.node}/{g.gpu.index}" for g in gpus], fontsize=9 if wide else 7)
    ax.set_xlim(-0.6, len(gpus) - 0.4)
    ax.set_ylim(0, ymax)


def pod_label(ax, x: float, y: float, text: str, bar_in: float, height_in: float) -> None:
    """A pod's name inside its part of the bar: across it if it fits, along it if the part is tall, else smaller."""
    size = 7.0
    text = text.replace(" (", "\n(")  # `llama-8b-8 (reserved)` on two lines
    width_in = max(len(line) for line in text.splitlines()) * size * 0.6 / 72
    rotation = 0
    if width_in > bar_in:
        if size * bar_in / width_in < 5.5 and height_in > width_in:
            rotation = 90
        else:
            size = max(4.0, size * bar_in / width_in)
    ax.text(x, y, text, ha="center", va="center", fontsize=size, color="white", fontweight="bold", rotation=rotation,
            linespacing=1.0)
