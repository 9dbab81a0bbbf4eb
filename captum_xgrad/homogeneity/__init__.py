"""Is a model nonnegatively homogeneous, and if not, why not?

From strongest to weakest: :func:`certify_homogeneity` proves a degree on the traced graph,
:func:`check_homogeneity` measures it on scaled inputs and blames modules, and
:func:`static_findings` scans the modules without running anything.
"""

from .certificate import CertificateFinding, DegreeCertificate, certify_homogeneity, certify_layer
from .degree import estimate_degree, fit_degree, round_degree
from .empirical import check_homogeneity
from .report import HomogeneityReport, ModuleFinding
from .static import module_reasons, static_findings

__all__ = [
    "CertificateFinding", "DegreeCertificate", "HomogeneityReport", "ModuleFinding",
    "certify_homogeneity", "certify_layer", "check_homogeneity", "estimate_degree",
    "fit_degree", "module_reasons", "round_degree", "static_findings",
]
