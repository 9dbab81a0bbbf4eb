"""Sec. 4.3 of Hesse et al. (NeurIPS 2021), reproduced on scikit-learn's breast-cancer data.

A Gini sparsity prior on attributions (Erion et al. 2021) is added to the training loss
of an MLP trained on very few samples. The paper's protocol (and its official code) on
NHANES, which is not available offline, is followed on ``load_breast_cancer``:

- per repetition r: ``train_test_split(train_size=200, random_state=r)`` then 100 train
  / 100 validation from those 200; the rest (369) is the test set; features
  standardised with the training statistics;
- MLP with hidden layers [512, 128, 32], ReLU, one logit; with or without biases;
- Adam (lr 1e-3), BCE-with-logits, full batch (100 samples), 100 epochs; the model of
  the epoch with the best validation ROC-AUC is kept;
- lambda in {1e-2, 1e-1, 1, 1e1, 1e2}, picked per row by the mean validation ROC-AUC
  over the repetitions; the test ROC-AUC of that lambda is reported.

Rows: unregularised (with / without bias), Gini prior on gradients (with bias), on
X-Gradient (bias-free), on Expected Gradients with 1 and 8 references (with bias), all
through :class:`captum_xgrad.training.AttributionPrior`, so only the attribution changes.
Columns: test ROC-AUC (mean +- s.e.m.), the Gini coefficient of the mean |IG| over the
test set (IG with the zero baseline = the standardised mean, 32 Gauss-Legendre steps;
exact X-Gradient on bias-free models; a common yardstick for all rows) and seconds per
training epoch (training steps only).

Usage::

    python -m benchmarks.sparsity_prior --reps 20 --out benchmarks/results/cpu

writes ``sparsity_prior.md``, ``sparsity_prior.json`` and ``sparsity_prior.png``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from torch import nn

from benchmarks.harness.report import command_line, machine_info, sem
from captum_xgrad.priors import gini_coefficient, gini_prior
from captum_xgrad.training import (
    AttributionMethod,
    AttributionPrior,
    ExpectedGradientsMethod,
    GradientMethod,
    XGradientMethod,
)

LAMBDAS = [1e-2, 1e-1, 1e0, 1e1, 1e2]
HIDDEN = [512, 128, 32]

# row key -> (label, bias, attribution factory or None)
ROWS = {
    "unreg_bias": ("Unregularised, with bias", True, None),
    "unreg_nobias": ("Unregularised, without bias", False, None),
    "gini_grad": ("Gini prior on gradients (with bias)", True, "gradient"),
    "gini_xgrad": ("Gini prior on X-Gradient (bias-free)", False, "xgradient"),
    "gini_eg1": ("Gini prior on Expected Gradients, k=1 (with bias)", True, "eg1"),
    "gini_eg8": ("Gini prior on Expected Gradients, k=8 (with bias)", True, "eg8"),
}


def mlp(n_in: int, bias: bool) -> nn.Sequential:
    layers: List[nn.Module] = []
    width = n_in
    for h in HIDDEN:
        layers += [nn.Linear(width, h, bias=bias), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, 1, bias=bias))
    return nn.Sequential(*layers)


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC by the Mann-Whitney statistic (ties get average ranks)."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def get_split(rep: int, noise_features: int = 0):
    """Repetition ``rep``'s split; ``noise_features`` N(0, 1) columns appended (seeded by rep)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    if noise_features:
        noise = np.random.default_rng(10_000 + rep).standard_normal((len(x), noise_features))
        x = np.hstack([x, noise])
    x_tv, x_te, y_tv, y_te = train_test_split(x, y, train_size=200, random_state=rep)
    x_tr, x_va, y_tr, y_va = train_test_split(x_tv, y_tv, train_size=100, random_state=rep)
    ss = StandardScaler().fit(x_tr)
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return (t(ss.transform(x_tr)), t(y_tr).view(-1, 1), t(ss.transform(x_va)), y_va,
            t(ss.transform(x_te)), y_te)


def make_method(kind: str, x_train: torch.Tensor, seed: int) -> AttributionMethod:
    if kind == "gradient":
        return GradientMethod()
    if kind == "xgradient":
        return XGradientMethod()
    k = int(kind[2:])
    return ExpectedGradientsMethod(x_train, k=k, generator=torch.Generator().manual_seed(seed))


def test_gini(model: nn.Module, x: torch.Tensor, bias: bool) -> float:
    """Gini of the mean |IG| over ``x`` (zero baseline; exact X-Gradient if bias-free)."""
    from captum.attr import IntegratedGradients

    from captum_xgrad import XGradient

    model.eval()
    if bias:
        attr = IntegratedGradients(model).attribute(x, n_steps=32, internal_batch_size=len(x))
    else:
        attr = XGradient(model, check="off").attribute(x)
    return float(gini_coefficient(attr.abs().mean(0)))


def train_one(kind: Optional[str], bias: bool, lam: float, data, rep: int, epochs: int):
    x_tr, y_tr, x_va, y_va, x_te, y_te = data
    torch.manual_seed(rep)
    model = mlp(x_tr.shape[1], bias)
    method = make_method(kind, x_tr, rep) if kind else XGradientMethod(check=False)
    helper = AttributionPrior(model, gini_prior, weight=lam if kind else 0.0,
                              attribution=method, loss_fn=nn.BCEWithLogitsLoss())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    best_val, best_state, train_time = -math.inf, None, 0.0
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        helper(x_tr, y_tr).loss.backward()
        opt.step()
        train_time += time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            val = roc_auc(y_va, model(x_va).squeeze(1).numpy())
        if val > best_val:
            best_val, best_state = val, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        test = roc_auc(y_te, model(x_te).squeeze(1).numpy())
    return {"val": best_val, "test": test, "gini": test_gini(model, x_te, bias),
            "sec_per_epoch": train_time / epochs}


def summarise(runs: List[dict]) -> dict:
    out = {}
    for key in ("val", "test", "gini", "sec_per_epoch"):
        vals = [r[key] for r in runs]
        out[key] = float(np.mean(vals))
        out[key + "_sem"] = sem(vals)
    out["test_per_rep"] = [r["test"] for r in runs]
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20, help="repetitions (paper: 200)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs (paper: 100)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--noise-features", type=int, default=0, metavar="K",
                        help="append K standard-normal columns (irrelevant by construction); "
                        "K > 0 writes sparsity_prior_noise{K}.*")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu"))
    parser.add_argument("--from-json", type=Path, default=None,
                        help="only re-render the Markdown and PNG from a JSON of an earlier run")
    parser.add_argument("--sweep", type=Path, nargs="+", default=None, metavar="JSON",
                        help="only write sparsity_prior_sweep.{md,png} from the JSONs of earlier runs")
    parser.add_argument("--small", action="store_true",
                        help="smoke-test size: 2 repetitions, 3 epochs, lambda in {0.1, 1}")
    args = parser.parse_args(argv)
    lambdas = [1e-1, 1e0] if args.small else LAMBDAS
    if args.small:
        args.reps, args.epochs = 2, 3
    torch.set_num_threads(args.threads)
    command = command_line("python -m benchmarks.sparsity_prior", sys.argv[1:] if argv is None else argv)
    if args.sweep:
        write_sweep(args.out, args.sweep, command)
        return 0
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        saved["meta"]["rendered_by"] = command
        stem = output_stem(saved["meta"].get("noise_features", 0))
        args.out.mkdir(parents=True, exist_ok=True)
        write_markdown(args.out / f"{stem}.md", saved["meta"], saved["rows"])
        plot(args.out / f"{stem}.png", saved["meta"], saved["rows"])
        print((args.out / f"{stem}.md").read_text())
        return 0
    info = machine_info()
    print(f"command: {command}\nmachine: {info}", flush=True)

    runs: Dict[str, Dict[float, List[dict]]] = {k: {} for k in args.rows}
    t_start = time.perf_counter()
    for rep in range(args.reps):
        data = get_split(rep, args.noise_features)
        for key in args.rows:
            _, bias, kind = ROWS[key]
            for lam in (lambdas if kind else [0.0]):
                runs[key].setdefault(lam, []).append(train_one(kind, bias, lam, data, rep, args.epochs))
        print(f"rep {rep + 1}/{args.reps} done ({time.perf_counter() - t_start:.0f} s)", flush=True)

    results = {}
    for key in args.rows:
        per_lam = {lam: summarise(rs) for lam, rs in runs[key].items()}
        best_lam = max(per_lam, key=lambda lam: per_lam[lam]["val"])
        results[key] = {"label": ROWS[key][0], "lambda": best_lam, **per_lam[best_lam],
                        "all_lambdas": {str(lam): s for lam, s in per_lam.items()}}
    meta = {"command": command, "machine": info, "reps": args.reps, "epochs": args.epochs,
            "lambdas": lambdas, "hidden": HIDDEN, "noise_features": args.noise_features,
            "dataset": f"sklearn load_breast_cancer (569 x 30){noise_text(args.noise_features)}: "
            "100 train / 100 validation / 369 test per repetition",
            "total_seconds": time.perf_counter() - t_start}
    stem = output_stem(args.noise_features)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": results}, indent=2))
    write_markdown(args.out / f"{stem}.md", meta, results)
    plot(args.out / f"{stem}.png", meta, results)
    print((args.out / f"{stem}.md").read_text())
    return 0


def output_stem(noise_features: int) -> str:
    return f"sparsity_prior_noise{noise_features}" if noise_features else "sparsity_prior"


def noise_text(noise_features: int) -> str:
    return (f" + {noise_features} standard-normal noise columns (irrelevant by construction)"
            if noise_features else "")


def write_markdown(path: Path, meta: dict, results: dict) -> None:
    m = meta["machine"]
    lines = [
        "# Gini sparsity prior (Hesse et al. 2021, Sec. 4.3) on breast cancer"
        + (f" + {meta['noise_features']} noise features" if meta.get("noise_features") else ""),
        "",
        f"Made by `{meta['command']}` on {m['platform']} ({m['processor']}, "
        f"{m['cpu_count']} CPUs, {m['torch_threads']} torch thread(s)), torch {m['torch']}, "
        f"git {m['git_commit']}, {m['date']}; total {meta['total_seconds'] / 60:.1f} min.",
        "",
        f"Data: {meta['dataset']}. MLP {meta['hidden']}, Adam 1e-3, BCE-with-logits, full "
        f"batch, {meta['epochs']} epochs, best epoch by validation ROC-AUC, "
        f"{meta['reps']} repetitions, lambda in {meta['lambdas']} picked per row by mean "
        "validation ROC-AUC.",
        "",
        "| Row | lambda | Test ROC-AUC (mean ± s.e.m.) | Val ROC-AUC | Gini of mean abs IG (test) | s / epoch |",
        "|---|---|---|---|---|---|",
    ]
    for r in results.values():
        lam = "-" if r["lambda"] == 0.0 else f"{r['lambda']:g}"
        lines.append(
            f"| {r['label']} | {lam} | {r['test']:.4f} ± {r['test_sem']:.4f} | {r['val']:.4f} | "
            f"{r['gini']:.3f} ± {r['gini_sem']:.3f} | {1e3 * r['sec_per_epoch']:.2f} ms |"
        )
    lines += ["", "## Paired differences of test ROC-AUC (same splits and initialisations)", "",
              "Mean ± s.e.m. over repetitions of (row - reference); 'better'/'worse' when the "
              "mean is more than 2 s.e.m. from 0, else 'no significant difference'.", "",
              "| Row | Reference | Difference | Reps where row > reference | Verdict |",
              "|---|---|---|---|---|"]
    verdicts = {}
    pairs = [("gini_xgrad", "unreg_nobias"), ("gini_xgrad", "unreg_bias"), ("gini_grad", "unreg_bias"),
             ("gini_eg1", "unreg_bias"), ("gini_eg8", "unreg_bias"), ("gini_xgrad", "gini_eg1"),
             ("gini_xgrad", "gini_eg8")]
    for row, ref in pairs:
        if row not in results or ref not in results:
            continue
        diff, mean, err, verdict = paired_difference(results, row, ref)
        verdicts[(row, ref)] = verdict
        lines.append(f"| {results[row]['label']} | {results[ref]['label']} | {mean:+.4f} ± {err:.4f} | "
                     f"{int((diff > 0).sum())} / {len(diff)} (ties {int((diff == 0).sum())}) | {verdict} |")
    lines += claim_lines(results, verdicts, meta)
    lines += [
        "", "## Differences from the paper's protocol", "",
        "- Data: scikit-learn's breast-cancer set (569 x 30, no missing values) instead of NHANES "
        "(not available offline); the split sizes (100/100/rest) and standardisation follow the "
        "official code.",
    ]
    if meta.get("noise_features"):
        lines.append(
            f"- {meta['noise_features']} standard-normal columns are appended to the 30 features "
            "(seeded per repetition, the same for every row; standardised like the rest): "
            "irrelevant by construction, to imitate NHANES's many weak or irrelevant features, "
            "the regime a sparsity prior is for.")
    lines += [
        f"- {meta['reps']} repetitions on a CPU instead of the paper's 200 (the issue asks for >= 20).",
        "- lambda is picked per row by the mean validation ROC-AUC over the repetitions; every "
        "row, EG with k=8 included, gets the whole grid.",
        "- The validation ROC-AUC is taken after each update step (the official loop takes it "
        "before the step); the epoch with the best one is kept, as there.",
        "- Seconds per epoch are wall times of the training steps on a machine shared with other "
        "jobs: compare them within the table only, and roughly.",
    ]
    if "rendered_by" in meta:
        lines += ["", f"(Markdown and plot re-rendered from the JSON by `{meta['rendered_by']}`.)"]
    path.write_text("\n".join(lines) + "\n")


def paired_difference(results: dict, row: str, ref: str):
    """Per-repetition differences of test ROC-AUC (row - ref), their mean, s.e.m. and verdict."""
    diff = np.array(results[row]["test_per_rep"]) - np.array(results[ref]["test_per_rep"])
    mean, err = float(diff.mean()), sem(list(diff))
    verdict = ("better" if mean - 2 * err > 0 else "worse" if mean + 2 * err < 0
               else "no significant difference")
    return diff, mean, err, verdict


SWEEP_PAIRS = [("gini_xgrad", "unreg_nobias"), ("gini_xgrad", "unreg_bias"), ("gini_grad", "unreg_bias"),
               ("gini_eg1", "unreg_bias"), ("gini_eg8", "unreg_bias"), ("gini_xgrad", "gini_eg1"),
               ("gini_xgrad", "gini_eg8")]


def write_sweep(out: Path, paths: List[Path], command: str) -> None:
    """One table and one plot over several runs (different numbers of noise features)."""
    docs = sorted((json.loads(p.read_text()) for p in paths),
                  key=lambda d: d["meta"].get("noise_features", 0))
    ks = [d["meta"].get("noise_features", 0) for d in docs]
    keys = [k for k in ROWS if all(k in d["rows"] for d in docs)]
    lines = ["# Gini sparsity prior on breast cancer + K noise features: the sweep", "",
             f"Made by `{command}` from " + ", ".join(f"`{p.as_posix()}`" for p in paths)
             + " (each file records its own command, machine and repetitions).", "",
             "## Test ROC-AUC (mean ± s.e.m.) at the lambda picked on validation, and ms per epoch", "",
             "| Row | " + " | ".join(f"K = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for key in keys:
        cells = []
        for d in docs:
            r = d["rows"][key]
            lam = "-" if r["lambda"] == 0.0 else f"{r['lambda']:g}"
            cells.append(f"{r['test']:.4f} ± {r['test_sem']:.4f} (λ {lam}, "
                         f"{1e3 * r['sec_per_epoch']:.1f} ms)")
        lines.append(f"| {ROWS[key][0]} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired differences of test ROC-AUC (row - reference)", "",
              "| Row - reference | " + " | ".join(f"K = {k}" for k in ks) + " |",
              "|---|" + "---|" * len(ks)]
    for row, ref in SWEEP_PAIRS:
        if row not in keys or ref not in keys:
            continue
        cells = []
        for d in docs:
            _, mean, err, verdict = paired_difference(d["rows"], row, ref)
            cells.append(f"{mean:+.4f} ± {err:.4f} ({verdict}, {d['meta']['reps']} reps)")
        lines.append(f"| {ROWS[row][0]} - {ROWS[ref][0]} | " + " | ".join(cells) + " |")
    lines += ["", "## Verdicts", ""]
    for d in docs:
        verdicts = {(r, f): paired_difference(d["rows"], r, f)[3] for r, f in SWEEP_PAIRS
                    if r in d["rows"] and f in d["rows"]}
        claim = claim_lines(d["rows"], verdicts, d["meta"])
        lines += [f"- K = {d['meta'].get('noise_features', 0)}: " + " ".join(claim[-2:])]
    out.mkdir(parents=True, exist_ok=True)
    (out / "sparsity_prior_sweep.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(docs), figsize=(6.5 * len(docs), 4.8), squeeze=False)
    for ax, d, k in zip(axes[0], docs, ks):
        cost_plot(ax, {key: d["rows"][key] for key in keys})
        ax.set_title(f"K = {k} noise features ({d['meta']['reps']} reps)", fontsize=10)
    fig.suptitle(command, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "sparsity_prior_sweep.png", dpi=100)
    plt.close(fig)
    print((out / "sparsity_prior_sweep.md").read_text())


def claim_lines(results: dict, verdicts: dict, meta: Optional[dict] = None) -> List[str]:
    """Does the run support the paper's claim? Stated plainly from the paired verdicts."""
    if "gini_xgrad" not in results:
        return []
    k_noise = (meta or {}).get("noise_features", 0)
    v = lambda row, ref: verdicts.get((row, ref), "not run")  # noqa: E731
    xg = results["gini_xgrad"]
    base = results.get("unreg_nobias", results.get("unreg_bias"))
    ms = lambda key: f"{1e3 * results[key]['sec_per_epoch']:.1f} ms" if key in results else "-"  # noqa: E731
    lines = ["", "## Does this match the paper's claim?", "",
             "The paper (Sec. 4.3) reports that, with few training samples, the Gini prior on "
             "X-Gradient attributions of a bias-free MLP raises the test ROC-AUC over the "
             "unregularised models, like the Expected Gradients prior, at a fraction of its cost.",
             "",
             f"With {k_noise} irrelevant noise feature(s): X-Gradient prior vs unregularised "
             f"bias-free MLP: **{v('gini_xgrad', 'unreg_nobias')}**; vs unregularised MLP with "
             f"bias: **{v('gini_xgrad', 'unreg_bias')}**; EG prior (k=1 / k=8) vs unregularised "
             f"with bias: **{v('gini_eg1', 'unreg_bias')}** / **{v('gini_eg8', 'unreg_bias')}**; "
             f"gradient prior vs unregularised with bias: **{v('gini_grad', 'unreg_bias')}**; "
             f"X-Gradient prior vs EG prior (k=1 / k=8): **{v('gini_xgrad', 'gini_eg1')}** / "
             f"**{v('gini_xgrad', 'gini_eg8')}**. Cost per training epoch: X-Gradient prior "
             f"{ms('gini_xgrad')}, gradient prior {ms('gini_grad')}, EG k=1 {ms('gini_eg1')}, EG "
             f"k=8 {ms('gini_eg8')}, unregularised bias-free {ms('unreg_nobias')}.", ""]
    xg_helps = v("gini_xgrad", "unreg_nobias") == "better"
    xg_not_worse_than_eg = all(v("gini_xgrad", e) != "worse" for e in ("gini_eg1", "gini_eg8"))
    eg_helps = any(v(e, "unreg_bias") == "better" for e in ("gini_eg1", "gini_eg8"))
    any_helps = xg_helps or eg_helps or v("gini_grad", "unreg_bias") == "better"
    if xg_helps and xg_not_worse_than_eg:
        lines.append(f"**The claim holds at K = {k_noise}:** the X-Gradient prior improves the test "
                     "ROC-AUC over the unregularised bias-free MLP and is not worse than the EG "
                     "priors, at a fraction of EG k=8's cost per epoch.")
    elif xg_helps:
        lines.append(f"**Partly at K = {k_noise}:** the X-Gradient prior helps, but less than the "
                     "EG prior (see the paired differences).")
    elif eg_helps:
        lines.append(f"**Not reproduced at K = {k_noise}:** the EG prior helps, the X-Gradient "
                     "prior does not (see the paired differences).")
    elif not any_helps:
        lines.append(
            f"**Not reproduced at K = {k_noise}:** no prior improves the test ROC-AUC "
            "significantly" + (f"; every row is at about {base['test']:.3f}, near the ceiling, so "
                               "a sparsity prior has little room to help" if base["test"] > 0.985
                               else "") + ".")
    else:
        lines.append(f"**Not reproduced at K = {k_noise}:** only the gradient prior helps.")
    lines.append(
        f"The X-Gradient prior does make the attributions sparser (Gini of mean |IG| "
        f"{xg['gini']:.3f} vs {base['gini']:.3f} unregularised at the selected lambda; see "
        "`all_lambdas` in the JSON for larger lambdas).")
    return lines


def cost_plot(ax, results: dict, label_prefix: str = "", marker: str = "o") -> None:
    """Test ROC-AUC (mean +- s.e.m.) against ms per training epoch, one point per row."""
    for i, (key, r) in enumerate(results.items()):
        ax.errorbar(1e3 * r["sec_per_epoch"], r["test"], yerr=r["test_sem"], marker=marker,
                    capsize=2, ls="none", color=f"C{i}",
                    label=label_prefix + r["label"].replace(" (with bias)", "").replace(" (bias-free)", ""))
    ax.set_xscale("log")
    ax.set_xlabel("ms per training epoch (log)")
    ax.set_ylabel("test ROC-AUC (selected lambda)")
    ax.legend(fontsize=6)


def plot(path: Path, meta: dict, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["label"].replace(" (", "\n(") for r in results.values()]
    fig, axes = plt.subplots(1, 5, figsize=(26, 5))
    ys = np.arange(len(results))
    axes[0].barh(ys, [r["test"] for r in results.values()],
                 xerr=[r["test_sem"] for r in results.values()], color="tab:blue")
    lo = min(r["test"] - 3 * r["test_sem"] for r in results.values())
    axes[0].set_xlim(max(0.5, lo - 0.005), 1.0)
    axes[0].set_xlabel("test ROC-AUC (mean ± s.e.m.)")
    axes[0].set_yticks(ys, labels, fontsize=8)
    axes[1].barh(ys, [r["gini"] for r in results.values()], color="tab:green")
    axes[1].set_xlabel("Gini of mean |IG| (test)")
    axes[1].set_yticks(ys, [""] * len(ys))
    axes[2].barh(ys, [1e3 * r["sec_per_epoch"] for r in results.values()], color="tab:red")
    axes[2].set_xlabel("ms per training epoch")
    axes[2].set_yticks(ys, [""] * len(ys))
    for ax in axes[:3]:
        ax.invert_yaxis()
    for key, r in results.items():
        lams = sorted((float(k), v) for k, v in r.get("all_lambdas", {}).items() if float(k) > 0)
        if lams:
            axes[3].errorbar([l for l, _ in lams], [v["test"] for _, v in lams],
                             yerr=[v["test_sem"] for _, v in lams], marker="o", capsize=2,
                             label=r["label"].split(" (")[0].replace("Gini prior on ", ""))
        elif key == "unreg_bias":
            axes[3].axhline(r["test"], color="gray", ls="--", label="unregularised (bias)")
    axes[3].set_xscale("log")
    axes[3].set_xlabel("lambda")
    axes[3].set_ylabel("test ROC-AUC")
    axes[3].legend(fontsize=7)
    cost_plot(axes[4], results)
    m = meta["machine"]
    fig.suptitle(f"{meta['command']}\n{m['processor']}, {m['torch_threads']} thread(s), "
                 f"torch {m['torch']}, {meta['reps']} reps x {meta['epochs']} epochs, "
                 f"{meta.get('noise_features', 0)} noise features", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
