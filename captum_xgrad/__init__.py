"""captum-xgrad: exact Integrated Gradients in one backward pass for homogeneous networks.

The public API: :class:`XGradient` and :class:`LayerXGradient` (drop-ins for Captum's IG),
homogeneity proofs and checks, :func:`make_x_dnn`, attribution priors, the X-DNN models and
dataset attribution; the API reference lists each.
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
