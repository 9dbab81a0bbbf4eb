"""``captum-xgrad bench MODEL``: how fast is XGradient on *your* model?

Times, with :class:`torch.utils.benchmark.Timer` (``blocked_autorange``; on CUDA it
synchronizes around the calls), three ways to get an attribution of the predicted class
for a random batch of shape ``(--batch-size, *--input-shape)``:

- the bare forward pass plus :func:`torch.autograd.grad` of the target outputs, the
  least any gradient attribution can cost;
- :class:`~captum_xgrad.XGradient` (exact Integrated Gradients for a homogeneous model);
- Captum's :class:`~captum.attr.IntegratedGradients` with ``--n-steps`` steps.

MODEL is a spec as for ``captum-xgrad check`` (``torchvision:NAME``,
``captum_xgrad:NAME``, ``path/to/file.py:FACTORY``, ``package.module:FACTORY``). The
study behind the paper's numbers (more methods, memory, training steps) is
``python -m benchmarks.attribution_speed`` in the repository.

Exit status: 0 when timed, 1 if the model fails (message on stderr), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any, Callable, Dict, List

import torch

from ._cli_check import ModelError, UsageError, exit_code_of, model_and_input, model_failed
from .errors import NonHomogeneousWarning

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` sub-command's arguments to ``parser``."""
    parser.add_argument("model", metavar="MODEL",
                        help="as for `captum-xgrad check`: torchvision:NAME, captum_xgrad:NAME, "
                             "path/to/file.py:FACTORY or package.module:FACTORY")
    parser.add_argument("--input-shape", default="3,224,224", metavar="C,H,W",
                        help="shape of one input example, comma-separated (default: 3,224,224)")
    parser.add_argument("--batch-size", type=int, default=1, help="examples per call (default: 1)")
    parser.add_argument("--n-steps", type=int, default=50,
                        help="steps of Captum's IntegratedGradients (default: 50)")
    parser.add_argument("--min-run-time", type=float, default=1.0, metavar="SECONDS",
                        help="time each method for at least this long (default: 1.0)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random inputs (default: 0)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def _methods(model: torch.nn.Module, x: torch.Tensor, n_steps: int) -> Dict[str, Callable[[], Any]]:
    from captum.attr import IntegratedGradients

    from .xgradient import XGradient

    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        raise model_failed(exc, x) from exc
    if not isinstance(out, torch.Tensor) or out.dim() not in (1, 2):
        raise ModelError("bench needs a model whose output is a tensor of shape (N,) or (N, C).")
    target = out.argmax(1) if out.dim() == 2 else None
    xg, ig = XGradient(model), IntegratedGradients(model)

    def bare() -> Any:
        xi = x.detach().requires_grad_(True)
        y = model(xi)
        y = y.gather(1, target[:, None]) if target is not None else y
        return torch.autograd.grad(y.sum(), xi)[0]

    return {
        "bare forward+backward": bare,
        "XGradient": lambda: xg.attribute(x, target=target),
        f"IntegratedGradients(n_steps={n_steps})": lambda: ig.attribute(
            x, target=target, n_steps=n_steps),
    }


def _bench(args: argparse.Namespace) -> int:
    if args.n_steps < 1 or args.min_run_time <= 0:
        raise UsageError("--n-steps must be a positive integer and --min-run-time positive.")
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        raise UsageError(f"--device {args.device!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but torch.cuda.is_available() is False.")
    from torch.utils.benchmark import Timer

    model, x = model_and_input(args)
    model, x = model.to(device), x.to(device)
    rows: List[Dict[str, Any]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, fn in _methods(model, x, args.n_steps).items():
            fn()  # warm-up (and XGradient's one-time structural check)
            m = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads(),
                      description=name).blocked_autorange(min_run_time=args.min_run_time)
            rows.append({"method": name, "median_ms": 1e3 * m.median, "iqr_ms": 1e3 * m.iqr,
                         "runs": m.number_per_run * len(m.times)})
    for r in rows:
        r["x_bare"] = r["median_ms"] / rows[0]["median_ms"]
    notes = [
        "the model does not look nonnegatively homogeneous, so XGradient is not "
        f"Integrated Gradients on it; `captum-xgrad check {args.model}` says why."
    ] if any(issubclass(w.category, NonHomogeneousWarning) for w in caught) else []
    where = f"{device}" + (f", {torch.get_num_threads()} thread(s)" if device.type == "cpu" else "")
    if args.json:
        print(json.dumps({"model": args.model, "input_shape": list(x.shape), "device": where,
                          "results": rows, "notes": notes}, indent=2))
        return 0
    print(f"captum-xgrad bench {args.model} on inputs {tuple(x.shape)}, {where} "
          f"(torch.utils.benchmark, median of >= {args.min_run_time:g} s per method)")
    print(f"{'method':<36} {'median ms':>10} {'IQR ms':>8} {'x bare':>7}")
    for r in rows:
        print(f"{r['method']:<36} {r['median_ms']:>10.3f} {r['iqr_ms']:>8.3f} {r['x_bare']:>7.2f}")
    for note in notes:
        print(f"note: {note}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``captum-xgrad bench``: the table (or JSON) on stdout; exit 0, 1 (model) or 2 (usage)."""
    return exit_code_of("captum-xgrad bench", lambda: _bench(args))
