r"""Attribution priors: differentiable losses on attribution tensors.

An *attribution prior* (Erion et al., 2021) is a penalty :math:`\Omega(\Phi)` on the
attributions :math:`\Phi` of a model, added to the task loss during training,
:math:`\mathcal{L} = \mathcal{L}_{task} + \lambda\,\Omega(\Phi)`, so that the model learns
to *look at* what the prior prefers (few features, smooth maps, the right region).
Every function here is a pure function of tensors: it takes attributions of shape
``(N, ...)`` (the batch first, as Captum returns them; a tuple of such tensors for
models with several inputs) and returns a scalar loss to *minimise*, differentiable in
the attributions. Compute attributions that stay differentiable with respect to the
parameters (``XGradient(model).attribute(x, target=y, create_graph=True)``) or let
:class:`captum_xgrad.training.AttributionPrior` do it; X-Gradient makes this cost one
forward and one double-backward pass (Hesse et al., NeurIPS 2021, Sec. 4.3).

Notation: :math:`a_{nd}` is the attribution of feature :math:`d` (all non-batch
dimensions flattened) of example :math:`n`; :math:`N` examples, :math:`D` features.

- :func:`gini_coefficient`, :func:`gini_prior`: sparsity (Erion et al. 2021; Hesse et
  al. 2021, Sec. 4.3).
- :func:`l1_prior`: sparsity by the L1 norm.
- :func:`mask_prior`: "right for the right reasons" (Ross et al. 2017).
- :func:`energy_loss`: the Energy pointing-game loss (Rao et al. 2023).
- :func:`total_variation_prior`: smoothness of image attributions (Erion et al. 2021).

References
----------
- G. Erion, J. D. Janizek, P. Sturmfels, S. M. Lundberg, S.-I. Lee.
  "Improving performance of deep learning models with axiomatic attribution priors
  and expected gradients." Nature Machine Intelligence 3, 2021 (arXiv:1906.10670).
- R. Hesse, S. Schaub-Meyer, S. Roth. "Fast Axiomatic Attribution for
  Neural Networks." NeurIPS 2021.
- A. S. Ross, M. C. Hughes, F. Doshi-Velez. "Right for the Right Reasons:
  Training Differentiable Models by Constraining their Explanations." IJCAI 2017.
- S. Rao, M. Böhle, A. Parchami-Araghi, B. Schiele. "Studying How to
  Efficiently and Effectively Guide Models with Explanations." ICCV 2023.
"""

from __future__ import annotations

import numbers
from typing import Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = [
    "Attributions",
    "energy_loss",
    "gini_coefficient",
    "gini_prior",
    "l1_prior",
    "mask_prior",
    "total_variation_prior",
]

#: A tensor of attributions ``(N, ...)``, or a tuple of them (one per model input).
Attributions = Union[Tensor, Tuple[Tensor, ...]]
#: A mask broadcastable to the attributions, or a tuple of them (one per input).
Masks = Union[Tensor, Sequence[Tensor]]


# --------------------------------------------------------------------------- helpers
def _as_tuple(attributions: Attributions, func: str) -> Tuple[Tensor, ...]:
    items = attributions if isinstance(attributions, (tuple, list)) else (attributions,)
    if len(items) == 0:
        raise ValueError(f"{func}: got an empty tuple of attributions; pass at least one tensor.")
    for i, a in enumerate(items):
        if not isinstance(a, Tensor):
            raise TypeError(
                f"{func}: attributions must be a tensor or a tuple of tensors, got "
                f"{type(a).__name__} at position {i}."
            )
        if not (a.is_floating_point() or a.is_complex()):
            raise TypeError(
                f"{func}: attributions must be floating point, got dtype {a.dtype}; "
                "compute them from float inputs (e.g. `x.float()`)."
            )
        if a.dim() < 2:
            raise ValueError(
                f"{func}: attributions must have shape (N, ...) with the batch first and "
                f"at least one feature dimension, got shape {tuple(a.shape)}. For a single "
                "example use `a.unsqueeze(0)`."
            )
        if a.shape[0] == 0:
            raise ValueError(f"{func}: got an empty batch (shape {tuple(a.shape)}).")
    n = items[0].shape[0]
    for i, a in enumerate(items[1:], start=1):
        if a.shape[0] != n:
            raise ValueError(
                f"{func}: all attribution tensors must have the same batch size; tensor 0 "
                f"has {n} examples, tensor {i} has {a.shape[0]}."
            )
    return tuple(items)


def _flatten(attributions: Attributions, func: str) -> Tensor:
    """``(N, D)``: every input's features flattened and concatenated."""
    items = _as_tuple(attributions, func)
    flat = [a.reshape(a.shape[0], -1) for a in items]
    return flat[0] if len(flat) == 1 else torch.cat(flat, dim=1)


def _masks(masks: Masks, items: Tuple[Tensor, ...], func: str) -> Tuple[Tensor, ...]:
    ms = tuple(masks) if isinstance(masks, (tuple, list)) else (masks,)
    if len(ms) != len(items):
        raise ValueError(
            f"{func}: got {len(ms)} mask(s) for {len(items)} attribution tensor(s); pass "
            "one mask per input (a tuple of masks for a tuple of attributions)."
        )
    out = []
    for i, (m, a) in enumerate(zip(ms, items)):
        if not isinstance(m, Tensor):
            raise TypeError(f"{func}: mask {i} must be a tensor, got {type(m).__name__}.")
        try:
            shape = torch.broadcast_shapes(m.shape, a.shape)
        except RuntimeError:
            shape = None
        if shape != a.shape:
            raise ValueError(
                f"{func}: mask {i} of shape {tuple(m.shape)} does not broadcast to the "
                f"attributions of shape {tuple(a.shape)}; use the attributions' shape, "
                "or one without the batch dimension to apply the same mask to every example."
            )
        m = m.to(device=a.device, dtype=a.dtype if a.is_floating_point() else torch.float32)
        if bool((m < 0).any()):
            raise ValueError(
                f"{func}: mask {i} has negative entries; a mask holds 0/1 (or non-negative "
                "weights) marking the features it selects."
            )
        out.append(m.expand(a.shape))
    return tuple(out)


def _check_eps(eps: float, func: str) -> None:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
        raise ValueError(f"{func}: eps must be a positive number, got {eps!r}.")


# ----------------------------------------------------------------------------- Gini
def gini_coefficient(values: Tensor, dim: int = -1, eps: float = 1e-12) -> Tensor:
    r"""Gini coefficient of non-negative values along ``dim``, differentiably.

    .. math::

        G(v) = \frac{\sum_{i=1}^{D}\sum_{j=1}^{D} |v_i - v_j|}{2 D \sum_{i=1}^{D} v_i}
             = \frac{\sum_{i=1}^{D} (2i - D - 1)\, v_{(i)}}{D \sum_{i=1}^{D} v_i},

    where :math:`v_{(1)} \le \dots \le v_{(D)}` are the sorted values (the second form
    costs :math:`O(D \log D)` instead of :math:`O(D^2)`). :math:`G = 0` when all values
    are equal and :math:`G = 1 - 1/D` when a single one is non-zero. This is the
    half relative mean absolute difference used by Erion et al. (2021) and the
    official code of Hesse et al. (2021).

    Parameters
    ----------
    values : Tensor
        Non-negative values (e.g. mean absolute attributions).
    dim : int, default -1
        The dimension along which the Gini coefficient is taken.
    eps : float, default 1e-12
        Added to the denominator so that an all-zero vector gives 0 instead of NaN.

    Returns
    -------
    Tensor
        ``values`` with ``dim`` reduced.

    Raises
    ------
    ValueError
        If ``values`` has negative entries or ``eps`` is not positive.
    TypeError
        If ``values`` is not a floating-point tensor.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.priors import gini_coefficient
    >>> gini_coefficient(torch.tensor([1.0, 1.0, 1.0, 1.0]))
    tensor(0.)
    >>> gini_coefficient(torch.tensor([0.0, 0.0, 0.0, 2.0]))  # 1 - 1/4
    tensor(0.7500)
    """
    if not isinstance(values, Tensor) or not values.is_floating_point():
        raise TypeError(
            "gini_coefficient: values must be a floating-point tensor, got "
            f"{type(values).__name__ if not isinstance(values, Tensor) else values.dtype}."
        )
    _check_eps(eps, "gini_coefficient")
    if values.dim() == 0 or values.shape[dim] == 0:
        raise ValueError(
            f"gini_coefficient: need at least one value along dim {dim}, got shape "
            f"{tuple(values.shape)}."
        )
    if bool((values.detach() < 0).any()):
        raise ValueError(
            "gini_coefficient: values must be non-negative (the Gini coefficient of "
            "attributions is taken of their magnitudes: pass `a.abs()`)."
        )
    d = values.shape[dim]
    v = values.movedim(dim, -1)
    sorted_v = torch.sort(v, dim=-1).values
    ranks = torch.arange(1, d + 1, device=v.device, dtype=v.dtype)
    coeff = 2.0 * ranks - d - 1.0
    numerator = (sorted_v * coeff).sum(dim=-1)
    return numerator / (d * v.sum(dim=-1) + eps)


def gini_prior(attributions: Attributions, eps: float = 1e-12) -> Tensor:
    r"""Sparsity prior: minus the Gini coefficient of the mean absolute attribution.

    .. math::

        \Omega_{\mathrm{Gini}}(\Phi) = -G(\bar a), \qquad
        \bar a_d = \frac{1}{N} \sum_{n=1}^{N} |a_{nd}|,

    with :math:`G` from :func:`gini_coefficient`. Minimising it concentrates the
    model's (global) attribution on few features. Source: Erion et al. (2021), "global
    sparsity prior", used with X-Gradient by Hesse et al. (2021), Sec. 4.3. Note that
    :math:`\bar a` is a *batch* statistic: under data parallelism each process sees
    its own batch.

    Parameters
    ----------
    attributions : Tensor or tuple of Tensor
        Shape ``(N, ...)``; for a tuple, all inputs' features are pooled.
    eps : float, default 1e-12
        Stabiliser of the Gini denominator.

    Returns
    -------
    Tensor
        Scalar in :math:`[-(1 - 1/D), 0]`.

    Raises
    ------
    TypeError, ValueError
        For non-tensor, non-float or batch-less attributions.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.priors import gini_prior
    >>> a = torch.tensor([[1.0, 0.0, 0.0, 0.0], [-3.0, 0.0, 0.0, 0.0]])
    >>> gini_prior(a)  # all the attribution on one of 4 features
    tensor(-0.7500)
    """
    flat = _flatten(attributions, "gini_prior")
    return -gini_coefficient(flat.abs().mean(dim=0), eps=eps)


# ------------------------------------------------------------------------------- L1
def l1_prior(attributions: Attributions) -> Tensor:
    r"""Sparsity prior: the mean over examples of the L1 norm of the attributions.

    .. math::

        \Omega_{L1}(\Phi) = \frac{1}{N} \sum_{n=1}^{N} \sum_{d=1}^{D} |a_{nd}|.

    Unlike :func:`gini_prior` it also shrinks the attributions' scale (and, by
    completeness, the outputs). Source: Erion et al. (2021), the L1 baselines.

    Parameters
    ----------
    attributions : Tensor or tuple of Tensor
        Shape ``(N, ...)``.

    Returns
    -------
    Tensor
        Non-negative scalar.

    Raises
    ------
    TypeError, ValueError
        For non-tensor, non-float or batch-less attributions.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.priors import l1_prior
    >>> l1_prior(torch.tensor([[1.0, -2.0], [0.5, 0.5]]))  # (3 + 1) / 2
    tensor(2.)
    """
    flat = _flatten(attributions, "l1_prior")
    return flat.abs().sum(dim=1).mean()


# ----------------------------------------------------------------------------- masks
def mask_prior(attributions: Attributions, mask: Masks, power: float = 2.0) -> Tensor:
    r""""Right for the right reasons": penalise attribution on forbidden features.

    .. math::

        \Omega_{\mathrm{RRR}}(\Phi; M) = \frac{1}{N} \sum_{n=1}^{N} \sum_{d=1}^{D}
            m_{nd}\, |a_{nd}|^{p},

    where :math:`m_{nd} \ge 0` marks (or weighs) the features the model must not use.
    Ross et al. (2017) use :math:`p = 2` on input gradients of the log-probabilities;
    here it applies to any attribution (with X-Gradient it costs one double backward).

    Parameters
    ----------
    attributions : Tensor or tuple of Tensor
        Shape ``(N, ...)``.
    mask : Tensor or tuple of Tensor
        Non-negative (0/1 or weights), broadcastable to the attributions: shape
        ``(N, ...)`` for one mask per example, or without the batch dimension for one
        mask shared by all. A tuple for tuple attributions. Bool masks are accepted.
    power : float, default 2.0
        The exponent :math:`p > 0`.

    Returns
    -------
    Tensor
        Non-negative scalar.

    Raises
    ------
    ValueError
        If the mask does not broadcast to the attributions, has negative entries, or
        ``power`` is not positive.
    TypeError
        For non-tensor attributions or masks.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.priors import mask_prior
    >>> a = torch.tensor([[1.0, -2.0, 3.0]])
    >>> mask_prior(a, torch.tensor([0.0, 1.0, 1.0]))  # 2**2 + 3**2
    tensor(13.)
    """
    if isinstance(power, bool) or not isinstance(power, numbers.Real) or not power > 0:
        raise ValueError(f"mask_prior: power must be a positive number, got {power!r}.")
    items = _as_tuple(attributions, "mask_prior")
    masks = _masks(mask, items, "mask_prior")
    n = items[0].shape[0]
    total = None
    for a, m in zip(items, masks):
        mag = a.abs()
        term = (m * (mag * mag if power == 2 else mag.pow(power))).sum()
        total = term if total is None else total + term
    assert total is not None
    return total / n


def energy_loss(attributions: Attributions, mask: Masks, eps: float = 1e-12) -> Tensor:
    r"""Energy pointing-game loss: reward positive attribution inside allowed regions.

    .. math::

        \mathcal{L}_{\mathrm{Energy}}(\Phi; M) = \frac{1}{N}\sum_{n=1}^{N}
            \left(1 - \frac{\sum_{d} m_{nd}\, a^{+}_{nd}}{\sum_{d} a^{+}_{nd} + \epsilon}
            \right), \qquad a^{+} = \max(a, 0),

    i.e. one minus the share of the positive attribution ("energy") that falls inside
    the mask of allowed features (e.g. the object's bounding box). It is 0 when all
    positive attribution is inside the mask; an example with no positive attribution
    counts as 1. Source: Rao et al. (2023), the "Energy" localisation loss.

    Parameters
    ----------
    attributions : Tensor or tuple of Tensor
        Shape ``(N, ...)``; for a tuple, the energy is pooled over all inputs.
    mask : Tensor or tuple of Tensor
        0/1 mask of *allowed* features, broadcastable to the attributions (shape
        ``(N, ...)`` or without the batch dimension). Entries should be in ``[0, 1]``.
    eps : float, default 1e-12
        Stabiliser of the denominator.

    Returns
    -------
    Tensor
        Scalar in :math:`[0, 1]`.

    Raises
    ------
    ValueError
        If the mask does not broadcast, has entries outside ``[0, 1]``, or ``eps`` is
        not positive.
    TypeError
        For non-tensor attributions or masks.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.priors import energy_loss
    >>> a = torch.tensor([[3.0, 1.0, -5.0]])
    >>> energy_loss(a, torch.tensor([1.0, 0.0, 0.0]))  # 1 - 3 / (3 + 1)
    tensor(0.2500)
    """
    _check_eps(eps, "energy_loss")
    items = _as_tuple(attributions, "energy_loss")
    masks = _masks(mask, items, "energy_loss")
    for i, m in enumerate(masks):
        if bool((m > 1).any()):
            raise ValueError(
                f"energy_loss: mask {i} has entries above 1; it marks allowed features "
                "with 1 and the rest with 0."
            )
    inside = None
    total = None
    for a, m in zip(items, masks):
        pos = torch.relu(a).reshape(a.shape[0], -1)
        mm = m.reshape(a.shape[0], -1)
        ins, tot = (mm * pos).sum(dim=1), pos.sum(dim=1)
        inside = ins if inside is None else inside + ins
        total = tot if total is None else total + tot
    assert inside is not None and total is not None
    return (1.0 - inside / (total + eps)).mean()


# ------------------------------------------------------------------------ smoothness
def total_variation_prior(attributions: Attributions) -> Tensor:
    r"""Smoothness prior: anisotropic total variation of image attributions.

    For attributions of shape ``(N, C, H, W)`` (or ``(N, H, W)``),

    .. math::

        \Omega_{TV}(\Phi) = \frac{1}{N} \sum_{n, c} \left(
            \sum_{i=1}^{H-1}\sum_{j=1}^{W} |a_{n,c,i+1,j} - a_{n,c,i,j}|
            + \sum_{i=1}^{H}\sum_{j=1}^{W-1} |a_{n,c,i,j+1} - a_{n,c,i,j}| \right).

    Minimising it favours piecewise-constant attribution maps. Source: Erion et al.
    (2021), the "pixel attribution prior" for images. The last two dimensions are the
    spatial ones; any dimensions between the batch and them (channels) are summed.

    Parameters
    ----------
    attributions : Tensor or tuple of Tensor
        Shape ``(N, ..., H, W)`` with at least 3 dimensions; for a tuple, the total
        variations of all inputs are added.

    Returns
    -------
    Tensor
        Non-negative scalar.

    Raises
    ------
    ValueError
        For attributions with fewer than 3 dimensions (no image).
    TypeError
        For non-tensor or non-float attributions.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.priors import total_variation_prior
    >>> a = torch.tensor([[[0.0, 1.0], [0.0, 3.0]]])  # (1, 2, 2)
    >>> total_variation_prior(a)  # vertical 0 + 2, horizontal 1 + 3
    tensor(6.)
    """
    items = _as_tuple(attributions, "total_variation_prior")
    total = None
    for i, a in enumerate(items):
        if a.dim() < 3:
            raise ValueError(
                "total_variation_prior: attributions must be images of shape (N, H, W) or "
                f"(N, C, H, W), got shape {tuple(a.shape)} for input {i}; for tabular "
                "data use gini_prior or l1_prior."
            )
        dv = (a[..., 1:, :] - a[..., :-1, :]).abs().sum()
        dh = (a[..., :, 1:] - a[..., :, :-1]).abs().sum()
        term = dv + dh
        total = term if total is None else total + term
    assert total is not None
    return total / items[0].shape[0]
