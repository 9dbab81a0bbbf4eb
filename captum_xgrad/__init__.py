"""captum-xgrad: exact Integrated Gradients in one backward pass for homogeneous networks.

The public API, re-exported here:

- :class:`XGradient` / :class:`LayerXGradient`: drop-in replacements for Captum's
  ``IntegratedGradients`` / ``LayerIntegratedGradients`` (zero baseline).
- :class:`NonHomogeneousError`, :class:`NonHomogeneousWarning`.
"""

from ._version import __version__
from .errors import NonHomogeneousError, NonHomogeneousWarning
from .layer_xgradient import LayerXGradient
from .xgradient import XGradient

__all__ = [
    "LayerXGradient",
    "NonHomogeneousError",
    "NonHomogeneousWarning",
    "XGradient",
    "__version__",
]
