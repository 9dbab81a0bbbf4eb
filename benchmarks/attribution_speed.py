r"""Time and peak memory: XGradient vs the bare forward+backward vs Captum's attributions.

    python -m benchmarks.attribution_speed --small --device cpu   # CPU size, a few minutes
    python -m benchmarks.attribution_speed --device cuda          # full size, on a GPU
    python -m benchmarks.attribution_speed --from-json benchmarks/results/cpu/speed.json

Writes speed.json, speed.md, time_vs_steps.png and memory.png under ``<--out>/<device>/``
(default ``benchmarks/results``); ``--help`` lists the options. For every model, batch
size and device it times, with warm-up and ``repeats`` repetitions (median and quartiles):

- ``bare``: one forward pass and :func:`torch.autograd.grad` of the target logits with
  respect to the input, the least any gradient attribution can cost;
- ``xgradient``: :class:`captum_xgrad.XGradient`; ``input_x_gradient``: Captum's
  ``InputXGradient``;
- ``ig``: Captum's ``IntegratedGradients`` for every ``n_steps``, with and without
  ``internal_batch_size``;
- ``layer_xgradient`` and ``layer_ig``: :class:`captum_xgrad.LayerXGradient` and Captum's
  ``LayerIntegratedGradients`` on the model's last feature map;
- ``train_plain``, ``train_xgrad_prior``, ``train_xgrad_prior_attribute``,
  ``train_ig_prior``: one SGD step on the cross-entropy, alone or plus the attribution
  prior :math:`\lambda\,\Omega_{L1}(A(x))` (:func:`captum_xgrad.priors.l1_prior`) with
  :math:`A` the X-Gradient (:class:`captum_xgrad.training.AttributionPrior`, one forward
  pass; or ``XGradient.attribute(create_graph=True)`` plus a task forward pass) or a
  differentiable IG (``AttributionPrior`` with ``IntegratedGradientsMethod``).

The cases of a group (gradient methods, IG, layer methods, training steps) are timed
interleaved, round by round (:func:`benchmarks.harness.timing.time_interleaved`), so that
load changes on a shared machine affect the compared methods alike. Each time is also
reported as a ratio to ``bare`` (training steps also to ``train_plain``), and each case's
peak memory is measured once, in its first (warm-up) call
(:func:`benchmarks.harness.memory.peak_memory`).
"""

from __future__ import annotations

import copy
import gc
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.harness.cases import BenchConfig, ModelSpec, build_seeded, get_model_spec
from benchmarks.harness.memory import MEMORY_METHODS, is_out_of_memory, peak_memory
from benchmarks.harness.report import Progress, run_study
from benchmarks.harness.timing import time_interleaved

Log = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class _Case:
    name: str
    group: str
    fn: Callable[[], Any]
    n_steps: Optional[int] = None
    internal_batch_size: Optional[int] = None


def _bare(model: nn.Module, x: Tensor, t: Tensor) -> Callable[[], Any]:
    def fn() -> Any:
        xi = x.detach().requires_grad_(True)
        out = model(xi)
        return torch.autograd.grad(out.gather(1, t[:, None]).sum(), xi)[0]

    return fn


def _prior_losses(model: nn.Module, x: Tensor, y: Tensor, cfg: "BenchConfig"
                  ) -> Dict[str, Callable[[], Tensor]]:
    """The losses of the training-step cases, ``name -> () -> loss``.

    ``train_xgrad_prior`` and ``train_ig_prior`` use
    :class:`captum_xgrad.training.AttributionPrior` with :func:`~captum_xgrad.priors.l1_prior`
    (one model call per step, shared by the task loss and the attribution);
    ``train_xgrad_prior_attribute`` is what a drop-in user of
    ``XGradient.attribute(create_graph=True)`` writes: the attribution's forward pass
    plus a second forward pass for the task loss.
    """
    from captum_xgrad.priors import l1_prior
    from captum_xgrad.training import AttributionPrior, IntegratedGradientsMethod
    from captum_xgrad.xgradient import XGradient

    lam = cfg.prior_lambda
    xg_prior = AttributionPrior(model, l1_prior, weight=lam, attribution="xgradient")
    ig_prior = AttributionPrior(model, l1_prior, weight=lam,
                                attribution=IntegratedGradientsMethod(n_steps=cfg.prior_ig_steps))
    xg = XGradient(model, check="off")

    def attribute_then_forward() -> Tensor:
        attr = xg.attribute(x, target=y, create_graph=True)
        return F.cross_entropy(model(x), y) + lam * l1_prior(attr)

    return {
        "train_plain": lambda: F.cross_entropy(model(x), y),
        "train_xgrad_prior": lambda: xg_prior(x, y).loss,
        "train_xgrad_prior_attribute": attribute_then_forward,
        "train_ig_prior": lambda: ig_prior(x, y).loss,
    }


def _train_step(
    model: nn.Module, opt: torch.optim.Optimizer, loss_fn: Callable[[], Tensor]
) -> Callable[[], Any]:
    def fn() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return None

    return fn


def _speed_cases(
    spec: ModelSpec,
    model: nn.Module,
    train_model: nn.Module,
    opt: torch.optim.Optimizer,
    x: Tensor,
    t: Tensor,
    cfg: BenchConfig,
) -> List[_Case]:
    from captum.attr import (
        InputXGradient,
        IntegratedGradients,
        LayerIntegratedGradients,
    )

    from captum_xgrad.layer_xgradient import LayerXGradient
    from captum_xgrad.xgradient import XGradient

    xg = XGradient(model)
    ixg = InputXGradient(model)
    ig = IntegratedGradients(model)
    layer = spec.layer(model)
    lxg = LayerXGradient(model, layer)
    lig = LayerIntegratedGradients(model, layer)
    ibs = cfg.internal_batch_size
    cases = [
        _Case("bare", "gradient", _bare(model, x, t)),
        _Case("xgradient", "gradient", lambda: xg.attribute(x, target=t)),
        _Case("input_x_gradient", "gradient", lambda: ixg.attribute(x, target=t)),
    ]
    for n in cfg.n_steps:
        cases.append(_Case("ig", "ig", lambda n=n: ig.attribute(x, target=t, n_steps=n),
                           n_steps=n))
    for n in cfg.n_steps:
        if n * x.shape[0] <= ibs:
            continue  # one chunk: the same computation as without internal_batch_size
        cases.append(_Case(
            "ig", "ig",
            lambda n=n: ig.attribute(x, target=t, n_steps=n, internal_batch_size=ibs),
            n_steps=n, internal_batch_size=ibs,
        ))
    cases += [
        _Case("layer_xgradient", "layer", lambda: lxg.attribute(x, target=t)),
        _Case("layer_ig", "layer",
              lambda: lig.attribute(x, target=t, n_steps=cfg.layer_n_steps),
              n_steps=cfg.layer_n_steps),
    ]
    losses = _prior_losses(train_model, x, t, cfg)
    for name, loss_fn in losses.items():
        cases.append(_Case(name, "train", _train_step(train_model, opt, loss_fn),
                           n_steps=cfg.prior_ig_steps if name == "train_ig_prior" else None))
    return cases


def _measure_block(cases: List[_Case], device: str, cfg: BenchConfig,
                   bar: Progress) -> List[Dict[str, Any]]:
    """Measure every case of one (model, device, batch) block.

    First each case once on its own: its peak memory (this call is also its first
    warm-up call) or, with memory off, a plain warm-up call; a case that runs out of
    memory is recorded as such and not timed. Then the timing, interleaved within
    each group (gradient, IG, layer, training), so that load changes on a shared
    machine hit the compared methods alike.
    """
    rows: List[Dict[str, Any]] = []
    for case in cases:
        row: Dict[str, Any] = {
            "case": case.name,
            "group": case.group,
            "n_steps": case.n_steps,
            "internal_batch_size": case.internal_batch_size,
            "status": "ok",
        }
        try:
            if cfg.memory:
                row["peak_memory_bytes"] = peak_memory(case.fn, device)
            else:
                case.fn()
        except Exception as exc:  # noqa: BLE001 - recorded, then the run goes on
            if not is_out_of_memory(exc):
                raise
            row["status"] = "out of memory"
            row["error"] = str(exc).splitlines()[0][:200]
        if row["status"] != "ok":
            # here the exception and the frames it kept alive are gone
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
        bar.update(f"memory: {_short_label(case)}")
    warmup = max(cfg.warmup - 1, 0)
    groups: List[str] = []
    for case in cases:
        if case.group not in groups:
            groups.append(case.group)
    for group in groups:
        members = [(c, r) for c, r in zip(cases, rows) if c.group == group and r["status"] == "ok"]
        if not members:
            continue
        timings = time_interleaved([c.fn for c, _ in members], device,
                                   repeats=cfg.repeats, warmup=warmup)
        for (c, r), timing in zip(members, timings):
            r.update(timing.as_dict())
            bar.update(f"time: {_short_label(c)}")
    return rows


def _short_label(case: _Case) -> str:
    label = case.name + (f"(n={case.n_steps})" if case.n_steps else "")
    return label + (f" ibs={case.internal_batch_size}" if case.internal_batch_size else "")


def _add_ratios(rows: List[Dict[str, Any]]) -> None:
    """Add ``time_ratio_to_bare``, ``memory_ratio_to_bare`` (and, for training steps,
    ``time_ratio_to_plain_step``) to every row of one (model, device, batch) block."""
    by_name = {r["case"]: r for r in rows if r["group"] != "ig"}
    bare = by_name.get("bare", {})
    plain = by_name.get("train_plain", {})
    for r in rows:
        if r["status"] != "ok":
            continue
        if bare.get("median_ms"):
            r["time_ratio_to_bare"] = r["median_ms"] / bare["median_ms"]
        if bare.get("peak_memory_bytes") and "peak_memory_bytes" in r:
            r["memory_ratio_to_bare"] = r["peak_memory_bytes"] / bare["peak_memory_bytes"]
        if r["group"] == "train" and plain.get("median_ms"):
            r["time_ratio_to_plain_step"] = r["median_ms"] / plain["median_ms"]
            if plain.get("peak_memory_bytes") and "peak_memory_bytes" in r:
                r["memory_ratio_to_plain_step"] = (
                    r["peak_memory_bytes"] / plain["peak_memory_bytes"]
                )


#: the issue's targets, checked in the summary (never in tests).
TARGETS = {
    "xgradient_time_ratio_max": 1.05,
    "xgradient_memory_ratio_max": 1.10,
    "train_xgrad_prior_ratio_max": 2.5,
}


def _summarise(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One summary line per (model, device, batch): the target ratios."""
    out = []
    keys = []
    for r in rows:
        k = (r["model"], r["device"], r["batch_size"])
        if k not in keys:
            keys.append(k)
    for model, device, batch in keys:
        block = [r for r in rows
                 if (r["model"], r["device"], r["batch_size"]) == (model, device, batch)]

        def get(case: str, n: Optional[int] = None, ibs: Optional[int] = None) -> Dict[str, Any]:
            for r in block:
                if (r["case"] == case and r["status"] == "ok"
                        and (n is None or r["n_steps"] == n)
                        and r["internal_batch_size"] == ibs):
                    return r
            return {}

        xg, ig50 = get("xgradient"), get("ig", 50)
        s: Dict[str, Any] = {"model": model, "device": device, "batch_size": batch}
        s["xgradient_time_ratio"] = xg.get("time_ratio_to_bare")
        s["xgradient_memory_ratio"] = xg.get("memory_ratio_to_bare")
        s["ig50_over_xgradient_time"] = (
            ig50["median_ms"] / xg["median_ms"] if ig50 and xg else None
        )
        s["ig50_over_xgradient_memory"] = (
            ig50["peak_memory_bytes"] / xg["peak_memory_bytes"]
            if ig50.get("peak_memory_bytes") and xg.get("peak_memory_bytes") else None
        )
        s["train_xgrad_prior_ratio"] = get("train_xgrad_prior").get("time_ratio_to_plain_step")
        s["train_xgrad_prior_attribute_ratio"] = get("train_xgrad_prior_attribute").get(
            "time_ratio_to_plain_step")
        s["train_ig_prior_ratio"] = get("train_ig_prior", None).get("time_ratio_to_plain_step")

        def ok(value: Optional[float], limit: float) -> Optional[bool]:
            return None if value is None else bool(value <= limit)

        s["meets_xgradient_time_target"] = ok(
            s["xgradient_time_ratio"], TARGETS["xgradient_time_ratio_max"])
        s["meets_xgradient_memory_target"] = ok(
            s["xgradient_memory_ratio"], TARGETS["xgradient_memory_ratio_max"])
        s["meets_train_prior_target"] = ok(
            s["train_xgrad_prior_ratio"], TARGETS["train_xgrad_prior_ratio_max"])
        out.append(s)
    return out


def run_speed(cfg: BenchConfig, log: Log = _print) -> Dict[str, Dict[str, Any]]:
    """Run the speed/memory study; returns one result dict per device.

    Parameters
    ----------
    cfg : BenchConfig
    log : callable, default print
        Receives progress lines.

    Returns
    -------
    dict
        ``{device: {"models": ..., "results": [...], "summary": [...], ...}}`` (see the
        JSON files for the keys).

    Raises
    ------
    ValueError
        For an invalid configuration (:meth:`BenchConfig.validate`).

    Examples
    --------
    A real run takes seconds even for the small MLP (every method is timed), so this
    example only shows the configuration check that comes first; :func:`run_error`
    has a complete run.

    >>> from benchmarks.harness.cases import BenchConfig
    >>> from benchmarks.attribution_speed import run_speed
    >>> run_speed(BenchConfig(models=["mlp"], devices=["tpu"]))
    Traceback (most recent call last):
    ...
    ValueError: device must be 'cpu' or 'cuda', got 'tpu'.
    """
    cfg.validate()
    with warnings.catch_warnings():
        # Captum's notes on auto-enabled requires_grad / clipped internal_batch_size
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")
        return _run_speed(cfg, log)


def _run_speed(cfg: BenchConfig, log: Log) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for device in cfg.devices:
        rows: List[Dict[str, Any]] = []
        sources: Dict[str, str] = {}
        shapes: Dict[str, List[int]] = {}
        for name in cfg.models:
            spec = get_model_spec(name)
            model, source = build_seeded(lambda: spec.build_x(cfg.num_classes, cfg.small),
                                         cfg.seed)
            model = model.to(device).eval()
            sources[name] = source
            shape = spec.input_shape(cfg.small)
            shapes[name] = list(shape)
            train_model = copy.deepcopy(model).train()
            opt = torch.optim.SGD(train_model.parameters(), lr=1e-4)
            for batch in (cfg.batch_sizes or spec.batch_sizes(cfg.small)):
                gen = torch.Generator().manual_seed(cfg.seed + batch)
                x = torch.rand((batch,) + shape, generator=gen).to(device)
                t = torch.randint(0, cfg.num_classes, (batch,), generator=gen).to(device)
                cases = _speed_cases(spec, model, train_model, opt, x, t, cfg)
                gc.collect()  # once per block: a full collection takes ~0.3 s
                cases[0].fn()  # warm the model up (first-call allocations, kernels)
                bar = Progress(2 * len(cases), f"{device} {name} batch {batch}",
                                cfg.progress)
                try:
                    block = _measure_block(cases, device, cfg, bar)
                finally:
                    bar.close()
                for row in block:
                    row.update(model=name, device=device, batch_size=batch)
                _add_ratios(block)
                rows.extend(block)
                bare = next(r for r in block if r["case"] == "bare")
                xg = next(r for r in block if r["case"] == "xgradient")
                if bare["status"] == "ok" and xg["status"] == "ok":
                    log(f"  {device} {name} batch {batch}: bare {bare['median_ms']:.2f} ms, "
                        f"XGradient {xg['median_ms']:.2f} ms "
                        f"({xg['time_ratio_to_bare']:.3f}x)")
            del model, train_model, opt
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        out[device] = {
            "models": {n: {"source": sources[n], "input_shape": shapes[n],
                           "title": get_model_spec(n).title} for n in cfg.models},
            "results": rows,
            "summary": _summarise(rows),
            "targets": dict(TARGETS),
            "memory_method": MEMORY_METHODS["cuda" if device == "cuda" else "cpu"],
        }
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m benchmarks.attribution_speed [options]`` (``--help``); returns the exit code."""
    return run_study("speed", run_speed, argv, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    sys.exit(main())
