r"""Training with attribution priors: task loss plus :math:`\lambda` times a prior.

:class:`AttributionPrior` computes, for a batch :math:`(x, y)`,

.. math::

    \mathcal{L}(\theta) = \mathcal{L}_{task}(f_\theta(x), y)
                          + \lambda\, \Omega\big(\Phi_\theta(x)\big),

where :math:`\Phi_\theta(x)` are attributions that stay differentiable in the
parameters :math:`\theta` and :math:`\Omega` is a prior from :mod:`captum_xgrad.priors`.
Calling ``.backward()`` on the result differentiates through the attribution (a
"double backward"). Only the attribution method changes between the variants the
X-Gradient paper compares (Hesse et al., NeurIPS 2021, Sec. 4.3):

- :class:`XGradientMethod` on a bias-free (homogeneous) model: exact IG, one forward
  pass on ``N`` rows and a double backward;
- :class:`GradientMethod` on any model: the input gradient, same cost;
- :class:`IntegratedGradientsMethod` on any model: one forward pass on ``(1 + n) N``
  rows (``n`` quadrature steps);
- :class:`ExpectedGradientsMethod` on any model: one forward pass on ``(1 + k) N`` rows
  (``k`` references).

Every method makes exactly **one** call of the model per step (the path points of
IG/EG are concatenated with the batch), and the task loss reuses the rows at
:math:`x`. That keeps the cost minimal and makes the helper work under
:class:`torch.nn.parallel.DistributedDataParallel`, which expects one forward per
backward. It also works with any optimizer and under :func:`torch.autocast`.

One consequence of the single call: for IG and EG the path points share the batch
with the real inputs, so a BatchNorm layer in training mode would include them in its
batch statistics. Use such priors with models without train-mode BatchNorm (the
bias-free X-DNNs have none: their BatchNorm is a fixed scale), or freeze BN statistics.
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


# ----------------------------------------------------------------------- the methods
class AttributionMethod(abc.ABC):
    """How :class:`AttributionPrior` attributes: one model call, graph kept.

    Subclasses implement :meth:`forward_and_attribute`. Implement your own to plug
    another attribution into the helper.

    Raises
    ------
    TypeError
        On instantiation of a subclass that does not implement
        :meth:`forward_and_attribute`.

    Examples
    --------
    A gradient-times-input attribution written as a plug-in:

    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad import AttributionPrior, priors
    >>> from captum_xgrad.training import AttributionMethod
    >>> class InputTimesGradient(AttributionMethod):
    ...     name = "input x gradient"
    ...     def forward_and_attribute(self, model, inputs, select):
    ...         x = inputs.detach().requires_grad_(True)
    ...         out = model(x)
    ...         (g,) = torch.autograd.grad(select(out, out).sum(), x, create_graph=True)
    ...         return out, x * g
    >>> model = nn.Sequential(nn.Linear(4, 3))
    >>> helper = AttributionPrior(model, priors.l1_prior, weight=0.1,
    ...                           attribution=InputTimesGradient())
    >>> res = helper(torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))
    >>> res.attributions.shape
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
            The model (possibly wrapped, e.g. in DistributedDataParallel); call it once.
        inputs : Tensor
            The batch ``(N, ...)``; it is data and must not be differentiated.
        select : callable
            ``select(rows, output_at_x)`` maps model outputs of ``r * N`` rows (``r``
            stacked copies of the batch) to the ``r * N`` scalars to attribute; the
            second argument is the output at ``inputs`` (used by ``target="pred"``).

        Returns
        -------
        tuple of Tensor
            Output of shape ``(N, ...)`` and attributions of the shape of ``inputs``.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _input_gradient(
    model: Callable[[Tensor], Tensor], inputs: Tensor, select: Selector
) -> Tuple[Tensor, Tensor, Tensor]:
    x = inputs.detach().requires_grad_(True)
    out = model(x)
    _check_output(out, inputs.shape[0])
    selected = select(out, out)
    (grad,) = torch.autograd.grad(selected.sum(), x, create_graph=True)
    return x, out, grad


class XGradientMethod(AttributionMethod):
    r"""X-Gradient :math:`\frac{1}{k}\, x \odot \nabla_x f(x)`: exact IG on bias-free models.

    Shares the one forward pass with the task loss, then one backward pass with
    ``create_graph=True``; the values equal
    ``XGradient(model, degree=degree).attribute(x, target=..., create_graph=True)``.

    Parameters
    ----------
    degree : float, default 1
        Homogeneity degree :math:`k` of the model.
    check : bool, default True
        Run the guard of :class:`~captum_xgrad.XGradient` (the graph certificate, or
        the empirical fallback) once per model state, and warn
        (:class:`~captum_xgrad.NonHomogeneousWarning`) if the model is not
        homogeneous, in which case the attribution is input :math:`\times` gradient
        rather than IG.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad.training import XGradientMethod
    >>> model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(),
    ...                       nn.Linear(4, 2, bias=False))
    >>> x = torch.randn(5, 3)
    >>> out, attr = XGradientMethod().forward_and_attribute(
    ...     model, x, lambda rows, out_x: rows[:, 0])
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
        attr = x * grad
        return out, attr / self.degree if self.degree != 1.0 else attr

    def __repr__(self) -> str:
        return f"XGradientMethod(degree={self.degree:g})"


class GradientMethod(AttributionMethod):
    r"""The input gradient :math:`\nabla_x f(x)` (optionally times the input).

    The "gradient" baseline of Erion et al. (2021) and Hesse et al. (2021); with
    ``multiply_by_inputs=True`` it is input :math:`\times` gradient, which equals
    :class:`XGradientMethod` on a homogeneous model but skips its check.

    Parameters
    ----------
    multiply_by_inputs : bool, default False
        Return :math:`x \odot \nabla_x f(x)` instead of the gradient.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad.training import GradientMethod
    >>> model = nn.Linear(3, 1)
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
    """Nodes and weights of the quadrature rule ``method`` on :math:`[0, 1]`.

    Gauss-Legendre, midpoint and right Riemann are Captum's nodes and weights (taken
    from Captum). The trapezoid rule is the textbook one, whose weights sum to 1;
    Captum's ``riemann_trapezoid`` weights sum to ``1 - 1/n``, so there this prior
    converges to the integral as :math:`O(1/n^2)` where Captum's IG converges as
    :math:`O(1/n)`.
    """
    if method not in SUPPORTED_METHODS or method == "riemann_left":
        raise ValueError(
            f"method must be one of 'gausslegendre', 'riemann_middle', 'riemann_right', "
            f"'riemann_trapezoid', got {method!r}."
        )
    if method == "riemann_trapezoid":
        if n_steps < 2:
            raise ValueError("the trapezoid rule needs n_steps >= 2.")
        w = np.full(n_steps, 1.0 / (n_steps - 1))
        w[0] = w[-1] = 0.5 / (n_steps - 1)
        return np.linspace(0.0, 1.0, n_steps), w
    step_sizes, alphas = approximation_parameters(method)
    return np.asarray(alphas(n_steps), dtype=np.float64), np.asarray(step_sizes(n_steps), dtype=np.float64)


def _path_attribution(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    starts: Tensor,
    alphas: Tensor,
    weights: Tensor,
    repeats: int,
    select: Selector,
) -> Tuple[Tensor, Tensor]:
    r"""Shared core of IG and EG: one forward on ``[x; starts + alpha (x - starts)]``.

    ``starts`` has ``repeats * N`` rows (the baseline of each path point), ``alphas``
    and ``weights`` one entry per path row. Returns the output at ``x`` and
    :math:`\sum_r w_r (x - s_r) \odot \nabla f(s_r + \alpha_r (x - s_r))`.
    """
    n = x.shape[0]
    x_rep = x.repeat((repeats,) + (1,) * (x.dim() - 1))
    view = (-1,) + (1,) * (x.dim() - 1)
    diff = x_rep - starts
    path = (starts + alphas.view(view) * diff).detach().requires_grad_(True)
    out_all = model(torch.cat([x, path]))
    _check_output(out_all, n * (1 + repeats))
    out_x, out_path = out_all[:n], out_all[n:]
    selected = select(out_path, out_x)
    (grad,) = torch.autograd.grad(selected.sum(), path, create_graph=True)
    terms = (weights.view(view) * diff) * grad
    attr = terms.reshape((repeats,) + tuple(x.shape)).sum(dim=0)
    return out_x, attr


class IntegratedGradientsMethod(AttributionMethod):
    r"""Integrated Gradients with ``n_steps`` quadrature points, differentiably.

    .. math::

        \mathrm{IG}(x) \approx (x - b) \odot \sum_{s=1}^{n} w_s\,
            \nabla f\big(b + \alpha_s (x - b)\big)

    with Gauss-Legendre (default) or Riemann nodes :math:`\alpha_s` and weights
    :math:`w_s` on :math:`[0, 1]`, as in :class:`captum.attr.IntegratedGradients`. The
    batch and its ``n_steps`` path copies go through the model in one call, so a
    step costs about :math:`n + 1` times a plain one.

    Parameters
    ----------
    n_steps : int, default 8
        Number of quadrature points.
    baseline : float or Tensor, default 0.0
        The baseline :math:`b`, a number or a tensor broadcastable to the inputs.
    method : str, default "gausslegendre"
        ``"gausslegendre"``, ``"riemann_middle"``, ``"riemann_right"`` or
        ``"riemann_trapezoid"``.

    Raises
    ------
    ValueError
        For a non-positive ``n_steps`` or an unknown ``method``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad.training import IntegratedGradientsMethod
    >>> model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    >>> x = torch.randn(4, 3)
    >>> out, attr = IntegratedGradientsMethod(n_steps=16).forward_and_attribute(
    ...     model, x, lambda rows, out_x: rows[:, 0])
    >>> f0 = model(torch.zeros(1, 3))[:, 0]
    >>> torch.allclose(attr.sum(1), out[:, 0] - f0, atol=1e-4)  # completeness
    True
    """

    name = "integrated-gradients"

    def __init__(
        self,
        n_steps: int = 8,
        baseline: Union[float, Tensor] = 0.0,
        method: str = "gausslegendre",
    ) -> None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}.")
        alphas, weights = _quadrature(int(n_steps), method)
        if not isinstance(baseline, (Tensor, numbers.Real)) or isinstance(baseline, bool):
            raise TypeError(
                f"baseline must be a number or a tensor, got {type(baseline).__name__}."
            )
        self.n_steps = int(n_steps)
        self.method = method
        self.baseline = baseline
        self._alphas = torch.as_tensor(alphas, dtype=torch.float64)
        self._weights = torch.as_tensor(weights, dtype=torch.float64)

    def forward_and_attribute(
        self, model: Callable[[Tensor], Tensor], inputs: Tensor, select: Selector
    ) -> Tuple[Tensor, Tensor]:
        x = inputs.detach()
        n, s = x.shape[0], self.n_steps
        b = torch.as_tensor(self.baseline, dtype=x.dtype, device=x.device)
        try:
            starts = torch.broadcast_to(b, x.shape)
        except RuntimeError as exc:
            raise ValueError(
                f"IntegratedGradientsMethod: baseline of shape {tuple(b.shape)} does not "
                f"broadcast to the inputs of shape {tuple(x.shape)}."
            ) from exc
        starts = starts.repeat((s,) + (1,) * (x.dim() - 1))
        alphas = self._alphas.to(x.device, x.dtype).repeat_interleave(n)
        weights = self._weights.to(x.device, x.dtype).repeat_interleave(n)
        return _path_attribution(model, x, starts, alphas, weights, s, select)

    def __repr__(self) -> str:
        return f"IntegratedGradientsMethod(n_steps={self.n_steps}, method={self.method!r})"


class ExpectedGradientsMethod(AttributionMethod):
    r"""Expected Gradients with ``k`` references per example (Erion et al., 2021).

    .. math::

        \mathrm{EG}(x) \approx \frac{1}{k} \sum_{j=1}^{k} (x - x'_j) \odot
            \nabla f\big(x'_j + \alpha_j (x - x'_j)\big),
        \qquad x'_j \sim \mathcal{D},\ \alpha_j \sim U(0, 1),

    a Monte-Carlo estimate of IG averaged over baselines drawn from the data. The
    batch and its ``k`` path points per example go through the model in one call.

    Parameters
    ----------
    references : Tensor
        The reference set :math:`\mathcal{D}` (e.g. the training inputs), shape
        ``(M, ...)`` with the inputs' feature shape; sampled uniformly with replacement.
    k : int, default 1
        References (and path points) per example and step.
    generator : torch.Generator, optional
        Random generator for the references and :math:`\alpha` (on the references'
        device); the global one if ``None``.

    Raises
    ------
    ValueError
        For an empty reference set or a non-positive ``k``; at call time if the
        references' feature shape differs from the inputs'.
    TypeError
        If ``references`` is not a floating-point tensor.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad.training import ExpectedGradientsMethod
    >>> model = nn.Linear(3, 1)   # EG of a linear model: w * (x - mean reference)
    >>> refs = torch.randn(10, 3)
    >>> method = ExpectedGradientsMethod(refs, k=4)
    >>> out, attr = method.forward_and_attribute(model, torch.randn(2, 3),
    ...                                          lambda rows, out_x: rows[:, 0])
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
                "(e.g. the training inputs), got "
                f"{type(references).__name__ if not isinstance(references, Tensor) else references.dtype}."
            )
        if references.dim() < 1 or references.shape[0] == 0:
            raise ValueError(
                "ExpectedGradientsMethod: the reference set is empty; pass e.g. the "
                "training inputs, shape (M, ...)."
            )
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"ExpectedGradientsMethod: k must be a positive integer, got {k!r}.")
        self.references = references.detach()
        self.k = int(k)
        self.generator = generator

    def forward_and_attribute(
        self, model: Callable[[Tensor], Tensor], inputs: Tensor, select: Selector
    ) -> Tuple[Tensor, Tensor]:
        x = inputs.detach()
        if tuple(self.references.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(
                f"ExpectedGradientsMethod: references have feature shape "
                f"{tuple(self.references.shape[1:])} but the inputs have "
                f"{tuple(x.shape[1:])}; use references of the same kind as the inputs."
            )
        n, k = x.shape[0], self.k
        dev = self.references.device
        idx = torch.randint(
            0, self.references.shape[0], (k * n,), generator=self.generator, device=dev
        )
        alphas = torch.rand(k * n, generator=self.generator, device=dev)
        starts = self.references[idx].to(x.device, x.dtype)
        alphas = alphas.to(x.device, x.dtype)
        weights = torch.full((k * n,), 1.0 / k, dtype=x.dtype, device=x.device)
        return _path_attribution(model, x, starts, alphas, weights, k, select)

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
        f"attribution must be a string, XGradient or an AttributionMethod, got "
        f"{attribution!r}."
    )


# ------------------------------------------------------------------------- targets
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


def _single_output(out: Tensor) -> bool:
    return out.dim() == 1 or (out.dim() == 2 and out.shape[1] == 1)


def _make_selector(target: Any, labels: Tensor, n: int) -> Selector:
    def select(rows: Tensor, out_x: Tensor) -> Tensor:
        if _single_output(rows):
            return rows.reshape(-1)
        if rows.dim() != 2:
            raise ValueError(
                f"the model output has shape {tuple(rows.shape)}; AttributionPrior "
                "attributes outputs of shape (N,), (N, 1) or (N, C). Pass a callable "
                "target to pick one scalar per example."
            )
        repeats = rows.shape[0] // n
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
        # the same selection (and range check) as XGradient.attribute's per-example target
        return select_output(rows, idx.to(rows.device).repeat(repeats), rows.shape[0])

    if callable(target):
        user = target

        def select_user(rows: Tensor, out_x: Tensor) -> Tensor:
            values = user(rows)
            if not isinstance(values, Tensor) or values.shape != (rows.shape[0],):
                raise ValueError(
                    "a callable target must map the model output of R rows to a tensor "
                    f"of shape (R,), got {getattr(values, 'shape', type(values).__name__)} "
                    f"for R = {rows.shape[0]}."
                )
            return values

        return select_user
    return select


# --------------------------------------------------------------------------- helper
@dataclass(frozen=True)
class PriorLoss:
    """What :class:`AttributionPrior` returns for one batch.

    Attributes
    ----------
    loss : Tensor
        ``task_loss + weight * prior_loss``; call ``loss.backward()``.
    task_loss : Tensor
        The task loss (differentiable).
    prior_loss : Tensor
        The prior :math:`\\Omega` (differentiable; zero and constant if ``weight == 0``).
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
    >>> from torch import nn
    >>> from captum_xgrad import AttributionPrior, priors
    >>> model = nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(),
    ...                       nn.Linear(8, 3, bias=False))
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
    r"""Task loss plus a weighted attribution prior, with one model call per step.

    .. math::

        \mathcal{L} = \mathcal{L}_{task}(f(x), y) + \lambda\, \Omega(\Phi(x), \dots)

    Calling the helper on a batch runs one forward pass (shared by the task loss and
    the attribution), one backward pass with ``create_graph=True`` for the
    attributions, and returns a :class:`PriorLoss`. ``loss.backward()`` then runs the
    double backward. The helper never calls ``zero_grad``, ``step`` or changes the
    model's mode, so it works with any optimizer, gradient accumulation, LR schedulers,
    :func:`torch.autocast` (wrap the call) and
    :class:`~torch.nn.parallel.DistributedDataParallel` (pass the wrapped model; the
    prior is computed on each process's own batch, as for BatchNorm statistics, so a
    batch-level prior such as :func:`~captum_xgrad.priors.gini_prior` sees the local
    batch).

    Parameters
    ----------
    model : callable
        The model (an ``nn.Module``, possibly DDP-wrapped), called as ``model(x)``
        with one input tensor; it must return ``(N,)``, ``(N, 1)`` or ``(N, C)``.
    prior : callable
        ``prior(attributions, *prior_args, **prior_kwargs) -> scalar``, e.g.
        :func:`captum_xgrad.priors.gini_prior` or :func:`~captum_xgrad.priors.mask_prior`.
    weight : float, default 1.0
        :math:`\lambda \ge 0`. With ``0`` no attribution is computed (one plain step).
    attribution : str, XGradient class or AttributionMethod, default "xgradient"
        ``"xgradient"`` (or :class:`captum_xgrad.XGradient`) for
        :class:`XGradientMethod`, ``"gradient"``, ``"input_x_gradient"``,
        ``"integrated_gradients"`` (8 Gauss-Legendre steps), or an instance such as
        ``IntegratedGradientsMethod(n_steps=32)`` or ``ExpectedGradientsMethod(x_train, k=1)``.
    loss_fn : callable, optional
        ``loss_fn(output, labels) -> scalar``; default
        :func:`torch.nn.functional.cross_entropy`. For one logit per example use e.g.
        ``torch.nn.BCEWithLogitsLoss()``.
    target : {"label", "pred"}, int or callable, default "label"
        Which output is attributed: the labelled class, the predicted class, a fixed
        class, or ``target(output_rows) -> (rows,)``. For models with one output per
        example that output is attributed whatever ``target`` says (except callables).

    Raises
    ------
    TypeError
        If ``model``, ``prior`` or ``loss_fn`` is not callable, or ``attribution`` has
        the wrong type.
    ValueError
        For a negative or non-finite ``weight``, an unknown ``attribution`` or
        ``target``; at call time for labels that do not match the batch.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad.priors import gini_prior
    >>> from captum_xgrad.training import AttributionPrior
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(6, 16, bias=False), nn.ReLU(),
    ...                       nn.Linear(16, 3, bias=False))
    >>> helper = AttributionPrior(model, gini_prior, weight=0.1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    >>> parts = helper(x, y)
    >>> opt.zero_grad(); parts.loss.backward(); opt.step()
    >>> parts.attributions.shape
    torch.Size([8, 6])
    >>> bool(torch.isclose(parts.loss, parts.task_loss + 0.1 * parts.prior_loss))
    True
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
                f"prior must be callable (e.g. captum_xgrad.priors.gini_prior), got "
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
        if not (
            target in ("label", "pred")
            or callable(target)
            or (isinstance(target, numbers.Integral) and not isinstance(target, bool))
        ):
            raise ValueError(
                f"target must be 'label', 'pred', an int class index or a callable, got "
                f"{target!r}."
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

    def __call__(self, inputs: Tensor, labels: Tensor, *prior_args: Any, **prior_kwargs: Any) -> PriorLoss:
        """Compute the combined loss on one batch.

        Parameters
        ----------
        inputs : Tensor
            Floating-point batch ``(N, ...)`` (data: it is not modified and gets no
            gradient).
        labels : Tensor
            Labels for ``loss_fn`` with ``N`` rows.
        *prior_args, **prior_kwargs
            Passed to the prior after the attributions (e.g. the mask of
            :func:`~captum_xgrad.priors.mask_prior`).

        Returns
        -------
        PriorLoss
            The combined loss and its parts.

        Raises
        ------
        TypeError
            For non-tensor or non-float inputs.
        ValueError
            If ``labels`` does not have one row per example, or the prior does not
            return a scalar.
        """
        if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
            raise TypeError(
                "inputs must be a floating-point tensor, got "
                f"{type(inputs).__name__ if not isinstance(inputs, Tensor) else inputs.dtype}."
            )
        if inputs.dim() == 0 or inputs.shape[0] == 0:
            raise ValueError(f"inputs must be a non-empty batch (N, ...), got shape {tuple(inputs.shape)}.")
        if not isinstance(labels, Tensor) or labels.dim() == 0 or labels.shape[0] != inputs.shape[0]:
            got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(
                f"labels must be a tensor with one row per example ({inputs.shape[0]}), "
                f"got {got}."
            )
        if self.weight == 0.0:
            output = self.model(inputs)
            _check_output(output, inputs.shape[0])
            task = self.loss_fn(output, labels)
            zero = torch.zeros((), dtype=task.dtype, device=task.device)
            return PriorLoss(task, task, zero, output.detach(), None)
        select = _make_selector(self.target, labels, inputs.shape[0])
        output, attributions = self.method.forward_and_attribute(self.model, inputs, select)
        task = self.loss_fn(output, labels)
        prior = self.prior(attributions, *prior_args, **prior_kwargs)
        if not isinstance(prior, Tensor) or prior.numel() != 1:
            raise ValueError(
                "the prior must return a scalar tensor, got "
                f"{tuple(prior.shape) if isinstance(prior, Tensor) else type(prior).__name__}."
            )
        prior = prior.reshape(())
        loss = task + self.weight * prior.to(task.dtype)
        return PriorLoss(loss, task, prior, output.detach(), attributions.detach())
