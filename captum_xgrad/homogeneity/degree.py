r"""The one estimator of the homogeneity degree :math:`k`.

Both ``XGradient(degree="auto")`` and :func:`~captum_xgrad.check_homogeneity` estimate
:math:`k` here. Per output element, :func:`fit_degree` fits

.. math::

    \log \frac{f(\alpha x)}{f(x)} = k \log \alpha

by least squares over the scales :math:`\alpha`, on the elements that are not
negligible (:math:`|f(x)| > 10^{-3} \max|f(x)|`) and keep their sign under scaling;
:func:`round_degree` rounds to the nearest integer within ``1e-2``.
:func:`estimate_degree` adds the consistency test that ``degree="auto"`` needs: every
element and every scale must give the same :math:`k`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import NonHomogeneousError

__all__ = ["estimate_degree", "fit_degree", "round_degree"]

#: Elements with ``|f(x)|`` below this fraction of ``max |f(x)|`` carry no information.
NEGLIGIBLE = 1e-3
#: An estimate within this distance of an integer is that integer.
ROUNDING = 1e-2


def fit_degree(
    base: Tensor, scaled: Sequence[Tensor], scales: Sequence[float]
) -> Tuple[Tensor, Tensor]:
    r"""Per-element least-squares fit of :math:`\log(f(\alpha x)/f(x)) = k \log\alpha`.

    Parameters
    ----------
    base : Tensor
        :math:`f(x)`, shape ``(N, M)``.
    scaled : sequence of Tensor
        :math:`f(\alpha x)` for each scale, each of the shape of ``base``.
    scales : sequence of float
        The scales :math:`\alpha` (positive, not 1).

    Returns
    -------
    k : Tensor
        The fitted degree per element, float64, shape ``(N, M)``.
    valid : Tensor
        Boolean mask of the elements where the fit means something (not negligible,
        same sign at every scale).

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
    mag = float(base.abs().max()) if base.numel() else 0.0
    valid = base.abs() > NEGLIGIBLE * mag if mag > 0 else torch.zeros_like(base, dtype=torch.bool)
    num = torch.zeros_like(base)
    den = 0.0
    for a, s in zip(scales, scaled):
        ratio = s.double() / torch.where(valid, base, torch.ones_like(base))
        valid = valid & (ratio > 0)
        la = math.log(a)
        num = num + la * torch.log(torch.where(valid, ratio, torch.ones_like(ratio)))
        den += la * la
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
    r"""Estimate one degree :math:`k` and require every element and scale to agree.

    The per-element, per-scale estimates :math:`\log(f(\alpha x)/f(x))/\log\alpha`
    must lie within ``rtol * max(1, |k|)`` of their median :math:`k`, which must be
    positive; the median is then rounded with :func:`round_degree`.

    Parameters
    ----------
    f_x : Tensor
        Model outputs at :math:`x`, one value per example (any shape).
    scaled : sequence of Tensor
        Outputs at :math:`\alpha x` for each of ``scales``, shaped like ``f_x``.
    scales : sequence of float
        The scales :math:`\alpha`.
    rtol : float, optional
        Allowed spread; ``1e-3`` for float32, ``1e-6`` for float64 and ``2e-2`` for
        half precision by default.

    Returns
    -------
    float
        The degree.

    Raises
    ------
    NonHomogeneousError
        If the outputs are all ~0, change sign under scaling, or the estimates
        disagree (no consistent positive degree).

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.homogeneity.degree import estimate_degree
    >>> f = lambda x: (x ** 2).sum(1)
    >>> x = torch.rand(4, 3) + 0.1
    >>> estimate_degree(f(x), [f(x / 2), f(2 * x)], [0.5, 2.0])
    2.0
    """
    if rtol is None:
        rtol = {torch.float64: 1e-6, torch.float16: 2e-2, torch.bfloat16: 2e-2}.get(
            f_x.dtype, 1e-3
        )
    base = f_x.detach().double().reshape(1, -1)
    outs = [s.detach().double().reshape(1, -1) for s in scaled]
    scale = float(base.abs().max()) if base.numel() else 0.0
    valid = base.abs() > NEGLIGIBLE * scale
    if scale == 0.0 or not bool(valid.any()):
        raise NonHomogeneousError(
            "degree='auto' cannot estimate the homogeneity degree: the selected outputs "
            "are all zero. Pass degree=<k> explicitly."
        )
    per_scale = []
    for a, out in zip(scales, outs):
        ratio = out[valid] / base[valid]
        if bool((ratio <= 0).any()):
            raise NonHomogeneousError(
                "degree='auto': the model output changes sign when the input is scaled "
                "by a positive factor, so the model is not nonnegatively homogeneous and "
                "X-Gradient does not equal Integrated Gradients. Run "
                "captum_xgrad.certify_homogeneity(model, inputs) or "
                "captum_xgrad.check_homogeneity(model, inputs) to see what breaks it."
            )
        per_scale.append(torch.log(ratio) / math.log(a))
    ks = torch.cat(per_scale)
    k = float(ks.median())
    spread = float((ks - k).abs().max())
    if not math.isfinite(k) or spread > rtol * max(1.0, abs(k)) or k <= 0:
        shown = ", ".join(f"{a:g}" for a in scales)
        raise NonHomogeneousError(
            f"degree='auto': estimates of k in f(a*x) = a**k f(x) range from "
            f"{float(ks.min()):.4g} to {float(ks.max()):.4g} across scales a in "
            f"{{{shown}}} and examples, so the model is not nonnegatively homogeneous "
            "(of a positive degree) and X-Gradient would not equal Integrated "
            "Gradients. Run captum_xgrad.certify_homogeneity(model, inputs) to find "
            "the cause, convert the model with captum_xgrad.make_x_dnn, or use "
            "captum.attr.IntegratedGradients."
        )
    return round_degree(k)
