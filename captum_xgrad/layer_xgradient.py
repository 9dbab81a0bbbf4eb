r"""Layer X-Gradient: exact layer Integrated Gradients in one backward pass.

Write the model as :math:`f(x) = g(h(x))` with :math:`h` the part up to ``layer`` and
:math:`g` the part after it. If :math:`g` is nonnegatively homogeneous of degree
:math:`k` in the layer activation :math:`a = h(x)`, the layer Integrated Gradients with
the zero layer baseline is

.. math::

    \mathrm{LayerIG}_j(x) = a_j \int_0^1 \frac{\partial g(\alpha a)}{\partial a_j}\,d\alpha
                          = \frac{1}{k}\, a_j \frac{\partial g(a)}{\partial a_j}.

Captum's :class:`~captum.attr.LayerIntegratedGradients` with zero input baselines
starts the path at :math:`h(0)`; this equals the zero layer baseline whenever
:math:`h(0) = 0`, e.g. when the part before the layer is itself bias-free.
"""

from __future__ import annotations

import typing
from typing import Any, Callable, List, Literal, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ._core.compat import (
    BaselineType,
    GradientAttribution,
    LayerAttribution,
    ModuleOrModuleList,
    TargetType,
    _extract_device_ids,
    _format_additional_forward_args,
    _format_input_baseline,
    _format_output,
    _forward_layer_distributed_eval,
    _reduce_list,
    _sort_key_list,
    captum_method,
)
from ._core.autograd import (
    batched_target_gradients,
    chunks,
    output_at_baseline,
    per_example_sum,
    per_example_target_sum,
    resolve_targets,
)
from ._core.state import preserve_model_state
from ._core.validate import (
    baseline_tensors,
    check_finite_output,
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

__all__ = ["LayerXGradient"]

LayerAttributions = Union[Tensor, Tuple[Tensor, ...], List[Union[Tensor, Tuple[Tensor, ...]]]]


class LayerXGradient(LayerAttribution, GradientAttribution):
    r"""Layer Integrated Gradients with the zero layer baseline, in one backward pass.

    Returns :math:`\frac{1}{k}\, a \odot \nabla_a g(a)` for the output (or, with
    ``attribute_to_layer_input=True``, the input) :math:`a` of ``layer``, where
    :math:`g` is the part of the network after the layer and :math:`k` its
    homogeneity degree. It equals :class:`captum.attr.LayerIntegratedGradients` with
    zero baselines whenever :math:`g` is nonnegatively homogeneous and the part before
    the layer maps 0 to 0 (true for X-DNNs).

    Parameters
    ----------
    forward_func : callable
        The model or a function of the inputs returning a tensor with a batch dimension.
    layer : torch.nn.Module or list of torch.nn.Module
        The layer(s) whose output (or input) is attributed. With a list, the result
        is a list with one entry per layer, as in Captum.
    device_ids : list of int, optional
        Device ids for a model wrapped in :class:`torch.nn.DataParallel` whose
        ``forward_func`` is not the DataParallel module itself (as in Captum).
    multiply_by_inputs : bool, default True
        If ``False`` return :math:`\nabla_a g(a)/k` instead of :math:`a \odot \nabla_a g(a)/k`.
    degree : float, default 1
        Homogeneity degree :math:`k` of the part of the network after the layer.
    check : {"static", "off", "warn", "raise"}, default "static"
        Verify once per model state, from the traced graph
        (:func:`~captum_xgrad.homogeneity.certify_layer`), that layer X-Gradient equals
        :class:`~captum.attr.LayerIntegratedGradients` at each layer: the network after
        the layer must be homogeneous in the layer's activation *alone*, with
        everything that bypasses the layer (a skip connection around it, another
        input) held fixed, and the part before it must map 0 to 0. This holds for a
        layer that is a cut of the graph (a whole residual stage, the stem, the
        classifier input) but not for a layer inside a residual block. Otherwise a
        :class:`~captum_xgrad.NonHomogeneousWarning` names the path that bypasses the
        layer and an enclosing layer that is exact (``"raise"``: an error; ``"off"``:
        no check). A proved degree other than ``degree`` is a ``ValueError``.

    Raises
    ------
    TypeError
        If ``forward_func`` is not callable or ``layer`` is not a module (or list of
        modules).
    ValueError
        If ``degree`` is not a positive number.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad import LayerXGradient
    >>> model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(),
    ...                       nn.Linear(6, 2, bias=False))
    >>> x = torch.randn(5, 4)
    >>> attr = LayerXGradient(model, model[1]).attribute(x, target=0)
    >>> attr.shape
    torch.Size([5, 6])
    >>> torch.allclose(attr.sum(dim=1), model(x)[:, 0], atol=1e-5)
    True
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: ModuleOrModuleList,
        device_ids: Union[None, List[int]] = None,
        multiply_by_inputs: bool = True,
        degree: float = 1,
        check: str = "static",
    ) -> None:
        if not callable(forward_func):
            raise TypeError(
                f"forward_func must be callable, got {type(forward_func).__name__}."
            )
        layers = layer if isinstance(layer, list) else [layer]
        if len(layers) == 0 or not all(isinstance(m, nn.Module) for m in layers):
            raise TypeError(
                "layer must be a torch.nn.Module (or a non-empty list of modules) of the "
                f"model, got {type(layer).__name__}."
            )
        LayerAttribution.__init__(self, forward_func, layer, device_ids=device_ids)
        GradientAttribution.__init__(self, forward_func)
        self._multiply_by_inputs = bool(multiply_by_inputs)
        self.degree = float(validate_degree(degree, allow_auto=False))
        if check not in ("off", "static", "warn", "raise"):
            raise ValueError(f"check must be one of ('off', 'static', 'warn', 'raise'), got {check!r}.")
        self.check = check
        self._guard = HomogeneityGuard(check, "LayerXGradient")

    @property
    def multiplies_by_inputs(self) -> bool:
        """Whether attributions are multiplied by the layer activations."""
        return self._multiply_by_inputs

    def has_convergence_delta(self) -> bool:
        """Always ``True``, as for LayerIntegratedGradients."""
        return True

    @typing.overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: Union[None, int] = None,
        *,
        return_convergence_delta: Literal[True],
        attribute_to_layer_input: bool = False,
        create_graph: bool = False,
    ) -> Tuple[LayerAttributions, Tensor]: ...

    @typing.overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: Union[None, int] = None,
        return_convergence_delta: Literal[False] = False,
        attribute_to_layer_input: bool = False,
        *,
        create_graph: bool = False,
    ) -> LayerAttributions: ...

    @captum_method
    def attribute(  # type: ignore[misc]
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: Union[None, int] = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        *,
        create_graph: bool = False,
    ) -> Union[LayerAttributions, Tuple[LayerAttributions, Tensor]]:
        r"""Attribute ``target`` to the layer's activations: :math:`a \odot \nabla_a g(a)/k`.

        Same arguments and return conventions as
        :meth:`captum.attr.LayerIntegratedGradients.attribute`, plus the keyword-only
        ``create_graph``.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Model inputs, batch first.
        baselines : None, 0 or zero tensors, optional
            Only zero input baselines are supported; anything else raises
            :class:`ValueError`.
        target : int, tuple, list, Tensor or None, optional
            Which output to explain, as in Captum.
        additional_forward_args : Any, optional
            Extra, non-attributed arguments for ``forward_func``.
        n_steps, method :
            Accepted for compatibility and ignored (see :class:`~captum_xgrad.XGradient`).
        internal_batch_size : int, optional
            Process the batch in chunks of this size (one pass each) to bound memory.
        return_convergence_delta : bool, default False
            Also return :math:`\sum_j \mathrm{attr}_j - (f(x) - f(0))` per example.
        attribute_to_layer_input : bool, default False
            Attribute to the layer's input instead of its output.
        create_graph : bool, default False
            Keyword-only. Keep the attributions differentiable with respect to the
            model's parameters (Captum's LayerIntegratedGradients cannot do this).

        Returns
        -------
        attributions : Tensor, tuple of Tensor, or list of these
            Shaped like the layer's output (or input); a tuple when the layer has
            several outputs, a list when ``layer`` is a list.
        delta : Tensor, optional
            Shape ``(N,)``, only with ``return_convergence_delta=True``.

        Raises
        ------
        ValueError
            For non-zero baselines, invalid targets, NaN/Inf inputs or outputs,
            invalid ``n_steps``/``method``/``internal_batch_size``.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> from captum.attr import LayerIntegratedGradients
        >>> from captum_xgrad import LayerXGradient
        >>> model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.ReLU(),
        ...                       nn.Flatten(), nn.Linear(3 * 4 * 4, 2, bias=False))
        >>> x = torch.rand(2, 1, 6, 6)
        >>> lx = LayerXGradient(model, model[1]).attribute(x, target=1)
        >>> lig = LayerIntegratedGradients(model, model[1]).attribute(x, target=1)
        >>> lx.shape, torch.allclose(lx, lig, rtol=1e-4, atol=1e-6)
        (torch.Size([2, 3, 4, 4]), True)
        """
        formatted_inputs, formatted_baselines = _format_input_baseline(inputs, baselines)
        num_examples = validate_inputs(formatted_inputs)
        if any(b is not None for b in baseline_tensors(formatted_baselines, formatted_inputs)):
            raise ValueError(
                "LayerXGradient got a non-zero baseline. Layer X-Gradient equals "
                "LayerIntegratedGradients only for the zero input baseline (whose layer "
                "activation is 0 on a bias-free network); use baselines=None (or 0), "
                "XGradient with a baseline the model is homogeneous about, or "
                "captum.attr.LayerIntegratedGradients."
            )
        validate_ig_arguments(n_steps, method, internal_batch_size)
        validate_target_shape(target, num_examples)
        additional_forward_args = _format_additional_forward_args(additional_forward_args)
        layers: List[nn.Module] = self.layer if isinstance(self.layer, list) else [self.layer]

        with preserve_model_state(self.forward_func):
            self._guard.verify_layers(
                self.forward_func, layers, formatted_inputs, additional_forward_args,
                attribute_to_layer_input, self.degree,
            )
            per_chunk: List[List[Tuple[Tensor, ...]]] = []
            outputs = []
            for chunk_inputs, chunk_args, chunk_target in chunks(
                formatted_inputs, additional_forward_args, target, num_examples,
                internal_batch_size,
            ):
                attrs, selected = self._attribute_chunk(
                    chunk_inputs, chunk_args, chunk_target, layers,
                    attribute_to_layer_input, create_graph,
                )
                per_chunk.append(attrs)
                outputs.append(selected)
            per_layer = [
                tuple(
                    torch.cat([c[li][ti] for c in per_chunk]) if len(per_chunk) > 1
                    else per_chunk[0][li][ti]
                    for ti in range(len(per_chunk[0][li]))
                )
                for li in range(len(layers))
            ]
            for attrs in per_layer:
                for a in attrs:
                    check_finite_output(a, "layer gradients")

            delta = None
            if return_convergence_delta:
                f_x = torch.cat(outputs)
                f_0 = output_at_baseline(
                    self.forward_func, formatted_inputs, None, additional_forward_args,
                    target, internal_batch_size,
                )
                with torch.no_grad():
                    flat = [a.detach() for attrs in per_layer for a in attrs]
                    delta = per_example_sum(flat) - (f_x - f_0)

        formatted = [
            _format_output(len(attrs) > 1, attrs) for attrs in per_layer
        ]
        result: LayerAttributions = (
            formatted if isinstance(self.layer, list) else formatted[0]
        )
        if return_convergence_delta:
            assert delta is not None
            return result, delta
        return result

    @captum_method
    def attribute_targets(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        targets: Optional[Sequence[Union[int, Tuple[int, ...]]]] = None,
        additional_forward_args: Optional[object] = None,
        *,
        target_batch_size: Optional[int] = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        create_graph: bool = False,
    ) -> Union[LayerAttributions, Tuple[LayerAttributions, Tensor]]:
        r"""Layer attributions of many targets from one forward pass.

        The layer counterpart of :meth:`captum_xgrad.XGradient.attribute_targets`:
        the result for target :math:`t` equals ``attribute(inputs, target=t)``, and
        all targets share one forward pass and batched backward passes
        (``target_batch_size`` targets each; a loop with one :class:`RuntimeWarning`
        where the model does not support batching).

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Model inputs, batch first.
        targets : sequence of int or tuple, or None, optional
            The T targets, each applied to every example (an int class index, or a
            tuple for multi-dimensional outputs); ``None``: every output of the model.
            See :meth:`captum_xgrad.XGradient.attribute_targets`.
        additional_forward_args : Any, optional
            Extra, non-attributed arguments for ``forward_func``.
        target_batch_size : int, optional
            Keyword-only. Targets per batched backward pass (default ``min(T, 64)``);
            bounds peak memory, does not change the result.
        return_convergence_delta : bool, default False
            Keyword-only. Also return :math:`\sum_j \mathrm{attr}_j - (f_t(x) - f_t(0))`,
            shape ``(N, T)``, summed over all attributed layers (one extra forward
            pass).
        attribute_to_layer_input : bool, default False
            Keyword-only. Attribute to the layer's input instead of its output.
        create_graph : bool, default False
            Keyword-only. Keep the attributions differentiable.

        Returns
        -------
        attributions : Tensor, tuple of Tensor, or list of these
            For each layer tensor of shape ``(N, *S)``, a tensor of shape
            ``(N, T, *S)``; a tuple when the layer has several outputs, a list when
            ``layer`` is a list.
        delta : Tensor, optional
            Shape ``(N, T)``, only with ``return_convergence_delta=True``.

        Raises
        ------
        ValueError
            For an empty ``targets``, a target out of range or of the wrong form for
            the model output, ``target_batch_size`` not a positive integer, NaN/Inf
            inputs or outputs.
        TypeError
            For non-tensor inputs, a single int as ``targets``, or a target that is
            neither an int nor a tuple of ints.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> from captum_xgrad import LayerXGradient
        >>> model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(),
        ...                       nn.Linear(6, 3, bias=False))
        >>> x = torch.randn(5, 4)
        >>> lx = LayerXGradient(model, model[1])
        >>> maps = lx.attribute_targets(x)               # all 3 classes
        >>> maps.shape
        torch.Size([5, 3, 6])
        >>> torch.allclose(maps[:, 2], lx.attribute(x, target=2), atol=1e-6)
        True
        """
        formatted_inputs, _ = _format_input_baseline(inputs, None)
        num_examples = validate_inputs(formatted_inputs)
        target_list = validate_targets_argument(targets)
        validate_target_batch_size(target_batch_size)
        additional_forward_args = _format_additional_forward_args(additional_forward_args)
        layers: List[nn.Module] = self.layer if isinstance(self.layer, list) else [self.layer]

        with preserve_model_state(self.forward_func):
            self._guard.verify_layers(
                self.forward_func, layers, formatted_inputs, additional_forward_args,
                attribute_to_layer_input, self.degree,
            )
            aliases = tuple(x if x.requires_grad else x.detach() for x in formatted_inputs)
            with torch.enable_grad():
                saved_layer, output = _forward_layer_distributed_eval(
                    self.forward_func,
                    aliases,
                    layers,
                    target_ind=None,
                    additional_forward_args=additional_forward_args,
                    attribute_to_layer_input=attribute_to_layer_input,
                    forward_hook_with_return=True,
                    require_layer_grads=True,
                )
                selected, _ = resolve_targets(output, target_list, num_examples)
                require_differentiable(selected)
                check_finite_output(selected, "outputs")
                device_ids = _extract_device_ids(
                    self.forward_func, saved_layer, self.device_ids
                )
                key_list = _sort_key_list(
                    list(next(iter(saved_layer.values())).keys()), device_ids
                )
                grad_inputs = tuple(
                    t for layer in layers for dev in key_list for t in saved_layer[layer][dev]
                )
                scale = 1.0 / self.degree

                def to_attribution(i: int, g: Tensor) -> Tensor:
                    with torch.set_grad_enabled(create_graph):
                        a = grad_inputs[i] if create_graph else grad_inputs[i].detach()
                        if not create_graph:
                            g = g.detach()
                        return a.unsqueeze(1) * g * scale if self._multiply_by_inputs else g * scale

                attrs_flat = batched_target_gradients(
                    selected, grad_inputs, target_batch_size, create_graph,
                    warn_name="LayerXGradient.attribute_targets", transform=to_attribution,
                )
            del output
            f_x = selected.detach()
            per_layer: List[Tuple[Tensor, ...]] = []
            offset = 0
            with torch.set_grad_enabled(create_graph):
                for layer in layers:
                    per_device: List[Tuple[Tensor, ...]] = []
                    for dev in key_list:
                        n_acts = len(saved_layer[layer][dev])
                        per_device.append(tuple(attrs_flat[offset : offset + n_acts]))
                        offset += n_acts
                    per_layer.append(tuple(_reduce_list(per_device)))
            for attrs in per_layer:
                for a in attrs:
                    check_finite_output(a, "layer gradients")

            delta = None
            if return_convergence_delta:
                f_0 = output_at_baseline(
                    self.forward_func, formatted_inputs, None, additional_forward_args,
                    None, targets=target_list, many_targets=True,
                )
                with torch.no_grad():
                    flat = [a.detach() for attrs in per_layer for a in attrs]
                    delta = per_example_target_sum(flat) - (f_x - f_0)

        formatted = [_format_output(len(attrs) > 1, attrs) for attrs in per_layer]
        result: LayerAttributions = (
            formatted if isinstance(self.layer, list) else formatted[0]
        )
        if return_convergence_delta:
            assert delta is not None
            return result, delta
        return result

    def _attribute_chunk(
        self,
        inputs: Tuple[Tensor, ...],
        additional_forward_args: Optional[Tuple[Any, ...]],
        target: TargetType,
        layers: List[nn.Module],
        attribute_to_layer_input: bool,
        create_graph: bool,
    ) -> Tuple[List[Tuple[Tensor, ...]], Tensor]:
        num_examples = inputs[0].shape[0]
        # Detached aliases: Captum may set requires_grad on the layer's input tensors,
        # which must never be the user's own tensors.
        aliases = tuple(x if x.requires_grad else x.detach() for x in inputs)
        forward_func = self.forward_func

        def checked_forward(*args: Any) -> Tensor:
            out = forward_func(*args)
            # validate the target against the full output before Captum selects it
            select_output(out, target, num_examples)
            return out

        with torch.enable_grad():
            saved_layer, selected = _forward_layer_distributed_eval(
                checked_forward,
                aliases,
                layers,
                target_ind=target,
                additional_forward_args=additional_forward_args,
                attribute_to_layer_input=attribute_to_layer_input,
                forward_hook_with_return=True,
                require_layer_grads=True,
            )
            selected = selected.reshape(num_examples)
            check_finite_output(selected, "outputs")
            device_ids = _extract_device_ids(self.forward_func, saved_layer, self.device_ids)
            key_list = _sort_key_list(
                list(next(iter(saved_layer.values())).keys()), device_ids
            )
            grad_inputs = tuple(
                t for layer in layers for dev in key_list for t in saved_layer[layer][dev]
            )
            grads = torch.autograd.grad(
                selected.sum(), grad_inputs, create_graph=create_graph, allow_unused=True
            )
        grads = tuple(
            torch.zeros_like(t) if g is None else g for t, g in zip(grad_inputs, grads)
        )
        scale = 1.0 / self.degree
        results: List[Tuple[Tensor, ...]] = []
        offset = 0
        with torch.set_grad_enabled(create_graph):
            for layer in layers:
                per_device_acts: List[Tuple[Tensor, ...]] = []
                per_device_grads: List[Tuple[Tensor, ...]] = []
                for dev in key_list:
                    acts = saved_layer[layer][dev]
                    per_device_acts.append(acts)
                    per_device_grads.append(grads[offset : offset + len(acts)])
                    offset += len(acts)
                acts_cat = _reduce_list(per_device_acts)
                grads_cat = _reduce_list(per_device_grads)
                attrs = []
                for a, g in zip(acts_cat, grads_cat):
                    if not create_graph:
                        a, g = a.detach(), g.detach()
                    attrs.append(a * g * scale if self._multiply_by_inputs else g * scale)
                results.append(tuple(attrs))
        return results, selected.detach()
