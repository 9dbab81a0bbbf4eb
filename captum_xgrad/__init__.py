"""captum-xgrad: exact Integrated Gradients in one backward pass for homogeneous networks.

The public API, re-exported here:

- :class:`XGradient`, :class:`LayerXGradient`: drop-in replacements for Captum's
  ``IntegratedGradients`` and ``LayerIntegratedGradients`` (zero baseline).
- :func:`certify_homogeneity` / :class:`DegreeCertificate`: a proof from the traced
  graph that the model is homogeneous (or the node that breaks it).
- :func:`check_homogeneity` / :class:`HomogeneityReport`: an empirical test on real
  inputs, and which modules break it.
- :func:`make_x_dnn` / :class:`ConversionReport`: turn a regular network into an X-DNN.
- :class:`AttributionPrior` and :mod:`captum_xgrad.priors`: attribution priors in training.
- :mod:`captum_xgrad.models`: X-AlexNet, X-VGG, X-Fixup-ResNet and the official checkpoints.
- :class:`NonHomogeneousError`, :class:`NonHomogeneousWarning`.
- :func:`attribute_dataset` / :class:`AttributionStore`: attributions for a whole dataset.
"""

from . import models, priors
from ._version import __version__
from .convert import ConversionReport, make_x_dnn
from .errors import NonHomogeneousError, NonHomogeneousWarning
from .homogeneity import (
    CertificateFinding,
    DegreeCertificate,
    HomogeneityReport,
    certify_homogeneity,
    check_homogeneity,
)
from .layer_xgradient import LayerXGradient
from .training import AttributionPrior
from .xgradient import XGradient
from .dataset import AttributionStore, attribute_dataset

__all__ = [
    "AttributionPrior",
    "CertificateFinding",
    "ConversionReport",
    "DegreeCertificate",
    "HomogeneityReport",
    "LayerXGradient",
    "NonHomogeneousError",
    "NonHomogeneousWarning",
    "XGradient",
    "__version__",
    "certify_homogeneity",
    "check_homogeneity",
    "make_x_dnn",
    "models",
    "priors",
    "AttributionStore",
    "attribute_dataset",
]
