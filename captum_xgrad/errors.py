"""Exceptions and warnings raised by captum-xgrad."""

from __future__ import annotations

__all__ = ["NonHomogeneousError", "NonHomogeneousWarning"]


class NonHomogeneousError(ValueError):
    """The model is not nonnegatively homogeneous, so X-Gradient would not equal IG.

    Raised by :meth:`captum_xgrad.HomogeneityReport.raise_if_not`, by
    ``XGradient(..., check="raise")`` and by ``degree="auto"`` when no consistent
    degree exists. It subclasses :class:`ValueError`, so ``except ValueError`` catches
    it too. The message is the full :class:`~captum_xgrad.HomogeneityReport` (or the
    list of structural findings) followed by the fix.

    Raises
    ------
    NonHomogeneousError
        This exception, from the callers listed above when the model is not
        homogeneous; constructing it raises nothing.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad import NonHomogeneousError, check_homogeneity
    >>> issubclass(NonHomogeneousError, ValueError)
    True
    >>> _ = torch.manual_seed(0)
    >>> biased = nn.Linear(3, 1)  # f(x) = w.x + b is not homogeneous
    >>> try:
    ...     check_homogeneity(biased, torch.randn(4, 3)).raise_if_not()
    ... except NonHomogeneousError as err:
    ...     print(str(err).splitlines()[0])
    Homogeneity check of Linear on inputs (4, 3): NOT homogeneous
    """


class NonHomogeneousWarning(UserWarning):
    """Issued when a model looks non-homogeneous (``check="static"`` or ``"warn"``).

    Silence it with ``warnings.simplefilter("ignore", NonHomogeneousWarning)`` or
    ``XGradient(model, check="off")``.

    Raises
    ------
    NonHomogeneousWarning
        Itself, when warnings of this category are turned into errors
        (``warnings.simplefilter("error", NonHomogeneousWarning)``).

    Examples
    --------
    >>> import warnings
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad import NonHomogeneousWarning, XGradient
    >>> _ = torch.manual_seed(0)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = XGradient(nn.Linear(3, 1)).attribute(torch.randn(2, 3), target=0)
    >>> [w.category.__name__ for w in caught]
    ['NonHomogeneousWarning']
    >>> "has a bias" in str(caught[0].message)
    True
    """
