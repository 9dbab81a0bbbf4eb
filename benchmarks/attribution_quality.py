"""Attribution quality (Hesse et al. 2021, Sec. 4.2) on scikit-learn's digits.

The paper's claim: X-Gradient on an X-DNN (bias-free) is about as good as Integrated
Gradients on the regular network, and better than the gradient-only methods there. It
is measured with masking metrics (:mod:`masking` in this folder): keep or remove the
pixels with the top positive, negative or absolute attributions, replace the rest with
a blurred image, and record the target logit (accuracy for absolute) over the fraction
of pixels kept; the area under that curve is the metric.

Protocol, per seed (split, initialisation and batch order):

- data: ``load_digits`` scaled to [0, 1] and upsampled 8x8 -> 16x16 (bilinear), the
  decoy study's image size; stratified 80/20 split;
- a regular CNN and its bias-free twin (same architecture as the decoy study's,
  ``conv3x3(16)-ReLU-conv3x3(32)-ReLU-maxpool2-linear(64)-ReLU-linear(10)``), trained the
  same way (Adam 1e-3, batch 64, cross-entropy, ``--epochs``, same seed);
- methods on the regular CNN: random (uniform in [-0.5, 0.5]), gradient (Captum
  ``Saliency``, signed), input x gradient (Captum ``InputXGradient``), Captum
  ``IntegratedGradients`` (zero baseline, ``--ig-steps`` Gauss-Legendre steps; the
  paper's 128), Expected Gradients with k=1 (Captum ``GradientShap`` with
  ``n_samples=1, stdevs=0``: one training image as reference, one uniform alpha); on the
  bias-free CNN: random, :class:`captum_xgrad.XGradient` and the same Captum IG, which
  must agree with X-Gradient;
- attributions for the true class of every test image; the six masking AUCs over the
  paper's fractions ``geomspace(0.01, 1, 16)``, blur fill (Gaussian, ``--blur-kernel``
  11, ``--blur-sigma`` 10: like the paper's 51 px kernel with sigma 41 at 224 px a near
  box filter, sized so that the all-blurred test images keep little class information:
  the table reports the models' accuracy on them);
- through Quantus (``--no-quantus`` skips it) on the first ``--quantus-n`` test
  images: FaithfulnessCorrelation, PixelFlipping (AUC), MaxSensitivity and
  Completeness (zero baseline);
- cost: wall time of each method's attributions for the whole test set, per image.

Usage::

    python benchmarks/attribution_quality.py --out benchmarks/results/cpu

writes ``attribution_quality.json``, ``attribution_quality.md`` and ``attribution_quality.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from benchmarks.harness.report import machine_info, sem
from benchmarks.masking import HIGHER_IS_BETTER, PAPER_FRACTIONS, blur_fill, masking_aucs, masking_curves

from captum_xgrad import XGradient

MASKING = list(HIGHER_IS_BETTER)
# name -> (label, higher is better)
QUANTUS = {
    "faithfulness_correlation": ("Quantus FaithfulnessCorrelation", True),
    "pixel_flipping_auc": ("Quantus PixelFlipping AUC", False),
    "max_sensitivity": ("Quantus MaxSensitivity", False),
    "completeness": ("Quantus Completeness (share True)", True),
}
# method key -> (model key, label)
METHODS = {
    "random": ("regular", "Random"),
    "gradient": ("regular", "Gradient"),
    "input_x_gradient": ("regular", "Input x Gradient"),
    "ig": ("regular", "Integrated Gradients"),
    "eg1": ("regular", "Expected Gradients (k=1)"),
    "x_random": ("xdnn", "Random"),
    "xgradient": ("xdnn", "X-Gradient"),
    "x_ig": ("xdnn", "Integrated Gradients"),
}
MODEL_LABELS = {"regular": "CNN", "xdnn": "X-CNN (bias-free)"}


# ----------------------------------------------------------------------- data, models
def digits16(seed: int, test_fraction: float = 0.2) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's digits in [0, 1], upsampled to 16x16, stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    x = nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    x = x.clamp(0.0, 1.0)
    y = torch.tensor(digits.target, dtype=torch.long)
    i_tr, i_te = train_test_split(np.arange(len(y)), test_size=test_fraction,
                                  random_state=seed, stratify=digits.target)
    return x[i_tr], y[i_tr], x[i_te], y[i_te]


def cnn(bias: bool, width: int = 16) -> nn.Sequential:
    """The decoy study's CNN for 16x16 images; homogeneous of degree 1 without biases."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=bias), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=bias), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(2 * width * 8 * 8, 64, bias=bias), nn.ReLU(),
        nn.Linear(64, 10, bias=bias),
    )


def train(model: nn.Module, x: Tensor, y: Tensor, epochs: int, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


# ------------------------------------------------------------------------ attributions
Explainer = Callable[[nn.Module, Tensor, Tensor], Tensor]


def make_explainers(x_ref: Tensor, ig_steps: int, seed: int) -> Dict[str, Explainer]:
    """method key -> ``f(model, x, target) -> attributions`` (detached)."""
    from captum.attr import GradientShap, InputXGradient, IntegratedGradients, Saliency

    gen = torch.Generator().manual_seed(seed)

    def random(model, x, y):
        return torch.rand(x.shape, generator=gen) - 0.5

    def gradient(model, x, y):
        return Saliency(model).attribute(x, target=y, abs=False)

    def input_x_gradient(model, x, y):
        return InputXGradient(model).attribute(x, target=y)

    def ig(model, x, y):
        return IntegratedGradients(model).attribute(
            x, target=y, n_steps=ig_steps, method="gausslegendre",
            internal_batch_size=max(ig_steps, 64 * ig_steps))

    def eg1(model, x, y):
        np.random.seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))  # Captum draws with NumPy
        return GradientShap(model).attribute(x, baselines=x_ref, target=y, n_samples=1,
                                             stdevs=0.0)

    def xgradient(model, x, y):
        return XGradient(model).attribute(x, target=y)

    fns = {"random": random, "gradient": gradient, "input_x_gradient": input_x_gradient,
           "ig": ig, "eg1": eg1, "x_random": random, "xgradient": xgradient, "x_ig": ig}

    def detached(fn):
        def call(model, x, y):
            with warnings.catch_warnings():  # Captum: "did not already require gradients"
                warnings.simplefilter("ignore", UserWarning)
                return fn(model, x, y).detach()
        return call

    return {k: detached(f) for k, f in fns.items()}


def attribute_all(fn: Explainer, model: nn.Module, x: Tensor, y: Tensor,
                  chunk: int = 256) -> Tuple[Tensor, float]:
    """Attributions of all of ``x`` in chunks, and the wall time per image."""
    t0 = time.perf_counter()
    out = torch.cat([fn(model, x[i : i + chunk], y[i : i + chunk]) for i in range(0, len(x), chunk)])
    return out, (time.perf_counter() - t0) / len(x)


# ----------------------------------------------------------------------------- Quantus
def quantus_scores(model: nn.Module, fn: Explainer, x: Tensor, y: Tensor, a: Tensor,
                   cfg: argparse.Namespace, seed: int) -> Dict[str, float]:
    """The Quantus metrics of one method (numbers straight from Quantus)."""
    import quantus

    if not hasattr(np, "trapz"):  # Quantus 0.6 calls np.trapz, which NumPy 2.4 removed
        np.trapz = np.trapezoid  # type: ignore[attr-defined]
    np.random.seed(seed)  # Quantus draws its perturbations from NumPy's global RNG
    xb, yb, ab = x.numpy(), y.numpy(), a.numpy()

    def explain(model, inputs, targets, **kwargs):
        net = model if isinstance(model, nn.Module) else model.get_model()
        return fn(net, torch.as_tensor(inputs, dtype=torch.float32),
                  torch.as_tensor(targets, dtype=torch.long)).numpy()

    common = dict(disable_warnings=True, display_progressbar=False)
    call = dict(model=model, x_batch=xb, y_batch=yb, a_batch=ab, channel_first=True, device="cpu")
    out: Dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc = quantus.FaithfulnessCorrelation(nr_runs=cfg.fc_runs, subset_size=cfg.fc_subset,
                                             perturb_baseline="black", return_aggregate=False,
                                             **common)
        out["faithfulness_correlation"] = float(np.nanmean(fc(**call)))
        pf = quantus.PixelFlipping(features_in_step=cfg.pf_step, perturb_baseline="black",
                                   return_auc_per_sample=True, **common)
        out["pixel_flipping_auc"] = float(np.nanmean(pf(**call)))
        ms = quantus.MaxSensitivity(nr_samples=cfg.ms_samples, lower_bound=0.2, **common)
        out["max_sensitivity"] = float(np.nanmean(ms(**call, explain_func=explain)))
        comp = quantus.Completeness(abs=False, normalise=False, perturb_baseline="black", **common)
        out["completeness"] = float(np.mean(np.asarray(comp(**call), dtype=float)))
    return out


def completeness_gap(model: nn.Module, x: Tensor, y: Tensor, a: Tensor) -> float:
    """Median |sum(a) - (f_y(x) - f_y(0))| / |f_y(x) - f_y(0)| (our diagnostic, not Quantus)."""
    with torch.no_grad():
        fx = model(x).gather(1, y[:, None]).squeeze(1)
        f0 = model(torch.zeros_like(x)).gather(1, y[:, None]).squeeze(1)
    gap = (a.flatten(1).sum(1) - (fx - f0)).abs() / (fx - f0).abs().clamp_min(1e-12)
    return float(gap.median())


# ------------------------------------------------------------------------------- study
def run_seed(seed: int, cfg: argparse.Namespace, log: Callable[[str], None]) -> dict:
    x_tr, y_tr, x_te, y_te = digits16(seed)
    if cfg.n_test:
        x_te, y_te = x_te[: cfg.n_test], y_te[: cfg.n_test]
    models = {}
    for key, bias in (("regular", True), ("xdnn", False)):
        torch.manual_seed(seed)
        models[key] = train(cnn(bias), x_tr, y_tr, cfg.epochs, seed)
    fill = blur_fill(x_te, cfg.blur_kernel, cfg.blur_sigma)
    res: dict = {"seed": seed, "models": {}, "methods": {}}
    with torch.no_grad():
        for key, model in models.items():
            clean, blurred = model(x_te), model(fill)
            res["models"][key] = {
                "test_accuracy": float((clean.argmax(1) == y_te).float().mean()),
                "blurred_accuracy": float((blurred.argmax(1) == y_te).float().mean()),
                "clean_target_logit": float(clean.gather(1, y_te[:, None]).mean()),
                "blurred_target_logit": float(blurred.gather(1, y_te[:, None]).mean()),
            }
    explainers = make_explainers(x_tr, cfg.ig_steps, seed)
    attrs = {}
    for key in cfg.methods:
        model = models[METHODS[key][0]]
        a, per_image = attribute_all(explainers[key], model, x_te, y_te)
        attrs[key] = a
        curves = masking_curves(model, x_te, a, y_te, fill, PAPER_FRACTIONS)
        entry = {"sec_per_image": per_image, "auc": masking_aucs(curves, PAPER_FRACTIONS),
                 "curves": {k: c.mean(0).tolist() for k, c in curves.items()},
                 "completeness_gap": completeness_gap(model, x_te, y_te, a)}
        if not cfg.no_quantus:
            n = cfg.quantus_n
            entry["quantus"] = quantus_scores(model, explainers[key], x_te[:n], y_te[:n], a[:n],
                                              cfg, seed)
        res["methods"][key] = entry
        log(f"  seed {seed} {key}: {per_image * 1e3:.3f} ms/image, auc {entry['auc']}"
            + (f", quantus {entry['quantus']}" if "quantus" in entry else ""))
    if "xgradient" in attrs and "x_ig" in attrs:
        d = (attrs["xgradient"] - attrs["x_ig"]).abs().max()
        res["xgradient_vs_ig_max_abs_diff"] = float(d)
        res["xgradient_vs_ig_max_rel_diff"] = float(d / attrs["x_ig"].abs().max())
    return res


def normalise_auc(auc: float, model_stats: dict, metric: str, width: float) -> float:
    """(AUC - blurred * width) / (clean - blurred): 0 = no better than all-blurred, 1 = clean."""
    kind = "accuracy" if "absolute" in metric else "target_logit"
    clean = model_stats["test_accuracy" if kind == "accuracy" else "clean_target_logit"]
    blurred = model_stats["blurred_accuracy" if kind == "accuracy" else "blurred_target_logit"]
    return (auc - blurred * width) / (clean - blurred)


def aggregate(per_seed: List[dict], methods: List[str]) -> dict:
    def ms(vals):
        return {"mean": float(np.mean(vals)), "sem": sem(list(vals))}

    out: dict = {"models": {}, "methods": {}}
    for key in MODEL_LABELS:
        out["models"][key] = {m: ms([s["models"][key][m] for s in per_seed])
                              for m in per_seed[0]["models"][key]}
    for key in methods:
        entries = [s["methods"][key] for s in per_seed]
        agg = {"sec_per_image": ms([e["sec_per_image"] for e in entries]),
               "completeness_gap": ms([e["completeness_gap"] for e in entries])}
        agg["auc"] = {m: ms([e["auc"][m] for e in entries]) for m in MASKING}
        agg["auc_per_seed"] = {m: [e["auc"][m] for e in entries] for m in MASKING}
        # normalised: (AUC - floor) / (clean - blurred), floor = blurred level over the fraction
        # range, so that models with different logit scales and offsets can be compared
        model_key = METHODS[key][0]
        width = PAPER_FRACTIONS[-1] - PAPER_FRACTIONS[0]
        agg["normalised_auc_per_seed"] = {
            m: [normalise_auc(e["auc"][m], s["models"][model_key], m, width)
                for e, s in zip(entries, per_seed)] for m in MASKING}
        agg["normalised_auc"] = {m: ms(v) for m, v in agg["normalised_auc_per_seed"].items()}
        agg["curves"] = {m: np.mean([e["curves"][m] for e in entries], 0).tolist() for m in MASKING}
        if "quantus" in entries[0]:
            agg["quantus"] = {m: ms([e["quantus"][m] for e in entries]) for m in QUANTUS}
            agg["quantus_per_seed"] = {m: [e["quantus"][m] for e in entries] for m in QUANTUS}
        out["methods"][key] = agg
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds (at least 3)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--ig-steps", type=int, default=128, help="IG steps (paper: 128)")
    parser.add_argument("--n-test", type=int, default=0, help="test images (0: all 360)")
    parser.add_argument("--blur-kernel", type=int, default=11, help="Gaussian fill kernel (odd)")
    parser.add_argument("--blur-sigma", type=float, default=10.0, help="Gaussian fill sigma")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--no-quantus", action="store_true", help="skip the Quantus metrics")
    parser.add_argument("--quantus-n", type=int, default=100, help="test images for Quantus")
    parser.add_argument("--fc-runs", type=int, default=100, help="FaithfulnessCorrelation nr_runs")
    parser.add_argument("--fc-subset", type=int, default=32,
                        help="FaithfulnessCorrelation subset_size (pixels of 256)")
    parser.add_argument("--pf-step", type=int, default=8, help="PixelFlipping features_in_step")
    parser.add_argument("--ms-samples", type=int, default=5, help="MaxSensitivity nr_samples")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--small", action="store_true",
                        help="smoke-test size: 1 seed, 1 epoch, 24 test images, 8 IG steps")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu"))
    parser.add_argument("--from-json", type=Path, default=None,
                        help="only re-render the Markdown and PNG from a JSON of an earlier run")
    args = parser.parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        saved["meta"]["rendered_by"] = command
        saved["summary"] = aggregate(saved["per_seed"], list(saved["per_seed"][0]["methods"]))
        write_outputs(args.out, saved, json_too=False)
        return 0
    if args.small:
        args.seeds, args.epochs, args.n_test, args.ig_steps = 1, 1, 24, 8
        args.quantus_n, args.fc_runs, args.ms_samples, args.pf_step = 6, 4, 2, 64
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    torch.set_num_threads(args.threads)
    info = machine_info()
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    log(f"command: {command}\nmachine: {info}")
    t_start = time.perf_counter()
    per_seed = []
    for seed in range(args.seeds):
        per_seed.append(run_seed(seed, args, log))
        log(f"seed {seed + 1}/{args.seeds} done ({time.perf_counter() - t_start:.0f} s)")
    versions = {"torch": torch.__version__}
    for mod in ("captum", "quantus"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    meta = {"command": command, "machine": info, "versions": versions,
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                       if k not in ("from_json",)},
            "fractions": list(PAPER_FRACTIONS), "total_seconds": time.perf_counter() - t_start,
            "process_cpu_seconds": time.process_time(),
            "loadavg": {"start": load_start,
                        "end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}}
    doc = {"meta": meta, "per_seed": per_seed, "summary": aggregate(per_seed, args.methods)}
    write_outputs(args.out, doc)
    return 0


# ---------------------------------------------------------------------------- outputs
def _pm(stat: dict, fmt: str = ".3f") -> str:
    if stat["sem"] != stat["sem"]:  # NaN: one seed
        return f"{stat['mean']:{fmt}}"
    return f"{stat['mean']:{fmt}} ± {stat['sem']:{fmt}}"


def write_outputs(out: Path, doc: dict, json_too: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if json_too:
        (out / "attribution_quality.json").write_text(json.dumps(doc, indent=1))
    (out / "attribution_quality.md").write_text(markdown(doc))
    plot(out / "attribution_quality.png", doc)
    print((out / "attribution_quality.md").read_text())


def paired(doc: dict, a: str, b: str, metric: str, relative: bool = True,
           quantus: bool = False) -> Tuple[float, float]:
    """Mean and s.e.m. over seeds of (method a - method b) on one metric."""
    s = doc["summary"]["methods"]
    if quantus:
        va, vb = s[a]["quantus_per_seed"][metric], s[b]["quantus_per_seed"][metric]
    else:
        field = "normalised_auc_per_seed" if relative else "auc_per_seed"
        va, vb = s[a][field][metric], s[b][field][metric]
    d = np.array(va) - np.array(vb)
    return float(d.mean()), sem(list(d))


def compare(doc: dict, a: str, b: str, metric: str, higher: bool, quantus: bool = False) -> str:
    mean, err = paired(doc, a, b, metric, quantus=quantus)
    if err != err:  # one seed
        err = 0.0
    signed = mean if higher else -mean
    if abs(mean) <= 2 * err:
        return "on par"
    return "better" if signed > 0 else "worse"


def markdown(doc: dict) -> str:
    meta, summ = doc["meta"], doc["summary"]
    m, cfg = meta["machine"], meta["config"]
    methods = [k for k in METHODS if k in summ["methods"]]
    head = [f"{MODEL_LABELS[METHODS[k][0]]}: {METHODS[k][1]}" for k in methods]
    lines = [
        "# Attribution quality (Hesse et al. 2021, Sec. 4.2) on digits",
        "",
        f"Made by `{meta['command']}` on {m['platform']} ({m['processor']}, {m['cpu_count']} CPUs, "
        f"{m['torch_threads']} torch thread(s)), torch {meta['versions']['torch']}, captum "
        f"{meta['versions']['captum']}, quantus {meta['versions']['quantus']}, git {m['git_commit']}, "
        f"{m['date']}; total {meta['total_seconds'] / 60:.1f} min"
        + (f", {meta['process_cpu_seconds'] / 60:.1f} CPU min" if "process_cpu_seconds" in meta else "")
        + (f" (1-min load average {meta['loadavg']['start'][0]:.1f} at start, "
           f"{meta['loadavg']['end'][0]:.1f} at end)" if meta.get("loadavg", {}).get("start") else "")
        + ". CPU only (no GPU in this project's sessions). Costs are wall times on a shared "
        "machine: compare them within the table, roughly.",
        "",
        f"Data: scikit-learn digits upsampled to 16x16, {cfg['seeds']} seeds (split, initialisation, "
        f"batch order), {cfg['epochs']} epochs, all {cfg['n_test'] or 360} test images, "
        f"attributions for the true class. Masking: the paper's 16 fractions geomspace(0.01, 1), "
        f"blur fill (Gaussian kernel {cfg['blur_kernel']}, sigma {cfg['blur_sigma']}); the target "
        "logit is recorded for the positive/negative orders, top-1 accuracy for absolute. "
        f"IG: {cfg['ig_steps']} Gauss-Legendre steps, zero baseline. Mean ± s.e.m. over seeds.",
        "",
        "## Models",
        "",
        "| Model | test accuracy | accuracy on the blurred images | mean target logit (clean) | (blurred) |",
        "|---|---|---|---|---|",
    ]
    for key, label in MODEL_LABELS.items():
        s = summ["models"][key]
        lines.append(f"| {label} | {_pm(s['test_accuracy'])} | {_pm(s['blurred_accuracy'])} | "
                     f"{_pm(s['clean_target_logit'], '.2f')} | {_pm(s['blurred_target_logit'], '.2f')} |")
    lines += ["", "## Metrics (rows) by model and method (columns)", "",
              "↑: higher is better, ↓: lower is better. Masking AUCs are the paper's numbers (area "
              "over the fraction kept, 0.01..1); the logit AUCs are on each model's own logit scale "
              "(see the normalised table below to compare across models).", "",
              "| Metric | " + " | ".join(head) + " |", "|---|" + "---|" * len(methods)]
    for metric in MASKING:
        arrow = "↑" if HIGHER_IS_BETTER[metric] else "↓"
        lines.append(f"| {metric.replace('_', ' ')} {arrow} | "
                     + " | ".join(_pm(summ["methods"][k]["auc"][metric]) for k in methods) + " |")
    if all("quantus" in summ["methods"][k] for k in methods):
        for metric, (label, higher) in QUANTUS.items():
            lines.append(f"| {label} {'↑' if higher else '↓'} | "
                         + " | ".join(_pm(summ["methods"][k]["quantus"][metric]) for k in methods)
                         + " |")
    lines.append("| completeness gap, median relative (ours) ↓ | "
                 + " | ".join(_pm(summ["methods"][k]["completeness_gap"], ".1e") for k in methods) + " |")
    lines.append("| **cost: ms per image** | "
                 + " | ".join(_pm({kk: 1e3 * v for kk, v in summ["methods"][k]["sec_per_image"].items()},
                                  ".3f") for k in methods) + " |")
    lines += ["", "## Normalised AUCs (to compare the CNN with the X-CNN)", "",
              "(AUC - b * 0.99) / (c - b), where c is the model's value on the clean test images "
              "(mean target logit, or accuracy for the absolute order), b its value on the "
              "all-blurred images and 0.99 the width of the fraction range: 0 means no better than "
              "the blurred image at every fraction, 1 the clean image at every fraction. It removes "
              "each model's logit scale and offset.", "",
              "| Metric | " + " | ".join(head) + " |", "|---|" + "---|" * len(methods)]
    for metric in MASKING:
        arrow = "↑" if HIGHER_IS_BETTER[metric] else "↓"
        lines.append(f"| {metric.replace('_', ' ')} {arrow} | "
                     + " | ".join(_pm(summ["methods"][k]["normalised_auc"][metric]) for k in methods) + " |")
    diffs = [s.get("xgradient_vs_ig_max_rel_diff") for s in doc["per_seed"]]
    diffs = [d for d in diffs if d is not None]
    lines += verdict(doc, methods, diffs)
    lines += quantus_notes(cfg)
    if "rendered_by" in meta:
        lines += ["", f"(Markdown and plot re-rendered from the JSON by `{meta['rendered_by']}`.)"]
    return "\n".join(lines) + "\n"


def verdict(doc: dict, methods: List[str], diffs: List[float]) -> List[str]:
    need = {"xgradient", "ig", "gradient", "input_x_gradient"}
    if not need <= set(methods):
        return []
    summ = doc["summary"]["methods"]
    lines = ["", "## Does X-Gradient on the X-CNN match IG on the regular CNN?", "",
             "Paired over seeds (same split), on the numbers that do not depend on a model's "
             "logit scale (normalised masking AUCs, Quantus scores): 'better'/'worse' when the mean difference "
             "is more than 2 s.e.m. from 0, else 'on par'.", "",
             "| Metric | X-Gradient (X-CNN) vs IG (CNN) | vs gradient (CNN) | vs input x gradient (CNN) "
             "| vs EG k=1 (CNN) |", "|---|---|---|---|---|"]
    tally: Dict[str, Dict[str, int]] = {r: {"better": 0, "on par": 0, "worse": 0}
                                        for r in ("ig", "gradient", "input_x_gradient", "eg1")}
    where: Dict[Tuple[str, str], List[str]] = {}
    rows = [(m, HIGHER_IS_BETTER[m], False) for m in MASKING]
    if "quantus" in summ["xgradient"]:
        rows += [(m, h, True) for m, (_, h) in QUANTUS.items() if m != "completeness"]
    for metric, higher, q in rows:
        cells = []
        for ref in ("ig", "gradient", "input_x_gradient", "eg1"):
            if ref not in methods:
                cells.append("-")
                continue
            mean, err = paired(doc, "xgradient", ref, metric, quantus=q)
            v = compare(doc, "xgradient", ref, metric, higher, quantus=q)
            tally[ref][v] += 1
            where.setdefault((ref, v), []).append(QUANTUS[metric][0].replace("Quantus ", "")
                                                  if q else metric.replace("_", "-"))
            cells.append(f"{mean:+.3f} ± {err:.3f} ({v})")
        name = QUANTUS[metric][0] if q else metric.replace("_", " ")
        lines.append(f"| {name} {'↑' if higher else '↓'} | " + " | ".join(cells) + " |")
    t = tally["ig"]
    n = sum(t.values())
    xg_cost = summ["xgradient"]["sec_per_image"]["mean"]
    ig_cost = summ["ig"]["sec_per_image"]["mean"]
    def wl(ref):
        return f"{tally[ref]['better']} better, {tally[ref]['on par']} on par, {tally[ref]['worse']} worse"

    part1 = t["worse"] <= n // 4 and t["on par"] + t["better"] >= (3 * n) // 4
    def against(ref):
        c = tally[ref]
        if c["better"] * 2 >= n and c["worse"] == 0:
            return "better"
        if c["better"] and c["worse"]:
            return "mixed"
        if c["worse"] * 2 >= n and c["better"] == 0:
            return "worse"
        return "on par"

    def detail(ref):
        parts = [f"{v} on {', '.join(where[(ref, v)])}" for v in ("better", "worse")
                 if (ref, v) in where]
        return f" ({'; '.join(parts)})" if parts else ""

    part2 = {r: against(r) for r in ("gradient", "input_x_gradient")}
    lines += ["", "**Verdict.** "
              + (f"X-Gradient on the X-CNN and Captum IG on the X-CNN are the same attributions "
                 f"(largest relative difference {max(diffs):.1e}), so the two X-CNN columns agree. "
                 if diffs else "")
              + f"(1) *X-Gradient on the X-CNN vs IG on the regular CNN*: {wl('ig')} of {n} "
              f"metrics{detail('ig')}; the first half of the paper's claim (about as good as IG) "
              + ("**holds** here" if part1 else "**does not hold** here")
              + f", at {ig_cost / xg_cost:.0f}x less cost per image than IG with "
              f"{doc['meta']['config']['ig_steps']} steps ({1e3 * xg_cost:.3f} vs "
              f"{1e3 * ig_cost:.3f} ms). (2) *vs the gradient-only methods on the regular CNN*: "
              f"against the gradient {part2['gradient']}, {wl('gradient')}{detail('gradient')}; "
              f"against input x gradient {part2['input_x_gradient']}, {wl('input_x_gradient')}"
              f"{detail('input_x_gradient')}. The second half of the claim (better than the "
              "gradient-only methods) "
              + ("**holds** here" if all(v == "better" for v in part2.values()) else
                 "**does not hold** here")
              + f". With {len(doc['per_seed'])} seeds small differences are not resolved: "
              "'on par' means no difference at this resolution."]
    return lines


def quantus_notes(cfg: dict) -> List[str]:
    if cfg.get("no_quantus"):
        return ["", "Quantus metrics skipped (`--no-quantus`)."]
    return [
        "", "## Quantus settings and caveats", "",
        f"All Quantus numbers come from Quantus itself on the first {cfg['quantus_n']} test images "
        "per seed, attributions as computed above (MaxSensitivity re-explains the perturbed "
        "inputs with the same method).",
        f"- FaithfulnessCorrelation: nr_runs={cfg['fc_runs']}, subset_size={cfg['fc_subset']} of "
        "256 pixels, perturb_baseline='black' (the image minimum, 0 on digits), logits; Pearson "
        "correlation, higher is better.",
        f"- PixelFlipping: features_in_step={cfg['pf_step']}, perturb_baseline='black', softmax "
        "probabilities (Quantus's default), AUC per sample; lower is better (the probability "
        "should fall fast when the top pixels are flipped).",
        f"- MaxSensitivity: nr_samples={cfg['ms_samples']}, uniform noise lower_bound=0.2, "
        "Frobenius norms (defaults); lower is better.",
        "- Completeness: abs=False, normalise=False, perturb_baseline='black' (= zero baseline). "
        "**It cannot discriminate here:** Quantus 0.6 tests `sum(a) == f(x) - f(baseline)` with "
        "exact float equality, so for float32 attributions that satisfy completeness to "
        "rounding (X-Gradient, IG) it is True only where the rounding happens to match. Our own 'completeness gap' row (median relative gap "
        "|sum a - (f(x) - f(0))| / |f(x) - f(0)|, not a Quantus metric) shows which methods are "
        "complete. It is left out of the verdict.",
        "- ROAD was not used (PixelFlipping covers the remove-and-measure protocol).",
        "- Quantus 0.6 computes PixelFlipping's AUC with `np.trapz`, which NumPy 2.4 removed; the "
        "script aliases it to `np.trapezoid` (the same trapezoidal rule) before calling Quantus.",
    ]


def plot(path: Path, doc: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ, meta = doc["summary"], doc["meta"]
    fr = meta["fractions"]
    keys = list(summ["methods"])
    colour = {k: f"C{list(METHODS).index(k)}" for k in keys}
    label = {k: f"{MODEL_LABELS[METHODS[k][0]]}: {METHODS[k][1]}" for k in keys}
    fig, axes = plt.subplots(2, 4, figsize=(20, 9))
    for i, metric in enumerate(MASKING):
        ax = axes[i % 2, i // 2]
        for key in keys:
            model_key = METHODS[key][0]
            stats = {k: v["mean"] for k, v in summ["models"][model_key].items()}
            kind = ("test_accuracy", "blurred_accuracy") if "absolute" in metric else (
                "clean_target_logit", "blurred_target_logit")
            clean, blurred = stats[kind[0]], stats[kind[1]]
            ax.plot(fr, (np.array(summ["methods"][key]["curves"][metric]) - blurred) / (clean - blurred),
                    "-" if model_key == "regular" else "--", color=colour[key],
                    marker="x" if key == "x_ig" else ".", label=label[key])
        ax.set_xscale("log")
        ax.set_xlabel("fraction of pixels kept")
        ax.set_ylabel("(output - blurred) / (clean - blurred)")
        ax.set_title(f"{metric.replace('_', ' ')} ({'higher' if HIGHER_IS_BETTER[metric] else 'lower'} "
                     "is better)", fontsize=10)
    ax = axes[0, 3]
    cost = [1e3 * summ["methods"][k]["sec_per_image"]["mean"] for k in keys]
    ax.barh(range(len(keys)), cost, color=[colour[k] for k in keys])
    ax.set_yticks(range(len(keys)), [label[k] for k in keys], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("ms per image (log)")
    ax.invert_yaxis()
    ax = axes[1, 3]
    if all("quantus" in summ["methods"][k] for k in keys):
        names = [m for m in QUANTUS if m != "completeness"]
        width = 0.8 / len(keys)
        for j, k in enumerate(keys):
            ax.bar(np.arange(len(names)) + j * width,
                   [summ["methods"][k]["quantus"][m]["mean"] for m in names], width,
                   yerr=[summ["methods"][k]["quantus"][m]["sem"] for m in names], color=colour[k])
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2,
                      [{"faithfulness_correlation": "FaithfulnessCorr.", "pixel_flipping_auc":
                        "PixelFlipping AUC", "max_sensitivity": "MaxSensitivity"}[m]
                       + (" ↑" if QUANTUS[m][1] else " ↓") for m in names], fontsize=8)
        ax.set_title("Quantus metrics", fontsize=10)
    else:
        ax.axis("off")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9)
    m = meta["machine"]
    fig.suptitle(f"{meta['command']}\n{m['processor']}, {m['torch_threads']} thread(s), "
                 f"torch {m['torch']}, {len(doc['per_seed'])} seed(s); curves: mean over seeds, "
                 "normalised by each model's clean and all-blurred output", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
