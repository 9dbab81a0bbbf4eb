"""Exceptions and warnings raised by captum-xgrad."""

from __future__ import annotations

__all__ = ["NonHomogeneousError", "NonHomogeneousWarning"]


class NonHomogeneousError(ValueError):
    """The model is not nonnegatively homogeneous, so X-Gradient would not equal IG.

    Raised by the reports' ``raise_if_not()``, ``XGradient(check="raise")`` and
    ``degree="auto"``, with the findings and the fix as its message.

    Raises
    ------
    NonHomogeneousError
        From the callers above, when the model is not homogeneous.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad import NonHomogeneousError, check_homogeneity
    >>> _ = torch.manual_seed(0)
    >>> try:  # f(x) = w.x + b is not homogeneous
    ...     check_homogeneity(nn.Linear(3, 1), torch.randn(4, 3)).raise_if_not()
    ... except NonHomogeneousError as err:
    ...     print(str(err).splitlines()[0])
    Homogeneity check of Linear on inputs (4, 3): NOT homogeneous
    """


class NonHomogeneousWarning(UserWarning):
    """Issued when a model looks non-homogeneous (``check="static"`` or ``"warn"``).

    Raises
    ------
    NonHomogeneousWarning
        When turned into an error by ``warnings.simplefilter("error", NonHomogeneousWarning)``.

    Examples
    --------
    >>> import warnings
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad import NonHomogeneousWarning, XGradient
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = XGradient(nn.Linear(3, 1)).attribute(torch.randn(2, 3), target=0)
    >>> [w.category.__name__ for w in caught]
    ['NonHomogeneousWarning']
    """
