"""Structural scan of a model's modules for what breaks homogeneity, with no forward pass."""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn

from .._core.types import BATCH_NORM, BIASED, DROPOUT, PER_EXAMPLE_NORMS
from .._core.types import NON_HOMOGENEOUS_ACTIVATIONS

__all__ = ["module_reasons", "static_findings"]

# name fragments of a custom module's own parameters that usually enter forward additively
# (Fixup's bias1a, ViT's pos_embedding/class_token)
_ADDITIVE_PARAM_HINTS = ("bias", "shift", "offset", "embed", "token")


def _all_zero(t: Tensor) -> bool:
    """Whether ``t`` is all zeros (False for tensors without data, e.g. on "meta")."""
    return t.device.type != "meta" and bool(torch.count_nonzero(t.detach()) == 0)


def _zero_note(t: Tensor) -> str:
    return ", currently all zero" if _all_zero(t) else ""


def _activation_reason(module: nn.Module) -> Optional[str]:
    """Why the activation (or attention) ``module`` is not homogeneous; None if it is."""
    if isinstance(module, nn.ReLU6):
        return "ReLU6 clips at 6, so it is not homogeneous (use nn.ReLU)"
    if isinstance(module, nn.Threshold) and (module.threshold != 0 or module.value != 0):
        return (
            f"Threshold(threshold={module.threshold}, value={module.value}) is not "
            "homogeneous (only threshold=0, value=0 is)"
        )
    if isinstance(module, NON_HOMOGENEOUS_ACTIVATIONS):
        name = type(module).__name__
        return f"{name} is a non-homogeneous activation (use ReLU, LeakyReLU or PReLU)"
    if isinstance(module, nn.MultiheadAttention):
        return "attention applies a softmax to scaled scores, which is not homogeneous"
    return None


def module_reasons(module: nn.Module, *, include_mode: bool = True) -> List[str]:
    """Reasons why ``module`` on its own (not its submodules) is not homogeneous.

    Structural only: values are looked at just to say e.g. that a bias is all zero.

    Parameters
    ----------
    module : nn.Module
        The module to judge.
    include_mode : bool, default True
        Also report what breaks homogeneity only in training mode (BatchNorm with batch
        statistics, Dropout).

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
    bias = getattr(module, "bias", None)
    if isinstance(module, BIASED) and bias is not None:
        return ["has a bias (y = W x + b)" + _zero_note(bias)]
    if isinstance(module, BATCH_NORM):
        reasons = []
        tracked = module.track_running_stats
        if (module.training and include_mode) or not tracked:
            why = "in training mode" if tracked else "without running statistics"
            reasons.append(
                f"BatchNorm {why} normalises with batch statistics, which makes it "
                "scale-invariant (degree 0)" + ("; call model.eval()" if tracked else "")
            )
        if tracked and module.running_mean is not None and not _all_zero(module.running_mean):
            reasons.append("subtracts its running mean (a shift)")
        if module.affine and bias is not None:
            reasons.append("adds a learnable shift (bias)" + _zero_note(bias))
        return reasons
    if isinstance(module, PER_EXAMPLE_NORMS):
        return [
            f"{type(module).__name__} divides by per-example statistics, which makes it "
            "scale-invariant (degree 0)"
        ] + (["adds a learnable shift (bias)"] if bias is not None else [])
    if isinstance(module, DROPOUT):
        training = include_mode and module.training and module.p > 0
        return ["Dropout in training mode is random; call model.eval()"] if training else []
    why = _activation_reason(module)
    if why is not None:
        return [why]
    if isinstance(module, (nn.PReLU, nn.Embedding, nn.EmbeddingBag)):
        return []
    own = [
        repr(n)
        for n, _ in module.named_parameters(recurse=False)
        if any(h in n.lower() for h in _ADDITIVE_PARAM_HINTS)
    ]
    if not own:
        return []
    return [f"custom module whose own parameter(s) {', '.join(own)} may add a constant in forward"]


def static_findings(model: nn.Module) -> List[str]:
    """Structural scan for what breaks homogeneity, with no forward pass.

    One line per module that :func:`module_reasons` objects to. Operations in ``forward``
    (``+ 1``, ``torch.sigmoid``) are invisible here; :func:`check_homogeneity` sees them.

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
    return [
        f"{name or f'<{type(model).__name__}>'} ({type(module).__name__}): " + "; ".join(reasons)
        for name, module in model.named_modules()
        if (reasons := module_reasons(module))
    ]
