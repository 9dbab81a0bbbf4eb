r"""X-Gradient: Integrated Gradients in one forward and one backward pass.

A function :math:`f` is *nonnegatively homogeneous of degree* :math:`k` if
:math:`f(\alpha x) = \alpha^k f(x)` for every :math:`\alpha \ge 0`. Differentiating
in :math:`x` gives :math:`\nabla f(\alpha x) = \alpha^{k-1} \nabla f(x)`, so Integrated
Gradients with the zero baseline has a closed form:

.. math::

    \mathrm{IG}_i(x) = x_i \int_0^1 \frac{\partial f(\alpha x)}{\partial x_i}\,d\alpha
                     = x_i \frac{\partial f(x)}{\partial x_i} \int_0^1 \alpha^{k-1}\,d\alpha
                     = \frac{1}{k}\, x_i \frac{\partial f(x)}{\partial x_i}.

This is the *X-Gradient* of Hesse, Schaub-Meyer and Roth, "Fast Axiomatic Attribution
for Neural Networks" (NeurIPS 2021). Completeness follows from Euler's theorem for
homogeneous functions, :math:`\sum_i x_i\,\partial_i f(x) = k f(x)`, so the
attributions sum to :math:`f(x) = f(x) - f(0)`.
"""

from __future__ import annotations

import typing
from typing import Any, Callable, List, Literal, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ._core.compat import (
    BaselineType,
    GradientAttribution,
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    _expand_additional_forward_args,
    _expand_target,
    _format_additional_forward_args,
    _format_input_baseline,
    _format_output,
    _is_tuple,
    captum_method,
)
from ._core.autograd import (
    batched_target_gradients,
    chunks,
    gradient_and_output,
    output_at_baseline,
    per_example_sum,
    per_example_target_sum,
    resolve_targets,
    run_forward,
)
from ._core.state import preserve_model_state
from ._core.validate import (
    baseline_tensors,
    check_finite_output,
    expand_resolved_target,
    require_differentiable,
    select_output,
    validate_degree,
    validate_ig_arguments,
    validate_inputs,
    validate_target_batch_size,
    validate_target_shape,
    validate_targets_argument,
)
from ._core.guard import HomogeneityGuard
from .homogeneity.degree import estimate_degree as _estimate_degree

__all__ = ["XGradient", "CheckMode", "estimate_degree"]

#: The ``check`` modes of :class:`XGradient`: ``"off"``, ``"static"`` (default),
#: ``"warn"``, ``"raise"``.
CheckMode = Literal["off", "static", "warn", "raise"]
_CHECK_MODES = ("off", "static", "warn", "raise")


class XGradient(GradientAttribution):
    r"""Integrated Gradients with the zero baseline, exact and in one backward pass.

    For a model :math:`f` that is nonnegatively homogeneous of degree :math:`k`
    (:math:`f(\alpha x) = \alpha^k f(x)` for :math:`\alpha \ge 0`), the attribution

    .. math::

        \text{X-Gradient}(x) = \frac{1}{k}\, x \odot \nabla_x f(x)

    equals :class:`captum.attr.IntegratedGradients` with ``baselines=0`` exactly (the
    IG path integral has this closed form, see :mod:`captum_xgrad.xgradient`), at the
    cost of one forward and one backward pass instead of ``n_steps`` of each. ReLU or
    LeakyReLU networks made of bias-free Linear/Conv layers, max/average pooling,
    residual additions and shift-free eval-mode BatchNorm are homogeneous of degree 1
    ("X-DNNs", see :func:`captum_xgrad.make_x_dnn`); a product of two such branches has
    degree 2.

    ``XGradient`` is a drop-in replacement for ``IntegratedGradients``: the constructor
    and :meth:`attribute` take the same arguments and return the same structures, and
    it works inside :class:`captum.attr.NoiseTunnel`, with :mod:`captum.metrics` and
    with :mod:`captum.attr.visualization`.

    Parameters
    ----------
    forward_func : callable
        The model, or any function of the inputs that returns a tensor whose first
        dimension is the batch (as for Captum).
    multiply_by_inputs : bool, default True
        If ``True`` return the (global) attribution :math:`x \odot \nabla f(x)/k`; if
        ``False`` return the path-averaged gradient :math:`\nabla f(x)/k`, which is
        what ``IntegratedGradients(..., multiply_by_inputs=False)`` returns.
    degree : float or "auto", default 1
        The homogeneity degree :math:`k`. ``"auto"`` estimates it on every call from
        :math:`f(\alpha x) = \alpha^k f(x)` at :math:`\alpha \in \{1/2, 2\}` (one extra
        forward pass on a batch twice the size) and raises
        :class:`~captum_xgrad.NonHomogeneousError` if the estimates disagree across
        scales and outputs. The last estimate is kept in :attr:`last_degree`.
    check : {"static", "off", "warn", "raise"}, default "static"
        How much to verify that the model is homogeneous. ``"static"`` scans the
        model's modules once (no forward pass) for biases, shifted normalisation and
        non-homogeneous activations and warns once with
        :class:`~captum_xgrad.NonHomogeneousWarning`. ``"warn"`` and ``"raise"`` run
        :func:`~captum_xgrad.check_homogeneity` empirically, once per input shape, and
        warn or raise :class:`~captum_xgrad.NonHomogeneousError`; the verdict is cached.
        ``"off"`` checks nothing.

    Raises
    ------
    TypeError
        If ``forward_func`` is not callable.
    ValueError
        If ``degree`` is not a positive number or ``"auto"``, or ``check`` is not one
        of the four modes.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad import XGradient
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(),
    ...                       nn.Linear(8, 3, bias=False)).eval()
    >>> x = torch.randn(2, 4)
    >>> attr, delta = XGradient(model).attribute(x, target=1,
    ...                                          return_convergence_delta=True)
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
        if not callable(forward_func):
            raise TypeError(
                f"forward_func must be callable (a model or a function), got "
                f"{type(forward_func).__name__}."
            )
        if check not in _CHECK_MODES:
            raise ValueError(f"check must be one of {_CHECK_MODES}, got {check!r}.")
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

    # ------------------------------------------------------------------ captum API
    @property
    def multiplies_by_inputs(self) -> bool:
        """Whether attributions are multiplied by the inputs (global attribution)."""
        return self._multiply_by_inputs

    def has_convergence_delta(self) -> bool:
        """X-Gradient, like IG, can report its completeness error (always ``True``)."""
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
    ) -> Union[
        TensorOrTupleOfTensorsGeneric, Tuple[TensorOrTupleOfTensorsGeneric, Tensor]
    ]:
        r"""Attribute ``target`` to ``inputs``: :math:`\frac{1}{k}\, x \odot \nabla_x f(x)`.

        The signature and return conventions are those of
        :meth:`captum.attr.IntegratedGradients.attribute`, plus the keyword-only
        ``create_graph``.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Input(s) to attribute, each with the batch as first dimension. A tuple
            means a model with several inputs; the result then is a tuple too.
        baselines : None, 0, 0.0, zero tensor, or tuple of these, optional
            Only the zero baseline is supported, because only there does the IG
            integral have the closed form above. Any non-zero baseline raises a
            :class:`ValueError` that points to ``IntegratedGradients``.
        target : int, tuple, list, Tensor or None, optional
            Which output to explain, exactly as in Captum: an int class index for all
            examples; a tuple for multi-dimensional outputs; a list or 1-D tensor with
            one index per example; ``None`` for models with one output per example.
        additional_forward_args : Any, optional
            Extra arguments passed to ``forward_func`` after the inputs and not
            attributed (tensors with a batch dimension are split with the inputs when
            ``internal_batch_size`` is set).
        n_steps : int, default 50
            Accepted for compatibility and ignored: on a homogeneous model every
            quadrature of the IG integral that is exact for :math:`\alpha^{k-1}`
            (Gauss-Legendre, midpoint) returns the closed form for any ``n_steps``.
            X-Gradient returns the integral itself, which is also the limit of the
            Riemann rules that sample the kink at :math:`\alpha = 0`.
        method : str, default "gausslegendre"
            Accepted for compatibility (validated as in Captum) and ignored, as above.
        internal_batch_size : int, optional
            If given, the batch is processed in chunks of this many examples, one
            forward and backward pass each, to bound peak memory. The result does not
            depend on it.
        return_convergence_delta : bool, default False
            If ``True`` also return, per example,
            :math:`\delta = \sum_i \mathrm{attr}_i - (f(x) - f(0))`. It is ~0 on a
            homogeneous model and large otherwise, so it doubles as an exactness check.
            Costs one extra forward pass (for :math:`f(0)`; :math:`f(x)` is reused).
        create_graph : bool, default False
            Keyword-only. If ``True`` the attributions stay differentiable with respect
            to the model's parameters (and to inputs that require grad), e.g. for
            attribution priors in training; otherwise they are detached and no graph is
            kept alive.

        Returns
        -------
        attributions : Tensor or tuple of Tensor
            Same structure, shapes and dtypes as ``inputs``.
        delta : Tensor, optional
            Shape ``(N,)``, returned only if ``return_convergence_delta=True``.

        Raises
        ------
        ValueError
            For a non-zero baseline, an invalid or out-of-range target, a model output
            that has several values per example and no target, NaN/Inf inputs or
            outputs, invalid ``n_steps``/``method``/``internal_batch_size``, or (with
            ``degree="auto"``) a model with no consistent homogeneity degree, which is
            raised as :class:`~captum_xgrad.NonHomogeneousError`.
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
        explicit = baselines is not None
        if self.check == "off":
            for i, b in enumerate(offsets):
                if b is not None:
                    raise ValueError(
                        f"XGradient(check='off') got a non-zero baseline for input #{i}. "
                        "X-Gradient is exact for a baseline only where the model is "
                        "homogeneous about it, which check='off' does not verify: use the "
                        "default check='static' (it proves or refutes it), or "
                        "captum.attr.IntegratedGradients for an arbitrary baseline."
                    )

        with preserve_model_state(self.forward_func):
            proved = self._guard.verify(
                self.forward_func, formatted_inputs, additional_forward_args, target,
                self.degree, baselines=formatted_baselines if explicit else None,
            )
            if proved is None and self.degree == "auto" and any(o is not None for o in offsets):
                raise ValueError(
                    "XGradient: degree='auto' with a non-zero baseline needs a proof of "
                    "homogeneity about it (certify_homogeneity could not give one); pass "
                    "degree=<k> explicitly."
                )
            grads_chunks: List[Tuple[Tensor, ...]] = []
            used_chunks: List[Tuple[Tensor, ...]] = []
            outputs: List[Tensor] = []
            for chunk_inputs, chunk_args, chunk_target in chunks(
                formatted_inputs,
                additional_forward_args,
                target,
                num_examples,
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

            if proved is not None:
                degree = proved
                self.last_degree = degree
            else:
                degree = self._resolve_degree(
                    formatted_inputs, additional_forward_args, target, f_x, internal_batch_size
                )
            attributions = self._combine(used_chunks, grads_chunks, degree, create_graph, offsets)
            for a in attributions:
                check_finite_output(a, "gradients")

            if return_convergence_delta:
                f_b = output_at_baseline(
                    self.forward_func, formatted_inputs, offsets, additional_forward_args,
                    target, internal_batch_size,
                )
                with torch.no_grad():
                    delta = per_example_sum([a.detach() for a in attributions]) - (f_x - f_b)
                return _format_output(is_inputs_tuple, attributions), delta
        return _format_output(is_inputs_tuple, attributions)

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
    ) -> Union[
        TensorOrTupleOfTensorsGeneric, Tuple[TensorOrTupleOfTensorsGeneric, Tensor]
    ]:
        r"""Attribute many targets at once: one forward pass, batched backward passes.

        The result for target :math:`t` equals ``attribute(inputs, target=t)``; all
        of them come from a single forward pass. The attribution maps are the rows of
        the Jacobian of the selected outputs, scaled by :math:`x/k`, and are computed
        with vector-Jacobian products batched over the targets
        (``torch.autograd.grad(..., is_grads_batched=True)``), ``target_batch_size``
        targets per backward pass. Where an op of the model has no batching rule, the
        remaining targets are done in a loop of ordinary backward passes (same result,
        one :class:`RuntimeWarning`).

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Input(s) to attribute, batch first, as for :meth:`attribute`.
        targets : sequence of int or tuple, or None, optional
            The T targets, each in Captum's per-call form and applied to every example:
            an int class index (negative indices count from the end, as in
            :meth:`attribute`), or a tuple of indices for a multi-dimensional output. A
            list, tuple, ``range`` or integer tensor (1-D of class indices, or 2-D with
            one row per target). Note that a tuple of ints is read as several int
            targets; a single multi-dimensional target is ``[(i, j)]``. ``None``
            (default): every output of the model, in row-major order (for a model
            with one output per example, that one output, T = 1).
        additional_forward_args : Any, optional
            Extra arguments passed to ``forward_func`` after the inputs, not attributed.
        target_batch_size : int, optional
            Keyword-only. Targets per batched backward pass. A batched backward of B
            targets holds about B times the gradient memory of one backward pass, so
            this bounds peak memory. ``None`` (default): chunks of
            ``min(T, 64)`` targets. The result does not depend on it.
        return_convergence_delta : bool, default False
            Keyword-only. Also return, per example and target,
            :math:`\delta = \sum_i \mathrm{attr}_i - (f_t(x) - f_t(0))`, shape
            ``(N, T)``. Costs one extra forward pass (for :math:`f(0)`).
        create_graph : bool, default False
            Keyword-only. Keep the attributions differentiable with respect to the
            model's parameters (and to inputs that require grad).

        Returns
        -------
        attributions : Tensor or tuple of Tensor
            For each input of shape ``(N, *S)``, a tensor of shape ``(N, T, *S)``;
            ``attributions[:, t]`` is the attribution of target ``t``. A tuple for
            tuple inputs.
        delta : Tensor, optional
            Shape ``(N, T)``, returned only if ``return_convergence_delta=True``.

        Raises
        ------
        ValueError
            For an empty ``targets``, a target out of range or with the wrong number of
            indices for the model output, targets given for a model with one output
            per example, ``target_batch_size`` not a positive integer, NaN/Inf inputs
            or outputs, or (with ``degree="auto"``) a model with no consistent degree
            (:class:`~captum_xgrad.NonHomogeneousError`).
        TypeError
            For non-tensor or integer-typed inputs, a single int as ``targets``, or a
            target that is neither an int nor a tuple of ints.

        Notes
        -----
        The homogeneity guard (``check``) runs as for :meth:`attribute`, on every
        output of the model. With ``degree="auto"`` the degree is estimated from the
        first target. Train-mode normalisation statistics are left unchanged.

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
        >>> maps.shape
        torch.Size([2, 3, 4])
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
                if proved is not None:
                    degree = proved
                    self.last_degree = degree
                else:
                    degree = self._resolve_degree(
                        formatted_inputs, additional_forward_args,
                        expand_resolved_target(resolved[0]), f_x[:, 0], None,
                    )
                scale = 1.0 / degree

                def to_attribution(i: int, g: Tensor) -> Tensor:
                    with torch.set_grad_enabled(create_graph):
                        x = used[i] if create_graph else used[i].detach()
                        if not create_graph:
                            g = g.detach()
                        a = x.unsqueeze(1) * g if self._multiply_by_inputs else g
                        return a * scale if scale != 1.0 else a

                attributions = batched_target_gradients(
                    selected, used, target_batch_size, create_graph,
                    warn_name="XGradient.attribute_targets", transform=to_attribution,
                )
            del output
            for a in attributions:
                check_finite_output(a, "gradients")

            if return_convergence_delta:
                f_0 = output_at_baseline(
                    self.forward_func, formatted_inputs, None, additional_forward_args,
                    None, targets=target_list, many_targets=True,
                )
                with torch.no_grad():
                    delta = per_example_target_sum([a.detach() for a in attributions]) - (
                        f_x - f_0
                    )
                return _format_output(is_inputs_tuple, tuple(attributions)), delta
        return _format_output(is_inputs_tuple, tuple(attributions))

    def attribute_future(self) -> None:
        """Not supported (as for IntegratedGradients)."""
        raise NotImplementedError("attribute_future is not implemented for XGradient")

    # ------------------------------------------------------------------- internals
    def _combine(
        self,
        used_chunks: List[Tuple[Tensor, ...]],
        grads_chunks: List[Tuple[Tensor, ...]],
        degree: float,
        create_graph: bool,
        offsets: Optional[Sequence[Optional[Tensor]]] = None,
    ) -> Tuple[Tensor, ...]:
        scale = 1.0 / degree
        results = []
        with torch.set_grad_enabled(create_graph):
            for i in range(len(used_chunks[0])):
                parts = []
                start = 0
                for used, grads in zip(used_chunks, grads_chunks):
                    n = used[i].shape[0]
                    b = _slice_baseline(offsets[i] if offsets else None, start, start + n)
                    start += n
                    if create_graph:
                        g = grads[i]
                        x = used[i] if b is None else used[i] - b
                        a = x * g if self._multiply_by_inputs else g
                        parts.append(a * scale if scale != 1.0 else a)
                        continue
                    # no graph: one new tensor, scaled in place. (Never write into the
                    # gradient itself: autograd may return one tensor for two inputs,
                    # or an expanded view.)
                    g = grads[i].detach()
                    if self._multiply_by_inputs:
                        x = used[i].detach() if b is None else used[i].detach() - b
                        a = torch.mul(x, g)
                        parts.append(a.mul_(scale) if scale != 1.0 else a)
                    else:
                        parts.append(g * scale)
                results.append(parts[0] if len(parts) == 1 else torch.cat(parts))
        return tuple(results)

    def _resolve_degree(
        self,
        inputs: Tuple[Tensor, ...],
        additional_forward_args: Optional[Tuple[Any, ...]],
        target: TargetType,
        f_x: Tensor,
        internal_batch_size: Optional[int],
    ) -> float:
        if self.degree != "auto":
            self.last_degree = float(self.degree)
            return float(self.degree)
        num_examples = inputs[0].shape[0]
        halves, doubles = [], []
        with torch.no_grad():
            for chunk_inputs, chunk_args, chunk_target in chunks(
                inputs, additional_forward_args, target, num_examples, internal_batch_size
            ):
                n = chunk_inputs[0].shape[0]
                scaled = tuple(torch.cat([0.5 * x, 2.0 * x]) for x in chunk_inputs)
                args = (
                    _expand_additional_forward_args(chunk_args, 2)
                    if chunk_args is not None
                    else None
                )
                out = run_forward(self.forward_func, scaled, args)
                sel = select_output(out, _expand_target(chunk_target, 2), 2 * n)
                halves.append(sel[:n])
                doubles.append(sel[n:])
        k = estimate_degree(f_x, torch.cat(halves), torch.cat(doubles))
        self.last_degree = k
        return k


def _slice_baseline(b: Optional[Tensor], start: int, end: int) -> Optional[Tensor]:
    if b is None or b.shape[0] == 1:
        return b
    return b[start:end]


def estimate_degree(
    f_x: Tensor, f_half: Tensor, f_double: Tensor, rtol: Optional[float] = None
) -> float:
    r"""Estimate :math:`k` from :math:`f(x/2)`, :math:`f(x)`, :math:`f(2x)`.

    Uses :math:`k = \log_2 (f(2x)/f(x)) = \log_2 (f(x)/f(x/2))` on every output that is
    not negligibly small, and requires all estimates to agree.

    Parameters
    ----------
    f_x, f_half, f_double : Tensor
        Model outputs at :math:`x`, :math:`x/2` and :math:`2x`, one value per example.
    rtol : float, optional
        Allowed spread of the estimates; defaults to ``1e-3`` for float32, ``1e-6`` for
        float64 and ``2e-2`` for half precision.

    Returns
    -------
    float
        The estimated degree, rounded to the nearest integer when it is within
        ``rtol`` of one.

    Raises
    ------
    NonHomogeneousError
        If the outputs are all ~0, change sign under scaling, or the estimates
        disagree across scales or examples.

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
