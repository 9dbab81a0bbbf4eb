r"""Turn a network into an X-DNN: a nonnegatively homogeneous network.

:func:`make_x_dnn` applies small conversion rules to every module:

- **bias removal**: ``Linear``, ``Bilinear``, ``Conv*d`` and ``ConvTranspose*d`` lose
  their bias, :math:`Wx + b \mapsto Wx`;
- **BatchNorm without shift**: an eval-mode BatchNorm computes
  :math:`\gamma (x - \mu)/\sqrt{\sigma^2 + \epsilon} + \beta`; the X-DNN keeps only the
  per-channel scale :math:`s = \gamma/\sqrt{\sigma^2 + \epsilon}`, so
  :math:`x \mapsto s \odot x`. Where the BatchNorm directly follows a convolution or
  linear layer whose output feeds nothing else (found by tracing the model with
  :mod:`torch.fx`, or from the order inside an ``nn.Sequential`` when the model cannot
  be traced), :math:`s` is folded into that layer's weights and the BatchNorm becomes
  ``nn.Identity``; otherwise it becomes a :class:`ChannelScale`;
- optionally (``replace_activations=True``) ReLU-like activations (ReLU6, GELU, SiLU,
  ELU, CELU, SELU, Softplus, Mish, Hardswish) become ``nn.ReLU``.

Everything else that breaks homogeneity (LayerNorm/GroupNorm, Sigmoid/Tanh/Softmax
gates, attention, constants added in ``forward``) cannot be converted by a local rule;
it is reported with a :class:`~captum_xgrad.NonHomogeneousWarning`, or raised with
``strict=True``.

The converted model computes a *different function*: dropping the shifts changes every
activation. A converted pretrained model therefore needs fine-tuning (the paper trains
X-DNNs from scratch or fine-tunes them and loses little accuracy); see
``examples/convert_and_finetune_digits.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Dict, List, Literal, Optional, Tuple, Union, overload

import torch
from torch import Tensor, nn

from .errors import NonHomogeneousError
from ._core.guard import warn
from ._core.types import BATCH_NORM, BIASED, CONV, CONV_TRANSPOSE, RELU_REPLACEABLE
from .homogeneity.static import module_reasons

__all__ = ["ChannelScale", "ConversionReport", "make_x_dnn"]

_log = logging.getLogger(__name__)

_BIASED = BIASED
_RELU_LIKE = RELU_REPLACEABLE


class ChannelScale(nn.Module):
    r"""Multiply channel ``c`` by ``weight[c]``: :math:`y_{n,c,\ldots} = w_c\, x_{n,c,\ldots}`.

    The homogeneous (shift-free) remainder of a BatchNorm that could not be folded into
    a preceding layer. Degree 1; ``weight`` is a trainable parameter.

    Parameters
    ----------
    weight : Tensor
        One factor per channel, shape ``(C,)``.
    dim : int, default 1
        The channel dimension of the input.

    Raises
    ------
    ValueError
        On construction, if ``weight`` is not 1-D; in ``forward``, if the input has no
        dimension ``dim`` or its size there is not ``weight.numel()``.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.convert import ChannelScale
    >>> scale = ChannelScale(torch.tensor([1.0, 2.0]))
    >>> scale(torch.ones(1, 2, 1, 1)).flatten().tolist()
    [1.0, 2.0]
    """

    #: Tells :func:`~captum_xgrad.certify_homogeneity` to keep this module as a leaf of
    #: the traced graph and treat it as a linear map of its input.
    xgrad_rule = "linear"

    def __init__(self, weight: Tensor, dim: int = 1) -> None:
        super().__init__()
        if weight.dim() != 1:
            raise ValueError(f"weight must be 1-D (one factor per channel), got shape {tuple(weight.shape)}.")
        self.weight = nn.Parameter(weight.detach().clone())
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() <= self.dim or x.shape[self.dim] != self.weight.numel():
            raise ValueError(
                f"ChannelScale with {self.weight.numel()} channels got an input of shape "
                f"{tuple(x.shape)} (channel dimension {self.dim})."
            )
        shape = [1] * x.dim()
        shape[self.dim] = -1
        return x * self.weight.view(shape)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, dim={self.dim}"


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """What :func:`make_x_dnn` did.

    Attributes
    ----------
    removed_biases : tuple of str
        Qualified names of the layers whose bias was removed.
    folded_batchnorms : tuple of (str, str)
        ``(batchnorm, layer)`` pairs: the BatchNorm's scale was folded into ``layer``.
    scaled_batchnorms : tuple of str
        BatchNorms replaced by a :class:`ChannelScale`.
    replaced_activations : tuple of str
        Activations replaced by ``nn.ReLU``.
    unconverted : tuple of str
        What could not be made homogeneous, one line per module (empty if the result
        looks homogeneous).
    notes : tuple of str
        Other remarks (e.g. BatchNorm converted from training mode).

    Examples
    --------
    >>> import warnings
    >>> from torch import nn
    >>> from captum_xgrad.convert import make_x_dnn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.GELU(), nn.Tanh(),
    ...                     nn.Linear(4, 2)).eval()
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # the Tanh cannot be converted: it warns
    ...     xnet, report = make_x_dnn(net, replace_activations=True, return_report=True)
    >>> report.removed_biases, report.folded_batchnorms, report.replaced_activations
    (('0', '4'), (('1', '0'),), ('2',))
    >>> print(report)
    removed 2 bias(es), folded 1 BatchNorm(s) into the preceding layer, replaced 0 BatchNorm(s) by ChannelScale, replaced 1 activation(s) by ReLU
    could not make homogeneous (1):
      - 3 (Tanh): Tanh is a non-homogeneous activation (use ReLU, LeakyReLU or PReLU)
    """

    removed_biases: Tuple[str, ...] = ()
    folded_batchnorms: Tuple[Tuple[str, str], ...] = ()
    scaled_batchnorms: Tuple[str, ...] = ()
    replaced_activations: Tuple[str, ...] = ()
    unconverted: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [
            f"removed {len(self.removed_biases)} bias(es), folded "
            f"{len(self.folded_batchnorms)} BatchNorm(s) into the preceding layer, "
            f"replaced {len(self.scaled_batchnorms)} BatchNorm(s) by ChannelScale, "
            f"replaced {len(self.replaced_activations)} activation(s) by ReLU"
        ]
        lines += [f"note: {n}" for n in self.notes]
        if self.unconverted:
            lines.append(f"could not make homogeneous ({len(self.unconverted)}):")
            lines += [f"  - {u}" for u in self.unconverted]
        return "\n".join(lines)


# ------------------------------------------------------------------ module surgery
def _get(root: nn.Module, name: str) -> nn.Module:
    return root.get_submodule(name) if name else root


def _set(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(_get(root, parent_name), child, new)


def _bn_scale(bn: nn.Module) -> Tensor:
    var = bn.running_var.detach()
    scale = torch.rsqrt(var.double() + bn.eps)
    if bn.affine and bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    return scale


def _can_fold(layer: nn.Module, bn: nn.Module) -> bool:
    channels = bn.num_features  # type: ignore[attr-defined]
    if isinstance(layer, nn.Linear):
        return layer.out_features == channels and isinstance(bn, nn.BatchNorm1d)
    if isinstance(layer, CONV_TRANSPOSE):
        return layer.groups == 1 and layer.out_channels == channels
    if isinstance(layer, CONV):
        return layer.out_channels == channels
    return False


def _fold(layer: nn.Module, scale: Tensor) -> None:
    weight = layer.weight  # type: ignore[union-attr]
    with torch.no_grad():
        if isinstance(layer, CONV_TRANSPOSE):
            shape = [1, -1] + [1] * (weight.dim() - 2)
        else:
            shape = [-1] + [1] * (weight.dim() - 1)
        weight.mul_(scale.to(weight.dtype).view(shape))


def _fx_pairs(model: nn.Module) -> Optional[List[Tuple[str, str]]]:
    """``(layer, batchnorm)`` pairs where the BatchNorm consumes only that layer's output."""
    try:
        import torch.fx

        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # not traceable: fall back to nn.Sequential order
        _log.debug("make_x_dnn: torch.fx could not trace the model (%s)", exc)
        return None
    calls: Dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        bn_name = str(node.target)
        if calls[bn_name] != 1 or len(node.args) != 1 or node.kwargs:
            continue
        prev = node.args[0]
        if not isinstance(prev, torch.fx.Node) or prev.op != "call_module":
            continue
        layer_name = str(prev.target)
        if calls[layer_name] != 1 or len(prev.users) != 1:
            continue
        pairs.append((layer_name, bn_name))
    return pairs


def _sequential_pairs(model: nn.Module) -> List[Tuple[str, str]]:
    pairs = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (n1, _), (n2, _) in zip(children, children[1:]):
                prefix = f"{name}." if name else ""
                pairs.append((prefix + n1, prefix + n2))
    return pairs


def _is_batchnorm(m: nn.Module) -> bool:
    return isinstance(m, BATCH_NORM)


@overload
def make_x_dnn(
    model: nn.Module,
    *,
    inplace: bool = ...,
    strict: bool = ...,
    replace_activations: bool = ...,
    return_report: Literal[False] = ...,
) -> nn.Module: ...


@overload
def make_x_dnn(
    model: nn.Module,
    *,
    inplace: bool = ...,
    strict: bool = ...,
    replace_activations: bool = ...,
    return_report: Literal[True],
) -> Tuple[nn.Module, ConversionReport]: ...


def make_x_dnn(
    model: nn.Module,
    *,
    inplace: bool = False,
    strict: bool = False,
    replace_activations: bool = False,
    return_report: bool = False,
) -> Union[nn.Module, Tuple[nn.Module, ConversionReport]]:
    r"""Convert ``model`` into a nonnegatively homogeneous network (an X-DNN).

    Removes the biases of Linear/Bilinear/Conv*/ConvTranspose* layers and turns each
    BatchNorm into its shift-free per-channel scale
    :math:`s = \gamma / \sqrt{\sigma^2_{\text{running}} + \epsilon}`, folded into the
    preceding layer's weights where that layer feeds only the BatchNorm, otherwise as a
    :class:`ChannelScale`. BatchNorm is converted with its running statistics (what it
    computes in eval mode) even if the model is in training mode.

    The result computes a different function from ``model``: it needs fine-tuning to
    recover accuracy (see the module docstring). Its train/eval flags are those of
    ``model``.

    Parameters
    ----------
    model : nn.Module
        The network to convert.
    inplace : bool, default False
        Modify ``model`` itself. By default ``model`` is deep-copied first and left
        untouched.
    strict : bool, default False
        Raise :class:`~captum_xgrad.NonHomogeneousError` if something cannot be made
        homogeneous, instead of warning.
    replace_activations : bool, default False
        Replace ReLU6, GELU, SiLU, ELU, CELU, SELU, Softplus, Mish and Hardswish by
        ``nn.ReLU`` (sigmoid gates, Tanh and Softmax are not ReLU-like and stay).
    return_report : bool, default False
        Also return a :class:`ConversionReport` of what was changed.

    Returns
    -------
    nn.Module or (nn.Module, ConversionReport)
        The converted model (``model`` itself if ``inplace=True``).

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module``.
    NonHomogeneousError
        With ``strict=True``, if parts of the model cannot be made homogeneous (the
        message lists them; ``model`` is not modified then, even with ``inplace``).

    Warns
    -----
    NonHomogeneousWarning
        Without ``strict``, if parts of the model cannot be made homogeneous.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad.convert import make_x_dnn
    >>> from captum_xgrad.homogeneity import check_homogeneity
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
    ...                     nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    >>> xnet, report = make_x_dnn(net, return_report=True)
    >>> report.removed_biases, report.folded_batchnorms
    (('0', '4'), (('1', '0'),))
    >>> check_homogeneity(xnet, torch.rand(2, 1, 8, 8)).is_homogeneous
    True
    >>> net[0].bias is not None  # the original is untouched
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"make_x_dnn needs an nn.Module, got {type(model).__name__}; a plain "
            "function cannot be converted."
        )
    if inplace and strict:  # find out first, so that a failure leaves model untouched
        dry = _convert(copy.deepcopy(model), replace_activations)
        if dry.unconverted:
            _complain(model, dry, strict=True)
    work = model if inplace else copy.deepcopy(model)
    report = _convert(work, replace_activations)
    if report.unconverted:
        _complain(model, report, strict)
    return (work, report) if return_report else work


def _complain(model: nn.Module, report: ConversionReport, strict: bool) -> None:
    text = (
        f"make_x_dnn: {len(report.unconverted)} part(s) of {type(model).__name__} "
        "cannot be made homogeneous by a local rule, so X-Gradient will not equal "
        "Integrated Gradients on the result:\n"
        + "\n".join(f"  - {u}" for u in report.unconverted)
        + "\nReplace them in the architecture (e.g. ReLU for smooth activations, no "
        "LayerNorm) or use captum.attr.IntegratedGradients."
    )
    if strict:
        raise NonHomogeneousError(text)
    warn(text)


def _convert(model: nn.Module, replace_activations: bool) -> ConversionReport:
    notes: List[str] = []
    folded: List[Tuple[str, str]] = []
    scaled: List[str] = []
    replaced: List[str] = []
    removed: List[str] = []

    modules = dict(model.named_modules())
    pairs = _fx_pairs(model)
    if pairs is None:
        pairs = _sequential_pairs(model)
        notes.append(
            "torch.fx could not trace the model; BatchNorms were folded only where they "
            "follow a layer inside an nn.Sequential"
        )
    preceding = {bn: layer for layer, bn in pairs}

    # 1. BatchNorm -> fold into the preceding layer, or ChannelScale
    trained_bn = []
    for name, module in list(modules.items()):
        if not _is_batchnorm(module):
            continue
        bn = module
        if not bn.track_running_stats or bn.running_var is None:
            continue  # reported below as unconvertible
        if bn.training:
            trained_bn.append(name)
        scale = _bn_scale(bn)
        layer_name = preceding.get(name)
        layer = modules.get(layer_name) if layer_name is not None else None
        if layer is not None and _can_fold(layer, bn):
            _fold(layer, scale)
            _set(model, name, nn.Identity())
            folded.append((name, layer_name))
        else:
            weight = scale.to(bn.running_var.dtype)
            new = ChannelScale(weight, dim=1)
            new.to(device=bn.running_var.device)
            new.train(bn.training)
            _set(model, name, new)
            scaled.append(name)
    if trained_bn:
        notes.append(
            f"{len(trained_bn)} BatchNorm(s) were in training mode; they were converted "
            "with their running statistics (what they compute in eval mode)"
        )

    # 2. biases
    for name, module in model.named_modules():
        if isinstance(module, _BIASED) and getattr(module, "bias", None) is not None:
            module.register_parameter("bias", None)
            removed.append(name)

    # 3. activations
    if replace_activations:
        for name, module in list(model.named_modules()):
            if isinstance(module, _RELU_LIKE):
                _set(model, name, nn.ReLU())
                replaced.append(name)

    unconverted = []
    for name, module in model.named_modules():
        reasons = module_reasons(module, include_mode=False)
        if reasons:
            label = name if name else f"<{type(model).__name__}>"
            unconverted.append(f"{label} ({type(module).__name__}): " + "; ".join(reasons))
    return ConversionReport(
        removed_biases=tuple(removed),
        folded_batchnorms=tuple(folded),
        scaled_batchnorms=tuple(scaled),
        replaced_activations=tuple(replaced),
        unconverted=tuple(unconverted),
        notes=tuple(notes),
    )
