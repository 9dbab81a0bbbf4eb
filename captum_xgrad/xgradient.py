r"""X-Gradient: exact Integrated Gradients in one forward and one backward pass.

:class:`XGradient` implements Hesse, Schaub-Meyer and Roth, "Fast Axiomatic Attribution for
Neural Networks" (NeurIPS 2021); the derivation is on the Theory page.
"""

from __future__ import annotations

import typing
from typing import Any, Callable, List, Literal, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ._core.compat import (
    BaselineType, GradientAttribution, TargetType, TensorOrTupleOfTensorsGeneric,
    _expand_additional_forward_args, _expand_target, _format_additional_forward_args,
    _format_input_baseline, _format_output, _is_tuple, captum_method,
)
from ._core.autograd import (
    batched_target_gradients, chunks, gradient_and_output, output_at_baseline,
    per_example_sum, per_example_target_sum, resolve_targets, run_forward,
)
from ._core.state import preserve_model_state
from ._core.validate import (
    baseline_tensors, check_finite_output, expand_resolved_target, require_differentiable,
    select_output, validate_degree, validate_ig_arguments, validate_inputs,
    validate_target_batch_size, validate_target_shape, validate_targets_argument,
)
from ._core.guard import HomogeneityGuard
from .homogeneity.degree import estimate_degree as _estimate_degree

__all__ = ["XGradient", "CheckMode", "estimate_degree"]

#: The ``check`` modes of :class:`XGradient`: ``"off"``, ``"static"`` (default),
#: ``"warn"``, ``"raise"``.
CheckMode = Literal["off", "static", "warn", "raise"]
_CHECK_MODES = ("off", "static", "warn", "raise")


def _validate_constructor(forward_func: Any, check: Any) -> None:
    """Raise for a ``forward_func`` that is not callable or an unknown ``check`` mode."""
    if not callable(forward_func):
        raise TypeError(
            f"forward_func must be callable (a model or a function), got "
            f"{type(forward_func).__name__}."
        )
    if check not in _CHECK_MODES:
        raise ValueError(f"check must be one of {_CHECK_MODES}, got {check!r}.")


def _attribution(
    x: Tensor,
    grad: Tensor,
    scale: float,
    multiply: bool,
    create_graph: bool,
    offset: Optional[Tensor] = None,
) -> Tensor:
    """``scale * (x - offset) * grad`` (``scale * grad`` without ``multiply``), detached
    unless ``create_graph``; then always a new tensor (autograd's own may be shared or expanded).
    """
    with torch.set_grad_enabled(create_graph):
        if not create_graph:
            x, grad = x.detach(), grad.detach()
        if not multiply:
            return grad if create_graph and scale == 1.0 else grad * scale
        a = torch.mul(x if offset is None else x - offset, grad)
        if scale == 1.0:
            return a
        return a * scale if create_graph else a.mul_(scale)


def _delta(attributions: Sequence[Tensor], f_x: Tensor, f_b: Tensor) -> Tensor:
    r""":math:`\sum \mathrm{attr} - (f(x) - f(b))` per example (and target, for ``(N, T)``)."""
    with torch.no_grad():
        detached = [a.detach() for a in attributions]
        total = per_example_target_sum(detached) if f_x.dim() == 2 else per_example_sum(detached)
        return total - (f_x - f_b)


class XGradient(GradientAttribution):
    r"""Integrated Gradients with the zero baseline, exact and in one backward pass.

    If :math:`f` is nonnegatively homogeneous of degree :math:`k`,
    :math:`f(\alpha x) = \alpha^k f(x)` for :math:`\alpha \ge 0`, then
    :math:`\nabla f(\alpha x) = \alpha^{k-1} \nabla f(x)`, and Integrated Gradients with the
    zero baseline has the closed form

    .. math::

        \mathrm{IG}(x) = x \odot \int_0^1 \nabla f(\alpha x)\,d\alpha
        = \frac{1}{k}\, x \odot \nabla_x f(x),

    which sums to :math:`f(x) - f(0)` (Euler's theorem). ``XGradient`` computes it in one
    forward and one backward pass as a drop-in for :class:`captum.attr.IntegratedGradients`
    (same arguments and results; it works with NoiseTunnel, captum.metrics and visualization).
    Bias-free ReLU networks (X-DNNs, see :func:`captum_xgrad.make_x_dnn`) have :math:`k = 1`.

    Parameters
    ----------
    forward_func : callable
        The model, or a function of the inputs returning a tensor with the batch first.
    multiply_by_inputs : bool, default True
        ``False``: return :math:`\nabla f(x)/k`, as ``IntegratedGradients`` does.
    degree : float or "auto", default 1
        :math:`k`. ``"auto"`` estimates it on every call from :math:`f(x/2)` and :math:`f(2x)`
        (one extra forward pass) and keeps it in :attr:`last_degree`.
    check : {"static", "off", "warn", "raise"}, default "static"
        ``"static"``: prove homogeneity from the traced graph once per model state, else warn
        (:class:`~captum_xgrad.NonHomogeneousWarning`); ``"warn"``/``"raise"``: also test it
        (:func:`~captum_xgrad.check_homogeneity`) once per input shape, and warn or raise
        :class:`~captum_xgrad.NonHomogeneousError`; ``"off"``: no check.

    Raises
    ------
    TypeError
        If ``forward_func`` is not callable.
    ValueError
        If ``degree`` is not a positive number or ``"auto"``, or ``check`` is unknown.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad import XGradient
    >>> model = nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(),
    ...                       nn.Linear(8, 3, bias=False)).eval()
    >>> x = torch.randn(2, 4)
    >>> attr, delta = XGradient(model).attribute(x, target=1, return_convergence_delta=True)
    >>> attr.shape
    torch.Size([2, 4])
    >>> torch.allclose(attr.sum(dim=1), model(x)[:, 1], atol=1e-6)  # completeness
    True
    >>> bool(delta.abs().max() < 1e-5)
    True
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        multiply_by_inputs: bool = True,
        degree: Union[float, Literal["auto"]] = 1,
        check: CheckMode = "static",
    ) -> None:
        _validate_constructor(forward_func, check)
        GradientAttribution.__init__(self, forward_func)
        self._multiply_by_inputs = bool(multiply_by_inputs)
        self.degree: Union[float, str] = validate_degree(degree, allow_auto=True)
        self.check: CheckMode = check
        self.last_degree: Optional[float] = None
        self._guard = HomogeneityGuard(check, "XGradient")

    @property
    def _checked_shapes(self) -> list:
        """The cached empirical verdicts of ``check="warn"``/``"raise"`` (bounded)."""
        return self._guard.checked_shapes

    @property
    def multiplies_by_inputs(self) -> bool:
        """Whether attributions are multiplied by the inputs (global attribution)."""
        return self._multiply_by_inputs

    def has_convergence_delta(self) -> bool:
        """Always ``True``, as for IntegratedGradients."""
        return True

    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: Union[None, int] = None,
        *,
        return_convergence_delta: Literal[True],
        create_graph: bool = False,
    ) -> Tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: Union[None, int] = None,
        return_convergence_delta: Literal[False] = False,
        *,
        create_graph: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @captum_method
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: Union[None, int] = None,
        return_convergence_delta: bool = False,
        *,
        create_graph: bool = False,
    ) -> Union[TensorOrTupleOfTensorsGeneric, Tuple[TensorOrTupleOfTensorsGeneric, Tensor]]:
        r"""Attribute ``target`` to ``inputs``: :math:`\frac{1}{k}\, (x - b) \odot \nabla_x f(x)`.

        Arguments and results as for :meth:`captum.attr.IntegratedGradients.attribute`, plus the
        keyword-only ``create_graph``. With :math:`b = 0` this is IG exactly (see
        :class:`XGradient`). A baseline :math:`b \ne 0` is exact where the model is homogeneous
        about it, :math:`f(b) = 0` and :math:`f(b + \alpha (x - b)) = \alpha^k f(x)` (e.g. the
        mean of a normalising first layer); the ``check`` guard proves this or refuses :math:`b`.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Input(s), batch first; a tuple for several inputs (the result is then a tuple).
        baselines : None, scalar, Tensor or tuple of these, optional
            :math:`b` per input (``None`` or 0: zero). One the model is not proved homogeneous
            about (any, with ``check="off"``) raises :class:`ValueError`.
        target : int, tuple, list, Tensor or None, optional
            As in Captum: a class index, a tuple for multi-dimensional outputs, one index per
            example (list or 1-D tensor), or ``None`` for a model with one output per example.
        additional_forward_args : Any, optional
            Extra, non-attributed arguments for ``forward_func`` (chunked with the inputs).
        n_steps, method : int, str
            Validated as in Captum and ignored: X-Gradient returns the IG integral itself.
        internal_batch_size : int, optional
            Examples per forward and backward pass, to bound memory; the result is the same.
        return_convergence_delta : bool, default False
            Also return :math:`\sum_i \mathrm{attr}_i - (f(x) - f(b))` per example (~0 on a
            homogeneous model; one extra forward pass).
        create_graph : bool, default False
            Keyword-only. Keep the attributions differentiable w.r.t. the parameters (and inputs
            that require grad), e.g. for attribution priors; else they are detached.

        Returns
        -------
        attributions : Tensor or tuple of Tensor
            Same structure, shapes and dtypes as ``inputs``.
        delta : Tensor, optional
            Shape ``(N,)``, only with ``return_convergence_delta=True``.

        Raises
        ------
        ValueError
            For a refused baseline, an invalid target, several outputs per example and no
            target, NaN/Inf inputs or outputs, invalid ``n_steps``/``method``/
            ``internal_batch_size``, or (``degree="auto"``) no consistent degree
            (:class:`~captum_xgrad.NonHomogeneousError`).
        TypeError
            For non-tensor or integer-typed inputs, or a non-integer target tensor.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> from captum.attr import IntegratedGradients
        >>> from captum_xgrad import XGradient
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                       nn.Linear(4, 2, bias=False)).eval()
        >>> x = torch.rand(3, 1, 8, 8)
        >>> xg = XGradient(model).attribute(x, target=[0, 1, 1])
        >>> ig = IntegratedGradients(model).attribute(x, target=[0, 1, 1], n_steps=64)
        >>> torch.allclose(xg, ig, rtol=1e-4, atol=1e-6)
        True
        """
        is_inputs_tuple = _is_tuple(inputs)
        formatted_inputs, formatted_baselines = _format_input_baseline(inputs, baselines)
        num_examples = validate_inputs(formatted_inputs)
        offsets = baseline_tensors(formatted_baselines, formatted_inputs)
        validate_ig_arguments(n_steps, method, internal_batch_size)
        validate_target_shape(target, num_examples)
        additional_forward_args = _format_additional_forward_args(additional_forward_args)
        nonzero = [i for i, b in enumerate(offsets) if b is not None]
        if self.check == "off" and nonzero:
            raise ValueError(
                f"XGradient(check='off') got a non-zero baseline for input #{nonzero[0]}. "
                "X-Gradient is exact for a baseline only where the model is "
                "homogeneous about it, which check='off' does not verify: use the "
                "default check='static' (it proves or refutes it), or "
                "captum.attr.IntegratedGradients for an arbitrary baseline."
            )
        with preserve_model_state(self.forward_func):
            proved = self._guard.verify(
                self.forward_func, formatted_inputs, additional_forward_args, target,
                self.degree, baselines=formatted_baselines if baselines is not None else None,
            )
            if proved is None and self.degree == "auto" and nonzero:
                raise ValueError(
                    "XGradient: degree='auto' with a non-zero baseline needs a proof of "
                    "homogeneity about it (certify_homogeneity could not give one); pass "
                    "degree=<k> explicitly."
                )
            used_chunks, grads_chunks, outputs = [], [], []
            for chunk_inputs, chunk_args, chunk_target in chunks(
                formatted_inputs, additional_forward_args, target, num_examples,
                internal_batch_size,
            ):
                used, grads, selected = gradient_and_output(
                    self.forward_func, chunk_inputs, chunk_target, chunk_args, create_graph
                )
                check_finite_output(selected, "outputs")
                used_chunks.append(used)
                grads_chunks.append(grads)
                outputs.append(selected.detach())
            f_x = torch.cat(outputs)
            degree = self._resolve_degree(
                proved, formatted_inputs, additional_forward_args, target, f_x,
                internal_batch_size,
            )
            attributions = self._combine(used_chunks, grads_chunks, degree, create_graph, offsets)
            for a in attributions:
                check_finite_output(a, "gradients")
            result = _format_output(is_inputs_tuple, attributions)
            if not return_convergence_delta:
                return result
            f_b = output_at_baseline(
                self.forward_func, formatted_inputs, offsets, additional_forward_args,
                target, internal_batch_size,
            )
        return result, _delta(attributions, f_x, f_b)

    @captum_method
    def attribute_targets(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        targets: Optional[Sequence[Union[int, Tuple[int, ...]]]] = None,
        additional_forward_args: Optional[object] = None,
        *,
        target_batch_size: Optional[int] = None,
        return_convergence_delta: bool = False,
        create_graph: bool = False,
    ) -> Union[TensorOrTupleOfTensorsGeneric, Tuple[TensorOrTupleOfTensorsGeneric, Tensor]]:
        r"""Attribute many targets at once: one forward pass, batched backward passes.

        Entry ``[:, t]`` of the result equals ``attribute(inputs, target=targets[t])``: rows of
        the Jacobian scaled by :math:`x/k`, from vector-Jacobian products batched over targets
        (``is_grads_batched=True``; a loop with one :class:`RuntimeWarning` where an op has no
        batching rule). The guard checks every output; ``degree="auto"`` uses the first target.

        Parameters
        ----------
        inputs, additional_forward_args
            As for :meth:`attribute`.
        targets : sequence of int or tuple, or None, optional
            The T targets, each for every example: class indices (negative from the end) or
            index tuples for multi-dimensional outputs, in a list, tuple, ``range`` or integer
            tensor (1-D, or 2-D with a row per target); a single multi-dimensional target is
            ``[(i, j)]``. ``None``: every output, in row-major order.
        target_batch_size : int, optional
            Keyword-only. Targets per batched backward pass (default ``min(T, 64)``); it bounds
            memory and does not change the result.
        return_convergence_delta : bool, default False
            Keyword-only. Also return :math:`\sum_i \mathrm{attr}_i - (f_t(x) - f_t(0))`, shape
            ``(N, T)`` (one extra forward pass).
        create_graph : bool, default False
            Keyword-only. As for :meth:`attribute`.

        Returns
        -------
        attributions : Tensor or tuple of Tensor
            Shape ``(N, T, *S)`` for each input of shape ``(N, *S)``.
        delta : Tensor, optional
            Shape ``(N, T)``, only with ``return_convergence_delta=True``.

        Raises
        ------
        ValueError
            For empty ``targets``, a target out of range or with the wrong number of indices,
            targets for a model with one output per example, a bad ``target_batch_size``,
            NaN/Inf inputs or outputs, or (``degree="auto"``) no consistent degree.
        TypeError
            For non-tensor or integer-typed inputs, a single int as ``targets``, or a target
            that is neither an int nor a tuple of ints.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> from captum_xgrad import XGradient
        >>> model = nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(),
        ...                       nn.Linear(8, 3, bias=False)).eval()
        >>> x = torch.randn(2, 4)
        >>> xg = XGradient(model)
        >>> maps = xg.attribute_targets(x)              # every class: T = 3
        >>> torch.allclose(maps[:, 1], xg.attribute(x, target=1), atol=1e-6)
        True
        >>> maps, delta = xg.attribute_targets(x, [2, 0], return_convergence_delta=True)
        >>> maps.shape, delta.shape
        (torch.Size([2, 2, 4]), torch.Size([2, 2]))
        """
        is_inputs_tuple = _is_tuple(inputs)
        formatted_inputs, _ = _format_input_baseline(inputs, None)
        num_examples = validate_inputs(formatted_inputs)
        target_list = validate_targets_argument(targets)
        validate_target_batch_size(target_batch_size)
        additional_forward_args = _format_additional_forward_args(additional_forward_args)
        with preserve_model_state(self.forward_func):
            proved = self._guard.verify(
                self.forward_func, formatted_inputs, additional_forward_args, None, self.degree
            )
            used = tuple(
                x if x.requires_grad else x.detach().requires_grad_(True)
                for x in formatted_inputs
            )
            with torch.enable_grad():
                output = run_forward(self.forward_func, used, additional_forward_args)
                selected, resolved = resolve_targets(output, target_list, num_examples)
                require_differentiable(selected)
                check_finite_output(selected, "outputs")
                f_x = selected.detach()
                # the degree first, so that each chunk of gradients becomes attributions
                # at once (one chunk of raw gradients alive at a time)
                scale = 1.0 / self._resolve_degree(
                    proved, formatted_inputs, additional_forward_args,
                    expand_resolved_target(resolved[0]), f_x[:, 0], None,
                )
                attributions = batched_target_gradients(
                    selected, used, target_batch_size, create_graph,
                    warn_name="XGradient.attribute_targets",
                    transform=lambda i, g: _attribution(
                        used[i].unsqueeze(1), g, scale, self._multiply_by_inputs, create_graph
                    ),
                )
            del output
            for a in attributions:
                check_finite_output(a, "gradients")
            result = _format_output(is_inputs_tuple, tuple(attributions))
            if not return_convergence_delta:
                return result
            f_0 = output_at_baseline(
                self.forward_func, formatted_inputs, None, additional_forward_args, None,
                targets=target_list, many_targets=True,
            )
        return result, _delta(attributions, f_x, f_0)

    def attribute_future(self) -> None:
        """Not supported (as for IntegratedGradients)."""
        raise NotImplementedError("attribute_future is not implemented for XGradient")

    def _combine(
        self,
        used_chunks: List[Tuple[Tensor, ...]],
        grads_chunks: List[Tuple[Tensor, ...]],
        degree: float,
        create_graph: bool,
        offsets: Optional[Sequence[Optional[Tensor]]] = None,
    ) -> Tuple[Tensor, ...]:
        """The attributions of every chunk, concatenated: one tensor per input."""
        results = []
        with torch.set_grad_enabled(create_graph):
            for i in range(len(used_chunks[0])):
                b = offsets[i] if offsets else None
                parts, start = [], 0
                for used, grads in zip(used_chunks, grads_chunks):
                    n = used[i].shape[0]
                    offset = b if b is None or b.shape[0] == 1 else b[start : start + n]
                    start += n
                    parts.append(_attribution(
                        used[i], grads[i], 1.0 / degree, self._multiply_by_inputs,
                        create_graph, offset,
                    ))
                results.append(parts[0] if len(parts) == 1 else torch.cat(parts))
        return tuple(results)

    def _resolve_degree(
        self,
        proved: Optional[float],
        inputs: Tuple[Tensor, ...],
        additional_forward_args: Optional[Tuple[Any, ...]],
        target: TargetType,
        f_x: Tensor,
        internal_batch_size: Optional[int],
    ) -> float:
        """The proved or given degree, or (``"auto"``) one estimated from f(x/2) and f(2x)."""
        if proved is not None or self.degree != "auto":
            self.last_degree = float(proved if proved is not None else self.degree)
            return self.last_degree
        halves, doubles = [], []
        with torch.no_grad():
            for chunk_inputs, chunk_args, chunk_target in chunks(
                inputs, additional_forward_args, target, inputs[0].shape[0],
                internal_batch_size,
            ):
                n = chunk_inputs[0].shape[0]
                scaled = tuple(torch.cat([0.5 * x, 2.0 * x]) for x in chunk_inputs)
                if chunk_args is not None:
                    chunk_args = _expand_additional_forward_args(chunk_args, 2)
                out = run_forward(self.forward_func, scaled, chunk_args)
                sel = select_output(out, _expand_target(chunk_target, 2), 2 * n)
                halves.append(sel[:n])
                doubles.append(sel[n:])
        self.last_degree = estimate_degree(f_x, torch.cat(halves), torch.cat(doubles))
        return self.last_degree


def estimate_degree(
    f_x: Tensor, f_half: Tensor, f_double: Tensor, rtol: Optional[float] = None
) -> float:
    r"""Estimate :math:`k = \log_2 (f(2x)/f(x)) = \log_2 (f(x)/f(x/2))`; all estimates must agree.

    Parameters
    ----------
    f_x, f_half, f_double : Tensor
        Model outputs at :math:`x`, :math:`x/2` and :math:`2x`, one value per example.
    rtol : float, optional
        Allowed spread of the estimates (default ``1e-3`` for float32, ``1e-6`` for float64,
        ``2e-2`` for half precision).

    Returns
    -------
    float
        The degree, rounded to the nearest integer when within ``rtol`` of it.

    Raises
    ------
    NonHomogeneousError
        If the outputs are all ~0, change sign under scaling, or the estimates disagree.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.xgradient import estimate_degree
    >>> f = lambda x: (x ** 2).sum(1)          # homogeneous of degree 2
    >>> x = torch.rand(4, 3) + 0.1
    >>> estimate_degree(f(x), f(x / 2), f(2 * x))
    2.0
    """
    return _estimate_degree(f_x, (f_half, f_double), (0.5, 2.0), rtol)
