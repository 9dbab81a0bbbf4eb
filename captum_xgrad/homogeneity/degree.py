r"""The one estimator of the degree :math:`k`, for ``degree="auto"`` and ``check_homogeneity``.

It uses the output elements that are not negligible (:math:`|f(x)| > 10^{-3} \max|f(x)|`).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import NonHomogeneousError

__all__ = ["estimate_degree", "fit_degree", "round_degree"]

NEGLIGIBLE = 1e-3  # fraction of max |f(x)| below which an element carries no information
ROUNDING = 1e-2  # an estimate this close to an integer is that integer
_RTOL = {torch.float64: 1e-6, torch.float16: 2e-2, torch.bfloat16: 2e-2}  # else 1e-3


def _informative(base: Tensor) -> Tensor:
    """Mask of the elements of ``base`` (float64) that are not negligible."""
    mag = float(base.abs().max()) if base.numel() else 0.0
    if mag > 0:
        return base.abs() > NEGLIGIBLE * mag
    return torch.zeros_like(base, dtype=torch.bool)


def fit_degree(
    base: Tensor, scaled: Sequence[Tensor], scales: Sequence[float]
) -> Tuple[Tensor, Tensor]:
    r"""Per-element least-squares fit of :math:`\log(f(\alpha x)/f(x)) = k \log\alpha`.

    Parameters
    ----------
    base : Tensor
        :math:`f(x)`, shape ``(N, M)``.
    scaled : sequence of Tensor
        :math:`f(\alpha x)` for each scale, shaped like ``base``.
    scales : sequence of float
        The scales :math:`\alpha` (positive, not 1).

    Returns
    -------
    k, valid : Tensor
        The fitted degree per element (float64, ``(N, M)``) and the mask of the elements
        that are not negligible and of the same sign at every scale.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.homogeneity.degree import fit_degree
    >>> x = torch.tensor([[1.0, 2.0]])
    >>> k, valid = fit_degree(x ** 2, [(0.5 * x) ** 2, (2 * x) ** 2], [0.5, 2.0])
    >>> k.tolist(), valid.tolist()
    ([[2.0, 2.0]], [[True, True]])
    """
    base = base.double()
    valid = _informative(base)
    num = torch.zeros_like(base)
    den = 0.0
    for a, s in zip(scales, scaled):
        ratio = s.double() / torch.where(valid, base, torch.ones_like(base))
        valid = valid & (ratio > 0)
        num = num + math.log(a) * torch.log(torch.where(valid, ratio, torch.ones_like(ratio)))
        den += math.log(a) * math.log(a)
    return num / den, valid


def round_degree(k: float) -> float:
    """Round ``k`` to the nearest integer if it is within ``1e-2`` of one.

    Parameters
    ----------
    k : float
        An estimated degree.

    Returns
    -------
    float
        The rounded (or unchanged) degree.

    Examples
    --------
    >>> from captum_xgrad.homogeneity.degree import round_degree
    >>> round_degree(1.004), round_degree(1.5)
    (1.0, 1.5)
    """
    nearest = round(k)
    return float(nearest) if abs(k - nearest) <= ROUNDING else float(k)


def estimate_degree(
    f_x: Tensor,
    scaled: Sequence[Tensor],
    scales: Sequence[float],
    rtol: Optional[float] = None,
) -> float:
    r"""One degree :math:`k`: the median of :math:`\log(f(\alpha x)/f(x))/\log\alpha`
    over elements and scales, all within ``rtol * max(1, |k|)`` of it, rounded.

    Parameters
    ----------
    f_x : Tensor
        Model outputs at :math:`x`, one value per example (any shape).
    scaled : sequence of Tensor
        Outputs at :math:`\alpha x` for each of ``scales``, shaped like ``f_x``.
    scales : sequence of float
        The scales :math:`\alpha`.
    rtol : float, optional
        Allowed spread; by default ``1e-3`` (float32), ``1e-6`` (float64), ``2e-2`` (half).

    Returns
    -------
    float
        The degree.

    Raises
    ------
    NonHomogeneousError
        If the outputs are all ~0, change sign under scaling, or the estimates disagree.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.homogeneity.degree import estimate_degree
    >>> f = lambda x: (x ** 2).sum(1)
    >>> x = torch.rand(4, 3) + 0.1
    >>> estimate_degree(f(x), [f(x / 2), f(2 * x)], [0.5, 2.0])
    2.0
    """
    rtol = _RTOL.get(f_x.dtype, 1e-3) if rtol is None else rtol
    base = f_x.detach().double().reshape(-1)
    valid = _informative(base)
    if not bool(valid.any()):
        raise NonHomogeneousError(
            "degree='auto' cannot estimate the homogeneity degree: the selected outputs "
            "are all zero. Pass degree=<k> explicitly."
        )
    ratios = [s.detach().double().reshape(-1)[valid] / base[valid] for s in scaled]
    if any(bool((ratio <= 0).any()) for ratio in ratios):
        raise NonHomogeneousError(
            "degree='auto': the model output changes sign when the input is scaled by a "
            "positive factor, so the model is not nonnegatively homogeneous and X-Gradient "
            "does not equal Integrated Gradients. Run captum_xgrad.certify_homogeneity(model, "
            "inputs) or captum_xgrad.check_homogeneity(model, inputs) to see what breaks it."
        )
    ks = torch.cat([torch.log(ratio) / math.log(a) for a, ratio in zip(scales, ratios)])
    k = float(ks.median())
    if not math.isfinite(k) or float((ks - k).abs().max()) > rtol * max(1.0, abs(k)) or k <= 0:
        shown = ", ".join(f"{a:g}" for a in scales)
        raise NonHomogeneousError(
            f"degree='auto': estimates of k in f(a*x) = a**k f(x) range from {float(ks.min()):.4g}"
            f" to {float(ks.max()):.4g} across scales a in {{{shown}}} and examples, so the "
            "model is not nonnegatively homogeneous (of a positive degree) and X-Gradient "
            "would not equal Integrated Gradients. Run captum_xgrad.certify_homogeneity(model, "
            "inputs) to find the cause, convert the model with captum_xgrad.make_x_dnn, or use "
            "captum.attr.IntegratedGradients."
        )
    return round_degree(k)
