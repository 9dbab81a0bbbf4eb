#!/usr/bin/env python
"""Every class at once: ``XGradient.attribute_targets`` vs looping over targets.

For T = 1, 10, 100, 1000 targets (the first T classes of a 1000-class zoo model),
times and measures the peak memory of

- ``batched``: ``XGradient.attribute_targets(x, targets)``: one forward pass and
  batched backward passes (``target_batch_size`` targets each, default 64);
- ``xgrad_loop``: ``torch.stack([XGradient.attribute(x, target=t) for t in targets], 1)``;
- ``ig_loop``: the same loop with Captum's ``IntegratedGradients(n_steps=50)``.

A loop whose run would exceed ``--loop-budget`` seconds is measured on fewer classes
and extrapolated linearly in T (a loop's cost per target is constant); such entries
are marked ``extrapolated`` in the JSON and with ``*`` in the table.

    python -m benchmarks.all_targets                  # CPU, about 10 minutes of CPU time
    python -m benchmarks.all_targets --small --out /tmp/smoke   # smoke test, seconds
    python -m benchmarks.all_targets --device cuda    # on a GPU machine

Writes ``all_targets.json``, ``all_targets.md`` and ``all_targets.png`` under
``<--out>/<device>/`` (default ``benchmarks/results``). Uses the public captum_xgrad API
and the harness's machine facts and peak-memory measurement (``benchmarks.harness``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from captum.attr import IntegratedGradients
from torch import nn
from torch.utils import benchmark as tbench

from benchmarks.harness import report
from benchmarks.harness.memory import peak_memory
from captum_xgrad import XGradient
from captum_xgrad.models import get_model

ROOT = Path(__file__).resolve().parent
#: model name -> image size of the CPU run (X-AlexNet accepts nothing smaller than 64)
CPU_SIZES = {"xalexnet": 64, "xvgg11": 32, "xvgg16": 32, "xfixup_resnet50": 32}
DEFAULT_MODELS = ["xalexnet", "xvgg11", "xfixup_resnet50"]
METHODS = ("batched", "xgrad_loop", "ig_loop")
MEMORY_METHOD = {
    "cuda": "torch.cuda.max_memory_allocated() after reset_peak_memory_stats(), minus "
            "memory_allocated() before the call",
    "cpu": "torch.profiler (profile_memory=True) around one call: the peak of the running "
           "sum of the CPU allocator's allocation/free events, i.e. tensor memory above "
           "what was live before the call (the model and inputs are not counted)",
}


# ------------------------------------------------------------------------ helpers
def machine_info(device: torch.device) -> Dict[str, Any]:
    """The harness's machine facts and package versions, plus the CUDA device's name."""
    info: Dict[str, Any] = {**report.machine_info(), **report.versions(),
                            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info


#: what the times measure, per device type (written to the outputs)
TIMER_METHOD = {
    "cuda": "wall time (torch.utils.benchmark.Timer, CUDA synchronised)",
    "cpu": "CPU time of the process (torch.utils.benchmark.Timer with "
           "timer=time.process_time): on a shared machine it does not count the time "
           "other jobs hold the cores; with one thread it is the wall time of an idle "
           "machine, with several it is their sum",
}


def time_call(fn: Callable[[], Any], expected_s: float, min_run_time: float,
              device: torch.device) -> Dict[str, Any]:
    """Time ``fn`` with torch.utils.benchmark, see TIMER_METHOD.

    Calls expected to take longer than ``min_run_time`` are timed once; shorter ones
    with ``blocked_autorange(min_run_time)``, reported as the median over blocks.
    """
    kwargs: Dict[str, Any] = {} if device.type == "cuda" else {"timer": time.process_time}
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, **kwargs)
    if expected_s >= min_run_time:
        m = timer.timeit(number=1)
    else:
        m = timer.blocked_autorange(min_run_time=min_run_time)
    times = [float(t) for t in m.times]
    return {"median_s": float(m.median), "iqr_s": float(m.iqr) if len(times) > 1 else 0.0,
            "runs": int(m.number_per_run * len(times))}


def small_cnn(num_classes: int = 16) -> nn.Module:
    """A tiny bias-free CNN for the smoke test (``--small``)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(64, num_classes, bias=False),
    )


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-30)


# ------------------------------------------------------------------------- runs
def run_model(name: str, model: nn.Module, x: torch.Tensor, counts: List[int],
              args: argparse.Namespace, device: torch.device) -> Dict[str, Any]:
    """All methods and target counts on one model."""
    xg = XGradient(model, check="off")
    ig = IntegratedGradients(model)
    result_bytes = x.numel() * x.element_size()  # one class's maps, stacked by the loops

    def make(method: str, targets: List[int]) -> Callable[[], torch.Tensor]:
        if method == "batched":
            return lambda: xg.attribute_targets(x, targets, target_batch_size=args.target_batch_size)
        if method == "xgrad_loop":
            return lambda: torch.stack([xg.attribute(x, target=t) for t in targets], 1)
        return lambda: torch.stack(
            [ig.attribute(x, target=t, n_steps=args.n_steps) for t in targets], 1)

    # exactness: the batched maps equal the loops (on the first few classes)
    k = min(2, max(counts))
    check = list(range(k))
    batched_maps = make("batched", check)()
    exact = {"classes": k, "maps_max_abs": float(batched_maps.abs().max()),
             "batched_vs_xgrad_loop_max_rel": max_rel(batched_maps, make("xgrad_loop", check)()),
             "batched_vs_ig_loop_max_rel": max_rel(batched_maps, make("ig_loop", check)())}

    rows: List[Dict[str, Any]] = []
    measured_loops: Dict[str, Dict[str, Any]] = {}  # largest measured loop per method
    for T in counts:
        targets = list(range(T))
        row: Dict[str, Any] = {"model": name, "T": T}
        for method in METHODS:
            entry: Dict[str, Any] = {}
            base = measured_loops.get(method)
            per_target = base["median_s"] / base["T"] if base else None
            if method != "batched" and per_target is not None and per_target * T > args.loop_budget:
                k_meas = base["T"]
                entry = {"median_s": per_target * T, "extrapolated": True,
                         "measured_targets": k_meas}
                if base.get("peak_bytes") is not None:
                    entry["peak_bytes"] = base["peak_bytes"] + (T - k_meas) * result_bytes
                row[method] = entry
                continue
            fn = make(method, targets)
            t0 = time.process_time()
            if args.memory:
                entry["peak_bytes"] = peak_memory(fn, device)
            else:
                fn()  # warm-up
            first = time.process_time() - t0
            entry.update(time_call(fn, first, args.min_run_time, device))
            entry["extrapolated"] = False
            row[method] = entry
            if method != "batched":
                measured_loops[method] = {"T": T, **entry}
            if args.progress:
                print(f"  {name:16s} T={T:5d} {method:11s} {entry['median_s']:9.3f} s",
                      flush=True)
        for method in ("xgrad_loop", "ig_loop"):
            row[f"batched/{method}"] = row["batched"]["median_s"] / row[method]["median_s"]
        rows.append(row)
    return {"model": name, "input_shape": list(x.shape), "exactness": exact, "rows": rows}


def build_models(args: argparse.Namespace, device: torch.device):
    torch.manual_seed(0)
    if args.small:
        yield "small_cnn", small_cnn(args.num_classes).eval().to(device), torch.rand(
            args.batch, 3, 16, 16, device=device)
        return
    for name in args.models:
        # Fixup's zero initialisation (residual branches and classifier) would make
        # every map zero; a random one keeps the comparison meaningful
        extra = {"zero_init": False} if "fixup" in name else {}
        model = get_model(name, num_classes=args.num_classes, **extra).eval().to(device)
        size = args.image_size or CPU_SIZES.get(name, 32)
        yield name, model, torch.rand(args.batch, 3, size, size, device=device)


# ----------------------------------------------------------------------- output
def _fmt_time(e: Dict[str, Any]) -> str:
    s = e["median_s"]
    text = f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"
    return text + ("*" if e.get("extrapolated") else "")


def _fmt_mem(e: Dict[str, Any]) -> str:
    b = e.get("peak_bytes")
    if b is None:
        return "n/a"
    return f"{b / 2**20:.1f} MiB" + ("*" if e.get("extrapolated") else "")


def write_markdown(doc: Dict[str, Any], path: Path) -> None:
    m = doc["machine"]
    lines = [
        "# All targets at once: `attribute_targets` vs loops",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Machine: {m['platform']}, {m['processor']}, {m['cpu_count']} CPUs, "
        f"torch {m['torch']} ({m['torch_threads']} threads), captum {m.get('captum')}, "
        f"captum-xgrad {m['captum_xgrad']} (commit {m['git_commit']}), {m['date']}"
        + (f", {m['device_name']}" if "device_name" in m else "") + ".",
        f"Device: {doc['device']}. 1-minute load average at start / end: "
        f"{doc['loadavg']['start']} / {doc['loadavg']['end']}.",
        "",
        f"Config: batch {doc['config']['batch']}, {doc['config']['num_classes']} classes, "
        f"targets = the first T classes, `target_batch_size` = "
        f"{doc['config']['target_batch_size'] or 'default (64)'}, IG n_steps = "
        f"{doc['config']['n_steps']}. Times (median): {doc['timer_method']}. Peak memory: "
        f"{doc['memory_method']}.",
        "`*` = extrapolated linearly in T from a loop over fewer classes (the loop's cost "
        "per target is constant); memory of an extrapolated loop = measured peak plus "
        "the maps of the extra classes.",
        "",
        "| model | input | T | batched | XGradient loop | IG(50) loop | batched / XG loop "
        "| batched / IG loop | memory batched | memory XG loop | memory IG loop |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in doc["results"]:
        shape = "x".join(str(s) for s in res["input_shape"])
        for r in res["rows"]:
            lines.append(
                f"| {r['model']} | {shape} | {r['T']} | {_fmt_time(r['batched'])} | "
                f"{_fmt_time(r['xgrad_loop'])} | {_fmt_time(r['ig_loop'])} | "
                f"{r['batched/xgrad_loop']:.3f} | {r['batched/ig_loop']:.4f} | "
                f"{_fmt_mem(r['batched'])} | {_fmt_mem(r['xgrad_loop'])} | "
                f"{_fmt_mem(r['ig_loop'])} |")
    lines += ["", "Exactness (first classes, max |a - b| / max |b|):", "",
              "| model | classes | max abs of the maps | batched vs XGradient loop "
              "| batched vs IG(50) loop |",
              "|---|---|---|---|---|"]
    for res in doc["results"]:
        e = res["exactness"]
        lines.append(f"| {res['model']} | {e['classes']} | {e['maps_max_abs']:.2e} | "
                     f"{e['batched_vs_xgrad_loop_max_rel']:.1e} | "
                     f"{e['batched_vs_ig_loop_max_rel']:.1e} |")
    path.write_text("\n".join(lines) + "\n")


def write_plot(doc: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    results = doc["results"]
    memory = doc["config"]["memory"]
    nrows = 2 if memory else 1
    fig, axes = plt.subplots(nrows, len(results), figsize=(4.2 * len(results), 3.6 * nrows),
                             squeeze=False)
    labels = {"batched": "attribute_targets (batched)", "xgrad_loop": "loop of XGradient",
              "ig_loop": f"loop of IG({doc['config']['n_steps']})"}
    styles = {"batched": "C0", "xgrad_loop": "C1", "ig_loop": "C2"}
    for c, res in enumerate(results):
        Ts = [r["T"] for r in res["rows"]]
        for row_i, (key, scale, ylabel) in enumerate(
                [("median_s", 1.0, "time [s]"), ("peak_bytes", 2**-20, "peak memory [MiB]")][:nrows]):
            ax = axes[row_i][c]
            for method in METHODS:
                ys = [r[method].get(key) for r in res["rows"]]
                ext = [r[method].get("extrapolated", False) for r in res["rows"]]
                pts = [(t, y * scale, e) for t, y, e in zip(Ts, ys, ext) if y is not None]
                if not pts:
                    continue
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=styles[method],
                        label=labels[method])
                for t, y, e in pts:
                    ax.plot(t, y, "o", color=styles[method], mfc="white" if e else styles[method])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("targets T")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{res['model']} ({'x'.join(map(str, res['input_shape']))})", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7, title="hollow: extrapolated", title_fontsize=7)
    fig.suptitle(f"All targets at once, {doc['device']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -------------------------------------------------------------------------- main
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true",
                   help="smoke test: a tiny CNN, 16 classes, T = 1, 4, 16 (seconds)")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="cpu",
                   help="cpu, cuda, or all (cpu and, when present, cuda)")
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                   help=f"zoo models (default: {' '.join(DEFAULT_MODELS)})")
    p.add_argument("--targets", type=int, nargs="+", default=None,
                   help="target counts T (default 1 10 100 1000; --small: 1 4 16)")
    p.add_argument("--batch", type=int, default=2, help="examples per call (default 2)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="model outputs (default 1000; --small: 16)")
    p.add_argument("--image-size", type=int, default=None,
                   help="input size for every model (default: 64 for xalexnet, else 32)")
    p.add_argument("--target-batch-size", type=int, default=None,
                   help="attribute_targets' target_batch_size (default: its default, 64)")
    p.add_argument("--n-steps", type=int, default=50, help="IG steps (default 50)")
    p.add_argument("--loop-budget", type=float, default=15.0,
                   help="seconds a loop may run before it is extrapolated (default 15)")
    p.add_argument("--min-run-time", type=float, default=1.0,
                   help="blocked_autorange min_run_time for short calls (default 1 s)")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip peak-memory measurement")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="skip the PNG")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress lines")
    p.add_argument("--out", type=Path, default=ROOT / "results",
                   help="results go to OUT/<device>/ (default benchmarks/results)")
    args = p.parse_args(argv)
    if args.targets is None:
        args.targets = [1, 4, 16] if args.small else [1, 10, 100, 1000]
    if args.num_classes is None:
        args.num_classes = 16 if args.small else 1000
    if max(args.targets) > args.num_classes:
        p.error(f"--targets up to {max(args.targets)} need --num-classes >= that")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    devices = [torch.device("cpu")]
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("--device cuda: no CUDA device available", file=sys.stderr)
            return 2
        devices = [torch.device("cuda")]
    elif args.device == "all" and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    command = report.command_line("python -m benchmarks.all_targets",
                                  sys.argv[1:] if argv is None else argv)
    for device in devices:
        start_load, t_start = report.loadavg(), time.perf_counter()
        results = []
        for name, model, x in build_models(args, device):
            if args.progress:
                print(f"{name}: input {tuple(x.shape)}, {args.num_classes} classes", flush=True)
            results.append(run_model(name, model, x, sorted(args.targets), args, device))
            del model, x
        doc = {
            "benchmark": "all_targets",
            "command": command.strip(),
            "device": device.type,
            "machine": machine_info(device),
            "loadavg": {"start": start_load, "end": report.loadavg()},
            "wall_time_s": time.perf_counter() - t_start,
            "timer_method": TIMER_METHOD[device.type],
            "memory_method": MEMORY_METHOD[device.type] if args.memory else None,
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "results": results,
        }
        out = Path(args.out) / device.type
        out.mkdir(parents=True, exist_ok=True)
        (out / "all_targets.json").write_text(json.dumps(doc, indent=1))
        write_markdown(doc, out / "all_targets.md")
        if args.plot:
            write_plot(doc, out / "all_targets.png")
        if args.progress:
            print(f"wrote {out}/all_targets.{{json,md{',png' if args.plot else ''}}} "
                  f"in {doc['wall_time_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
