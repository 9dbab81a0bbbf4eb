"""Spurious correlations: a decoy patch on scikit-learn's digits, removed by attribution priors.

Training images carry a 4x4 patch in a random corner whose shade encodes the label;
at test time the shade is random (:func:`captum_xgrad.demo.make_decoy_digits`). All
rows use the same mask prior (:func:`captum_xgrad.priors.mask_prior`, squared
attribution on the patch, same lambda) through
:class:`captum_xgrad.training.AttributionPrior`; only the model and the attribution
change:

- reference: bias-free CNN trained on the images *without* patch (clean accuracy);
- (a) bias-free CNN, plain; (a') regular CNN (with biases), plain;
- (b) bias-free CNN + X-Gradient prior (one forward + double backward);
- (c) regular CNN + Integrated Gradients prior (``--ig-steps`` Gauss-Legendre steps);
- (d) regular CNN + Expected Gradients prior (``--eg-k`` references from the training set);
- (e) regular CNN + input-gradient prior ("right for the right reasons", Ross et al.).

Columns: test accuracy with random decoys, test accuracy without a patch, decoy
attribution share (share of |IG| on the patch for the true class over the test set;
exact X-Gradient for bias-free CNNs, Captum IG with 32 steps for regular ones; the
patch is 6.25% of the pixels), and seconds per training epoch; mean +- s.e.m. over
``--seeds`` seeds (data split, corners, initialisation and batch order).

Usage::

    python -m benchmarks.decoy_digits --seeds 3 --epochs 10 --out benchmarks/results/cpu
    python -m benchmarks.decoy_digits --from-json benchmarks/results/cpu/decoy_digits.json

writes ``decoy_digits.md``, ``decoy_digits.json``, ``decoy_digits.png`` (bars) and
``decoy_digits_heatmaps.png`` (test images and heat maps before/after, seed 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from benchmarks.harness.report import command_line, machine_info, sem
from captum_xgrad.demo import (
    digits_xcnn,
    evaluate_decoy,
    ig_attributions,
    make_decoy_digits,
    plot_attributions,
    train_with_prior,
)
from captum_xgrad.training import (
    ExpectedGradientsMethod,
    GradientMethod,
    IntegratedGradientsMethod,
    XGradientMethod,
)

# key -> (label, bias, attribution kind or None, train on clean images)
ROWS = {
    "clean_ref": ("reference: bias-free CNN, trained without decoy", False, None, True),
    "plain_free": ("(a) bias-free CNN, plain", False, None, False),
    "plain_regular": ("(a') regular CNN, plain", True, None, False),
    "xgrad": ("(b) bias-free CNN + X-Gradient prior", False, "xgrad", False),
    "ig": ("(c) regular CNN + IG prior", True, "ig", False),
    "eg": ("(d) regular CNN + Expected Gradients prior", True, "eg", False),
    "grad": ("(e) regular CNN + input-gradient prior (RRR)", True, "grad", False),
}


def make_method(kind: str, args: argparse.Namespace, x_train: torch.Tensor, seed: int):
    if kind == "xgrad":
        return XGradientMethod()
    if kind == "ig":
        return IntegratedGradientsMethod(n_steps=args.ig_steps)
    if kind == "eg":
        return ExpectedGradientsMethod(x_train, k=args.eg_k,
                                       generator=torch.Generator().manual_seed(seed))
    return GradientMethod()


def _cnn(bias: bool, seed: int) -> torch.nn.Module:
    return digits_xcnn(bias=bias, image_size=16, generator=torch.Generator().manual_seed(seed))


def label_of(key: str, args: argparse.Namespace) -> str:
    label = ROWS[key][0]
    if key == "ig":
        label += f" (n={args.ig_steps})"
    if key == "eg":
        label += f" (k={args.eg_k})"
    return label


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decoy_digits",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--weight", type=float, default=10.0, help="lambda of the mask prior")
    parser.add_argument("--ig-steps", type=int, default=8)
    parser.add_argument("--eg-k", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu"))
    parser.add_argument("--from-json", type=Path, default=None,
                        help="only re-render the Markdown and bar plot from a JSON of an earlier run")
    parser.add_argument("--timing-only", type=int, default=0, metavar="STEPS",
                        help="only time STEPS training steps per row, interleaving the rows "
                             "round-robin (fair under a fluctuating machine load); writes "
                             "decoy_digits_timing.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = command_line("python -m benchmarks.decoy_digits",
                           sys.argv[1:] if argv is None else argv)
    if args.timing_only:
        return time_steps(args, command)
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        saved["meta"]["rendered_by"] = command
        args.out.mkdir(parents=True, exist_ok=True)
        write_markdown(args.out / "decoy_digits.md", saved["meta"], saved["rows"])
        plot(args.out / "decoy_digits.png", saved["meta"], saved["rows"])
        print((args.out / "decoy_digits.md").read_text())
        return 0
    info = machine_info()
    print(f"command: {command}\nmachine: {info}", flush=True)

    per_seed: Dict[str, List[dict]] = {k: [] for k in args.rows}
    heat_models = {}
    t_start = time.perf_counter()
    for seed in range(args.seeds):
        data = make_decoy_digits(seed=seed)
        for key in args.rows:
            _, bias, kind, clean = ROWS[key]
            model = _cnn(bias, seed)
            x = data.x_train_clean if clean else data.x_train
            method = make_method(kind, args, x, seed) if kind else None
            times = train_with_prior(model, x, data.y_train, data.mask_train, method=method,
                                     weight=args.weight if kind else 0.0,
                                     epochs=args.epochs, seed=seed)
            res = evaluate_decoy(model, data, homogeneous=not bias)
            res["seconds_per_epoch"] = float(np.mean(times))
            per_seed[key].append(res)
            print(f"seed {seed} {label_of(key, args)}: acc {100 * res['accuracy']:.1f}%, "
                  f"no-patch acc {100 * res['clean_accuracy']:.1f}%, decoy share "
                  f"{100 * res['decoy_share']:.1f}%, {res['seconds_per_epoch']:.2f} s/epoch "
                  f"({time.perf_counter() - t_start:.0f} s)", flush=True)
            if seed == 0:
                heat_models[key] = (model.eval(), bias)

    results = {}
    for key, runs in per_seed.items():
        row = {"label": label_of(key, args)}
        for metric in ("accuracy", "clean_accuracy", "decoy_share", "seconds_per_epoch"):
            vals = [r[metric] for r in runs]
            row[metric], row[metric + "_sem"], row[metric + "_per_seed"] = (
                float(np.mean(vals)), sem(vals), vals)
        results[key] = row
    meta = {"command": command, "machine": info, "seeds": args.seeds, "epochs": args.epochs,
            "weight": args.weight, "ig_steps": args.ig_steps, "eg_k": args.eg_k,
            "batch_size": 64, "lr": 1e-3, "optimizer": "Adam",
            "dataset": "sklearn load_digits padded to 16x16, 4x4 decoy patch in a random "
                       "corner; 1437 train / 360 test (stratified)",
            "total_seconds": time.perf_counter() - t_start}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoy_digits.json").write_text(json.dumps({"meta": meta, "rows": results}, indent=2))
    write_markdown(args.out / "decoy_digits.md", meta, results)
    plot(args.out / "decoy_digits.png", meta, results)
    heatmaps(args.out / "decoy_digits_heatmaps.png", heat_models, make_decoy_digits(seed=0))
    print((args.out / "decoy_digits.md").read_text())
    return 0


def time_steps(args: argparse.Namespace, command: str) -> int:
    """Median wall time of one training step (batch 64) per row, rows interleaved."""
    from captum_xgrad.priors import mask_prior
    from captum_xgrad.training import AttributionPrior

    data = make_decoy_digits(seed=0)
    steppers = {}
    for key in args.rows:
        _, bias, kind, _ = ROWS[key]
        if key == "clean_ref":
            continue
        model = _cnn(bias, 0)
        method = make_method(kind, args, data.x_train, 0) if kind else XGradientMethod(check=False)
        helper = AttributionPrior(model, mask_prior, weight=args.weight if kind else 0.0,
                                  attribution=method)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        steppers[key] = (helper, opt)
    gen = torch.Generator().manual_seed(0)
    times: Dict[str, List[float]] = {k: [] for k in steppers}
    for step in range(args.timing_only + 2):  # 2 warm-up rounds
        idx = torch.randperm(len(data.x_train), generator=gen)[:64]
        for key, (helper, opt) in steppers.items():
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            helper(data.x_train[idx], data.y_train[idx], data.mask_train[idx]).loss.backward()
            opt.step()
            if step >= 2:
                times[key].append(time.perf_counter() - t0)
    plain = float(np.median(times["plain_free"])) if "plain_free" in times else None
    rows = {}
    for key, ts in times.items():
        med = float(np.median(ts))
        rows[key] = {"label": label_of(key, args), "median_ms": 1e3 * med,
                     "q25_ms": 1e3 * float(np.percentile(ts, 25)),
                     "q75_ms": 1e3 * float(np.percentile(ts, 75)),
                     "x_plain_bias_free": med / plain if plain else None}
    meta = {"command": command, "machine": machine_info(), "steps": args.timing_only,
            "batch_size": 64, "ig_steps": args.ig_steps, "eg_k": args.eg_k}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoy_digits_timing.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    for r in rows.values():
        print(f"{r['label']}: {r['median_ms']:.1f} ms/step (x{r['x_plain_bias_free']:.1f})")
    return 0


def _timing_lines(path: Path) -> List[str]:
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    meta, rows = saved["meta"], saved["rows"]
    m = meta["machine"]
    lines = ["", "## Time per training step, rows interleaved", "",
             f"Made by `{meta['command']}` ({m['processor']}, {m['torch_threads']} torch "
             f"thread(s), torch {m['torch']}, git {m['git_commit']}, {m['date']}): median over "
             f"{meta['steps']} steps of batch {meta['batch_size']}, the rows taking turns step by "
             "step so that load changes on the shared machine hit all rows alike.", "",
             "| Row | ms / step (median) | interquartile range | x plain bias-free |", "|---|---|---|---|"]
    for r in rows.values():
        lines.append(f"| {r['label']} | {r['median_ms']:.1f} | {r['q25_ms']:.1f} - {r['q75_ms']:.1f} | "
                     f"{r['x_plain_bias_free']:.2f} |")
    return lines


def _pct(row: dict, key: str) -> str:
    return f"{100 * row[key]:.1f} ± {100 * row[key + '_sem']:.1f}"


def write_markdown(path: Path, meta: dict, results: dict) -> None:
    m = meta["machine"]
    lines = [
        "# Decoy digits: removing a spurious feature with attribution priors",
        "",
        f"Made by `{meta['command']}` on {m['platform']} ({m['processor']}, {m['cpu_count']} "
        f"CPUs, {m['torch_threads']} torch thread(s)), torch {m['torch']}, git "
        f"{m['git_commit']}, {m['date']}; total {meta['total_seconds'] / 60:.1f} min. The "
        "machine was shared with other jobs, so wall times are noisy; compare ratios.",
        "",
        f"Data: {meta['dataset']}. {meta['optimizer']} lr {meta['lr']}, batch "
        f"{meta['batch_size']}, {meta['epochs']} epochs, mask prior weight {meta['weight']:g} "
        f"for every prior, {meta['seeds']} seeds (mean ± s.e.m.).",
        "",
        "| Row | Test acc., random decoy (%) | Test acc., no patch (%) | Decoy attribution share (%) | s / epoch |",
        "|---|---|---|---|---|",
    ]
    for r in results.values():
        lines.append(
            f"| {r['label']} | {_pct(r, 'accuracy')} | {_pct(r, 'clean_accuracy')} | "
            f"{_pct(r, 'decoy_share')} | {r['seconds_per_epoch']:.2f} ± "
            f"{r['seconds_per_epoch_sem']:.2f} |"
        )
    if {"clean_ref", "plain_free", "xgrad"} <= set(results):
        ref, plain, xg = results["clean_ref"], results["plain_free"], results["xgrad"]
        lines += [
            "",
            "## Summary (computed from the table)",
            "",
            f"- Clean accuracy (bias-free CNN trained and tested without patch): "
            f"{100 * ref['clean_accuracy']:.1f}%. With the decoy in training, the plain "
            f"bias-free CNN reaches {100 * plain['accuracy']:.1f}% on test images with random "
            f"decoys; with the X-Gradient prior {100 * xg['accuracy']:.1f}%, i.e. "
            f"{100 * xg['accuracy'] / ref['clean_accuracy']:.0f}% of the clean accuracy "
            f"(decoy share {100 * plain['decoy_share']:.1f}% -> {100 * xg['decoy_share']:.1f}%).",
        ]
        for key in ("ig", "eg", "grad"):
            if key in results:
                r = results[key]
                lines.append(
                    f"- {r['label']}: {100 * r['accuracy']:.1f}% "
                    f"({100 * r['accuracy'] / ref['clean_accuracy']:.0f}% of clean), decoy share "
                    f"{100 * r['decoy_share']:.1f}%; the X-Gradient prior's epoch takes "
                    f"{xg['seconds_per_epoch'] / r['seconds_per_epoch']:.2f}x its time."
                )
        lines.append(
            f"- The X-Gradient prior's epoch takes {xg['seconds_per_epoch'] / plain['seconds_per_epoch']:.1f}x "
            "the time of a plain epoch of the same CNN."
        )
    lines += _timing_lines(path.parent / "decoy_digits_timing.json")
    if "rendered_by" in meta:
        lines += ["", f"(Markdown and bar plot re-rendered from the JSON by `{meta['rendered_by']}`.)"]
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, meta: dict, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["label"].replace(" + ", "\n+ ").replace(", ", ",\n", 1) for r in results.values()]
    ys = np.arange(len(results))
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    for ax, key, xlabel, scale, color in (
        (axes[0], "accuracy", "test accuracy, random decoy (%)", 100, "tab:blue"),
        (axes[1], "decoy_share", "decoy attribution share (%)", 100, "tab:orange"),
        (axes[2], "seconds_per_epoch", "seconds per epoch", 1, "tab:red"),
    ):
        ax.barh(ys, [scale * r[key] for r in results.values()],
                xerr=[scale * r[key + "_sem"] for r in results.values()], color=color)
        ax.set_xlabel(xlabel)
        ax.set_yticks(ys, labels if ax is axes[0] else [""] * len(ys), fontsize=8)
        ax.invert_yaxis()
    m = meta["machine"]
    fig.suptitle(f"{meta['command']}\n{m['processor']}, {m['torch_threads']} thread(s), torch "
                 f"{m['torch']}, {meta['seeds']} seeds x {meta['epochs']} epochs", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def heatmaps(path: Path, models: dict, data, k: int = 6) -> None:
    names = {"plain_free": "(a) plain", "xgrad": "(b) X-Grad. prior", "ig": "(c) IG prior",
             "eg": "(d) EG prior"}
    x, y = data.x_test[:k], data.y_test[:k]
    columns = {}
    for key, title in names.items():
        if key in models:
            model, bias = models[key]
            columns[title] = ig_attributions(model, x, y, homogeneous=not bias, n_steps=32)
    plot_attributions(x, columns, path, titles=[f"label {int(t)}" for t in y])


if __name__ == "__main__":
    sys.exit(main())
