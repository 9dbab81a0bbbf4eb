r"""Is a model nonnegatively homogeneous, and if not, which modules break it?

X-Gradient equals Integrated Gradients (zero baseline) exactly when the model satisfies

.. math::

    f(\alpha x) = \alpha^k f(x) \quad \text{for all } \alpha > 0

for some degree :math:`k > 0`. This module checks that property in two ways:

- :func:`static_findings` scans the model's modules, without running it, for the usual
  suspects: biases of Linear/Conv layers, normalisation with a shift or batch
  statistics, non-homogeneous activations, Dropout in training mode. It is what
  ``XGradient(check="static")`` (the default) runs, once per model.
- :func:`check_homogeneity` runs the model on the user's inputs scaled by a few factors
  :math:`\alpha`, estimates :math:`k`, measures the violation
  :math:`\max |f(\alpha x) - \alpha^k f(x)| / \max |\alpha^k f(x)|` and :math:`|f(0)|`,
  and then *blames*: with forward pre-hooks it records what every module received
  during the forward pass at :math:`x` and tests each module on its own,
  :math:`m(\alpha h)` against :math:`\alpha^{k_m} m(h)`. The result is a
  :class:`HomogeneityReport`.

A module is blamed only if it fails and none of its submodules fails, so the report
names the innermost culprit: the ``Linear`` with a bias rather than the ``Sequential``
that contains it, or a custom block whose own ``forward`` adds a constant while all of
its submodules are fine. A constant added in the top-level ``forward`` is caught by the
whole-model check, and the model itself is then named.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .._core.compat import TargetType, _format_additional_forward_args
from .._core.autograd import run_forward
from .._core.state import modules_of, preserve_model_state
from .._core.validate import select_output, validate_degree, validate_inputs
from .degree import fit_degree, round_degree
from .report import HomogeneityReport, ModuleFinding
from .static import _qualified
from .static import module_reasons, static_findings

__all__ = ["check_homogeneity"]

# ------------------------------------------------------------------- measurement
def _float_tensors(obj: Any) -> List[Tensor]:
    """All floating-point tensors in a (nested) output, flattened to 1-D."""
    if isinstance(obj, Tensor):
        return [obj.detach().reshape(-1)] if obj.is_floating_point() else []
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _float_tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _float_tensors(o)]
    return []


def _scale_args(obj: Any, a: float) -> Any:
    """Multiply every floating-point tensor in positional args by ``a`` (copies)."""
    if isinstance(obj, Tensor):
        return obj * a if obj.is_floating_point() else obj.clone()
    if isinstance(obj, tuple):
        return tuple(_scale_args(o, a) for o in obj)
    if isinstance(obj, list):
        return [_scale_args(o, a) for o in obj]
    return obj


def _clone(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, tuple):
        return tuple(_clone(o) for o in obj)
    if isinstance(obj, list):
        return [_clone(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    return obj


def _violation(base: Tensor, scaled: Tensor, a: float, k: float) -> Tuple[float, float]:
    """``(max|scaled - a^k base|, max|a^k base|)`` in float64."""
    expected = base.double() * (a**k)
    diff = float((scaled.double() - expected).abs().max()) if base.numel() else 0.0
    ref = float(expected.abs().max()) if base.numel() else 0.0
    return diff, ref


def _model_name(forward_func: Callable[..., Any]) -> str:
    if isinstance(forward_func, nn.Module):
        return type(forward_func).__name__
    return getattr(forward_func, "__qualname__", None) or type(forward_func).__name__


def _describe_inputs(inputs: Tuple[Tensor, ...]) -> str:
    return ", ".join(str(tuple(x.shape)) for x in inputs)


def _forward(
    forward_func: Callable[..., Any],
    inputs: Tuple[Tensor, ...],
    args: Optional[Tuple[Any, ...]],
    target: TargetType,
    what: str,
) -> Tensor:
    """Run the model and return its (selected) output as an ``(N, M)`` float64 tensor."""
    try:
        out = run_forward(forward_func, inputs, args)
    except Exception as exc:  # the model's own error propagates as itself, with context
        if hasattr(exc, "add_note"):  # Python >= 3.11
            exc.add_note(
                f"check_homogeneity: the model raised this on {what} of shape "
                f"{_describe_inputs(inputs)}. Check that `inputs` has the shape and dtype "
                "the model expects (batch dimension first, e.g. (N, 3, 224, 224) for an "
                "image classifier) and that `additional_forward_args` are right."
            )
        raise
    n = inputs[0].shape[0]
    if target is not None:
        selected = select_output(out, target, n)
        return selected.detach().double().reshape(n, 1)
    if not isinstance(out, Tensor):
        raise TypeError(
            f"check_homogeneity: the model returned a {type(out).__name__}; it must "
            "return a tensor (wrap it to pick the output to check)."
        )
    if not out.is_floating_point():
        raise TypeError(
            f"check_homogeneity: the model returned a {out.dtype} tensor; homogeneity "
            "is about real-valued outputs (return logits, not class indices)."
        )
    if out.dim() == 0 or out.shape[0] != n:
        return out.detach().double().reshape(1, -1)
    return out.detach().double().reshape(n, -1)


def _validate_scales(scales: Sequence[float]) -> Tuple[float, ...]:
    try:
        values = tuple(float(a) for a in scales)
    except TypeError:
        raise TypeError(
            f"scales must be a sequence of positive numbers, got {scales!r}."
        ) from None
    bad = [a for a in values if not math.isfinite(a) or a <= 0 or a == 1.0]
    if not values or bad:
        raise ValueError(
            f"scales must be a non-empty sequence of positive numbers other than 1, got "
            f"{scales!r}; homogeneity is f(a*x) = a**k f(x) for a > 0 (e.g. "
            "scales=(0.5, 2.0, 3.7))."
        )
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

    Runs the model on ``inputs``, on ``a * inputs`` for every ``a`` in ``scales`` and on
    zeros (``additional_forward_args`` are passed unchanged). The degree :math:`k` is
    fitted per output by least squares on
    :math:`\log|f(\alpha x)/f(x)| = k \log\alpha`; the model passes if, at every scale,

    .. math::

        \max |f(\alpha x) - \alpha^k f(x)| \le \mathrm{atol} + \mathrm{rtol}\,
        \max |\alpha^k f(x)|,

    :math:`k > 0` and :math:`|f(0)| \le \mathrm{atol} + \mathrm{rtol} \max|f(x)|`.

    If it fails and ``blame`` is true (and the model is an ``nn.Module``), every module
    is tested on its own with what it received in the forward pass at ``x``
    (recorded by forward pre-hooks, which are removed again), and the innermost
    failing modules are listed with their violation, degree and known reason.

    The model is left exactly as it was: train/eval flags, parameters, ``.grad``,
    buffers (e.g. BatchNorm running statistics in training mode), hooks and the
    global random state, also when it raises. All passes run under
    :func:`torch.no_grad`. Cost: ``len(scales) + 2`` forward passes, plus, when
    blaming, about ``len(scales) + 1`` passes of each module.

    Parameters
    ----------
    model : nn.Module or callable
        The model (or a function of the inputs returning a tensor, batch first).
    inputs : Tensor or tuple of Tensor
        Inputs to check at, batch first; several tensors for a multi-input model
        (then all are scaled together).
    additional_forward_args : Any, optional
        Extra, unscaled arguments passed after the inputs (as in Captum).
    target : int, tuple, list, Tensor or None, optional
        Which output(s) to check, with Captum's semantics; ``None`` checks all outputs.
    degree : float, optional
        The degree :math:`k` to test against; by default it is estimated.
    scales : sequence of float, default (0.5, 2.0, 3.7)
        The factors :math:`\alpha` (positive, not 1).
    rtol, atol : float
        Relative and absolute tolerance (relative to the largest output). Loosen
        ``rtol`` for half precision.
    blame : bool, default True
        Whether to test the modules one by one when the model fails.

    Returns
    -------
    HomogeneityReport
        Printable (a table), JSON-serialisable via ``to_dict()``, and with
        ``raise_if_not()``.

    Raises
    ------
    TypeError
        If ``model`` is not callable, inputs are not floating-point tensors, or the
        model does not return a tensor.
    ValueError
        If inputs hold NaN/Inf, or ``scales``/``degree``/tolerances are invalid.
    Exception
        Whatever the model itself raises (e.g. on a wrong input shape) propagates
        unchanged, with a note saying at which inputs it happened.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad.homogeneity import check_homogeneity
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x = torch.randn(4, 3)
    >>> good = nn.Sequential(nn.Linear(3, 5, bias=False), nn.ReLU(), nn.Linear(5, 2, bias=False))
    >>> check_homogeneity(good, x).is_homogeneous
    True
    >>> bad = nn.Sequential(nn.Linear(3, 5, bias=False), nn.ReLU(), nn.Linear(5, 2))
    >>> report = check_homogeneity(bad, x)
    >>> report.is_homogeneous, [o.name for o in report.offenders]
    (False, ['2'])
    """
    if isinstance(model, nn.Module) or callable(model):
        pass
    else:
        raise TypeError(
            f"check_homogeneity needs an nn.Module or a callable model, got "
            f"{type(model).__name__}."
        )
    formatted = inputs if isinstance(inputs, tuple) else (inputs,)
    validate_inputs(formatted)  # type: ignore[arg-type]
    scale_values = _validate_scales(scales)
    validate_degree(degree, allow_auto=False, allow_none=True)
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not isinstance(tol, numbers.Real) or not tol >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {tol!r}.")
    args = _format_additional_forward_args(additional_forward_args)
    formatted = tuple(x.detach() for x in formatted)
    roots = modules_of(model)
    devices = sorted(
        {x.device.index or 0 for x in formatted if x.device.type == "cuda"}
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(preserve_model_state(model))
        stack.enter_context(torch.random.fork_rng(devices=devices))
        stack.enter_context(torch.no_grad())
        return _check(
            model, roots, formatted, args, target, degree, scale_values,
            float(rtol), float(atol), blame,
        )


def _check(
    model: Callable[..., Any],
    roots: List[nn.Module],
    inputs: Tuple[Tensor, ...],
    args: Optional[Tuple[Any, ...]],
    target: TargetType,
    degree: Optional[float],
    scales: Tuple[float, ...],
    rtol: float,
    atol: float,
    blame: bool,
) -> HomogeneityReport:
    recorder = _CallRecorder(roots[0]) if (blame and roots) else None
    if recorder is not None:
        with recorder:
            f_x = _forward(model, inputs, args, target, "inputs")
    else:
        f_x = _forward(model, inputs, args, target, "inputs")
    scaled_out = []
    for a in scales:
        out = _forward(model, tuple(x * a for x in inputs), args, target, f"{a} * inputs")
        if out.shape != f_x.shape:
            raise ValueError(
                f"check_homogeneity: the model output has shape {tuple(f_x.shape)} at "
                f"the inputs but {tuple(out.shape)} at {a} * inputs; the output shape "
                "must not depend on the input values."
            )
        scaled_out.append(out)
    f_0 = _forward(model, tuple(torch.zeros_like(x) for x in inputs), args, target, "zero inputs")

    notes: List[str] = []
    k_elem, valid = fit_degree(f_x, scaled_out, scales)
    estimated: Optional[float] = None
    per_output: List[Optional[float]] = []
    if bool(valid.any()):
        estimated = float(k_elem[valid].median())
        for m in range(f_x.shape[1]):
            col = k_elem[:, m][valid[:, m]]
            per_output.append(float(col.median()) if col.numel() else None)
    else:
        per_output = [None] * f_x.shape[1]
    output_scale = float(f_x.abs().max()) if f_x.numel() else 0.0
    if output_scale == 0.0:
        notes.append(
            "the outputs are all zero at these inputs, so the check is vacuous; try "
            "other inputs or targets"
        )
    elif estimated is None:
        notes.append(
            "no output kept its sign under positive scaling, so no degree could be "
            "estimated"
        )
    tested = float(degree) if degree is not None else (
        round_degree(estimated) if estimated is not None else None
    )
    violations: List[float] = []
    ok = True
    for a, out in zip(scales, scaled_out):
        if tested is None:
            k_try = 1.0 if output_scale == 0.0 else float("nan")
        else:
            k_try = tested
        if math.isnan(k_try):
            violations.append(float("nan"))
            ok = False
            continue
        diff, ref = _violation(f_x, out, a, k_try)
        violations.append(diff / ref if ref > 0 else (0.0 if diff == 0 else float("inf")))
        if diff > atol + rtol * ref:
            ok = False
    f_zero = float(f_0.abs().max()) if f_0.numel() else 0.0
    if f_zero > atol + rtol * output_scale:
        ok = False
        notes.append(
            f"f(0) = {f_zero:.3g} is not 0, so the model has an offset (a bias or a "
            "constant somewhere)"
        )
    if tested is not None and tested <= 1e-2 and output_scale > 0:
        ok = False
        notes.append(
            f"the degree is {tested:.3g}: the model is scale-invariant, not homogeneous "
            "of a positive degree, so X-Gradient does not apply (look for "
            "normalisation layers)"
        )
    if degree is not None and estimated is not None and abs(estimated - degree) > 1e-2:
        notes.append(f"the estimated degree {estimated:.4g} differs from degree={degree:g}")
    finite = [v for v in violations if math.isfinite(v)]
    max_violation = (
        float("inf") if len(finite) < len(violations) else (max(finite) if finite else 0.0)
    )
    offenders: Tuple[ModuleFinding, ...] = ()
    if recorder is not None and output_scale == 0.0:
        # f = 0 here: the whole-model test is vacuous, so let the modules decide
        offenders = tuple(recorder.blame(scales, rtol, atol))
        _note_untestable(recorder, notes)
        if offenders:
            ok = False
            notes.append(
                "the verdict rests on the modules' own tests, since the outputs are zero"
            )
    elif recorder is not None and not ok:
        offenders = tuple(recorder.blame(scales, rtol, atol))
        _note_untestable(recorder, notes)
        if not offenders:
            root = roots[0]
            own = module_reasons(root)
            offenders = (
                ModuleFinding(
                    name=_qualified("", root),
                    type=type(root).__name__,
                    violation=max_violation,
                    degree=estimated,
                    reason="; ".join(own) if own else (
                        "no submodule fails on its own: the model's own forward is not "
                        "homogeneous (a constant or bias added in forward, a "
                        "non-homogeneous torch function, or a parameter used directly)"
                    ),
                ),
            )
    static = tuple(static_findings(roots[0])) if roots else ()
    return HomogeneityReport(
        model=_model_name(model),
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
        static=static,
        notes=tuple(notes),
    )


# -------------------------------------------------------------------------- blame
class _CallRecorder:
    """Record (copies of) what every submodule receives during one forward pass."""

    max_calls = 2

    def __init__(self, root: nn.Module) -> None:
        self.root = root
        self.calls: Dict[str, List[Tuple[Any, Dict[str, Any]]]] = {}
        self.modules: Dict[str, nn.Module] = {}
        self._handles: List[Any] = []

    def __enter__(self) -> "_CallRecorder":
        try:
            for name, module in self.root.named_modules():
                if not name:
                    continue  # the model itself is tested as a whole
                self.modules[name] = module
                self._handles.append(
                    module.register_forward_pre_hook(self._hook(name), with_kwargs=True)
                )
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._remove()

    def _remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
            calls = self.calls.setdefault(name, [])
            if len(calls) < self.max_calls and _float_tensors(args):
                calls.append((_clone(args), _clone(kwargs)))

        return hook

    def blame(self, scales: Sequence[float], rtol: float, atol: float) -> List[ModuleFinding]:
        failing: Dict[str, ModuleFinding] = {}
        self.untestable: List[str] = []
        # innermost first: a module with a failing submodule is never blamed itself, so it
        # need not be re-run (this keeps blame cheap on deep models)
        for name in sorted(self.calls, key=lambda n: -n.count(".")):
            calls = self.calls[name]
            prefix = name + "."
            if any(other.startswith(prefix) for other in failing):
                continue
            module = self.modules[name]
            worst: Optional[Tuple[float, Optional[float], bool]] = None
            tested = False
            for args, kwargs in calls:
                result = _test_module(module, args, kwargs, scales, rtol, atol)
                tested = tested or result is not None
                if result is not None and (worst is None or result[0] > worst[0]):
                    worst = result
            if not tested:
                self.untestable.append(name)
            if worst is not None and worst[2]:
                violation, k, _ = worst
                reasons = module_reasons(module)
                if not reasons:
                    if k is not None and k <= 1e-2:
                        reasons = ["scale-invariant (degree 0) on the activations it received"]
                    else:
                        reasons = ["not homogeneous on the activations it received"]
                failing[name] = ModuleFinding(
                    name=name,
                    type=type(module).__name__,
                    violation=violation,
                    degree=k,
                    reason="; ".join(reasons),
                )
        # innermost culprits only: drop a module if one of its submodules fails
        result = []
        for name, finding in failing.items():
            prefix = name + "."
            if not any(other.startswith(prefix) for other in failing):
                result.append(finding)
        order = {name: i for i, name in enumerate(self.modules)}
        result.sort(key=lambda f: order.get(f.name, 0))
        return result


def _note_untestable(recorder: "_CallRecorder", notes: List[str]) -> None:
    names = [n for n in getattr(recorder, "untestable", []) if recorder.modules[n] is not None]
    if names:
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        notes.append(
            f"{len(names)} module(s) could not be re-run on their own and were not tested "
            f"for blame: {shown}"
        )


def _test_module(
    module: nn.Module,
    args: Tuple[Any, ...],
    kwargs: Dict[str, Any],
    scales: Sequence[float],
    rtol: float,
    atol: float,
) -> Optional[Tuple[float, Optional[float], bool]]:
    """Return ``(violation, degree, failed)`` for one recorded call, None if untestable."""
    try:
        base = _float_tensors(module(*_clone(args), **_clone(kwargs)))
        if not base:
            return None
        outs = []
        for a in scales:
            out = _float_tensors(module(*_scale_args(args, a), **_clone(kwargs)))
            if len(out) != len(base) or any(o.shape != b.shape for o, b in zip(out, base)):
                return None
            outs.append(torch.cat(out))
    except Exception:  # a module that cannot be re-run on its own is not blamed
        return None
    flat = torch.cat(base)
    if flat.numel() == 0:
        return None
    k_elem, valid = fit_degree(flat.reshape(1, -1), [o.reshape(1, -1) for o in outs], scales)
    k: Optional[float] = round_degree(float(k_elem[valid].median())) if bool(valid.any()) else None
    k_test = 1.0 if k is None else k
    failed = False
    worst = 0.0
    for a, out in zip(scales, outs):
        diff, ref = _violation(flat, out, a, k_test)
        worst = max(worst, diff / ref if ref > 0 else (0.0 if diff == 0 else float("inf")))
        if diff > atol + rtol * ref:
            failed = True
    if k is not None and k <= 1e-2 and float(flat.abs().max()) > 0:
        failed = True
        worst = max(worst, 1.0)
    return worst, k, failed

