r"""Fixup-ResNets, with biases and without (X-Fixup-ResNet, Hesse et al., 2021).

Fixup (Zhang et al., ICLR 2019) trains residual networks without normalisation by setting the
last layer of every residual branch and the classifier to zero and scaling the other branch
layers by :math:`L^{-1/(2m-2)}` (:math:`L` blocks, :math:`m` layers per branch). Without
BatchNorm and biases, a ResNet is homogeneous of degree 1: the X-Fixup-ResNet has only bias-free
convolutions, ReLU, pooling and residual additions. Modules and ``state_dict`` keys match the
official code (the shortcut is a bare 1x1 convolution, ``layerN.0.downsample.weight``; the biased
:class:`FixupResNet` has Fixup's scalar ``bias1a``, ``bias1b``, ..., ``scale`` parameters).
A freshly built model outputs zeros (zero classifier); ``zero_init=False`` initialises
everything at random. The builders take the arguments described in :mod:`captum_xgrad.models`.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Type

import torch
from torch import Tensor, nn

from .checkpoints import PathLike, _finish_build

__all__ = [
    "FixupResNet", "XFixupResNet",
    "fixup_resnet18", "fixup_resnet34", "fixup_resnet50", "fixup_resnet101", "fixup_resnet152",
    "xfixup_resnet18", "xfixup_resnet34", "xfixup_resnet50", "xfixup_resnet101", "xfixup_resnet152",
]


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=k, stride=stride, padding=k // 2, bias=False)


def _he_std(weight: Tensor) -> float:
    return math.sqrt(2.0 / (weight.shape[0] * math.prod(weight.shape[2:])))


def _scalar(value: float) -> nn.Parameter:
    return nn.Parameter(torch.full((1,), float(value)))


class _Block(nn.Module):
    """The bias-free convolutions of a residual branch (``conv1``, ``conv2``[, ``conv3``])."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        if self.expansion == 1:  # basic block: two 3x3 convolutions
            self.conv1 = _conv(inplanes, planes, 3, stride)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = _conv(planes, planes, 3)
        else:  # bottleneck: 1x1, 3x3, 1x1 expanding
            self.conv1 = _conv(inplanes, planes, 1)
            self.conv2 = _conv(planes, planes, 3, stride)
            self.conv3 = _conv(planes, planes * self.expansion, 1)
            self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def branch_convs(self) -> List[nn.Conv2d]:
        return [self.conv1, self.conv2] + ([self.conv3] if self.expansion > 1 else [])

    def _shortcut(self, x: Tensor) -> Tensor:
        return x if self.downsample is None else self.downsample(x)


class XFixupBasicBlock(_Block):
    """relu(conv2(relu(conv1(x))) + shortcut(x)), all bias-free."""

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv2(self.relu(self.conv1(x))) + self._shortcut(x))


class XFixupBottleneck(_Block):
    """relu(conv3(relu(conv2(relu(conv1(x))))) + shortcut(x)), all bias-free."""

    expansion = 4

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv3(self.relu(self.conv2(self.relu(self.conv1(x)))))
        return self.relu(out + self._shortcut(x))


class FixupBasicBlock(_Block):
    """Fixup basic block: scalar biases before each conv and activation, and a scalar scale."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__(inplanes, planes, stride, downsample)
        self.bias1a, self.bias1b, self.bias2a = _scalar(0.0), _scalar(0.0), _scalar(0.0)
        self.scale, self.bias2b = _scalar(1.0), _scalar(0.0)

    def forward(self, x: Tensor) -> Tensor:
        shifted = x + self.bias1a
        out = self.relu(self.conv1(shifted) + self.bias1b)
        out = self.conv2(out + self.bias2a) * self.scale + self.bias2b
        return self.relu(out + self._shortcut(shifted))


class FixupBottleneck(_Block):
    """Fixup bottleneck block: scalar biases before each conv and activation, and a scale."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__(inplanes, planes, stride, downsample)
        self.bias1a, self.bias1b, self.bias2a = _scalar(0.0), _scalar(0.0), _scalar(0.0)
        self.bias2b, self.bias3a = _scalar(0.0), _scalar(0.0)
        self.scale, self.bias3b = _scalar(1.0), _scalar(0.0)

    def forward(self, x: Tensor) -> Tensor:
        shifted = x + self.bias1a
        out = self.relu(self.conv1(shifted) + self.bias1b)
        out = self.relu(self.conv2(out + self.bias2a) + self.bias2b)
        out = self.conv3(out + self.bias3a) * self.scale + self.bias3b
        return self.relu(out + self._shortcut(shifted))


_BlockType = Type[_Block]


class _ResNetBase(nn.Module):
    def _build(self, block: _BlockType, layers: Sequence[int], num_classes: int,
               in_channels: int, zero_init: bool, fc_bias: bool) -> None:
        """The torchvision ResNet layout, then Fixup's initialisation."""
        self.num_layers = sum(layers)
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes, bias=fc_bias)
        for m in self.modules():
            if isinstance(m, _Block):
                *convs, last = m.branch_convs()
                factor = self.num_layers ** (-1.0 / (2 * len(convs)))
                for conv in convs + ([] if zero_init else [last]):
                    nn.init.normal_(conv.weight, 0.0, _he_std(conv.weight) * factor)
                if zero_init:
                    nn.init.zeros_(last.weight)
                if m.downsample is not None:
                    nn.init.normal_(m.downsample.weight, 0.0, _he_std(m.downsample.weight))
        if zero_init:
            nn.init.zeros_(self.fc.weight)
            if self.fc.bias is not None:
                nn.init.zeros_(self.fc.bias)

    def _make_layer(
        self, block: _BlockType, planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = _conv(self.inplanes, planes * block.expansion, 1, stride)
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _stages(self, x: Tensor) -> Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.maxpool(x)))))


class XFixupResNet(_ResNetBase):
    """Fixup-ResNet without biases: nonnegatively homogeneous of degree 1.

    Parameters
    ----------
    block : XFixupBasicBlock or XFixupBottleneck
        The residual block type.
    layers : sequence of 4 int
        Blocks per stage.
    num_classes : int, default 1000
        Number of outputs.
    in_channels : int, default 3
        Channels of the input image.
    zero_init : bool, default True
        Fixup's initialisation (last conv of each branch and the classifier at zero);
        ``False`` initialises them randomly too.

    Examples
    --------
    One block per stage (the builders give the standard depths); outputs scale with the input:

    >>> from captum_xgrad.models.fixup_resnet import XFixupBasicBlock, XFixupResNet
    >>> model = XFixupResNet(XFixupBasicBlock, [1, 1, 1, 1], num_classes=10, zero_init=False)
    >>> x = torch.rand(2, 3, 32, 32)
    >>> y, y2 = model.eval()(x), model(2 * x)
    >>> y.shape, bool(y.abs().max() > 0), torch.allclose(y2, 2 * y, rtol=1e-4, atol=1e-7)
    (torch.Size([2, 10]), True, True)
    """

    def __init__(self, block: _BlockType, layers: Sequence[int], num_classes: int = 1000,
                 in_channels: int = 3, zero_init: bool = True) -> None:
        super().__init__()
        self._build(block, layers, num_classes, in_channels, zero_init, fc_bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self._stages(self.relu(self.conv1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class FixupResNet(_ResNetBase):
    """Fixup-ResNet with Fixup's scalar biases: *not* homogeneous (the paper's baseline).

    The state dict is that of :class:`XFixupResNet` plus ``bias1``, ``bias2``, ``fc.bias`` and
    per block ``bias1a``, ``bias1b``, ..., ``scale``.

    Parameters
    ----------
    block : FixupBasicBlock or FixupBottleneck
        The residual block type.
    layers, num_classes, in_channels
        As for :class:`XFixupResNet`.
    zero_init : bool, default True
        As for :class:`XFixupResNet` (the classifier bias too); the scalar biases start at 0
        and the scales at 1 either way.

    Examples
    --------
    With its classifier bias, :math:`f(0) \\ne 0`, so the network is not homogeneous:

    >>> from captum_xgrad.models.fixup_resnet import FixupBasicBlock, FixupResNet
    >>> model = FixupResNet(FixupBasicBlock, [1, 1, 1, 1], num_classes=10, zero_init=False)
    >>> f_zero = model.eval()(torch.zeros(1, 3, 32, 32))
    >>> f_zero.shape, bool(f_zero.abs().max() > 0)
    (torch.Size([1, 10]), True)
    >>> sorted(n for n, _ in model.named_parameters() if n.startswith("layer1.0."))
    ['layer1.0.bias1a', 'layer1.0.bias1b', 'layer1.0.bias2a', 'layer1.0.bias2b', 'layer1.0.conv1.weight', 'layer1.0.conv2.weight', 'layer1.0.scale']
    """

    def __init__(self, block: _BlockType, layers: Sequence[int], num_classes: int = 1000,
                 in_channels: int = 3, zero_init: bool = True) -> None:
        super().__init__()
        self.bias1 = _scalar(0.0)
        self.bias2 = _scalar(0.0)
        self._build(block, layers, num_classes, in_channels, zero_init, fc_bias=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self._stages(self.relu(self.conv1(x) + self.bias1))
        return self.fc(torch.flatten(self.avgpool(x), 1) + self.bias2)


#: blocks per stage and whether the blocks are bottlenecks, by depth
_LAYOUTS = {18: ([2, 2, 2, 2], False), 34: ([3, 4, 6, 3], False), 50: ([3, 4, 6, 3], True),
            101: ([3, 4, 23, 3], True), 152: ([3, 8, 36, 3], True)}


def _build(depth: int, homogeneous: bool, weights: Optional[PathLike], **kwargs: Any) -> Any:
    layers, bottleneck = _LAYOUTS[depth]
    if homogeneous:
        block: _BlockType = XFixupBottleneck if bottleneck else XFixupBasicBlock
        model: nn.Module = XFixupResNet(block, layers, **kwargs)
    else:
        model = FixupResNet(FixupBottleneck if bottleneck else FixupBasicBlock, layers, **kwargs)
    return _finish_build(model, f"{'x' if homogeneous else ''}fixup_resnet{depth}", weights)


def xfixup_resnet18(*, weights: Optional[PathLike] = None, progress: bool = True,
                    num_classes: int = 1000, **kwargs: Any) -> XFixupResNet:
    """Build an X-Fixup-ResNet-18 (:class:`XFixupResNet`, homogeneous of degree 1).

    Parameters
    ----------
    weights, progress, num_classes, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`XFixupResNet`.

    Returns
    -------
    XFixupResNet

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, see :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import xfixup_resnet18
    >>> with torch.device("meta"):
    ...     print(sum(p.numel() for p in xfixup_resnet18().parameters()))
    11678912
    """
    return _build(18, True, weights, num_classes=num_classes, **kwargs)


def xfixup_resnet34(*, weights: Optional[PathLike] = None, progress: bool = True,
                    num_classes: int = 1000, **kwargs: Any) -> XFixupResNet:
    """Build an X-Fixup-ResNet-34 (:class:`XFixupResNet`, homogeneous of degree 1).

    Parameters
    ----------
    weights, progress, num_classes, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`XFixupResNet`.

    Returns
    -------
    XFixupResNet

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, see :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import xfixup_resnet34
    >>> with torch.device("meta"):
    ...     print(sum(p.numel() for p in xfixup_resnet34().parameters()))
    21779648
    """
    return _build(34, True, weights, num_classes=num_classes, **kwargs)


def xfixup_resnet50(*, weights: Optional[PathLike] = None, progress: bool = True,
                    num_classes: int = 1000, **kwargs: Any) -> XFixupResNet:
    """Build an X-Fixup-ResNet-50 (:class:`XFixupResNet`, homogeneous of degree 1).

    Parameters
    ----------
    weights, progress, num_classes, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`XFixupResNet`.

    Returns
    -------
    XFixupResNet

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, see :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import xfixup_resnet50
    >>> with torch.device("meta"):
    ...     print(sum(p.numel() for p in xfixup_resnet50().parameters()))
    25502912
    """
    return _build(50, True, weights, num_classes=num_classes, **kwargs)


def xfixup_resnet101(*, weights: Optional[PathLike] = None, progress: bool = True,
                     num_classes: int = 1000, **kwargs: Any) -> XFixupResNet:
    """Build an X-Fixup-ResNet-101 (:class:`XFixupResNet`, homogeneous of degree 1).

    Parameters
    ----------
    weights, progress, num_classes, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`XFixupResNet`.

    Returns
    -------
    XFixupResNet

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, see :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import xfixup_resnet101
    >>> with torch.device("meta"):
    ...     print(sum(p.numel() for p in xfixup_resnet101().parameters()))
    44442816
    """
    return _build(101, True, weights, num_classes=num_classes, **kwargs)


def xfixup_resnet152(*, weights: Optional[PathLike] = None, progress: bool = True,
                     num_classes: int = 1000, **kwargs: Any) -> XFixupResNet:
    """Build an X-Fixup-ResNet-152 (:class:`XFixupResNet`, homogeneous of degree 1).

    Parameters
    ----------
    weights, progress, num_classes, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`XFixupResNet`.

    Returns
    -------
    XFixupResNet

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, see :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import xfixup_resnet152
    >>> with torch.device("meta"):
    ...     print(sum(p.numel() for p in xfixup_resnet152().parameters()))
    60040384
    """
    return _build(152, True, weights, num_classes=num_classes, **kwargs)


def fixup_resnet18(*, weights: Optional[PathLike] = None, progress: bool = True,
                   num_classes: int = 1000, **kwargs: Any) -> FixupResNet:
    """Build a Fixup-ResNet-18 with Fixup's biases (:class:`FixupResNet`, not homogeneous).

    Parameters
    ----------
    weights, progress, num_classes, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`FixupResNet`.

    Returns
    -------
    FixupResNet

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, see :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import fixup_resnet18
    >>> with torch.device("meta"):
    ...     print(sum(p.numel() for p in fixup_resnet18().parameters()))
    11679954
    """
    return _build(18, False, weights, num_classes=num_classes, **kwargs)


def fixup_resnet34(*, weights: Optional[PathLike] = None, progress: bool = True,
                   num_classes: int = 1000, **kwargs: Any) -> FixupResNet:
    """Build a Fixup-ResNet-34 with Fixup's biases (:class:`FixupResNet`, not homogeneous).

    Parameters
    ----------
    weights, progress, num_classes, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`FixupResNet`.

    Returns
    -------
    FixupResNet

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, see :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import fixup_resnet34
    >>> with torch.device("meta"):
    ...     print(sum(p.numel() for p in fixup_resnet34().parameters()))
    21780730
    """
    return _build(34, False, weights, num_classes=num_classes, **kwargs)


def fixup_resnet50(*, weights: Optional[PathLike] = None, progress: bool = True,
                   num_classes: int = 1000, **kwargs: Any) -> FixupResNet:
    """Build a Fixup-ResNet-50 with Fixup's biases (:class:`FixupResNet`, not homogeneous).

    Parameters
    ----------
    weights, progress, num_classes, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`FixupResNet`.

    Returns
    -------
    FixupResNet

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, see :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import fixup_resnet50
    >>> with torch.device("meta"):
    ...     print(sum(p.numel() for p in fixup_resnet50().parameters()))
    25504026
    """
    return _build(50, False, weights, num_classes=num_classes, **kwargs)


def fixup_resnet101(*, weights: Optional[PathLike] = None, progress: bool = True,
                    num_classes: int = 1000, **kwargs: Any) -> FixupResNet:
    """Build a Fixup-ResNet-101 with Fixup's biases (:class:`FixupResNet`, not homogeneous).

    Parameters
    ----------
    weights, progress, num_classes, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`FixupResNet`.

    Returns
    -------
    FixupResNet

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, see :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import fixup_resnet101
    >>> with torch.device("meta"):
    ...     print(sum(p.numel() for p in fixup_resnet101().parameters()))
    44444049
    """
    return _build(101, False, weights, num_classes=num_classes, **kwargs)


def fixup_resnet152(*, weights: Optional[PathLike] = None, progress: bool = True,
                    num_classes: int = 1000, **kwargs: Any) -> FixupResNet:
    """Build a Fixup-ResNet-152 with Fixup's biases (:class:`FixupResNet`, not homogeneous).

    Parameters
    ----------
    weights, progress, num_classes, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`FixupResNet`.

    Returns
    -------
    FixupResNet

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, see :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import fixup_resnet152
    >>> with torch.device("meta"):
    ...     print(sum(p.numel() for p in fixup_resnet152().parameters()))
    60041736
    """
    return _build(152, False, weights, num_classes=num_classes, **kwargs)
