"""The one table of torch module classes (and torch's private bases) the library's rules use."""

from __future__ import annotations

from typing import Tuple

from torch import nn

__all__ = [
    "AVG_POOL", "BATCH_NORM", "BIASED", "CONV", "CONV_TRANSPOSE", "DROPOUT", "LAYOUT", "MAX_POOL",
    "NON_HOMOGENEOUS_ACTIVATIONS", "NORM_WITH_STATS", "PER_EXAMPLE_NORMS",
    "RELU_REPLACEABLE", "CONSTANT_PAD",
]

CONV: Tuple[type, ...] = (nn.modules.conv._ConvNd,)
CONV_TRANSPOSE: Tuple[type, ...] = (nn.modules.conv._ConvTransposeNd,)
#: layers of the form ``W x + b`` (their bias breaks homogeneity)
BIASED: Tuple[type, ...] = (nn.Linear, nn.Bilinear) + CONV
BATCH_NORM: Tuple[type, ...] = (nn.modules.batchnorm._BatchNorm,)
#: normalisation layers with running statistics (BatchNorm, InstanceNorm with stats)
NORM_WITH_STATS: Tuple[type, ...] = (nn.modules.batchnorm._NormBase,)
#: normalisation by per-example statistics: scale-invariant up to eps, never homogeneous
PER_EXAMPLE_NORMS: Tuple[type, ...] = (
    nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
DROPOUT: Tuple[type, ...] = (nn.modules.dropout._DropoutNd, nn.AlphaDropout, nn.FeatureAlphaDropout)
MAX_POOL: Tuple[type, ...] = (
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
)
AVG_POOL: Tuple[type, ...] = (nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd)
#: linear maps of their input that change only its layout (or pad with a copy of it)
LAYOUT: Tuple[type, ...] = (
    nn.Flatten, nn.Unflatten, nn.Identity, nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle,
    nn.ChannelShuffle, nn.modules.padding._ReflectionPadNd, nn.modules.padding._ReplicationPadNd,
    nn.modules.padding._CircularPadNd, nn.Fold, nn.Unfold,
)
CONSTANT_PAD: Tuple[type, ...] = (nn.modules.padding._ConstantPadNd,)
NON_HOMOGENEOUS_ACTIVATIONS: Tuple[type, ...] = (
    nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.ELU, nn.CELU, nn.SELU, nn.Softplus, nn.Softmax,
    nn.Softmax2d, nn.LogSoftmax, nn.Softmin, nn.Mish, nn.Hardswish, nn.Hardsigmoid,
    nn.Hardtanh,  # includes ReLU6 (a Hardtanh subclass)
    nn.LogSigmoid, nn.Softsign, nn.Tanhshrink, nn.Hardshrink, nn.Softshrink, nn.GLU,
)
#: activations that ``make_x_dnn(replace_activations=True)`` replaces with ReLU
RELU_REPLACEABLE: Tuple[type, ...] = (
    nn.ReLU6, nn.GELU, nn.SiLU, nn.ELU, nn.CELU, nn.SELU, nn.Softplus, nn.Mish, nn.Hardswish,
)
