"""X-AlexNet: AlexNet without biases (Hesse et al., 2021), with the layer layout and
``state_dict`` keys of the official code (``features.{0,3,6,8,10}.weight``,
``classifier.{1,4,6}.weight``), so its checkpoints load directly."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from .checkpoints import PathLike, _finish_build

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

    >>> from captum_xgrad.models import XAlexNet
    >>> model = XAlexNet(num_classes=10).eval()
    >>> x = torch.rand(1, 3, 64, 64)  # 64x64 is the smallest input it accepts
    >>> y, y3 = model(x), model(3 * x)
    >>> y.shape, torch.allclose(y3, 3 * y, rtol=1e-4, atol=1e-7)
    (torch.Size([1, 10]), True)
    >>> any(m.bias is not None for m in model.modules() if hasattr(m, "bias"))
    False
    """

    def __init__(
        self, num_classes: int = 1000, input_channels: int = 3, dropout: float = 0.5
    ) -> None:
        super().__init__()

        def conv(c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0) -> nn.Conv2d:
            return nn.Conv2d(c_in, c_out, kernel_size=k, stride=stride, padding=padding, bias=False)

        self.features = nn.Sequential(
            conv(input_channels, 64, 11, stride=4, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            conv(64, 192, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            conv(192, 384, 3, padding=1), nn.ReLU(True),
            conv(384, 256, 3, padding=1), nn.ReLU(True),
            conv(256, 256, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096, bias=False), nn.ReLU(True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096, bias=False), nn.ReLU(True),
            nn.Linear(4096, num_classes, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def xalexnet(*, weights: Optional[PathLike] = None, progress: bool = True,
             num_classes: int = 1000, **kwargs: Any) -> XAlexNet:
    """Build an X-AlexNet (:class:`XAlexNet`).

    Parameters
    ----------
    weights, progress, num_classes, **kwargs
        See :mod:`captum_xgrad.models`; ``kwargs`` go to :class:`XAlexNet`.

    Returns
    -------
    XAlexNet

    Raises
    ------
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, from :func:`~captum_xgrad.models.load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import xalexnet
    >>> xalexnet(num_classes=10).eval()(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 10])
    """
    return _finish_build(XAlexNet(num_classes=num_classes, **kwargs), "xalexnet", weights)
