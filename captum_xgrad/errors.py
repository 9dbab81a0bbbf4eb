"""Exceptions and warnings raised by captum-xgrad."""

from __future__ import annotations

__all__ = ["NonHomogeneousError", "NonHomogeneousWarning"]


class NonHomogeneousError(ValueError):
    """The model is not nonnegatively homogeneous, so X-Gradient would not equal IG.

    Raised by :meth:`captum_xgrad.HomogeneityReport.raise_if_not`, by
    ``XGradient(..., check="raise")`` and by ``degree="auto"`` when no consistent
    degree exists. It subclasses :class:`ValueError`.
    """


class NonHomogeneousWarning(UserWarning):
    """Issued when a model looks non-homogeneous (``check="static"`` or ``"warn"``).

    Silence it with ``warnings.simplefilter("ignore", NonHomogeneousWarning)`` or
    ``XGradient(model, check="off")``.
    """
