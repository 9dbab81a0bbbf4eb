"""X-VGG: VGG-11/13/16/19 without biases (Hesse et al., 2021).

Layout and ``state_dict`` keys are torchvision's VGG minus the ``*.bias`` entries, as in the
official code, so its X-VGG checkpoints load directly and a torchvision VGG state dict loads
after its biases are dropped (:func:`~captum_xgrad.models.xvgg_from_torchvision`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .checkpoints import PathLike, _finish_build

__all__ = ["XVGG", "VGG_CONFIGS", "make_xvgg_features", "xvgg11", "xvgg13", "xvgg16", "xvgg19"]

#: number of output channels of each 3x3 convolution; "M" is a 2x2 max-pooling.
VGG_CONFIGS: Dict[str, List[Union[int, str]]] = {
    "xvgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "xvgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "xvgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
               512, 512, 512, "M"],
    "xvgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512,
               "M", 512, 512, 512, 512, "M"],
}


def make_xvgg_features(config: Sequence[Union[int, str]], in_channels: int = 3) -> nn.Sequential:
    """The convolutional part of an X-VGG: bias-free 3x3 convolutions, ReLU, max-pooling.

    Parameters
    ----------
    config : sequence of int or "M"
        Output channels per convolution, ``"M"`` for a 2x2 max-pooling.
    in_channels : int, default 3
        Channels of the input image.

    Returns
    -------
    nn.Sequential
        ``Conv2d(bias=False)`` + ``ReLU`` per channel count, ``MaxPool2d(2)`` per ``"M"``.

    Raises
    ------
    ValueError
        If an entry is neither an integer (or a string of one) nor ``"M"``.

    Examples
    --------
    >>> from captum_xgrad.models.vgg import make_xvgg_features
    >>> features = make_xvgg_features([8, "M", 16, "M"], in_channels=1)
    >>> [type(m).__name__ for m in features]
    ['Conv2d', 'ReLU', 'MaxPool2d', 'Conv2d', 'ReLU', 'MaxPool2d']
    >>> features(torch.rand(2, 1, 28, 28)).shape
    torch.Size([2, 16, 7, 7])
    """
    layers: List[nn.Module] = []
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            channels = int(item)
            layers.append(nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False))
            layers.append(nn.ReLU(inplace=True))
            in_channels = channels
    return nn.Sequential(*layers)


class XVGG(nn.Module):
    """VGG with every bias removed: nonnegatively homogeneous of degree 1 (in eval mode).

    Parameters
    ----------
    features : nn.Module
        The convolutional part (see :func:`make_xvgg_features`), with 512 output channels.
    num_classes : int, default 1000
        Number of outputs.
    init_weights : bool, default True
        Initialise as torchvision does (Kaiming-normal convolutions, N(0, 0.01) linear
        layers); otherwise keep PyTorch's default initialisation.
    dropout : float, default 0.5
        Dropout probability of the classifier (only active in training mode).

    Raises
    ------
    RuntimeError
        In ``forward``, from the first linear layer, if ``features`` does not output 512
        channels.

    Examples
    --------
    An X-VGG-11 on the meta device (shapes only, no memory, no computation):

    >>> from captum_xgrad.models.vgg import VGG_CONFIGS, XVGG, make_xvgg_features
    >>> with torch.device("meta"):
    ...     model = XVGG(make_xvgg_features(VGG_CONFIGS["xvgg11"]), num_classes=10)
    >>> model(torch.empty(1, 3, 224, 224, device="meta")).shape
    torch.Size([1, 10])
    >>> sum(p.numel() for p in model.parameters())
    128796352
    """

    def __init__(self, features: nn.Module, num_classes: int = 1000, init_weights: bool = True,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096, bias=False), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096, bias=False), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes, bias=False),
        )
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0.0, 0.01)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _xvgg(
    arch: str, weights: Optional[PathLike], num_classes: int, in_channels: int, **kwargs: Any
) -> XVGG:
    if weights is not None:
        kwargs.setdefault("init_weights", False)
    features = make_xvgg_features(VGG_CONFIGS[arch], in_channels)
    return _finish_build(XVGG(features, num_classes=num_classes, **kwargs), arch, weights)


def xvgg11(*, weights: Optional[PathLike] = None, progress: bool = True,
           num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> XVGG:
    """Build an X-VGG-11: VGG configuration "A" without biases (:class:`XVGG`).

    Parameters
    ----------
    weights, progress, num_classes, in_channels, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`XVGG`.

    Returns
    -------
    XVGG

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, from :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import xvgg11
    >>> with torch.device("meta"):
    ...     print(sum(p.numel() for p in xvgg11().parameters()))
    132851392
    """
    return _xvgg("xvgg11", weights, num_classes, in_channels, **kwargs)


def xvgg13(*, weights: Optional[PathLike] = None, progress: bool = True,
           num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> XVGG:
    """Build an X-VGG-13: VGG configuration "B" without biases (:class:`XVGG`).

    Parameters
    ----------
    weights, progress, num_classes, in_channels, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`XVGG`.

    Returns
    -------
    XVGG

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, from :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import xvgg13
    >>> with torch.device("meta"):
    ...     print(sum(p.numel() for p in xvgg13().parameters()))
    133035712
    """
    return _xvgg("xvgg13", weights, num_classes, in_channels, **kwargs)


def xvgg16(*, weights: Optional[PathLike] = None, progress: bool = True,
           num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> XVGG:
    """Build an X-VGG-16: VGG configuration "D" without biases (:class:`XVGG`).

    Parameters
    ----------
    weights, progress, num_classes, in_channels, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`XVGG`.

    Returns
    -------
    XVGG

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, from :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import xvgg16
    >>> with torch.device("meta"):
    ...     print(sum(p.numel() for p in xvgg16().parameters()))
    138344128
    """
    return _xvgg("xvgg16", weights, num_classes, in_channels, **kwargs)


def xvgg19(*, weights: Optional[PathLike] = None, progress: bool = True,
           num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> XVGG:
    """Build an X-VGG-19: VGG configuration "E" without biases (:class:`XVGG`).

    Parameters
    ----------
    weights, progress, num_classes, in_channels, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`XVGG`.

    Returns
    -------
    XVGG

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, from :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import xvgg19
    >>> with torch.device("meta"):
    ...     print(sum(p.numel() for p in xvgg19().parameters()))
    143652544
    """
    return _xvgg("xvgg19", weights, num_classes, in_channels, **kwargs)
