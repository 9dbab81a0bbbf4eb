r"""Training with attribution priors: task loss plus :math:`\lambda` times a prior.

Only the :class:`AttributionMethod` changes between the variants of Hesse et al. (NeurIPS 2021,
Sec. 4.3). Each calls the model **once** per step (IG/EG path points are concatenated with the
batch), as DistributedDataParallel expects; so a train-mode BatchNorm would include the path
points in its statistics: use IG/EG priors without one (X-DNNs have none) or freeze it. See the
how-to "Train with an attribution prior" for costs, DDP and examples.
"""

from __future__ import annotations

import abc
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._core.compat import SUPPORTED_METHODS, approximation_parameters
from ._core.guard import HomogeneityGuard
from ._core.validate import select_output, validate_degree

__all__ = [
    "AttributionMethod",
    "AttributionPrior",
    "ExpectedGradientsMethod",
    "GradientMethod",
    "IntegratedGradientsMethod",
    "PriorLoss",
    "XGradientMethod",
]

#: ``select(output_rows, output_at_x) -> (rows,)``: the scalar attributed per row.
Selector = Callable[[Tensor, Tensor], Tensor]


def _positive_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def _kind(value: Any) -> str:
    return str(value.dtype) if isinstance(value, Tensor) else type(value).__name__


class AttributionMethod(abc.ABC):
    """How :class:`AttributionPrior` attributes: one model call, graph kept.

    Implement :meth:`forward_and_attribute` to plug in another attribution.

    Raises
    ------
    TypeError
        On instantiation of a subclass without :meth:`forward_and_attribute`.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad import AttributionPrior, priors
    >>> from captum_xgrad.training import AttributionMethod
    >>> class InputTimesGradient(AttributionMethod):
    ...     def forward_and_attribute(self, model, inputs, select):
    ...         x = inputs.detach().requires_grad_(True)
    ...         out = model(x)
    ...         (g,) = torch.autograd.grad(select(out, out).sum(), x, create_graph=True)
    ...         return out, x * g
    >>> helper = AttributionPrior(torch.nn.Linear(4, 3), priors.l1_prior, weight=0.1,
    ...                           attribution=InputTimesGradient())
    >>> helper(torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])).attributions.shape
    torch.Size([5, 4])
    """

    #: A short name used in logs and benchmark tables.
    name: str = "attribution"

    @abc.abstractmethod
    def forward_and_attribute(
        self, model: Callable[[Tensor], Tensor], inputs: Tensor, select: Selector
    ) -> Tuple[Tensor, Tensor]:
        """Return ``(output at inputs, attributions)``, both differentiable in the parameters.

        Parameters
        ----------
        model : callable
            The model (possibly DDP-wrapped); call it once.
        inputs : Tensor
            The batch ``(N, ...)``; data, not differentiated.
        select : callable
            ``select(rows, output_at_x)`` maps the outputs of ``r * N`` rows (``r`` stacked
            copies of the batch) to the ``r * N`` scalars to attribute.

        Returns
        -------
        tuple of Tensor
            Output ``(N, ...)`` and attributions of the shape of ``inputs``.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _input_gradient(
    model: Callable[[Tensor], Tensor], inputs: Tensor, select: Selector
) -> Tuple[Tensor, Tensor, Tensor]:
    x = inputs.detach().requires_grad_(True)
    out = model(x)
    _check_output(out, inputs.shape[0])
    (grad,) = torch.autograd.grad(select(out, out).sum(), x, create_graph=True)
    return x, out, grad


class XGradientMethod(AttributionMethod):
    r"""X-Gradient :math:`\frac{1}{k}\, x \odot \nabla_x f(x)`: exact IG on bias-free models.

    The values of ``XGradient(model, degree=degree).attribute(x, target=...)``.

    Parameters
    ----------
    degree : float, default 1
        Homogeneity degree :math:`k` of the model.
    check : bool, default True
        Run :class:`~captum_xgrad.XGradient`'s guard once per model state and warn
        (:class:`~captum_xgrad.NonHomogeneousWarning`) if the model is not homogeneous.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.training import XGradientMethod
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.ReLU())
    >>> out, attr = XGradientMethod().forward_and_attribute(
    ...     model, torch.randn(5, 3), lambda rows, out_x: rows[:, 0])
    >>> torch.allclose(attr.sum(1), out[:, 0], atol=1e-6)  # completeness
    True
    """

    name = "x-gradient"

    def __init__(self, degree: float = 1.0, check: bool = True) -> None:
        self.degree = float(validate_degree(degree, allow_auto=False))
        self.check = bool(check)
        self._guard = HomogeneityGuard(
            "static" if self.check else "off", "XGradientMethod",
            silence="XGradientMethod(check=False)", track_parameters=False,
        )

    def forward_and_attribute(
        self, model: Callable[[Tensor], Tensor], inputs: Tensor, select: Selector
    ) -> Tuple[Tensor, Tensor]:
        self._guard.verify(model, (inputs,), None, None, self.degree)
        x, out, grad = _input_gradient(model, inputs, select)
        return out, x * grad / self.degree if self.degree != 1.0 else x * grad

    def __repr__(self) -> str:
        return f"XGradientMethod(degree={self.degree:g})"


class GradientMethod(AttributionMethod):
    r"""The input gradient :math:`\nabla_x f(x)`: the "gradient" baseline of the papers.

    Parameters
    ----------
    multiply_by_inputs : bool, default False
        Return :math:`x \odot \nabla_x f(x)` (:class:`XGradientMethod` without its check).

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.training import GradientMethod
    >>> model = torch.nn.Linear(3, 1)
    >>> out, grad = GradientMethod().forward_and_attribute(
    ...     model, torch.randn(2, 3), lambda rows, out_x: rows[:, 0])
    >>> torch.allclose(grad, model.weight.expand(2, 3))
    True
    """

    name = "gradient"

    def __init__(self, multiply_by_inputs: bool = False) -> None:
        self.multiply_by_inputs = bool(multiply_by_inputs)

    def forward_and_attribute(
        self, model: Callable[[Tensor], Tensor], inputs: Tensor, select: Selector
    ) -> Tuple[Tensor, Tensor]:
        x, out, grad = _input_gradient(model, inputs, select)
        return out, x * grad if self.multiply_by_inputs else grad

    def __repr__(self) -> str:
        return f"GradientMethod(multiply_by_inputs={self.multiply_by_inputs})"


def _quadrature(n_steps: int, method: str) -> Tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the rule ``method`` on :math:`[0, 1]`.

    Gauss-Legendre, midpoint and right Riemann are Captum's nodes and weights (taken from
    Captum). The trapezoid rule is the textbook one, whose weights sum to 1; Captum's
    ``riemann_trapezoid`` weights sum to ``1 - 1/n``, so there this prior converges to the
    integral as :math:`O(1/n^2)` where Captum's IG converges as :math:`O(1/n)`.
    """
    if method not in SUPPORTED_METHODS or method == "riemann_left":
        raise ValueError(
            "method must be one of 'gausslegendre', 'riemann_middle', 'riemann_right', "
            f"'riemann_trapezoid', got {method!r}."
        )
    if method == "riemann_trapezoid":
        if n_steps < 2:
            raise ValueError("the trapezoid rule needs n_steps >= 2.")
        w = np.full(n_steps, 1.0 / (n_steps - 1))
        w[0] = w[-1] = 0.5 / (n_steps - 1)
        return np.linspace(0.0, 1.0, n_steps), w
    step_sizes, alphas = approximation_parameters(method)
    return np.asarray(alphas(n_steps), np.float64), np.asarray(step_sizes(n_steps), np.float64)


def _path_attribution(
    model: Callable[[Tensor], Tensor], x: Tensor, starts: Tensor, alphas: Tensor,
    weights: Tensor, select: Selector
) -> Tuple[Tensor, Tensor]:
    r"""Output at ``x``, :math:`\sum_r w_r (x - s_r) \odot \nabla f(s_r + \alpha_r (x - s_r))`."""
    n, repeats = x.shape[0], starts.shape[0] // x.shape[0]
    view = (-1,) + (1,) * (x.dim() - 1)
    diff = x.repeat((repeats,) + (1,) * (x.dim() - 1)) - starts
    path = (starts + alphas.view(view) * diff).detach().requires_grad_(True)
    out_all = model(torch.cat([x, path]))
    _check_output(out_all, n * (1 + repeats))
    (grad,) = torch.autograd.grad(select(out_all[n:], out_all[:n]).sum(), path, create_graph=True)
    terms = weights.view(view) * diff * grad
    return out_all[:n], terms.reshape((repeats,) + tuple(x.shape)).sum(dim=0)


class IntegratedGradientsMethod(AttributionMethod):
    r"""Integrated Gradients with ``n_steps`` quadrature points, differentiably.

    .. math::

        \mathrm{IG}(x) \approx (x - b) \odot \sum_{s=1}^{n} w_s\,
            \nabla f\big(b + \alpha_s (x - b)\big)

    with the nodes :math:`\alpha_s` and weights :math:`w_s` of Captum's IntegratedGradients,
    the batch and its :math:`n` path copies in one call (about :math:`n + 1` times the cost).

    Parameters
    ----------
    n_steps : int, default 8
        Number of quadrature points.
    baseline : float or Tensor, default 0.0
        The baseline :math:`b`, broadcastable to the inputs.
    method : str, default "gausslegendre"
        ``"gausslegendre"``, ``"riemann_middle"``, ``"riemann_right"`` or
        ``"riemann_trapezoid"``.

    Raises
    ------
    TypeError, ValueError
        For a non-positive ``n_steps``, an unknown ``method`` or a bad ``baseline``.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.training import IntegratedGradientsMethod
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh())
    >>> out, attr = IntegratedGradientsMethod(n_steps=16).forward_and_attribute(
    ...     model, torch.randn(4, 3), lambda rows, out_x: rows[:, 0])
    >>> f0 = model(torch.zeros(1, 3))[:, 0]
    >>> torch.allclose(attr.sum(1), out[:, 0] - f0, atol=1e-4)  # completeness
    True
    """

    name = "integrated-gradients"

    def __init__(
        self, n_steps: int = 8, baseline: Union[float, Tensor] = 0.0, method: str = "gausslegendre"
    ) -> None:
        if not _positive_int(n_steps):
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}.")
        alphas, weights = _quadrature(int(n_steps), method)
        if not isinstance(baseline, (Tensor, numbers.Real)) or isinstance(baseline, bool):
            raise TypeError(f"baseline must be a number or a tensor, got {_kind(baseline)}.")
        self.n_steps = int(n_steps)
        self.method = method
        self.baseline = baseline
        self._alphas = torch.as_tensor(alphas, dtype=torch.float64)
        self._weights = torch.as_tensor(weights, dtype=torch.float64)

    def forward_and_attribute(
        self, model: Callable[[Tensor], Tensor], inputs: Tensor, select: Selector
    ) -> Tuple[Tensor, Tensor]:
        x = inputs.detach()
        b = torch.as_tensor(self.baseline, dtype=x.dtype, device=x.device)
        try:
            starts = torch.broadcast_to(b, x.shape)
        except RuntimeError as exc:
            raise ValueError(
                f"IntegratedGradientsMethod: baseline of shape {tuple(b.shape)} does not "
                f"broadcast to the inputs of shape {tuple(x.shape)}."
            ) from exc
        starts = starts.repeat((self.n_steps,) + (1,) * (x.dim() - 1))
        alphas = self._alphas.to(x.device, x.dtype).repeat_interleave(x.shape[0])
        weights = self._weights.to(x.device, x.dtype).repeat_interleave(x.shape[0])
        return _path_attribution(model, x, starts, alphas, weights, select)

    def __repr__(self) -> str:
        return f"IntegratedGradientsMethod(n_steps={self.n_steps}, method={self.method!r})"


class ExpectedGradientsMethod(AttributionMethod):
    r"""Expected Gradients with ``k`` references per example (Erion et al., 2021).

    .. math::

        \mathrm{EG}(x) \approx \frac{1}{k} \sum_{j=1}^{k} (x - x'_j) \odot
            \nabla f\big(x'_j + \alpha_j (x - x'_j)\big),
        \qquad x'_j \sim \mathcal{D},\ \alpha_j \sim U(0, 1),

    a Monte-Carlo estimate of IG averaged over baselines drawn from the data, in one call.

    Parameters
    ----------
    references : Tensor
        The reference set :math:`\mathcal{D}` ``(M, ...)`` (e.g. the training inputs), sampled
        uniformly with replacement.
    k : int, default 1
        References (and path points) per example and step.
    generator : torch.Generator, optional
        Random generator (on the references' device) for the references and :math:`\alpha`.

    Raises
    ------
    TypeError, ValueError
        For non-float or empty references or a non-positive ``k``; at call time if the
        references' feature shape differs from the inputs'.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.training import ExpectedGradientsMethod
    >>> out, attr = ExpectedGradientsMethod(torch.randn(10, 3), k=4).forward_and_attribute(
    ...     torch.nn.Linear(3, 1), torch.randn(2, 3), lambda rows, out_x: rows[:, 0])
    >>> attr.shape
    torch.Size([2, 3])
    """

    name = "expected-gradients"

    def __init__(
        self, references: Tensor, k: int = 1, generator: Optional[torch.Generator] = None
    ) -> None:
        if not isinstance(references, Tensor) or not references.is_floating_point():
            raise TypeError(
                "ExpectedGradientsMethod: references must be a floating-point tensor "
                f"(e.g. the training inputs), got {_kind(references)}."
            )
        if references.dim() < 1 or references.shape[0] == 0:
            raise ValueError(
                "ExpectedGradientsMethod: the reference set is empty; pass e.g. the "
                "training inputs, shape (M, ...)."
            )
        if not _positive_int(k):
            raise ValueError(f"ExpectedGradientsMethod: k must be a positive integer, got {k!r}.")
        self.references = references.detach()
        self.k = int(k)
        self.generator = generator

    def forward_and_attribute(
        self, model: Callable[[Tensor], Tensor], inputs: Tensor, select: Selector
    ) -> Tuple[Tensor, Tensor]:
        x, refs = inputs.detach(), self.references
        if tuple(refs.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(
                f"ExpectedGradientsMethod: references have feature shape {tuple(refs.shape[1:])} "
                f"but the inputs have {tuple(x.shape[1:])}; use references of the same kind "
                "as the inputs."
            )
        rows = self.k * x.shape[0]
        idx = torch.randint(0, refs.shape[0], (rows,), generator=self.generator, device=refs.device)
        alphas = torch.rand(rows, generator=self.generator, device=refs.device)
        weights = torch.full((rows,), 1.0 / self.k, dtype=x.dtype, device=x.device)
        starts = refs[idx].to(x.device, x.dtype)
        return _path_attribution(model, x, starts, alphas.to(x.device, x.dtype), weights, select)

    def __repr__(self) -> str:
        return f"ExpectedGradientsMethod(k={self.k}, references={self.references.shape[0]})"


_SHORTCUTS = {
    "xgradient": XGradientMethod,
    "gradient": GradientMethod,
    "input_x_gradient": lambda: GradientMethod(multiply_by_inputs=True),
    "integrated_gradients": IntegratedGradientsMethod,
}


def _resolve_method(attribution: Any) -> AttributionMethod:
    if isinstance(attribution, AttributionMethod):
        return attribution
    if isinstance(attribution, str):
        if attribution in _SHORTCUTS:
            return _SHORTCUTS[attribution]()
        if attribution == "expected_gradients":
            raise ValueError(
                "attribution='expected_gradients' needs a reference set: pass "
                "attribution=ExpectedGradientsMethod(references=x_train, k=1)."
            )
        raise ValueError(
            f"unknown attribution {attribution!r}; use one of {sorted(_SHORTCUTS)} or an "
            "AttributionMethod instance (e.g. ExpectedGradientsMethod(x_train))."
        )
    if isinstance(attribution, type):
        from .xgradient import XGradient

        if issubclass(attribution, XGradient):
            return XGradientMethod()
        if issubclass(attribution, AttributionMethod):
            return attribution()
    raise TypeError(
        f"attribution must be a string, XGradient or an AttributionMethod, got {attribution!r}."
    )


def _check_output(out: Any, rows: int) -> None:
    if not isinstance(out, Tensor):
        raise TypeError(
            f"the model returned a {type(out).__name__}; AttributionPrior needs a tensor "
            "of shape (N,) or (N, C)."
        )
    if out.dim() == 0 or out.shape[0] != rows:
        raise ValueError(
            f"the model returned shape {tuple(out.shape)} for {rows} rows; it must "
            "return one row per example."
        )


def _make_selector(target: Any, labels: Tensor, n: int) -> Selector:
    if callable(target):

        def select_user(rows: Tensor, out_x: Tensor) -> Tensor:
            values = target(rows)
            if not isinstance(values, Tensor) or values.shape != (rows.shape[0],):
                raise ValueError(
                    "a callable target must map the model output of R rows to a tensor of "
                    f"shape (R,), got {getattr(values, 'shape', type(values).__name__)} "
                    f"for R = {rows.shape[0]}."
                )
            return values

        return select_user

    def select(rows: Tensor, out_x: Tensor) -> Tensor:
        if rows.dim() == 1 or (rows.dim() == 2 and rows.shape[1] == 1):
            return rows.reshape(-1)
        if rows.dim() != 2:
            raise ValueError(
                f"the model output has shape {tuple(rows.shape)}; AttributionPrior attributes "
                "outputs of shape (N,), (N, 1) or (N, C). Pass a callable target to pick one "
                "scalar per example."
            )
        if target == "label":
            if labels.is_floating_point() or labels.dim() != 1:
                raise ValueError(
                    "target='label' needs integer class labels of shape (N,) for a model "
                    f"with {rows.shape[1]} outputs, got labels of dtype {labels.dtype} and "
                    f"shape {tuple(labels.shape)}. Pass target='pred', an int, or a callable."
                )
            idx = labels
        elif target == "pred":
            idx = out_x.detach().argmax(dim=1)
        else:  # an int class, validated and selected as by XGradient.attribute
            return select_output(rows, int(target), rows.shape[0])
        idx = idx.to(rows.device).repeat(rows.shape[0] // n)
        return select_output(rows, idx, rows.shape[0])

    return select


@dataclass(frozen=True)
class PriorLoss:
    """What :class:`AttributionPrior` returns for one batch.

    Attributes
    ----------
    loss : Tensor
        ``task_loss + weight * prior_loss``; call ``loss.backward()``.
    task_loss : Tensor
        The task loss.
    prior_loss : Tensor
        The prior :math:`\\Omega` (a constant zero if ``weight == 0``).
    output : Tensor
        The model output at the inputs, detached.
    attributions : Tensor or None
        The attributions, detached (``None`` if ``weight == 0``).

    Raises
    ------
    TypeError
        If constructed with missing fields (it is a plain dataclass).

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad import AttributionPrior, priors
    >>> model = torch.nn.Linear(4, 3, bias=False)
    >>> res = AttributionPrior(model, priors.l1_prior, weight=0.5)(
    ...     torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
    >>> bool(torch.isclose(res.loss, res.task_loss + 0.5 * res.prior_loss))
    True
    """

    loss: Tensor
    task_loss: Tensor
    prior_loss: Tensor
    output: Tensor
    attributions: Optional[Tensor]


class AttributionPrior:
    r"""Task loss plus prior, :math:`\mathcal{L}_{task}(f(x), y) + \lambda\,\Omega(\Phi(x))`.

    :math:`\Phi` stays differentiable in the parameters, :math:`\Omega` is e.g. from
    :mod:`captum_xgrad.priors`. ``helper(inputs, labels, *prior_args, **prior_kwargs)`` runs one
    forward and one backward (``create_graph=True``) and returns a :class:`PriorLoss`; the extra
    arguments go to the prior. It never calls ``zero_grad``/``step`` or changes the model's
    mode: it works with any optimizer, :func:`torch.autocast` and DDP (pass the wrapped model).

    Parameters
    ----------
    model : callable
        Called as ``model(x)``; returns ``(N,)``, ``(N, 1)`` or ``(N, C)``.
    prior : callable
        ``prior(attributions, *prior_args, **prior_kwargs) -> scalar``, e.g.
        :func:`captum_xgrad.priors.gini_prior`.
    weight : float, default 1.0
        :math:`\lambda \ge 0`. With ``0`` no attribution is computed.
    attribution : str, XGradient class or AttributionMethod, default "xgradient"
        ``"xgradient"`` (or :class:`captum_xgrad.XGradient`), ``"gradient"``,
        ``"input_x_gradient"``, ``"integrated_gradients"`` (8 Gauss-Legendre steps), or an
        instance such as ``ExpectedGradientsMethod(x_train, k=1)``.
    loss_fn : callable, optional
        ``loss_fn(output, labels)``; default :func:`torch.nn.functional.cross_entropy`.
    target : {"label", "pred"}, int or callable, default "label"
        The attributed output: labelled class, predicted class, a fixed class, or
        ``target(output_rows) -> (rows,)``. Single-output models attribute their output
        (unless ``target`` is a callable).

    Raises
    ------
    TypeError, ValueError
        For a non-callable ``model``, ``prior`` or ``loss_fn``, a negative or non-finite
        ``weight``, an unknown ``attribution`` or ``target``; at call time for non-float
        inputs, labels without one row per example or a non-scalar prior.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.priors import gini_prior
    >>> from captum_xgrad.training import AttributionPrior
    >>> model = torch.nn.Sequential(torch.nn.Linear(6, 16, bias=False), torch.nn.ReLU(),
    ...                             torch.nn.Linear(16, 3, bias=False))
    >>> parts = AttributionPrior(model, gini_prior, weight=0.1)(torch.randn(8, 6),
    ...                                                        torch.randint(0, 3, (8,)))
    >>> parts.loss.backward()  # then optimizer.step()
    >>> parts.attributions.shape
    torch.Size([8, 6])
    """

    def __init__(
        self,
        model: Callable[[Tensor], Tensor],
        prior: Callable[..., Tensor],
        weight: float = 1.0,
        attribution: Union[str, type, AttributionMethod] = "xgradient",
        loss_fn: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
        target: Union[str, int, Callable[[Tensor], Tensor]] = "label",
    ) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}.")
        if not callable(prior):
            raise TypeError(
                "prior must be callable (e.g. captum_xgrad.priors.gini_prior), got "
                f"{type(prior).__name__}."
            )
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}.")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not (
            math.isfinite(float(weight)) and weight >= 0
        ):
            raise ValueError(
                f"weight must be a finite number >= 0 (the lambda of the prior), got {weight!r}."
            )
        is_int = isinstance(target, numbers.Integral) and not isinstance(target, bool)
        if not (target in ("label", "pred") or callable(target) or is_int):
            raise ValueError(
                f"target must be 'label', 'pred', an int class index or a callable, got {target!r}."
            )
        self.model = model
        self.prior = prior
        self.weight = float(weight)
        self.method = _resolve_method(attribution)
        self.loss_fn = loss_fn if loss_fn is not None else F.cross_entropy
        self.target = target

    def __repr__(self) -> str:
        prior = getattr(self.prior, "__name__", repr(self.prior))
        return f"AttributionPrior(prior={prior}, weight={self.weight:g}, method={self.method!r})"

    def __call__(
        self, inputs: Tensor, labels: Tensor, *prior_args: Any, **prior_kwargs: Any
    ) -> PriorLoss:
        """The combined loss on the float batch ``inputs`` ``(N, ...)`` with ``N`` labels."""
        if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
            raise TypeError(f"inputs must be a floating-point tensor, got {_kind(inputs)}.")
        n = inputs.shape[0] if inputs.dim() else 0
        if n == 0:
            raise ValueError(
                f"inputs must be a non-empty batch (N, ...), got shape {tuple(inputs.shape)}."
            )
        if not isinstance(labels, Tensor) or labels.dim() == 0 or labels.shape[0] != n:
            got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"labels must be a tensor with one row per example ({n}), got {got}.")
        if self.weight == 0.0:
            output = self.model(inputs)
            _check_output(output, n)
            task = self.loss_fn(output, labels)
            zero = torch.zeros((), dtype=task.dtype, device=task.device)
            return PriorLoss(task, task, zero, output.detach(), None)
        select = _make_selector(self.target, labels, n)
        output, attributions = self.method.forward_and_attribute(self.model, inputs, select)
        task = self.loss_fn(output, labels)
        prior = self.prior(attributions, *prior_args, **prior_kwargs)
        if not isinstance(prior, Tensor) or prior.numel() != 1:
            got = tuple(prior.shape) if isinstance(prior, Tensor) else type(prior).__name__
            raise ValueError(f"the prior must return a scalar tensor, got {got}.")
        prior = prior.reshape(())
        loss = task + self.weight * prior.to(task.dtype)
        return PriorLoss(loss, task, prior, output.detach(), attributions.detach())
