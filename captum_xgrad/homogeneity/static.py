r"""Structural scan of a model's modules for what breaks homogeneity (no forward pass).

:func:`static_findings` walks ``model.named_modules()`` and :func:`module_reasons`
judges one module on its own: biases of Linear/Conv layers, normalisation with a shift
or batch statistics, non-homogeneous activations, Dropout in training mode. It cannot
see code in ``forward``; :func:`~captum_xgrad.certify_homogeneity` can.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn

from .._core.types import BATCH_NORM, BIASED, DROPOUT, NON_HOMOGENEOUS_ACTIVATIONS, PER_EXAMPLE_NORMS

__all__ = ["module_reasons", "static_findings"]

# ------------------------------------------------------------------ static knowledge
_CONV_LIKE = BIASED
_NON_HOMOGENEOUS_ACTIVATIONS = NON_HOMOGENEOUS_ACTIVATIONS

#: name fragments of a custom module's own parameters that usually enter ``forward``
#: additively (Fixup's ``bias1a``, ViT's ``pos_embedding``/``class_token``).
_ADDITIVE_PARAM_HINTS = ("bias", "shift", "offset", "embed", "token")


def _all_zero(t: Tensor) -> bool:
    """Whether ``t`` is all zeros (False for tensors without data, e.g. on "meta")."""
    if t.device.type == "meta":
        return False
    return bool(torch.count_nonzero(t.detach()) == 0)


def _activation_reason(module: nn.Module) -> Optional[str]:
    if isinstance(module, nn.ReLU6):
        return "ReLU6 clips at 6, so it is not homogeneous (use nn.ReLU)"
    if isinstance(module, nn.Threshold):
        if module.threshold == 0 and module.value == 0:
            return None
        return (
            f"Threshold(threshold={module.threshold}, value={module.value}) is not "
            "homogeneous (only threshold=0, value=0 is)"
        )
    if isinstance(module, _NON_HOMOGENEOUS_ACTIVATIONS):
        return (
            f"{type(module).__name__} is a non-homogeneous activation "
            "(use ReLU, LeakyReLU or PReLU)"
        )
    if isinstance(module, nn.MultiheadAttention):
        return "attention applies a softmax to scaled scores, which is not homogeneous"
    return None


def module_reasons(module: nn.Module, *, include_mode: bool = True) -> List[str]:
    """Reasons why ``module`` on its own (not its submodules) is not homogeneous.

    A purely structural judgement: no forward pass, values are only looked at to say
    e.g. that a bias is currently zero.

    Parameters
    ----------
    module : nn.Module
        The module to judge. Its submodules are not looked at.
    include_mode : bool, default True
        Also report what only breaks homogeneity because of training mode
        (BatchNorm with batch statistics, Dropout).

    Returns
    -------
    list of str
        One reason per problem; empty if the module looks homogeneous.

    Examples
    --------
    >>> from torch import nn
    >>> from captum_xgrad.homogeneity import module_reasons
    >>> module_reasons(nn.Linear(3, 2))
    ['has a bias (y = W x + b)']
    >>> module_reasons(nn.Linear(3, 2, bias=False))
    []
    """
    reasons: List[str] = []
    if isinstance(module, _CONV_LIKE) and getattr(module, "bias", None) is not None:
        zero = _all_zero(module.bias)
        reasons.append("has a bias (y = W x + b)" + (", currently all zero" if zero else ""))
    elif isinstance(module, BATCH_NORM):
        uses_batch_stats = module.training or not module.track_running_stats
        if uses_batch_stats and (include_mode or not module.track_running_stats):
            why = "in training mode" if module.track_running_stats else "without running statistics"
            reasons.append(
                f"BatchNorm {why} normalises with batch statistics, which makes it "
                "scale-invariant (degree 0)"
                + ("; call model.eval()" if module.track_running_stats else "")
            )
        if module.track_running_stats and module.running_mean is not None:
            if not _all_zero(module.running_mean):
                reasons.append("subtracts its running mean (a shift)")
        if module.affine and module.bias is not None:
            zero = _all_zero(module.bias)
            reasons.append(
                "adds a learnable shift (bias)" + (", currently all zero" if zero else "")
            )
    elif isinstance(
        module,
        PER_EXAMPLE_NORMS,
    ):
        reasons.append(
            f"{type(module).__name__} divides by per-example statistics, which makes it "
            "scale-invariant (degree 0)"
        )
        if getattr(module, "bias", None) is not None:
            reasons.append("adds a learnable shift (bias)")
    elif isinstance(module, DROPOUT):
        if include_mode and module.training and module.p > 0:
            reasons.append("Dropout in training mode is random; call model.eval()")
    else:
        why = _activation_reason(module)
        if why is not None:
            reasons.append(why)
        elif not isinstance(module, (nn.PReLU, nn.Embedding, nn.EmbeddingBag)):
            own = [
                n
                for n, _ in module.named_parameters(recurse=False)
                if any(h in n.lower() for h in _ADDITIVE_PARAM_HINTS)
            ]
            if own:
                reasons.append(
                    "custom module whose own parameter(s) "
                    + ", ".join(repr(n) for n in own)
                    + " may add a constant in forward"
                )
    return reasons


def _qualified(name: str, root: nn.Module) -> str:
    return name if name else f"<{type(root).__name__}>"


def static_findings(model: nn.Module) -> List[str]:
    """Structural scan for what breaks homogeneity, with no forward pass.

    Walks ``model.named_modules()`` and lists, one line per offending module, its
    qualified name, type and reasons (see :func:`module_reasons`): biases in
    Linear/Conv*/ConvTranspose*, BatchNorm with a running mean or shift or in training
    mode, GroupNorm/LayerNorm/InstanceNorm, non-homogeneous activations (Sigmoid, Tanh,
    GELU, SiLU, ELU, Softplus, Softmax, ReLU6, ...), Dropout in training mode, and
    custom modules with their own bias-like parameters. An empty list means the model
    *looks* homogeneous; operations in ``forward`` that are not modules (a constant
    added, ``torch.sigmoid``) are invisible here, use :func:`check_homogeneity`.

    Parameters
    ----------
    model : nn.Module
        The model to scan; it is not modified.

    Returns
    -------
    list of str
        Lines like ``"fc (Linear): has a bias (y = W x + b)"``.

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module``.

    Examples
    --------
    >>> from torch import nn
    >>> from captum_xgrad.homogeneity import static_findings
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2, bias=False))
    >>> for line in static_findings(net):
    ...     print(line)
    0 (Linear): has a bias (y = W x + b)
    1 (Tanh): Tanh is a non-homogeneous activation (use ReLU, LeakyReLU or PReLU)
    >>> static_findings(nn.Sequential(nn.Linear(4, 2, bias=False), nn.ReLU()))
    []
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"static_findings needs an nn.Module, got {type(model).__name__}; for a "
            "plain function use check_homogeneity(func, inputs)."
        )
    lines = []
    for name, module in model.named_modules():
        reasons = module_reasons(module)
        if reasons:
            lines.append(
                f"{_qualified(name, model)} ({type(module).__name__}): " + "; ".join(reasons)
            )
    return lines


