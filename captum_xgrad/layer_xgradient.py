"""Layer X-Gradient: exact layer Integrated Gradients in one backward pass."""

from __future__ import annotations

import typing
from typing import Any, Callable, List, Literal, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ._core.compat import (
    BaselineType, GradientAttribution, LayerAttribution, ModuleOrModuleList, TargetType,
    _extract_device_ids, _format_additional_forward_args, _format_input_baseline,
    _format_output, _forward_layer_distributed_eval, _reduce_list, _sort_key_list,
    captum_method,
)
from ._core.autograd import batched_target_gradients, chunks, output_at_baseline, resolve_targets
from ._core.state import preserve_model_state
from ._core.validate import (
    baseline_tensors, check_finite_output, require_differentiable, select_output,
    validate_degree, validate_ig_arguments, validate_inputs, validate_target_batch_size,
    validate_target_shape, validate_targets_argument,
)
from ._core.guard import HomogeneityGuard
from .xgradient import _attribution, _delta, _validate_constructor

__all__ = ["LayerXGradient"]

LayerAttributions = Union[Tensor, Tuple[Tensor, ...], List[Union[Tensor, Tuple[Tensor, ...]]]]


class LayerXGradient(LayerAttribution, GradientAttribution):
    r"""Layer Integrated Gradients with the zero baseline, in one backward pass.

    Write the model as :math:`f(x) = g(h(x))`, with :math:`a = h(x)` the output of ``layer``
    (or its input, with ``attribute_to_layer_input=True``). If :math:`g` is nonnegatively
    homogeneous of degree :math:`k` in :math:`a`, layer IG with the zero layer baseline is

    .. math::

        \mathrm{LayerIG}(x) = a \odot \int_0^1 \nabla g(\alpha a)\,d\alpha
        = \frac{1}{k}\, a \odot \nabla_a g(a).

    This equals :class:`captum.attr.LayerIntegratedGradients` with zero input baselines
    (whose path starts at :math:`h(0)`) when also :math:`h(0) = 0`, e.g. on X-DNNs.

    Parameters
    ----------
    forward_func : callable
        The model, or a function of the inputs returning a tensor with the batch first.
    layer : torch.nn.Module or list of torch.nn.Module
        The layer(s) to attribute to; a list gives a list of results, as in Captum.
    device_ids : list of int, optional
        For a :class:`torch.nn.DataParallel` model that is not ``forward_func`` itself.
    multiply_by_inputs : bool, default True
        ``False``: return :math:`\nabla_a g(a)/k` instead of :math:`a \odot \nabla_a g(a)/k`.
    degree : float, default 1
        The degree :math:`k` of :math:`g`.
    check : {"static", "off", "warn", "raise"}, default "static"
        Prove once per model state (:func:`~captum_xgrad.homogeneity.certify_layer`) that
        :math:`g` is homogeneous in the activation alone (what bypasses the layer held fixed:
        true at a cut of the graph, not inside a residual block) and :math:`h(0) = 0`; else a
        :class:`~captum_xgrad.NonHomogeneousWarning` names the bypass and an exact enclosing
        layer (see the how-to "Layer attributions"; ``"raise"``: an error; ``"off"``: no
        check). A proved degree other than ``degree`` is a ``ValueError``.

    Raises
    ------
    TypeError
        If ``forward_func`` is not callable or ``layer`` is not a module (or list of them).
    ValueError
        If ``degree`` is not a positive number or ``check`` is unknown.

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
        _validate_constructor(forward_func, check)
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
        self.check = check
        self._guard = HomogeneityGuard(check, "LayerXGradient")
        self._layer_list: List[nn.Module] = layers

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

        Arguments and results as for :meth:`captum.attr.LayerIntegratedGradients.attribute`,
        plus the keyword-only ``create_graph``, which Captum lacks.

        Parameters
        ----------
        inputs, target, additional_forward_args, n_steps, method, internal_batch_size, create_graph
            As for :meth:`XGradient.attribute <captum_xgrad.XGradient.attribute>`.
        baselines : None, 0 or zero tensors, optional
            Only zero input baselines; anything else raises :class:`ValueError`.
        return_convergence_delta : bool, default False
            Also return :math:`\sum_j \mathrm{attr}_j - (f(x) - f(0))` per example, summed over
            all attributed layers (one extra forward pass).
        attribute_to_layer_input : bool, default False
            Attribute to the layer's input instead of its output.

        Returns
        -------
        attributions : Tensor, tuple of Tensor, or list of these
            Shaped like the layer's output (or input); a tuple when the layer has several
            outputs, a list when ``layer`` is a list.
        delta : Tensor, optional
            Shape ``(N,)``, only with ``return_convergence_delta=True``.

        Raises
        ------
        ValueError
            For non-zero baselines, invalid targets, NaN/Inf inputs or outputs, or invalid
            ``n_steps``/``method``/``internal_batch_size``.

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
        with preserve_model_state(self.forward_func):
            self._verify(formatted_inputs, additional_forward_args, attribute_to_layer_input)
            per_chunk, outputs = [], []
            for chunk_inputs, chunk_args, chunk_target in chunks(
                formatted_inputs, additional_forward_args, target, num_examples,
                internal_batch_size,
            ):
                with torch.enable_grad():
                    acts, regroup, selected = self._forward(
                        chunk_inputs, chunk_args, attribute_to_layer_input, chunk_target, True
                    )
                    selected = selected.reshape(chunk_inputs[0].shape[0])
                    check_finite_output(selected, "outputs")
                    grads = torch.autograd.grad(
                        selected.sum(), acts, create_graph=create_graph, allow_unused=True
                    )
                    per_chunk.append(regroup([
                        _attribution(
                            a, torch.zeros_like(a) if g is None else g, 1.0 / self.degree,
                            self._multiply_by_inputs, create_graph,
                        )
                        for a, g in zip(acts, grads)
                    ]))
                outputs.append(selected.detach())
            per_layer = per_chunk[0] if len(per_chunk) == 1 else _reduce_list(per_chunk)
            f_0 = None
            if return_convergence_delta:
                f_0 = output_at_baseline(
                    self.forward_func, formatted_inputs, None, additional_forward_args, target,
                    internal_batch_size,
                )
        return self._result(per_layer, torch.cat(outputs), f_0)

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
        r"""Layer attributions of many targets from one forward pass and batched backward passes.

        The layer counterpart of :meth:`captum_xgrad.XGradient.attribute_targets`: entry
        ``[:, t]`` of the result equals ``attribute(inputs, target=targets[t])``.

        Parameters
        ----------
        inputs, targets, additional_forward_args, target_batch_size, create_graph
            As for :meth:`captum_xgrad.XGradient.attribute_targets`.
        return_convergence_delta : bool, default False
            Keyword-only. Also return :math:`\sum_j \mathrm{attr}_j - (f_t(x) - f_t(0))`, shape
            ``(N, T)``, summed over all attributed layers (one extra forward pass).
        attribute_to_layer_input : bool, default False
            Keyword-only. Attribute to the layer's input instead of its output.

        Returns
        -------
        attributions : Tensor, tuple of Tensor, or list of these
            Shape ``(N, T, *S)`` for each layer tensor of shape ``(N, *S)``; tuples and lists as
            for :meth:`attribute`.
        delta : Tensor, optional
            Shape ``(N, T)``, only with ``return_convergence_delta=True``.

        Raises
        ------
        ValueError
            For empty ``targets``, a target out of range or of the wrong form, a bad
            ``target_batch_size``, NaN/Inf inputs or outputs.
        TypeError
            For non-tensor inputs, a single int as ``targets``, or a target that is neither an
            int nor a tuple of ints.

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
        with preserve_model_state(self.forward_func):
            self._verify(formatted_inputs, additional_forward_args, attribute_to_layer_input)
            with torch.enable_grad():
                acts, regroup, output = self._forward(
                    formatted_inputs, additional_forward_args, attribute_to_layer_input
                )
                selected, _ = resolve_targets(output, target_list, num_examples)
                require_differentiable(selected)
                check_finite_output(selected, "outputs")
                attrs_flat = batched_target_gradients(
                    selected, acts, target_batch_size, create_graph,
                    warn_name="LayerXGradient.attribute_targets",
                    transform=lambda i, g: _attribution(
                        acts[i].unsqueeze(1), g, 1.0 / self.degree, self._multiply_by_inputs,
                        create_graph,
                    ),
                )
                per_layer = regroup(attrs_flat)
            del output
            f_0 = None
            if return_convergence_delta:
                f_0 = output_at_baseline(
                    self.forward_func, formatted_inputs, None, additional_forward_args, None,
                    targets=target_list, many_targets=True,
                )
        return self._result(per_layer, selected.detach(), f_0)

    def _verify(self, inputs: Tuple[Tensor, ...], args: Any, to_layer_input: bool) -> None:
        self._guard.verify_layers(
            self.forward_func, self._layer_list, inputs, args, to_layer_input, self.degree
        )

    def _forward(
        self,
        inputs: Tuple[Tensor, ...],
        args: Optional[Tuple[Any, ...]],
        to_layer_input: bool,
        target: TargetType = None,
        select: bool = False,
    ) -> Tuple[Tuple[Tensor, ...], Callable[[Sequence[Tensor]], List[Tuple[Tensor, ...]]], Any]:
        """Hooked forward: (activations, their regrouper per layer, output or its ``target``)."""
        # aliases: Captum may set requires_grad on the layer's inputs (never the user's tensors)
        aliases = tuple(x if x.requires_grad else x.detach() for x in inputs)
        layers, forward_func = self._layer_list, self.forward_func

        def checked_forward(*call_args: Any) -> Tensor:
            out = forward_func(*call_args)
            select_output(out, target, inputs[0].shape[0])  # validated before Captum selects
            return out

        saved, output = _forward_layer_distributed_eval(
            checked_forward if select else forward_func, aliases, layers, target_ind=target,
            additional_forward_args=args, attribute_to_layer_input=to_layer_input,
            forward_hook_with_return=True, require_layer_grads=True,
        )
        device_ids = _extract_device_ids(forward_func, saved, self.device_ids)
        keys = _sort_key_list(list(next(iter(saved.values())).keys()), device_ids)
        acts = tuple(t for layer in layers for key in keys for t in saved[layer][key])

        def regroup(flat: Sequence[Tensor]) -> List[Tuple[Tensor, ...]]:
            """Split ``flat`` (one tensor per activation) per layer, devices concatenated."""
            per_layer, offset = [], 0
            for layer in layers:
                per_device = []
                for key in keys:
                    per_device.append(tuple(flat[offset : offset + len(saved[layer][key])]))
                    offset += len(saved[layer][key])
                per_layer.append(tuple(_reduce_list(per_device)))
            return per_layer

        return acts, regroup, output

    def _result(
        self, per_layer: Sequence[Tuple[Tensor, ...]], f_x: Tensor, f_0: Optional[Tensor]
    ) -> Union[LayerAttributions, Tuple[LayerAttributions, Tensor]]:
        """Check and format the attributions per layer, with the delta when ``f_0`` is given."""
        for attrs in per_layer:
            for a in attrs:
                check_finite_output(a, "layer gradients")
        formatted = [_format_output(len(attrs) > 1, tuple(attrs)) for attrs in per_layer]
        result = formatted if isinstance(self.layer, list) else formatted[0]
        if f_0 is None:
            return result
        return result, _delta([a for attrs in per_layer for a in attrs], f_x, f_0)
