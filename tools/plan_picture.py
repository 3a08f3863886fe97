"""The plan as a picture: one bar per GPU, stacked by pod (weights, KV cache, overhead), the capacity as a line.

Drawn with matplotlib (SVG, text kept as text, ids salted so the same plan gives the same file).
Whatever lies above a GPU's capacity is drawn red; a plan the program accepts has none, but the
margin a vLLM GPU keeps free is drawn as a dashed line below the capacity.
"""

from __future__ import annotations

import io

from stacks.catalog import GIB
from stacks.plan import Plan, VllmShare

COLORS = {"weights": "#4c72b0", "kv": "#55a868", "overhead": "#c4a464"}


def plan_svg(plan: Plan, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "llm-infra", "font.size": 9})
    gpus = plan.gpus
    fig, ax = plt.subplots(figsize=(max(5.0, 1.5 * len(gpus) + 2), 5.4))
    for x, g in enumerate(gpus):
        bottom = 0.0
        cap = g.gpu.capacity_bytes / GIB
        for p in g.pods:
            for part, value in (("weights", p.weights_bytes), ("kv", p.kv_bytes), ("overhead", p.overhead_bytes)):
                height = value / GIB
                over = max(0.0, bottom + height - cap)
                ax.bar(x, height - over, bottom=bottom, width=0.6, color=COLORS[part], edgecolor="white", linewidth=0.5)
                if over:
                    ax.bar(x, over, bottom=cap, width=0.6, color="#c44e52", edgecolor="white", linewidth=0.5)
                bottom += height
            ax.text(x, bottom - p.total_bytes / GIB / 2, p.name.removeprefix("vllm-").removeprefix("ollama-adapter-").removeprefix("ollama-"),
                    ha="center", va="center", fontsize=7, color="white", fontweight="bold")
            ax.hlines(bottom, x - 0.3, x + 0.3, colors="white", linewidth=2)
        ax.hlines(cap, x - 0.4, x + 0.4, colors="black", linewidth=1.5)
        if plan.vllm_margin_bytes and any(isinstance(p, VllmShare) for p in g.pods):
            ax.hlines(cap - plan.vllm_margin_bytes / GIB, x - 0.4, x + 0.4, colors="black", linewidth=0.8, linestyles="dashed")
        ax.text(x, cap * 1.015, f"{g.allocated_bytes / GIB:.2f} of {cap:.2f} GiB", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(gpus)), [f"{g.gpu.node}/{g.gpu.index}" for g in gpus])
    ax.set_xlim(-0.6, len(gpus) - 0.4)
    ax.set_ylabel("GiB")
    ax.set_ylim(0, max(g.gpu.capacity_bytes for g in gpus) / GIB * 1.1)
    ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLORS.values()] + [plt.Line2D([], [], color="black", linewidth=1.5)]
    names = ["weights", "KV cache", "overhead (context, activations, engine)", "capacity (as CUDA reports it)"]
    if plan.vllm:
        handles.append(plt.Line2D([], [], color="black", linewidth=0.8, linestyle="dashed"))
        names.append("capacity less the vLLM margin")
    ax.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False, fontsize=7)
    fig.tight_layout()
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": "llm-infra"})
    plt.close(fig)
    return out.getvalue()
