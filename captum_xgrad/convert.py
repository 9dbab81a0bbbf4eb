r"""Turn a network into an X-DNN, a nonnegatively homogeneous network: :func:`make_x_dnn`.

The converted model computes a *different function* (dropping the shifts changes every
activation), so a converted pretrained model needs fine-tuning; see the how-to "Check and
convert your model" and ``examples/convert_and_finetune_digits.py``.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import logging
from typing import List, Literal, Optional, Tuple, Union, overload

import torch
from torch import Tensor, nn

from .errors import NonHomogeneousError
from ._core.guard import warn
from ._core.types import BATCH_NORM, BIASED, CONV, CONV_TRANSPOSE, RELU_REPLACEABLE
from .homogeneity.static import module_reasons

__all__ = ["ChannelScale", "ConversionReport", "make_x_dnn"]

_log = logging.getLogger(__name__)


class ChannelScale(nn.Module):
    r"""Multiply channel ``c`` by ``weight[c]``: :math:`y_{n,c,\ldots} = w_c\, x_{n,c,\ldots}`.

    The shift-free remainder of a BatchNorm that could not be folded into a preceding layer;
    degree 1, ``weight`` trainable.

    Parameters
    ----------
    weight : Tensor
        One factor per channel, shape ``(C,)``.
    dim : int, default 1
        The channel dimension of the input.

    Raises
    ------
    ValueError
        If ``weight`` is not 1-D, or the input has not ``weight.numel()`` channels at ``dim``.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.convert import ChannelScale
    >>> ChannelScale(torch.tensor([1.0, 2.0]))(torch.ones(1, 2, 1, 1)).flatten().tolist()
    [1.0, 2.0]
    """

    #: Tells :func:`~captum_xgrad.certify_homogeneity` to keep this module as a leaf of
    #: the traced graph and treat it as a linear map of its input.
    xgrad_rule = "linear"

    def __init__(self, weight: Tensor, dim: int = 1) -> None:
        super().__init__()
        if weight.dim() != 1:
            raise ValueError(
                f"weight must be 1-D (one factor per channel), got shape {tuple(weight.shape)}."
            )
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
    """What :func:`make_x_dnn` did; each field holds qualified module names.

    Attributes
    ----------
    removed_biases : tuple of str
        Layers whose bias was removed.
    folded_batchnorms : tuple of (str, str)
        ``(batchnorm, layer)`` pairs: the BatchNorm's scale was folded into ``layer``.
    scaled_batchnorms : tuple of str
        BatchNorms replaced by a :class:`ChannelScale`.
    replaced_activations : tuple of str
        Activations replaced by ``nn.ReLU``.
    unconverted : tuple of str
        What could not be made homogeneous, one line per module.
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


def _set(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent), child, new)


def _fold(layer: nn.Module, bn: nn.Module, scale: Tensor) -> bool:
    """Multiply ``scale`` into the output channels of ``layer``, if it can take it."""
    channels = bn.num_features
    transpose = isinstance(layer, CONV_TRANSPOSE)
    if isinstance(layer, nn.Linear):
        ok = layer.out_features == channels and isinstance(bn, nn.BatchNorm1d)
    else:
        ok = isinstance(layer, CONV) and layer.out_channels == channels
        ok = ok and (layer.groups == 1 or not transpose)
    if ok:
        weight = layer.weight
        shape = [1, -1] if transpose else [-1]
        shape += [1] * (weight.dim() - len(shape))
        with torch.no_grad():
            weight.mul_(scale.to(weight.dtype).view(shape))
    return ok


def _fx_pairs(model: nn.Module) -> Optional[List[Tuple[str, str]]]:
    """``(layer, batchnorm)`` pairs where the BatchNorm consumes only that layer's output.

    Found with :mod:`torch.fx`; ``None`` if the model cannot be traced.
    """
    try:
        import torch.fx

        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # not traceable: fall back to nn.Sequential order
        _log.debug("make_x_dnn: torch.fx could not trace the model (%s)", exc)
        return None
    calls = collections.Counter(str(n.target) for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or calls[str(node.target)] != 1 or len(node.args) != 1:
            continue
        prev = node.args[0]
        if node.kwargs or not isinstance(prev, torch.fx.Node) or prev.op != "call_module":
            continue
        if calls[str(prev.target)] == 1 and len(prev.users) == 1:
            pairs.append((str(prev.target), str(node.target)))
    return pairs


def _sequential_pairs(model: nn.Module) -> List[Tuple[str, str]]:
    pairs = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            prefix = f"{name}." if name else ""
            children = [prefix + child for child, _ in module.named_children()]
            pairs += zip(children, children[1:])
    return pairs


@overload
def make_x_dnn(
    model: nn.Module, *, inplace: bool = ..., strict: bool = ..., replace_activations: bool = ...,
    return_report: Literal[False] = ...
) -> nn.Module: ...


@overload
def make_x_dnn(
    model: nn.Module, *, inplace: bool = ..., strict: bool = ..., replace_activations: bool = ...,
    return_report: Literal[True]
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

    ``Linear``, ``Bilinear``, ``Conv*d`` and ``ConvTranspose*d`` lose their bias,
    :math:`Wx + b \mapsto Wx`. A BatchNorm,
    :math:`\gamma (x - \mu)/\sqrt{\sigma^2 + \epsilon} + \beta` with its running statistics
    (even in training mode), keeps only its scale
    :math:`s = \gamma/\sqrt{\sigma^2 + \epsilon}`: folded into the weights of a directly
    preceding convolution or linear layer that feeds nothing else (found with :mod:`torch.fx`,
    or from ``nn.Sequential`` order if the model cannot be traced), else a :class:`ChannelScale`.
    What no local rule can fix (LayerNorm/GroupNorm, Sigmoid/Tanh/Softmax, attention,
    constants added in ``forward``) is reported. The result keeps ``model``'s train/eval flags.

    Parameters
    ----------
    model : nn.Module
        The network to convert.
    inplace : bool, default False
        Modify ``model`` itself instead of a deep copy.
    strict : bool, default False
        Raise instead of warning if something cannot be made homogeneous.
    replace_activations : bool, default False
        Replace ReLU6, GELU, SiLU, ELU, CELU, SELU, Softplus, Mish and Hardswish by ``nn.ReLU``
        (sigmoid gates, Tanh and Softmax stay).
    return_report : bool, default False
        Also return a :class:`ConversionReport`.

    Returns
    -------
    nn.Module or (nn.Module, ConversionReport)
        The converted model (``model`` itself if ``inplace=True``).

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module``.
    NonHomogeneousError
        With ``strict=True``, if parts cannot be made homogeneous (``model`` is then
        unchanged, even with ``inplace``).

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
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"make_x_dnn needs an nn.Module, got {type(model).__name__}; a plain "
            "function cannot be converted."
        )
    if inplace and strict:  # find out first, so that a failure leaves model untouched
        _convert(copy.deepcopy(model), replace_activations, strict)
    work = model if inplace else copy.deepcopy(model)
    report = _convert(work, replace_activations, strict)
    return (work, report) if return_report else work


def _convert(work: nn.Module, replace_activations: bool, strict: bool) -> ConversionReport:
    """Convert ``work`` in place; warn (or raise, if ``strict``) for what is left."""
    notes: List[str] = []
    folded: List[Tuple[str, str]] = []
    scaled: List[str] = []
    in_training = 0
    modules = dict(work.named_modules())
    pairs = _fx_pairs(work)
    if pairs is None:
        pairs = _sequential_pairs(work)
        notes.append(
            "torch.fx could not trace the model; BatchNorms were folded only where they "
            "follow a layer inside an nn.Sequential"
        )
    preceding = {bn: layer for layer, bn in pairs}
    for name, bn in modules.items():
        if not isinstance(bn, BATCH_NORM) or not bn.track_running_stats or bn.running_var is None:
            continue  # BatchNorm without running statistics: reported below
        in_training += bn.training
        scale = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
        if bn.affine and bn.weight is not None:
            scale = scale * bn.weight.detach().double()
        layer = preceding.get(name)
        if layer in modules and _fold(modules[layer], bn, scale):
            _set(work, name, nn.Identity())
            folded.append((name, layer))
        else:
            new = ChannelScale(scale.to(bn.running_var.dtype), dim=1).to(bn.running_var.device)
            _set(work, name, new.train(bn.training))
            scaled.append(name)
    if in_training:
        notes.append(
            f"{in_training} BatchNorm(s) were in training mode; they were converted "
            "with their running statistics (what they compute in eval mode)"
        )
    removed = []
    for name, module in work.named_modules():
        if isinstance(module, BIASED) and getattr(module, "bias", None) is not None:
            module.register_parameter("bias", None)
            removed.append(name)
    replaced = [
        name for name, module in work.named_modules()
        if replace_activations and isinstance(module, RELU_REPLACEABLE)
    ]
    for name in replaced:
        _set(work, name, nn.ReLU())
    unconverted = []
    for name, module in work.named_modules():
        reasons = module_reasons(module, include_mode=False)
        if reasons:
            label = name or f"<{type(work).__name__}>"
            unconverted.append(f"{label} ({type(module).__name__}): " + "; ".join(reasons))
    if unconverted:
        text = (
            f"make_x_dnn: {len(unconverted)} part(s) of {type(work).__name__} cannot be made "
            "homogeneous by a local rule, so X-Gradient will not equal Integrated Gradients on "
            "the result:\n" + "\n".join(f"  - {u}" for u in unconverted)
            + "\nReplace them in the architecture (e.g. ReLU for smooth activations, no "
            "LayerNorm) or use captum.attr.IntegratedGradients."
        )
        if strict:
            raise NonHomogeneousError(text)
        warn(text)
    return ConversionReport(
        tuple(removed), tuple(folded), tuple(scaled), tuple(replaced), tuple(unconverted),
        tuple(notes),
    )
