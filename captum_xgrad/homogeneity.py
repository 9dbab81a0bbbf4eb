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
import dataclasses
import math
import numbers
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ._captum_compat import TargetType, _format_additional_forward_args
from ._utils import preserve_model_state, run_forward, select_output, validate_inputs
from .errors import NonHomogeneousError

__all__ = [
    "HomogeneityReport",
    "ModuleFinding",
    "check_homogeneity",
    "module_reasons",
    "static_findings",
]

# ------------------------------------------------------------------ static knowledge
_CONV_LIKE = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,
)

_NON_HOMOGENEOUS_ACTIVATIONS: Tuple[type, ...] = (
    nn.Sigmoid,
    nn.Tanh,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.Softplus,
    nn.Softmax,
    nn.Softmax2d,
    nn.LogSoftmax,
    nn.Softmin,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,  # includes ReLU6 (a Hardtanh subclass)
    nn.LogSigmoid,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Hardshrink,
    nn.Softshrink,
    nn.GLU,
)

#: name fragments of a custom module's own parameters that usually enter ``forward``
#: additively (Fixup's ``bias1a``, ViT's ``pos_embedding``/``class_token``).
_ADDITIVE_PARAM_HINTS = ("bias", "shift", "offset", "embed", "token")


def _all_zero(t: Tensor) -> bool:
    """Whether ``t`` is all zeros (False for tensors without data, e.g. on "meta")."""
    if t.device.type == "meta":
        return False
    return bool(torch.count_nonzero(t.detach()) == 0)


def _activation_reason(module: nn.Module) -> Optional[str]:
    if isinstance(module, nn.ReLU6):
        return "ReLU6 clips at 6, so it is not homogeneous (use nn.ReLU)"
    if isinstance(module, nn.Threshold):
        if module.threshold == 0 and module.value == 0:
            return None
        return (
            f"Threshold(threshold={module.threshold}, value={module.value}) is not "
            "homogeneous (only threshold=0, value=0 is)"
        )
    if isinstance(module, _NON_HOMOGENEOUS_ACTIVATIONS):
        return (
            f"{type(module).__name__} is a non-homogeneous activation "
            "(use ReLU, LeakyReLU or PReLU)"
        )
    if isinstance(module, nn.MultiheadAttention):
        return "attention applies a softmax to scaled scores, which is not homogeneous"
    return None


def module_reasons(module: nn.Module, *, include_mode: bool = True) -> List[str]:
    """Reasons why ``module`` on its own (not its submodules) is not homogeneous.

    A purely structural judgement: no forward pass, values are only looked at to say
    e.g. that a bias is currently zero.

    Parameters
    ----------
    module : nn.Module
        The module to judge. Its submodules are not looked at.
    include_mode : bool, default True
        Also report what only breaks homogeneity because of training mode
        (BatchNorm with batch statistics, Dropout).

    Returns
    -------
    list of str
        One reason per problem; empty if the module looks homogeneous.

    Examples
    --------
    >>> from torch import nn
    >>> from captum_xgrad.homogeneity import module_reasons
    >>> module_reasons(nn.Linear(3, 2))
    ['has a bias (y = W x + b)']
    >>> module_reasons(nn.Linear(3, 2, bias=False))
    []
    """
    reasons: List[str] = []
    if isinstance(module, _CONV_LIKE) and getattr(module, "bias", None) is not None:
        zero = _all_zero(module.bias)
        reasons.append("has a bias (y = W x + b)" + (", currently all zero" if zero else ""))
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        uses_batch_stats = module.training or not module.track_running_stats
        if uses_batch_stats and (include_mode or not module.track_running_stats):
            why = "in training mode" if module.track_running_stats else "without running statistics"
            reasons.append(
                f"BatchNorm {why} normalises with batch statistics, which makes it "
                "scale-invariant (degree 0)"
                + ("; call model.eval()" if module.track_running_stats else "")
            )
        if module.track_running_stats and module.running_mean is not None:
            if not _all_zero(module.running_mean):
                reasons.append("subtracts its running mean (a shift)")
        if module.affine and module.bias is not None:
            zero = _all_zero(module.bias)
            reasons.append(
                "adds a learnable shift (bias)" + (", currently all zero" if zero else "")
            )
    elif isinstance(
        module,
        (nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm)
        + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
    ):
        reasons.append(
            f"{type(module).__name__} divides by per-example statistics, which makes it "
            "scale-invariant (degree 0)"
        )
        if getattr(module, "bias", None) is not None:
            reasons.append("adds a learnable shift (bias)")
    elif isinstance(module, nn.modules.dropout._DropoutNd) or isinstance(
        module, nn.AlphaDropout
    ):
        if include_mode and module.training and module.p > 0:
            reasons.append("Dropout in training mode is random; call model.eval()")
    else:
        why = _activation_reason(module)
        if why is not None:
            reasons.append(why)
        elif not isinstance(module, (nn.PReLU, nn.Embedding, nn.EmbeddingBag)):
            own = [
                n
                for n, _ in module.named_parameters(recurse=False)
                if any(h in n.lower() for h in _ADDITIVE_PARAM_HINTS)
            ]
            if own:
                reasons.append(
                    "custom module whose own parameter(s) "
                    + ", ".join(repr(n) for n in own)
                    + " may add a constant in forward"
                )
    return reasons


def _qualified(name: str, root: nn.Module) -> str:
    return name if name else f"<{type(root).__name__}>"


def static_findings(model: nn.Module) -> List[str]:
    """Structural scan for what breaks homogeneity, with no forward pass.

    Walks ``model.named_modules()`` and lists, one line per offending module, its
    qualified name, type and reasons (see :func:`module_reasons`): biases in
    Linear/Conv*/ConvTranspose*, BatchNorm with a running mean or shift or in training
    mode, GroupNorm/LayerNorm/InstanceNorm, non-homogeneous activations (Sigmoid, Tanh,
    GELU, SiLU, ELU, Softplus, Softmax, ReLU6, ...), Dropout in training mode, and
    custom modules with their own bias-like parameters. An empty list means the model
    *looks* homogeneous; operations in ``forward`` that are not modules (a constant
    added, ``torch.sigmoid``) are invisible here, use :func:`check_homogeneity`.

    Parameters
    ----------
    model : nn.Module
        The model to scan; it is not modified.

    Returns
    -------
    list of str
        Lines like ``"fc (Linear): has a bias (y = W x + b)"``.

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module``.

    Examples
    --------
    >>> from torch import nn
    >>> from captum_xgrad.homogeneity import static_findings
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2, bias=False))
    >>> for line in static_findings(net):
    ...     print(line)
    0 (Linear): has a bias (y = W x + b)
    1 (Tanh): Tanh is a non-homogeneous activation (use ReLU, LeakyReLU or PReLU)
    >>> static_findings(nn.Sequential(nn.Linear(4, 2, bias=False), nn.ReLU()))
    []
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"static_findings needs an nn.Module, got {type(model).__name__}; for a "
            "plain function use check_homogeneity(func, inputs)."
        )
    lines = []
    for name, module in model.named_modules():
        reasons = module_reasons(module)
        if reasons:
            lines.append(
                f"{_qualified(name, model)} ({type(module).__name__}): " + "; ".join(reasons)
            )
    return lines


# ------------------------------------------------------------------------- report
def _clean(value: Any) -> Any:
    """Make ``value`` JSON-serialisable: NaN/Inf floats become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _fmt(value: Optional[float], spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


@dataclasses.dataclass(frozen=True)
class ModuleFinding:
    """One module that fails the homogeneity test on its own.

    Attributes
    ----------
    name : str
        Qualified name in the model (``"layer1.0.bn1"``); ``"<ClassName>"`` for the
        model's own ``forward``.
    type : str
        The module's class name.
    violation : float
        Its largest relative violation
        :math:`\\max |m(\\alpha h) - \\alpha^{k_m} m(h)| / \\max |\\alpha^{k_m} m(h)|`
        over the scales, measured on the activations ``h`` it received.
    degree : float or None
        The degree :math:`k_m` estimated for this module (None if none could be).
    reason : str
        The known cause (e.g. "has a bias"), or a description of what was measured.

    Examples
    --------
    Findings are made by :func:`check_homogeneity`, one per blamed module:

    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad.homogeneity import check_homogeneity
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(3, 5, bias=False), nn.ReLU(), nn.Linear(5, 2))
    >>> finding = check_homogeneity(model, torch.randn(4, 3)).offenders[0]
    >>> finding.name, finding.type, finding.reason
    ('2', 'Linear', 'has a bias (y = W x + b)')
    >>> finding.violation > 1e-2
    True
    """

    name: str
    type: str
    violation: float
    degree: Optional[float]
    reason: str


@dataclasses.dataclass(frozen=True)
class HomogeneityReport:
    r"""Result of :func:`check_homogeneity`.

    Attributes
    ----------
    model : str
        Class (or function) name of the model.
    input_shapes : tuple of tuple of int
        Shapes of the inputs it was checked on.
    is_homogeneous : bool
        ``True`` if :math:`f(\alpha x) = \alpha^k f(x)` held within tolerance at every
        scale, with :math:`k > 0`, and :math:`f(0) = 0`.
    degree : float or None
        The degree tested against: the one passed to :func:`check_homogeneity`, else
        the estimate (rounded when within 1e-2 of an integer). None when no estimate
        was possible.
    estimated_degree : float or None
        Least-squares fit of :math:`\log|f(\alpha x)/f(x)| = k \log \alpha` across
        scales, median over all outputs.
    degree_per_output : tuple of float or None
        The fit per output (one per selected target, or per output unit when no
        target was given; median over examples); None where an output was ~0.
    scales : tuple of float
        The factors :math:`\alpha` tried.
    violations : tuple of float
        Per scale, :math:`\max|f(\alpha x) - \alpha^k f(x)| / \max|\alpha^k f(x)|`.
    max_violation : float
        The largest of ``violations``.
    f_zero : float
        :math:`\max |f(0)|`.
    output_scale : float
        :math:`\max |f(x)|`.
    rtol, atol : float
        The tolerances used: a scale passes if
        :math:`\max|f(\alpha x) - \alpha^k f(x)| \le atol + rtol \max|\alpha^k f(x)|`.
    offenders : tuple of ModuleFinding
        Modules blamed (empty if the model passes, or if blame was skipped).
    static : tuple of str
        :func:`static_findings` of the model.
    notes : tuple of str
        Anything else worth knowing (all outputs zero, degree not positive...).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad.homogeneity import check_homogeneity
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(3, 5, bias=False), nn.ReLU(), nn.Linear(5, 2, bias=False))
    >>> report = check_homogeneity(model, torch.randn(4, 3))
    >>> report.is_homogeneous, report.degree, report.scales
    (True, 1.0, (0.5, 2.0, 3.7))
    >>> print(str(report).splitlines()[0])
    Homogeneity check of Sequential on inputs (4, 3): homogeneous
    >>> report.raise_if_not()  # nothing happens: the model passed
    """

    model: str
    input_shapes: Tuple[Tuple[int, ...], ...]
    is_homogeneous: bool
    degree: Optional[float]
    estimated_degree: Optional[float]
    degree_per_output: Tuple[Optional[float], ...]
    scales: Tuple[float, ...]
    violations: Tuple[float, ...]
    max_violation: float
    f_zero: float
    output_scale: float
    rtol: float
    atol: float
    offenders: Tuple[ModuleFinding, ...] = ()
    static: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()

    def raise_if_not(self) -> None:
        """Raise :class:`~captum_xgrad.NonHomogeneousError` (with this report) if not homogeneous.

        Raises
        ------
        NonHomogeneousError
            If :attr:`is_homogeneous` is ``False``.
        """
        if not self.is_homogeneous:
            raise NonHomogeneousError(
                f"{self}\nX-Gradient would not equal Integrated Gradients on this model. "
                "Convert it with captum_xgrad.make_x_dnn(model) and fine-tune, or use "
                "captum.attr.IntegratedGradients."
            )

    def to_dict(self) -> Dict[str, Any]:
        """The report as a JSON-serialisable dict (NaN/Inf become ``None``).

        Returns
        -------
        dict
            One key per attribute of the report; tuples become lists, each
            :class:`ModuleFinding` in ``offenders`` a dict, and non-finite floats
            ``None``, so that :func:`json.dumps` accepts it.
        """
        return _clean(dataclasses.asdict(self))

    def __str__(self) -> str:
        verdict = "homogeneous" if self.is_homogeneous else "NOT homogeneous"
        shapes = ", ".join(str(tuple(s)) for s in self.input_shapes)
        lines = [f"Homogeneity check of {self.model} on inputs {shapes}: {verdict}"]
        per = [d for d in self.degree_per_output if d is not None]
        per_text = (
            f" (per output {min(per):.4g} .. {max(per):.4g})" if len(per) > 1 else ""
        )
        lines.append(
            f"  degree k: tested {_fmt(self.degree, '.4g')}, estimated "
            f"{_fmt(self.estimated_degree, '.4g')}{per_text}"
        )
        lines.append("  scale a   max|f(a x) - a^k f(x)| / max|a^k f(x)|")
        for a, v in zip(self.scales, self.violations):
            lines.append(f"  {a:<8.4g}  {_fmt(v, '.2e')}")
        lines.append(
            f"  |f(0)| = {_fmt(self.f_zero, '.3g')}   max|f(x)| = "
            f"{_fmt(self.output_scale, '.3g')}   tolerance: rtol={self.rtol:g}, atol={self.atol:g}"
        )
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.offenders:
            rows = [("module", "type", "violation", "degree", "reason")] + [
                (o.name, o.type, _fmt(o.violation, ".2e"), _fmt(o.degree, ".3g"), o.reason)
                for o in self.offenders
            ]
            widths = [max(len(r[i]) for r in rows) for i in range(4)]
            lines.append(f"Offending modules ({len(self.offenders)}):")
            for r in rows:
                lines.append(
                    "  " + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4]
                )
        elif not self.is_homogeneous:
            lines.append("No single module was blamed.")
        if self.static and (self.offenders or not self.is_homogeneous):
            lines.append(f"Structural findings ({len(self.static)}):")
            lines.extend(f"  - {s}" for s in self.static)
        return "\n".join(lines)


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


def _fit_degree(
    base: Tensor, scaled: Sequence[Tensor], scales: Sequence[float]
) -> Tuple[Tensor, Tensor]:
    """Per-element least-squares fit of ``log(scaled/base) = k log(a)``.

    ``base`` has shape ``(N, M)`` and each of ``scaled`` the same. Returns ``(k, valid)``
    with ``k`` of shape ``(N, M)`` and ``valid`` a mask of the elements where the fit is
    meaningful (non-negligible and of the same sign at every scale).
    """
    base = base.double()
    mag = float(base.abs().max()) if base.numel() else 0.0
    valid = base.abs() > 1e-3 * mag if mag > 0 else torch.zeros_like(base, dtype=torch.bool)
    num = torch.zeros_like(base)
    den = 0.0
    for a, s in zip(scales, scaled):
        s = s.double()
        ratio = s / torch.where(valid, base, torch.ones_like(base))
        valid = valid & (ratio > 0)
        la = math.log(a)
        num = num + la * torch.log(torch.where(valid, ratio, torch.ones_like(ratio)))
        den += la * la
    return num / den, valid


def _round_degree(k: float) -> float:
    nearest = round(k)
    return float(nearest) if abs(k - nearest) <= 1e-2 else k


def _violation(base: Tensor, scaled: Tensor, a: float, k: float) -> Tuple[float, float]:
    """``(max|scaled - a^k base|, max|a^k base|)`` in float64."""
    expected = base.double() * (a**k)
    diff = float((scaled.double() - expected).abs().max()) if base.numel() else 0.0
    ref = float(expected.abs().max()) if base.numel() else 0.0
    return diff, ref


@contextlib.contextmanager
def _restore_buffers(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Put back every buffer a forward pass changed (running stats, counters, caches)."""
    saved = [
        (buf, buf.detach().clone())
        for root in modules
        for buf in root.buffers()
        if isinstance(buf, Tensor)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                if buf.shape != value.shape or not torch.equal(buf, value):
                    buf.data = value


def _model_modules(forward_func: Callable[..., Any]) -> List[nn.Module]:
    if isinstance(forward_func, nn.Module):
        return [forward_func]
    owner = getattr(forward_func, "__self__", None)
    return [owner] if isinstance(owner, nn.Module) else []


def _model_name(forward_func: Callable[..., Any]) -> str:
    if isinstance(forward_func, nn.Module):
        return type(forward_func).__name__
    return getattr(forward_func, "__qualname__", None) or type(forward_func).__name__


def _describe_inputs(inputs: Tuple[Tensor, ...]) -> str:
    return ", ".join(str(tuple(x.shape)) for x in inputs)


class _ModelRaised(RuntimeError):
    pass


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
    except Exception as exc:  # re-raised with context below
        raise ValueError(
            f"check_homogeneity: the model raised {type(exc).__name__} on {what} of "
            f"shape {_describe_inputs(inputs)}: {exc}\nCheck that `inputs` has the "
            "shape and dtype the model expects (batch dimension first, e.g. "
            "(N, 3, 224, 224) for an image classifier) and that "
            "`additional_forward_args` are right."
        ) from exc
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
        If the model raises on ``inputs`` (e.g. a wrong input shape; the original
        exception is chained), inputs hold NaN/Inf, or ``scales``/``degree``/tolerances
        are invalid.

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
    if degree is not None and (
        isinstance(degree, bool)
        or not isinstance(degree, numbers.Real)
        or not math.isfinite(float(degree))
        or degree <= 0
    ):
        raise ValueError(
            f"degree must be None (estimate it) or a positive number, got {degree!r}."
        )
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not isinstance(tol, numbers.Real) or not tol >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {tol!r}.")
    args = _format_additional_forward_args(additional_forward_args)
    formatted = tuple(x.detach() for x in formatted)
    roots = _model_modules(model)
    devices = sorted(
        {x.device.index or 0 for x in formatted if x.device.type == "cuda"}
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(preserve_model_state(model))
        stack.enter_context(_restore_buffers(roots))
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
    k_elem, valid = _fit_degree(f_x, scaled_out, scales)
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
        _round_degree(estimated) if estimated is not None else None
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
        if offenders:
            ok = False
            notes.append(
                "the verdict rests on the modules' own tests, since the outputs are zero"
            )
    elif recorder is not None and not ok:
        offenders = tuple(recorder.blame(scales, rtol, atol))
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
        for name, calls in self.calls.items():
            module = self.modules[name]
            worst: Optional[Tuple[float, Optional[float], bool]] = None
            for args, kwargs in calls:
                result = _test_module(module, args, kwargs, scales, rtol, atol)
                if result is not None and (worst is None or result[0] > worst[0]):
                    worst = result
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
    k_elem, valid = _fit_degree(flat.reshape(1, -1), [o.reshape(1, -1) for o in outs], scales)
    k: Optional[float] = _round_degree(float(k_elem[valid].median())) if bool(valid.any()) else None
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
