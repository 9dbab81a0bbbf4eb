r"""Test :math:`f(\alpha x) = \alpha^k f(x)` on real inputs and blame the modules that fail."""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .._core.autograd import run_forward
from .._core.compat import TargetType, _format_additional_forward_args
from .._core.state import modules_of, preserve_model_state
from .._core.validate import select_output, validate_degree, validate_inputs
from .degree import fit_degree, round_degree
from .report import HomogeneityReport, ModuleFinding
from .static import module_reasons, static_findings

__all__ = ["check_homogeneity"]

_Calls = Dict[str, List[Tuple[Any, Any]]]  # module name -> copies of its (args, kwargs)


def _float_tensors(obj: Any) -> List[Tensor]:
    """All floating-point tensors in a (nested) output, flattened to 1-D."""
    if isinstance(obj, Tensor):
        return [obj.detach().reshape(-1)] if obj.is_floating_point() else []
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _float_tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _float_tensors(o)]
    return []


def _copy(obj: Any, scale: Optional[float] = None) -> Any:
    """Copy the tensors in nested tuples, lists (and dicts unless scaling), times ``scale``."""
    if isinstance(obj, Tensor):
        scaled = scale is not None and obj.is_floating_point()
        return obj * scale if scaled else obj.detach().clone()
    if isinstance(obj, (tuple, list)):
        copied = [_copy(o, scale) for o in obj]
        return tuple(copied) if isinstance(obj, tuple) else copied
    if isinstance(obj, dict) and scale is None:
        return {k: _copy(v) for k, v in obj.items()}
    return obj


def _absmax(t: Tensor) -> float:
    return float(t.abs().max()) if t.numel() else 0.0


def _violations(
    base: Tensor, outs: List[Tensor], scales: Sequence[float], k: float, rtol: float, atol: float
) -> Tuple[List[float], bool]:
    """Per scale ``max|f(a x) - a^k f(x)| / max|a^k f(x)|``; whether any is out of tolerance."""
    relative, failed = [], False
    for a, out in zip(scales, outs):
        expected = base.double() * (a**k)
        diff, ref = _absmax(out.double() - expected), _absmax(expected)
        relative.append(diff / ref if ref > 0 else (0.0 if diff == 0 else math.inf))
        failed = failed or diff > atol + rtol * ref
    return relative, failed


def _forward(
    model: Callable[..., Any], inputs: Tuple[Tensor, ...], args: Any, target: TargetType, what: str
) -> Tensor:
    """Run the model and return its (selected) output as an ``(N, M)`` float64 tensor."""
    try:
        out = run_forward(model, inputs, args)
    except Exception as exc:  # the model's own error propagates as itself, with context
        if hasattr(exc, "add_note"):  # Python >= 3.11
            shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
            exc.add_note(
                f"check_homogeneity: the model raised this on {what} of shape {shapes}. Check "
                "that `inputs` has the shape and dtype the model expects (batch dimension "
                "first, e.g. (N, 3, 224, 224) for an image classifier) and that "
                "`additional_forward_args` are right."
            )
        raise
    n = inputs[0].shape[0]
    if target is not None:
        return select_output(out, target, n).detach().double().reshape(n, 1)
    if not isinstance(out, Tensor):
        raise TypeError(
            f"check_homogeneity: the model returned a {type(out).__name__}; it must return a "
            "tensor (wrap it to pick the output to check)."
        )
    if not out.is_floating_point():
        raise TypeError(
            f"check_homogeneity: the model returned a {out.dtype} tensor; homogeneity is about "
            "real-valued outputs (return logits, not class indices)."
        )
    return out.detach().double().reshape(n if out.dim() and out.shape[0] == n else 1, -1)


def _validate(
    scales: Sequence[float], degree: Optional[float], rtol: float, atol: float
) -> Tuple[float, ...]:
    try:
        values = tuple(float(a) for a in scales)
    except TypeError:
        raise TypeError(f"scales must be a sequence of positive numbers, got {scales!r}.") from None
    if not values or any(not math.isfinite(a) or a <= 0 or a == 1.0 for a in values):
        raise ValueError(
            f"scales must be a non-empty sequence of positive numbers other than 1, got "
            f"{scales!r}; homogeneity is f(a*x) = a**k f(x) for a > 0 (e.g. "
            "scales=(0.5, 2.0, 3.7))."
        )
    validate_degree(degree, allow_auto=False, allow_none=True)
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not isinstance(tol, numbers.Real) or not tol >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {tol!r}.")
    return values


def check_homogeneity(
    model: Callable[..., Any],
    inputs: Union[Tensor, Tuple[Tensor, ...]],
    *,
    additional_forward_args: Any = None,
    target: TargetType = None,
    degree: Optional[float] = None,
    scales: Sequence[float] = (0.5, 2.0, 3.7),
    rtol: float = 1e-4,
    atol: float = 0.0,
    blame: bool = True,
) -> HomogeneityReport:
    r"""Test :math:`f(\alpha x) = \alpha^k f(x)` on real inputs, and find the culprits.

    Runs the model on ``inputs``, on ``a * inputs`` for each ``a`` in ``scales`` and on
    zeros, fits :math:`k` (:func:`~captum_xgrad.homogeneity.degree.fit_degree`) and passes
    if :math:`k > 0`, :math:`|f(0)| \le \mathrm{atol} + \mathrm{rtol} \max|f(x)|` and
    :math:`\max |f(\alpha x) - \alpha^k f(x)| \le \mathrm{atol} + \mathrm{rtol} \max
    |\alpha^k f(x)|` at every scale. If not, and ``blame`` is true, each submodule is
    tested alike on what it received at ``x`` and the innermost failing ones are named
    (the model itself when only its own ``forward`` fails). The model and the random
    state are left exactly as they were.

    Parameters
    ----------
    model : nn.Module or callable
        The model (or a function of the inputs returning a tensor, batch first).
    inputs : Tensor or tuple of Tensor
        Inputs to check at, batch first; several tensors are scaled together.
    additional_forward_args : Any, optional
        Extra, unscaled arguments passed after the inputs (as in Captum).
    target : int, tuple, list, Tensor or None, optional
        Which output(s) to check, with Captum's semantics; ``None`` checks all outputs.
    degree : float, optional
        The degree :math:`k` to test against; by default it is estimated.
    scales : sequence of float, default (0.5, 2.0, 3.7)
        The factors :math:`\alpha` (positive, not 1).
    rtol, atol : float
        Relative and absolute tolerance; loosen ``rtol`` for half precision.
    blame : bool, default True
        Whether to test the modules one by one when the model fails.

    Returns
    -------
    HomogeneityReport
        Printable as a table, with ``to_dict()`` and ``raise_if_not()``.

    Raises
    ------
    TypeError
        If ``model`` is not callable, or inputs or output are not floating-point tensors.
    ValueError
        If inputs hold NaN/Inf, or ``scales``/``degree``/tolerances are invalid.
    Exception
        Whatever the model raises propagates unchanged, with a note saying on which inputs.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad.homogeneity import check_homogeneity
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(4, 3)
    >>> good = nn.Sequential(nn.Linear(3, 5, bias=False), nn.ReLU(), nn.Linear(5, 2, bias=False))
    >>> check_homogeneity(good, x).is_homogeneous
    True
    >>> bad = nn.Sequential(nn.Linear(3, 5, bias=False), nn.ReLU(), nn.Linear(5, 2))
    >>> report = check_homogeneity(bad, x)
    >>> report.is_homogeneous, [o.name for o in report.offenders]
    (False, ['2'])
    """
    if not callable(model):
        raise TypeError(
            f"check_homogeneity needs an nn.Module or a callable model, got {type(model).__name__}."
        )
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    validate_inputs(inputs)  # type: ignore[arg-type]
    scales = _validate(scales, degree, rtol, atol)
    rtol, atol = float(rtol), float(atol)
    args = _format_additional_forward_args(additional_forward_args)
    inputs = tuple(x.detach() for x in inputs)
    roots = modules_of(model)
    modules = dict(roots[0].named_modules()) if blame and roots else {}
    modules.pop("", None)  # the model itself is tested as a whole
    calls: _Calls = {}
    devices = sorted({x.device.index or 0 for x in inputs if x.device.type == "cuda"})
    with preserve_model_state(model), torch.random.fork_rng(devices=devices), torch.no_grad():
        with contextlib.ExitStack() as hooks:
            for name, module in modules.items():
                hook = functools.partial(_record_call, calls, name)
                hooks.callback(module.register_forward_pre_hook(hook, with_kwargs=True).remove)
            f_x = _forward(model, inputs, args, target, "inputs")
        scaled = []
        for a in scales:
            out = _forward(model, tuple(x * a for x in inputs), args, target, f"{a} * inputs")
            if out.shape != f_x.shape:
                raise ValueError(
                    f"check_homogeneity: the model output has shape {tuple(f_x.shape)} at the "
                    f"inputs but {tuple(out.shape)} at {a} * inputs; the output shape must not "
                    "depend on the input values."
                )
            scaled.append(out)
        zeros = tuple(torch.zeros_like(x) for x in inputs)
        f_zero = _absmax(_forward(model, zeros, args, target, "zero inputs"))
        notes: List[str] = []
        k_elem, valid = fit_degree(f_x, scaled, scales)
        estimated = float(k_elem[valid].median()) if bool(valid.any()) else None
        per_output = [
            float(k_elem[:, m][valid[:, m]].median()) if bool(valid[:, m].any()) else None
            for m in range(f_x.shape[1])
        ]
        output_scale = _absmax(f_x)
        if output_scale == 0.0:
            notes.append(
                "the outputs are all zero at these inputs, so the check is vacuous; try other "
                "inputs or targets"
            )
        elif estimated is None:
            notes.append(
                "no output kept its sign under positive scaling, so no degree could be estimated"
            )
        tested = float(degree) if degree is not None else None
        if tested is None and estimated is not None:
            tested = round_degree(estimated)
        if tested is None and output_scale != 0.0:
            violations, ok = [math.nan] * len(scales), False
        else:
            k = 1.0 if tested is None else tested
            violations, failed = _violations(f_x, scaled, scales, k, rtol, atol)
            ok = not failed
        if f_zero > atol + rtol * output_scale:
            ok = False
            notes.append(
                f"f(0) = {f_zero:.3g} is not 0, so the model has an offset (a bias or a "
                "constant somewhere)"
            )
        if tested is not None and tested <= 1e-2 and output_scale > 0:
            ok = False
            notes.append(
                f"the degree is {tested:.3g}: the model is scale-invariant, not homogeneous of "
                "a positive degree, so X-Gradient does not apply (look for normalisation layers)"
            )
        if degree is not None and estimated is not None and abs(estimated - degree) > 1e-2:
            notes.append(f"the estimated degree {estimated:.4g} differs from degree={degree:g}")
        finite = [v for v in violations if math.isfinite(v)]
        max_violation = math.inf if len(finite) < len(violations) else max(finite, default=0.0)
        offenders: Tuple[ModuleFinding, ...] = ()
        # when f = 0 here the whole-model test is vacuous, so the modules decide
        if blame and roots and (output_scale == 0.0 or not ok):
            offenders = _blame(modules, calls, scales, rtol, atol, notes)
            if output_scale == 0.0 and offenders:
                ok = False
                notes.append(
                    "the verdict rests on the modules' own tests, since the outputs are zero"
                )
            elif output_scale != 0.0 and not offenders:
                root = type(roots[0]).__name__
                reason = "; ".join(module_reasons(roots[0])) or (
                    "no submodule fails on its own: the model's own forward is not homogeneous "
                    "(a constant or bias added in forward, a non-homogeneous torch function, "
                    "or a parameter used directly)"
                )
                offenders = (ModuleFinding(f"<{root}>", root, max_violation, estimated, reason),)
        name = type(model).__name__
        if not isinstance(model, nn.Module):
            name = getattr(model, "__qualname__", None) or name
        return HomogeneityReport(
            model=name,
            input_shapes=tuple(tuple(x.shape) for x in inputs),
            is_homogeneous=ok,
            degree=tested,
            estimated_degree=estimated,
            degree_per_output=tuple(per_output),
            scales=scales,
            violations=tuple(violations),
            max_violation=max_violation,
            f_zero=f_zero,
            output_scale=output_scale,
            rtol=rtol,
            atol=atol,
            offenders=offenders,
            static=tuple(static_findings(roots[0])) if roots else (),
            notes=tuple(notes),
        )


def _record_call(
    calls: _Calls, name: str, module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any]
) -> None:
    """Forward pre-hook: keep copies of the first two calls of ``name`` with float arguments."""
    seen = calls.setdefault(name, [])
    if len(seen) < 2 and _float_tensors(args):
        seen.append((_copy(args), _copy(kwargs)))


def _blame(
    modules: Dict[str, nn.Module],
    calls: _Calls,
    scales: Sequence[float],
    rtol: float,
    atol: float,
    notes: List[str],
) -> Tuple[ModuleFinding, ...]:
    """The innermost modules that fail on their recorded calls; notes those not re-runnable."""
    failing: Dict[str, ModuleFinding] = {}
    untestable = []
    # innermost first: a module with a failing submodule is not blamed, so it is not re-run
    for name in sorted(calls, key=lambda n: -n.count(".")):
        if any(other.startswith(name + ".") for other in failing):
            continue
        module = modules[name]
        results = [_test_module(module, a, kw, scales, rtol, atol) for a, kw in calls[name]]
        results = [r for r in results if r is not None]
        if not results:
            untestable.append(name)
            continue
        violation, k, failed = max(results, key=lambda r: r[0])
        if failed:
            reasons = module_reasons(module) or [
                "scale-invariant (degree 0) on the activations it received"
                if k is not None and k <= 1e-2
                else "not homogeneous on the activations it received"
            ]
            failing[name] = ModuleFinding(
                name, type(module).__name__, violation, k, "; ".join(reasons)
            )
    if untestable:
        more = f" and {len(untestable) - 8} more" if len(untestable) > 8 else ""
        notes.append(
            f"{len(untestable)} module(s) could not be re-run on their own and were not "
            f"tested for blame: {', '.join(untestable[:8])}{more}"
        )
    return tuple(failing[n] for n in modules if n in failing)


def _test_module(
    module: nn.Module, args: Any, kwargs: Any, scales: Sequence[float], rtol: float, atol: float
) -> Optional[Tuple[float, Optional[float], bool]]:
    """``(violation, degree, failed)`` for one recorded call; None if it cannot be re-run."""
    try:
        base = _float_tensors(module(*_copy(args), **_copy(kwargs)))
        if not base:
            return None
        outs = []
        for a in scales:
            out = _float_tensors(module(*_copy(args, a), **_copy(kwargs)))
            if [o.shape for o in out] != [b.shape for b in base]:
                return None
            outs.append(torch.cat(out))
    except Exception:  # a module that cannot be re-run on its own is not blamed
        return None
    flat = torch.cat(base)
    if flat.numel() == 0:
        return None
    k_elem, valid = fit_degree(flat.reshape(1, -1), [o.reshape(1, -1) for o in outs], scales)
    k = round_degree(float(k_elem[valid].median())) if bool(valid.any()) else None
    violations, failed = _violations(flat, outs, scales, 1.0 if k is None else k, rtol, atol)
    worst = max([0.0] + violations)
    if k is not None and k <= 1e-2 and _absmax(flat) > 0:
        return max(worst, 1.0), k, True
    return worst, k, failed
