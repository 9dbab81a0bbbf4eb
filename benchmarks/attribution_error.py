"""Exactness: XGradient vs IntegratedGradients(n) on X-models, and IG(n)'s convergence
on the same architectures with biases.

    python -m benchmarks.attribution_error --small --device cpu
    python -m benchmarks.attribution_error --device cuda
    python -m benchmarks.attribution_error --from-json benchmarks/results/cpu/error.json

Writes error.json, error.md and error_vs_steps.png under ``<--out>/<device>/``
(default ``benchmarks/results``); ``--help`` lists the options.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from benchmarks.harness.cases import BenchConfig, build_seeded, get_model_spec
from benchmarks.harness.report import Progress, run_study

Log = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, flush=True)


# ========================================================================== exactness
def _relative_errors(attr: Tensor, ref: Tensor) -> Tuple[float, float]:
    """(max over examples of max|a-r|/max|r|, mean over examples of sum|a-r|/sum|r|)."""
    a = attr.detach().double().reshape(attr.shape[0], -1)
    r = ref.detach().double().reshape(ref.shape[0], -1)
    tiny = torch.finfo(torch.float64).tiny
    diff = (a - r).abs()
    max_rel = diff.max(1).values / r.abs().max(1).values.clamp_min(tiny)
    mean_rel = diff.sum(1) / r.abs().sum(1).clamp_min(tiny)
    return float(max_rel.max()), float(mean_rel.mean())


def _completeness(delta: Tensor, f_x: Tensor, f_0: Tensor) -> Tuple[float, float]:
    rel = delta.detach().double().abs() / (f_x - f_0).detach().double().abs().clamp_min(1e-30)
    return float(rel.max()), float(rel.mean())


@contextlib.contextmanager
def _full_precision(device: str) -> Iterator[Dict[str, Any]]:
    """Switch TF32 off on CUDA for the exactness study (restored afterwards): TF32
    convolutions round to ~1e-3 and would hide the differences being measured."""
    if device != "cuda":
        yield {}
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield {"tf32": "disabled for the exactness study"}
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def run_error(cfg: BenchConfig, log: Log = _print) -> Dict[str, Dict[str, Any]]:
    """Run the exactness study; returns one result dict per device.

    For each model: on the bias-free X-model, ``XGradient`` against
    ``IntegratedGradients(n_steps=n)`` (Captum's default Gauss-Legendre rule) for every
    ``n``; on the same architecture with biases, ``IG(n)`` against
    ``IG(reference_steps)``, and ``XGradient`` (here *not* exact) against the same
    reference. Errors are relative:
    ``max_rel = max_i max_j |a_ij - r_ij| / max_j |r_ij|`` and
    ``mean_rel = mean_i sum_j |a_ij - r_ij| / sum_j |r_ij|`` over examples ``i`` and
    input elements ``j``; the completeness error is
    ``|sum_j a_ij - (f(x_i) - f(0))| / |f(x_i) - f(0)|``.

    Parameters
    ----------
    cfg : BenchConfig
    log : callable, default print

    Returns
    -------
    dict
        ``{device: {"models": ..., "results": [...]}}``.

    Raises
    ------
    ValueError
        For an invalid configuration (:meth:`BenchConfig.validate`).
    RuntimeError
        If a model gives :math:`f(x) = f(0)` on the benchmark inputs (a degenerate
        initialisation, which makes relative errors meaningless).

    Examples
    --------
    >>> from benchmarks.harness.cases import BenchConfig
    >>> from benchmarks.attribution_error import run_error
    >>> cfg = BenchConfig(models=["mlp"], small=True, n_steps=[4], reference_steps=16,
    ...                   error_batch_size=1, progress=False)
    >>> result = run_error(cfg, log=lambda line: None)
    >>> rows = result["cpu"]["results"]
    >>> [(r["variant"], r["method"], r["reference"]) for r in rows]
    [('x', 'xgradient', 'xgradient'), ('x', 'ig', 'xgradient'), ('biased', 'xgradient', 'ig16'), ('biased', 'ig', 'ig16')]
    >>> rows[1]["max_rel"] < 1e-4  # IG(4) equals X-Gradient on the bias-free MLP
    True
    >>> rows[2]["max_rel"] > 1e-2  # ... but X-Gradient is not IG once there are biases
    True
    """
    cfg.validate()
    out: Dict[str, Dict[str, Any]] = {}
    for device in cfg.devices:
        with _full_precision(device) as precision:
            out[device] = _run_error_on(device, cfg, log)
            out[device].update(precision)
    return out


def _run_error_on(device: str, cfg: BenchConfig, log: Log) -> Dict[str, Any]:
    from captum.attr import IntegratedGradients

    from captum_xgrad.xgradient import XGradient

    ibs = cfg.error_internal_batch_size
    rows: List[Dict[str, Any]] = []
    models_info: Dict[str, Any] = {}
    steps = sorted(set(cfg.n_steps))
    bar = Progress(len(cfg.models) * (2 * len(steps) + 3), f"{device} exactness",
                    cfg.progress)
    try:
        for name in cfg.models:
            spec = get_model_spec(name)
            shape = spec.input_shape(cfg.small)
            n_examples = cfg.error_batch_size or spec.error_batch_size(cfg.small)
            gen = torch.Generator().manual_seed(cfg.seed)
            x = torch.rand((n_examples,) + shape, generator=gen).to(device)
            info: Dict[str, Any] = {"title": spec.title, "input_shape": list(shape),
                                    "examples": n_examples}
            for variant, build in (("x", spec.build_x), ("biased", spec.build_biased)):
                model, source = build_seeded(lambda: build(cfg.num_classes, cfg.small),
                                             cfg.seed)
                model = model.to(device).eval()
                info[f"{variant}_source"] = source
                with torch.no_grad():
                    f_x_all = model(x)
                    f_0_all = model(torch.zeros_like(x))
                t = f_x_all.argmax(1)
                f_x = f_x_all.gather(1, t[:, None])[:, 0]
                f_0 = f_0_all.gather(1, t[:, None])[:, 0]
                if not bool(((f_x - f_0).abs() > 1e-6 * f_x.abs().clamp_min(1.0)).all()):
                    raise RuntimeError(
                        f"{name} ({variant}, {source}): f(x) = f(0) on the benchmark "
                        "inputs, so every attribution is ~0 and relative errors are "
                        "meaningless; the model's initialisation is degenerate."
                    )
                ig = IntegratedGradients(model)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # biased models warn, by design
                    xg, xg_delta = XGradient(model).attribute(
                        x, target=t, return_convergence_delta=True)
                bar.update(f"{name} {variant} XGradient")
                base = {"model": name, "device": device, "variant": variant}
                if variant == "x":
                    ref, ref_name = xg, "xgradient"
                else:
                    ref = ig.attribute(x, target=t, n_steps=cfg.reference_steps,
                                       internal_batch_size=ibs)
                    ref_name = f"ig{cfg.reference_steps}"
                    bar.update(f"{name} IG({cfg.reference_steps})")
                    mx, mn = _relative_errors(xg, ref)
                    cmx, cmn = _completeness(xg_delta, f_x, f_0)
                    rows.append(dict(base, method="xgradient", n_steps=None,
                                     reference=ref_name, max_rel=mx, mean_rel=mn,
                                     completeness_max_rel=cmx, completeness_mean_rel=cmn))
                if variant == "x":
                    cmx, cmn = _completeness(xg_delta, f_x, f_0)
                    rows.append(dict(base, method="xgradient", n_steps=None,
                                     reference="xgradient", max_rel=0.0, mean_rel=0.0,
                                     completeness_max_rel=cmx, completeness_mean_rel=cmn))
                for n in steps:
                    a, delta = ig.attribute(x, target=t, n_steps=n, internal_batch_size=ibs,
                                            return_convergence_delta=True)
                    mx, mn = _relative_errors(a, ref)
                    cmx, cmn = _completeness(delta, f_x, f_0)
                    rows.append(dict(base, method="ig", n_steps=n, reference=ref_name,
                                     max_rel=mx, mean_rel=mn,
                                     completeness_max_rel=cmx, completeness_mean_rel=cmn))
                    bar.update(f"{name} {variant} IG({n})")
                del model, ig
                gc.collect()
            models_info[name] = info
            x_rows = [r for r in rows if r["model"] == name and r["variant"] == "x"
                      and r["method"] == "ig"]
            b_rows = [r for r in rows if r["model"] == name and r["variant"] == "biased"
                      and r["method"] == "ig"]
            log(f"  {device} {name}: max |IG(n) - XGradient| / max |XGradient| over n = "
                f"{max(r['max_rel'] for r in x_rows):.1e} (X-model); with biases "
                f"IG({b_rows[0]['n_steps']}) vs IG({cfg.reference_steps}): "
                f"{b_rows[0]['max_rel']:.1e}")
    finally:
        bar.close()
    return {"models": models_info, "results": rows, "error_internal_batch_size": ibs}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m benchmarks.attribution_error [options]`` (``--help``); returns the exit code."""
    return run_study("error", run_error, argv, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    sys.exit(main())
