r"""Is a model nonnegatively homogeneous, and if not, why not?

X-Gradient equals Integrated Gradients exactly when the model satisfies
:math:`f(\alpha x) = \alpha^k f(x)` for all :math:`\alpha \ge 0` and some :math:`k > 0`.
This subpackage answers the question in three ways, from strongest to weakest:

- :mod:`~captum_xgrad.homogeneity.certificate`: :func:`certify_homogeneity` traces the
  model with :mod:`torch.fx` and propagates a degree through every node of the graph:
  a proof (:class:`DegreeCertificate`), independent of input values.
- :mod:`~captum_xgrad.homogeneity.empirical`: :func:`check_homogeneity` runs the model
  on scaled inputs and blames the modules that fail (:class:`HomogeneityReport`).
- :mod:`~captum_xgrad.homogeneity.static`: :func:`static_findings` scans the modules
  without running anything.

:mod:`~captum_xgrad.homogeneity.degree` holds the one degree estimator that the
empirical check and ``XGradient(degree="auto")`` share.
"""

from .certificate import CertificateFinding, DegreeCertificate, certify_homogeneity, certify_layer
from .degree import estimate_degree, fit_degree, round_degree
from .empirical import check_homogeneity
from .report import HomogeneityReport, ModuleFinding
from .static import module_reasons, static_findings

__all__ = [
    "CertificateFinding",
    "DegreeCertificate",
    "HomogeneityReport",
    "ModuleFinding",
    "certify_homogeneity",
    "certify_layer",
    "check_homogeneity",
    "estimate_degree",
    "fit_degree",
    "module_reasons",
    "round_degree",
    "static_findings",
]
