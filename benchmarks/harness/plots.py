"""The PNG plots of the speed and exactness studies."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Tuple

from .report import case_label

__all__ = ["plot_error", "plot_speed"]


def _blocks(doc: Dict[str, Any]) -> List[Tuple[str, int]]:
    keys: List[Tuple[str, int]] = []
    for r in doc["results"]:
        k = (r["model"], r["batch_size"])
        if k not in keys:
            keys.append(k)
    return keys


def plot_speed(doc: Dict[str, Any], out_dir: Path) -> List[Path]:
    """Write ``time_vs_steps.png`` and ``memory.png``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = _blocks(doc)
    ncols = min(len(keys), 3)
    nrows = math.ceil(len(keys) / ncols)
    paths = []

    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.8 * nrows), squeeze=False)
    for ax, (model, batch) in zip(axes.flat, keys):
        block = [r for r in doc["results"] if (r["model"], r["batch_size"]) == (model, batch)
                 and r["status"] == "ok"]
        for ibs, style in ((None, "o-"), (doc["config"]["internal_batch_size"], "s--")):
            pts = sorted((r["n_steps"], r["median_ms"]) for r in block
                         if r["case"] == "ig" and r["internal_batch_size"] == ibs)
            if pts:
                label = "Captum IG" + (f" (internal_batch_size={ibs})" if ibs else "")
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
        for case, color, label in (("xgradient", "C2", "XGradient"),
                                   ("bare", "k", "bare forward+backward")):
            r = next((r for r in block if r["case"] == case), None)
            if r is not None:
                ax.axhline(r["median_ms"], color=color, ls="-" if case == "xgradient" else ":",
                           label=f"{label} ({r['median_ms']:.1f} ms)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("n_steps")
        ax.set_ylabel("median time (ms)")
        ax.set_title(f"{model}, batch {batch}")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.suptitle(f"Attribution time on {doc['device']['name']} ({doc['device']['type']})")
    fig.tight_layout()
    paths.append(out_dir / "time_vs_steps.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    if any("peak_memory_bytes" in r for r in doc["results"]):
        fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4.2 * nrows), squeeze=False)
        for ax, (model, batch) in zip(axes.flat, keys):
            block = [r for r in doc["results"]
                     if (r["model"], r["batch_size"]) == (model, batch)
                     and "peak_memory_bytes" in r
                     and (r["case"] != "ig" or r["n_steps"] in (50, max(doc["config"]["n_steps"])))]
            labels = [case_label(r).replace("train step, ", "step: ")
                      .replace("XGradient.attribute + task forward", "attribute + fwd")
                      for r in block]
            values = [max(r["peak_memory_bytes"], 1) / 2**20 for r in block]
            colors = ["C2" if "xgrad" in r["case"] else "k" if r["case"] == "bare"
                      else "C0" for r in block]
            ax.barh(range(len(values)), values, color=colors)
            ax.set_yticks(range(len(values)))
            ax.set_yticklabels(labels, fontsize=6)
            ax.invert_yaxis()
            ax.set_xscale("log")
            ax.set_xlabel("peak memory (MiB)")
            ax.set_title(f"{model}, batch {batch}")
        for ax in list(axes.flat)[len(keys):]:
            ax.set_visible(False)
        fig.suptitle(f"Peak memory on {doc['device']['name']} ({doc['device']['type']})")
        fig.tight_layout()
        paths.append(out_dir / "memory.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def plot_error(doc: Dict[str, Any], out_dir: Path) -> List[Path]:
    """Write ``error_vs_steps.png``; returns its path in a list."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-12
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, model in enumerate(doc["models"]):
        color = f"C{i}"
        for ax, variant in ((ax1, "x"), (ax2, "biased")):
            pts = sorted((r["n_steps"], r["mean_rel"], r["completeness_max_rel"])
                         for r in doc["results"] if r["model"] == model
                         and r["variant"] == variant and r["method"] == "ig")
            if not pts:
                continue
            n = [p[0] for p in pts]
            ax.plot(n, [max(p[1], floor) for p in pts], "o-", color=color,
                    label=f"{model}: attribution (mean_rel)")
            ax.plot(n, [max(p[2], floor) for p in pts], "x:", color=color,
                    label=f"{model}: completeness")
    ref = [r["reference"] for r in doc["results"] if r["variant"] == "biased"]
    ax1.set_title("X-models: IG(n) vs XGradient")
    ax2.set_title(f"with biases: IG(n) vs {ref[0] if ref else 'reference'}")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("IG n_steps")
        ax.set_ylabel(f"relative error (floored at {floor:g})")
        ax.legend(fontsize=7)
    fig.suptitle(f"Exactness on {doc['device']['name']} ({doc['device']['type']})")
    fig.tight_layout()
    path = out_dir / "error_vs_steps.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
