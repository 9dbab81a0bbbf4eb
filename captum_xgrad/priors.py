r"""Attribution priors: differentiable losses :math:`\Omega(\Phi)` on attribution tensors.

A prior is added to the task loss, :math:`\mathcal{L} = \mathcal{L}_{task} + \lambda\,\Omega(\Phi)`,
so that the model learns to look at what it prefers (few features, smooth maps, the right
region). Each function takes attributions ``(N, ...)`` (batch first; a tuple of them for several
inputs) and returns a scalar to minimise, differentiable in them; compute them with
``create_graph=True`` or let :class:`captum_xgrad.training.AttributionPrior` do it. Notation:
:math:`a_{nd}` is the attribution of feature :math:`d` (non-batch dimensions flattened) of
example :math:`n`; :math:`N` examples, :math:`D` features.

Sources: Erion et al., "Improving performance of deep learning models with axiomatic
attribution priors and expected gradients" (Nature Machine Intelligence 2021); Hesse et al.,
"Fast Axiomatic Attribution for Neural Networks" (NeurIPS 2021); Ross et al., "Right for the
Right Reasons" (IJCAI 2017); Rao et al., "Studying How to Efficiently and Effectively Guide
Models with Explanations" (ICCV 2023).
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence, Tuple, Union

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


def _as_tuple(attributions: Attributions, func: str) -> Tuple[Tensor, ...]:
    items = tuple(attributions) if isinstance(attributions, (tuple, list)) else (attributions,)
    if not items:
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
                f"{func}: attributions must have shape (N, ...) with the batch first and at "
                f"least one feature dimension, got shape {tuple(a.shape)}. For a single "
                "example use `a.unsqueeze(0)`."
            )
        if a.shape[0] == 0:
            raise ValueError(f"{func}: got an empty batch (shape {tuple(a.shape)}).")
        if a.shape[0] != items[0].shape[0]:
            raise ValueError(
                f"{func}: all attribution tensors must have the same batch size; tensor 0 "
                f"has {items[0].shape[0]} examples, tensor {i} has {a.shape[0]}."
            )
    return items


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    """``(N, D)``: every tensor's features flattened and concatenated."""
    return torch.cat([t.reshape(t.shape[0], -1) for t in tensors], dim=1)


def _masks(masks: Masks, items: Tuple[Tensor, ...], func: str, at_most_one: bool = False) -> Tensor:
    """The masks checked, expanded to the attributions and flattened to ``(N, D)``."""
    ms = tuple(masks) if isinstance(masks, (tuple, list)) else (masks,)
    if len(ms) != len(items):
        raise ValueError(
            f"{func}: got {len(ms)} mask(s) for {len(items)} attribution tensor(s); pass one "
            "mask per input (a tuple of masks for a tuple of attributions)."
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
                f"attributions of shape {tuple(a.shape)}; use the attributions' shape, or one "
                "without the batch dimension to apply the same mask to every example."
            )
        m = m.to(device=a.device, dtype=a.dtype if a.is_floating_point() else torch.float32)
        if bool((m < 0).any()):
            raise ValueError(
                f"{func}: mask {i} has negative entries; a mask holds 0/1 (or non-negative "
                "weights) marking the features it selects."
            )
        if at_most_one and bool((m > 1).any()):
            raise ValueError(
                f"{func}: mask {i} has entries above 1; it marks allowed features with 1 and "
                "the rest with 0."
            )
        out.append(m.expand(a.shape))
    return _flat(out)


def _check_positive(value: Any, name: str, func: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{func}: {name} must be a positive number, got {value!r}.")


def gini_coefficient(values: Tensor, dim: int = -1, eps: float = 1e-12) -> Tensor:
    r"""Gini coefficient of non-negative values along ``dim``, differentiably.

    .. math::

        G(v) = \frac{\sum_{i=1}^{D}\sum_{j=1}^{D} |v_i - v_j|}{2 D \sum_{i=1}^{D} v_i}
             = \frac{\sum_{i=1}^{D} (2i - D - 1)\, v_{(i)}}{D \sum_{i=1}^{D} v_i},

    with :math:`v_{(1)} \le \dots \le v_{(D)}` sorted (the second form is :math:`O(D \log D)`);
    :math:`G = 0` for equal values, :math:`1 - 1/D` for a single non-zero one. This is the
    half relative mean absolute difference of Erion et al. (2021) and Hesse et al. (2021).

    Parameters
    ----------
    values : Tensor
        Non-negative values (e.g. mean absolute attributions).
    dim : int, default -1
        The dimension reduced.
    eps : float, default 1e-12
        Added to the denominator, so that all zeros give 0, not NaN.

    Returns
    -------
    Tensor
        ``values`` with ``dim`` reduced.

    Raises
    ------
    TypeError, ValueError
        If ``values`` is not a float tensor or has negative entries, or ``eps`` is not positive.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.priors import gini_coefficient
    >>> gini_coefficient(torch.tensor([0.0, 0.0, 0.0, 2.0]))  # 1 - 1/4
    tensor(0.7500)
    """
    if not isinstance(values, Tensor) or not values.is_floating_point():
        kind = values.dtype if isinstance(values, Tensor) else type(values).__name__
        raise TypeError(f"gini_coefficient: values must be a floating-point tensor, got {kind}.")
    _check_positive(eps, "eps", "gini_coefficient")
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
    coeff = 2.0 * torch.arange(1, d + 1, device=v.device, dtype=v.dtype) - d - 1.0
    return (torch.sort(v, dim=-1).values * coeff).sum(dim=-1) / (d * v.sum(dim=-1) + eps)


def gini_prior(attributions: Attributions, eps: float = 1e-12) -> Tensor:
    r"""Sparsity prior: minus the Gini coefficient of the mean absolute attribution.

    :math:`\Omega_{\mathrm{Gini}}(\Phi) = -G(\bar a)` with
    :math:`\bar a_d = \frac{1}{N} \sum_{n=1}^{N} |a_{nd}|` (a batch statistic) and :math:`G`
    from :func:`gini_coefficient`: the "global sparsity prior" of Erion et al. (2021) used by
    Hesse et al. (2021), Sec. 4.3.

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
    >>> gini_prior(torch.tensor([[1.0, 0.0, 0.0, 0.0], [-3.0, 0.0, 0.0, 0.0]]))
    tensor(-0.7500)
    """
    return -gini_coefficient(_flat(_as_tuple(attributions, "gini_prior")).abs().mean(0), eps=eps)


def l1_prior(attributions: Attributions) -> Tensor:
    r"""Sparsity prior, the mean L1 norm :math:`\Omega_{L1}(\Phi) = \frac{1}{N}\sum_{n,d} |a_{nd}|`.

    Unlike :func:`gini_prior` it also shrinks the attributions' scale (and, by completeness,
    the outputs). Source: Erion et al. (2021), the L1 baselines.

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
    return _flat(_as_tuple(attributions, "l1_prior")).abs().sum(dim=1).mean()


def mask_prior(attributions: Attributions, mask: Masks, power: float = 2.0) -> Tensor:
    r""""Right for the right reasons" (Ross et al., 2017): penalise forbidden features.

    :math:`\Omega_{\mathrm{RRR}}(\Phi; M) = \frac{1}{N} \sum_{n=1}^{N} \sum_{d=1}^{D}
    m_{nd}\, |a_{nd}|^{p}`, where :math:`m_{nd} \ge 0` marks (or weighs) the features the
    model must not use. Ross et al. use :math:`p = 2` on input gradients.

    Parameters
    ----------
    attributions : Tensor or tuple of Tensor
        Shape ``(N, ...)``.
    mask : Tensor or tuple of Tensor
        Non-negative (0/1, bool or weights), broadcastable to the attributions: ``(N, ...)``
        or, shared by all examples, without the batch dimension. A tuple for tuple attributions.
    power : float, default 2.0
        The exponent :math:`p > 0`.

    Returns
    -------
    Tensor
        Non-negative scalar.

    Raises
    ------
    TypeError, ValueError
        For bad attributions, a mask that is not a tensor, does not broadcast or has negative
        entries, or a non-positive ``power``.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.priors import mask_prior
    >>> mask_prior(torch.tensor([[1.0, -2.0, 3.0]]), torch.tensor([0.0, 1.0, 1.0]))  # 4 + 9
    tensor(13.)
    """
    _check_positive(power, "power", "mask_prior")
    items = _as_tuple(attributions, "mask_prior")
    masks = _masks(mask, items, "mask_prior")
    return (masks * _flat(items).abs().pow(power)).sum() / items[0].shape[0]


def energy_loss(attributions: Attributions, mask: Masks, eps: float = 1e-12) -> Tensor:
    r"""Energy pointing-game loss (Rao et al., 2023): positive attribution outside the mask.

    .. math::

        \mathcal{L}_{\mathrm{Energy}}(\Phi; M) = \frac{1}{N}\sum_{n=1}^{N}
            \left(1 - \frac{\sum_{d} m_{nd}\, a^{+}_{nd}}{\sum_{d} a^{+}_{nd} + \epsilon}
            \right), \qquad a^{+} = \max(a, 0),

    one minus the share of the positive attribution ("energy") inside the mask of allowed
    features (e.g. a bounding box); an example without positive attribution counts as 1.

    Parameters
    ----------
    attributions : Tensor or tuple of Tensor
        Shape ``(N, ...)``; for a tuple, the energy is pooled over all inputs.
    mask : Tensor or tuple of Tensor
        0/1 mask of *allowed* features, broadcastable to the attributions.
    eps : float, default 1e-12
        Stabiliser of the denominator.

    Returns
    -------
    Tensor
        Scalar in :math:`[0, 1]`.

    Raises
    ------
    TypeError, ValueError
        For bad attributions, a mask that is not a tensor, does not broadcast or is not in
        ``[0, 1]``, or a non-positive ``eps``.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.priors import energy_loss
    >>> energy_loss(torch.tensor([[3.0, 1.0, -5.0]]), torch.tensor([1.0, 0.0, 0.0]))  # 1 - 3/4
    tensor(0.2500)
    """
    _check_positive(eps, "eps", "energy_loss")
    items = _as_tuple(attributions, "energy_loss")
    masks = _masks(mask, items, "energy_loss", at_most_one=True)
    pos = torch.relu(_flat(items))
    return (1.0 - (masks * pos).sum(dim=1) / (pos.sum(dim=1) + eps)).mean()


def total_variation_prior(attributions: Attributions) -> Tensor:
    r"""Smoothness prior: anisotropic total variation of image attributions ``(N, [C,] H, W)``.

    .. math::

        \Omega_{TV}(\Phi) = \frac{1}{N} \sum_{n, c} \left(
            \sum_{i=1}^{H-1}\sum_{j=1}^{W} |a_{n,c,i+1,j} - a_{n,c,i,j}|
            + \sum_{i=1}^{H}\sum_{j=1}^{W-1} |a_{n,c,i,j+1} - a_{n,c,i,j}| \right),

    the "pixel attribution prior" of Erion et al. (2021); it favours piecewise-constant maps.
    The last two dimensions are spatial; the dimensions between them and the batch are summed.

    Parameters
    ----------
    attributions : Tensor or tuple of Tensor
        Shape ``(N, ..., H, W)``; for a tuple, the inputs' total variations are added.

    Returns
    -------
    Tensor
        Non-negative scalar.

    Raises
    ------
    TypeError, ValueError
        For non-tensor or non-float attributions, or fewer than 3 dimensions (no image).

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.priors import total_variation_prior
    >>> total_variation_prior(torch.tensor([[[0.0, 1.0], [0.0, 3.0]]]))  # (0 + 2) + (1 + 3)
    tensor(6.)
    """
    items = _as_tuple(attributions, "total_variation_prior")
    for i, a in enumerate(items):
        if a.dim() < 3:
            raise ValueError(
                "total_variation_prior: attributions must be images of shape (N, H, W) or "
                f"(N, C, H, W), got shape {tuple(a.shape)} for input {i}; for tabular data use "
                "gini_prior or l1_prior."
            )
    total = sum(
        (a[..., 1:, :] - a[..., :-1, :]).abs().sum() + (a[..., :, 1:] - a[..., :, :-1]).abs().sum()
        for a in items
    )
    return total / items[0].shape[0]
