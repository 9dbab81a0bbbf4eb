"""Masking metrics of attribution quality (Hesse et al. 2021, Sec. 4.2), on tensors.

The protocol of the paper (its official ``imagenet/attribution_metrics.py``; this is an
independent implementation of the same protocol):

- The attribution of an image is averaged over its channels, giving one score per pixel.
  The *order* decides what counts as important: ``"positive"`` ranks the scores,
  ``"negative"`` ranks their negatives, ``"absolute"`` ranks their absolute values.
  Only pixels whose ranked score is **strictly positive** are candidates ("positive
  pixels"); the others are always replaced.
- At a fraction ``f`` of the pixels, ``k = min(floor(f * n_pixels), n_positive)``
  candidates are kept and every other pixel is replaced by the same pixel of a blurred
  copy of the image (``fill``).
  ``"keep"`` keeps the ``k`` *highest*-ranked candidates; ``"remove"`` keeps the ``k``
  *lowest*-ranked candidates, so that the most important pixels are the first to go.
- The model's output on the masked images is recorded: the target's logit for the
  ``positive`` and ``negative`` orders, top-1 accuracy for ``absolute``. The curve over
  the fractions (the paper: ``geomspace(0.01, 1, 16)``) is integrated with the
  trapezoidal rule over the fraction axis.

Good attributions score **high** on keep-positive, remove-negative and keep-absolute,
and **low** on remove-positive, keep-negative and remove-absolute (:data:`HIGHER_IS_BETTER`).

This module is part of the benchmarks (not of the package): pure functions, no I/O.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

ORDERS = ("positive", "negative", "absolute")
MODES = ("keep", "remove")
#: metric name -> whether a larger AUC means a better attribution
HIGHER_IS_BETTER = {
    "keep_positive": True,
    "remove_positive": False,
    "keep_negative": False,
    "remove_negative": True,
    "keep_absolute": True,
    "remove_absolute": False,
}
#: the paper's fractions of pixels kept
PAPER_FRACTIONS = tuple(float(f) for f in np.geomspace(0.01, 1.0, num=16))


def blur_fill(images: Tensor, kernel_size: int = 5, sigma: float = 4.0) -> Tensor:
    """Gaussian-blurred copies of ``images`` (reflect padding), the fill of masked pixels.

    Parameters
    ----------
    images : Tensor
        ``(N, C, H, W)`` images.
    kernel_size : int, default 5
        Odd side of the Gaussian kernel; must be smaller than ``2 * min(H, W)`` for the
        reflect padding.
    sigma : float, default 4.0
        Standard deviation of the kernel in pixels.

    Returns
    -------
    Tensor
        The blurred images, same shape and dtype.

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(1, 1, 6, 6)
    >>> bool(torch.allclose(blur_fill(x, 3, 1.0), x))
    True
    """
    from torchvision.transforms.functional import gaussian_blur

    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}.")
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}.")
    return gaussian_blur(images, [kernel_size, kernel_size], [float(sigma), float(sigma)])


def _ranked_scores(attributions: Tensor, order: str) -> Tensor:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}.")
    scores = attributions.detach().float().mean(dim=1).flatten(1)  # (N, pixels)
    if order == "negative":
        scores = -scores
    elif order == "absolute":
        scores = scores.abs()
    return scores


def keep_mask(attributions: Tensor, fraction: float, order: str, mode: str) -> Tensor:
    """Which pixels stay at ``fraction`` (True) and which get the fill (False).

    Parameters
    ----------
    attributions : Tensor
        ``(N, C, H, W)`` attributions (averaged over ``C``).
    fraction : float
        Fraction of the pixels to keep, in ``[0, 1]``; capped by the number of pixels
        with a positive ranked score.
    order : {"positive", "negative", "absolute"}
        What is ranked: the scores, their negatives or their absolute values.
    mode : {"keep", "remove"}
        ``"keep"``: keep the highest-ranked positive pixels; ``"remove"``: keep the
        lowest-ranked positive pixels (the most important ones are removed first).

    Returns
    -------
    Tensor
        Boolean ``(N, 1, H, W)`` mask.

    Examples
    --------
    >>> import torch
    >>> a = torch.tensor([3.0, -1.0, 2.0, 1.0]).view(1, 1, 2, 2)
    >>> keep_mask(a, 0.5, "positive", "keep").flatten().tolist()
    [True, False, True, False]
    >>> keep_mask(a, 0.5, "positive", "remove").flatten().tolist()
    [False, False, True, True]
    >>> keep_mask(a, 1.0, "negative", "keep").flatten().tolist()   # one negative pixel
    [False, True, False, False]
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}.")
    if attributions.dim() != 4:
        raise ValueError(
            f"attributions must be (N, C, H, W), got shape {tuple(attributions.shape)}."
        )
    scores = _ranked_scores(attributions, order)
    n, pixels = scores.shape
    positive = scores > 0
    k = torch.clamp(positive.sum(1), max=int(math.floor(fraction * pixels + 1e-9)))
    if mode == "keep":
        key = torch.where(positive, scores, torch.full_like(scores, -math.inf))
        idx = torch.argsort(key, dim=1, descending=True, stable=True)
    else:
        key = torch.where(positive, scores, torch.full_like(scores, math.inf))
        idx = torch.argsort(key, dim=1, stable=True)
    rank = torch.empty_like(idx)
    rank.scatter_(1, idx, torch.arange(pixels, device=idx.device).expand(n, pixels))
    keep = rank < k.unsqueeze(1)
    return keep.view(n, 1, *attributions.shape[2:])


@torch.no_grad()
def _outputs(model: Callable[[Tensor], Tensor], x: Tensor, batch_size: int) -> Tensor:
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def masking_curves(
    model: Callable[[Tensor], Tensor],
    inputs: Tensor,
    attributions: Tensor,
    targets: Tensor,
    fill: Tensor,
    fractions: Sequence[float] = PAPER_FRACTIONS,
    orders: Iterable[str] = ORDERS,
    modes: Iterable[str] = MODES,
    batch_size: int = 1024,
) -> Dict[str, np.ndarray]:
    """Per-image masking curves: the model's output over the fractions of pixels kept.

    Parameters
    ----------
    model : callable
        ``(N, C, H, W) -> (N, classes)`` logits; called under ``torch.no_grad()``.
        Put it in eval mode first.
    inputs, attributions, fill : Tensor
        ``(N, C, H, W)`` images, their attributions and the fill (e.g. :func:`blur_fill`).
    targets : Tensor
        ``(N,)`` class indices whose logit is recorded.
    fractions : sequence of float, default :data:`PAPER_FRACTIONS`
        Fractions of pixels kept, increasing.
    orders, modes : iterables of str
        Which of the six metrics to compute.
    batch_size : int, default 1024
        Images per forward pass.

    Returns
    -------
    dict
        ``"{mode}_{order}"`` -> ``(N, len(fractions))`` array: the target logit
        (positive and negative orders) or 1.0/0.0 for a correct/incorrect top-1
        prediction (absolute order).

    Examples
    --------
    >>> import torch
    >>> model = lambda x: torch.stack([x.flatten(1)[:, 0], torch.full((len(x),), 0.5)], 1)
    >>> x = torch.ones(1, 1, 2, 2)
    >>> a = torch.tensor([1.0, 0.1, 0.2, 0.3]).view(1, 1, 2, 2)   # points at pixel 0
    >>> c = masking_curves(model, x, a, torch.tensor([0]), torch.zeros_like(x), [0.25, 1.0])
    >>> c["keep_positive"].tolist(), c["remove_positive"].tolist()
    ([[1.0, 1.0]], [[0.0, 1.0]])
    """
    shapes = {tuple(t.shape) for t in (inputs, attributions, fill)}
    if len(shapes) != 1 or inputs.dim() != 4:
        raise ValueError(
            "inputs, attributions and fill must have the same (N, C, H, W) shape, got "
            f"{tuple(inputs.shape)}, {tuple(attributions.shape)}, {tuple(fill.shape)}."
        )
    if targets.shape != (len(inputs),):
        raise ValueError(f"targets must have shape ({len(inputs)},), got {tuple(targets.shape)}.")
    fractions = [float(f) for f in fractions]
    if any(b <= a for a, b in zip(fractions, fractions[1:])):
        raise ValueError(f"fractions must increase, got {fractions}.")
    targets = targets.to(inputs.device).long()
    out: Dict[str, np.ndarray] = {}
    for order in orders:
        for mode in modes:
            rows = []
            for f in fractions:
                keep = keep_mask(attributions, f, order, mode)
                logits = _outputs(model, torch.where(keep, inputs, fill), batch_size)
                if order == "absolute":
                    rows.append((logits.argmax(1) == targets).float())
                else:
                    rows.append(logits.gather(1, targets.unsqueeze(1)).squeeze(1).float())
            out[f"{mode}_{order}"] = torch.stack(rows, 1).cpu().numpy()
    return out


def curve_auc(fractions: Sequence[float], curve: np.ndarray) -> np.ndarray:
    """Trapezoidal area under ``curve`` (last axis) over ``fractions``.

    Examples
    --------
    >>> import numpy as np
    >>> float(curve_auc([0.0, 0.5, 1.0], np.array([0.0, 1.0, 1.0])))
    0.75
    """
    x = np.asarray(fractions, dtype=float)
    y = np.asarray(curve, dtype=float)
    return np.sum((y[..., 1:] + y[..., :-1]) * np.diff(x) / 2.0, axis=-1)


def masking_aucs(
    curves: Dict[str, np.ndarray], fractions: Sequence[float] = PAPER_FRACTIONS
) -> Dict[str, float]:
    """AUC of the mean curve over the images, per metric (the paper's number).

    Parameters
    ----------
    curves : dict
        Output of :func:`masking_curves`.
    fractions : sequence of float
        The fractions the curves were taken at.

    Returns
    -------
    dict
        metric name -> AUC (equal to the mean of the per-image AUCs).
    """
    return {name: float(curve_auc(fractions, c.mean(0))) for name, c in curves.items()}


def summary_curve(curves: Dict[str, np.ndarray]) -> Dict[str, Tuple[float, ...]]:
    """Mean curve over the images, per metric (for plots and the JSON)."""
    return {name: tuple(float(v) for v in c.mean(0)) for name, c in curves.items()}


__all__ = [
    "HIGHER_IS_BETTER",
    "MODES",
    "ORDERS",
    "PAPER_FRACTIONS",
    "blur_fill",
    "curve_auc",
    "keep_mask",
    "masking_aucs",
    "masking_curves",
    "summary_curve",
]
