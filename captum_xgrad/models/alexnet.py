"""X-AlexNet: AlexNet without biases (Hesse et al., 2021).

The layer layout, and therefore the ``state_dict`` keys, are those of the official
Fast Axiomatic Attribution code (``features.{0,3,6,8,10}.weight``,
``classifier.{1,4,6}.weight``), so its checkpoints load directly.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

__all__ = ["XAlexNet", "xalexnet"]


class XAlexNet(nn.Module):
    """AlexNet with every bias removed: nonnegatively homogeneous of degree 1 (in eval mode).

    Parameters
    ----------
    num_classes : int, default 1000
        Number of outputs.
    input_channels : int, default 3
        Channels of the input image.
    dropout : float, default 0.5
        Dropout probability of the classifier (only active in training mode).

    Examples
    --------
    In eval mode, :math:`f(\\alpha x) = \\alpha f(x)` for :math:`\\alpha \\ge 0`:

    >>> import torch
    >>> from captum_xgrad.models import XAlexNet
    >>> _ = torch.manual_seed(0)
    >>> model = XAlexNet(num_classes=10).eval()
    >>> x = torch.rand(1, 3, 64, 64)  # 64x64 is the smallest input it accepts
    >>> with torch.no_grad():
    ...     y, y3 = model(x), model(3 * x)
    >>> y.shape, torch.allclose(y3, 3 * y, rtol=1e-4, atol=1e-7)
    (torch.Size([1, 10]), True)
    >>> any(m.bias is not None for m in model.modules() if hasattr(m, "bias"))
    False
    """

    def __init__(self, num_classes: int = 1000, input_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()

        def conv(c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0) -> nn.Conv2d:
            return nn.Conv2d(c_in, c_out, kernel_size=k, stride=stride, padding=padding, bias=False)

        self.features = nn.Sequential(
            conv(input_channels, 64, 11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            conv(64, 192, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            conv(192, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            conv(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            conv(256, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096, bias=False),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def xalexnet(
    *,
    weights: Optional[Union[str, "os.PathLike[str]"]] = None,
    progress: bool = True,
    num_classes: int = 1000,
    **kwargs: Any,
) -> XAlexNet:
    """Build an X-AlexNet, optionally loading an official checkpoint file.

    Parameters
    ----------
    weights : str or PathLike, optional
        Path to a checkpoint in the official format (``{'state_dict', 'arch', ...}``,
        e.g. ``xalexnet_model_best.pth.tar``) or a plain state dict, loaded with
        :func:`~captum_xgrad.models.load_official_checkpoint`. Nothing is downloaded.
    progress : bool, default True
        Accepted for torchvision compatibility; unused (there is no download).
    num_classes : int, default 1000
        Number of outputs.
    **kwargs
        Passed to :class:`XAlexNet` (``input_channels``, ``dropout``).

    Returns
    -------
    XAlexNet

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        From :func:`~captum_xgrad.models.load_official_checkpoint` for a bad ``weights``.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.models import xalexnet
    >>> model = xalexnet(num_classes=10).eval()
    >>> model(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 10])
    """
    model = XAlexNet(num_classes=num_classes, **kwargs)
    model.arch = "xalexnet"
    if weights is not None:
        from .checkpoints import load_official_checkpoint

        load_official_checkpoint(model, weights)
    return model
