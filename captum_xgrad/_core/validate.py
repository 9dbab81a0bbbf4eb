"""Validation of what ``attribute`` accepts: inputs, baselines, targets, degree.

One validator each, with error messages that name the problem and the fix.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, List, Optional, Tuple, Union

import torch
from torch import Tensor

from .compat import SUPPORTED_METHODS, TargetType, _select_targets

__all__ = ["all_finite", "validate_inputs", "baseline_tensors", "validate_ig_arguments", "validate_degree", "validate_target_shape", "select_output", "check_finite_output", "validate_targets_argument", "validate_target_batch_size", "require_differentiable", "expand_resolved_target", "ResolvedTargets"]


def all_finite(t: Tensor) -> bool:
    """Whether every element of ``t`` is finite, without input-sized temporaries.

    A sum is finite only if no element is NaN or infinite; only when the sum is not
    finite (which an overflow can also cause) is the exact element-wise test run.
    """
    t = t.detach()
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def validate_inputs(inputs: Tuple[Tensor, ...]) -> int:
    """Check the formatted inputs and return the batch size.

    Raises
    ------
    TypeError
        If an input is not a floating-point tensor.
    ValueError
        If inputs are empty, disagree on the batch size, or hold NaN/Inf.
    """
    if len(inputs) == 0:
        raise ValueError("`inputs` is empty: pass a tensor or a tuple of tensors.")
    for i, inp in enumerate(inputs):
        if not isinstance(inp, Tensor):
            raise TypeError(
                f"input #{i} is a {type(inp).__name__}, not a torch.Tensor; XGradient "
                "takes a tensor or a tuple of tensors (put non-differentiable "
                "arguments in `additional_forward_args`)."
            )
        if not (inp.is_floating_point() or inp.is_complex()):
            raise TypeError(
                f"input #{i} has dtype {inp.dtype}; gradients need floating-point "
                "inputs. Convert it with `.float()`, or pass integer arguments (token "
                "ids, masks) through `additional_forward_args` and attribute to an "
                "embedding layer with LayerXGradient."
            )
        if inp.dim() == 0:
            raise ValueError(
                f"input #{i} is a 0-dim tensor; inputs need a leading batch dimension "
                "(use `x.unsqueeze(0)` for a single example)."
            )
    n = inputs[0].shape[0]
    for i, inp in enumerate(inputs[1:], start=1):
        if inp.shape[0] != n:
            raise ValueError(
                f"input #{i} has batch size {inp.shape[0]} but input #0 has {n}; all "
                "inputs must share their first (batch) dimension."
            )
    for i, inp in enumerate(inputs):
        if not all_finite(inp):
            bad = int((~torch.isfinite(inp)).sum())
            raise ValueError(
                f"input #{i} contains {bad} NaN/Inf value(s); attributions of "
                "non-finite inputs are meaningless. Clean the inputs (e.g. "
                "`torch.nan_to_num`) before calling `attribute`."
            )
    return int(n)


def baseline_tensors(
    baselines: Tuple[Any, ...], inputs: Tuple[Tensor, ...]
) -> Tuple[Optional[Tensor], ...]:
    """Normalise Captum-formatted baselines to ``None`` (zero) or ``(1 or N, *x.shape[1:])``.

    A baseline is a scalar, a tensor broadcastable to one example, or one per example,
    as in Captum. Whether X-Gradient is exact for it is decided by the guard; this
    only checks the form.
    """
    if len(baselines) != len(inputs):
        raise ValueError(
            f"got {len(baselines)} baselines for {len(inputs)} inputs; pass one baseline "
            "per input (or leave `baselines=None`)."
        )
    out: List[Optional[Tensor]] = []
    for i, (b, x) in enumerate(zip(baselines, inputs)):
        if isinstance(b, (bool, numbers.Number)) and not isinstance(b, Tensor):
            out.append(None if b == 0 else torch.full((1, *x.shape[1:]), float(b), dtype=x.dtype, device=x.device))
            continue
        if not isinstance(b, Tensor):
            raise TypeError(
                f"baseline #{i} has type {type(b).__name__}; XGradient accepts None, a "
                "number, or a tensor broadcastable to one example (or one per example)."
            )
        if b.numel() == 0 or not bool(torch.count_nonzero(b.detach()) > 0):
            out.append(None)
            continue
        t = b.detach().to(dtype=x.dtype, device=x.device)
        if t.dim() == x.dim() - 1 or t.dim() == 0:
            t = t.unsqueeze(0) if t.dim() else t.reshape(1)
        try:
            t = t.expand(t.shape[0] if t.dim() == x.dim() else 1, *x.shape[1:]) if t.dim() == x.dim() else torch.broadcast_to(t, (1, *x.shape[1:]))
        except RuntimeError:
            raise ValueError(
                f"baseline #{i} has shape {tuple(b.shape)}, which does not broadcast to "
                f"one example of input #{i} (shape {tuple(x.shape[1:])}) or to the batch."
            ) from None
        if t.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"baseline #{i} has {t.shape[0]} rows but the batch has {x.shape[0]} "
                "examples; pass one baseline per example or one for all."
            )
        out.append(t)
    return tuple(out)


def validate_ig_arguments(
    n_steps: Any, method: Any, internal_batch_size: Any
) -> None:
    """Validate the IntegratedGradients arguments that XGradient accepts for parity."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 1:
        raise ValueError(
            f"n_steps must be a positive integer, got {n_steps!r} (it is accepted for "
            "IntegratedGradients compatibility and does not change the result)."
        )
    if method not in SUPPORTED_METHODS:
        raise ValueError(
            f"method must be one of {SUPPORTED_METHODS}, got {method!r} (it is accepted "
            "for IntegratedGradients compatibility and does not change the result)."
        )
    if internal_batch_size is not None and (
        isinstance(internal_batch_size, bool)
        or not isinstance(internal_batch_size, numbers.Integral)
        or internal_batch_size < 1
    ):
        raise ValueError(
            f"internal_batch_size must be None or a positive integer, got "
            f"{internal_batch_size!r}."
        )


def validate_degree(degree: Any, allow_auto: bool = True, allow_none: bool = False) -> Any:
    """Return ``degree`` if it is a positive finite number (or ``"auto"``, or ``None``).

    The one validator of the homogeneity degree, for XGradient, LayerXGradient,
    check_homogeneity and the training methods.
    """
    if allow_auto and isinstance(degree, str) and degree == "auto":
        return degree
    if allow_none and degree is None:
        return None
    if (
        isinstance(degree, bool)
        or not isinstance(degree, numbers.Real)
        or not math.isfinite(float(degree))
        or degree <= 0
    ):
        options = ["None (estimate it)"] if allow_none else []
        options.append("a positive number")
        if allow_auto:
            options.append('"auto"')
        allowed = " or ".join(options)
        raise ValueError(
            f"degree must be {allowed}, got {degree!r}. It is the k in f(a*x) = a**k f(x) "
            "(1 for bias-free ReLU networks, 2 for a product of two such branches)."
        )
    return degree
    if (
        isinstance(degree, bool)
        or not isinstance(degree, numbers.Real)
        or not math.isfinite(float(degree))
        or degree <= 0
    ):
        allowed = 'a positive number or "auto"' if allow_auto else "a positive number"
        raise ValueError(
            f"degree must be {allowed}, got {degree!r}. It is the k in f(a*x) = a**k f(x) "
            "(1 for bias-free ReLU networks, 2 for a product of two such branches)."
        )
    return degree


def _target_description(target: TargetType) -> str:
    if isinstance(target, Tensor):
        return f"tensor of shape {tuple(target.shape)}"
    if isinstance(target, list):
        return f"list of length {len(target)}"
    return repr(target)


def validate_target_shape(target: TargetType, num_examples: int) -> None:
    """Check what can be checked about ``target`` before the forward pass."""
    if target is None or isinstance(target, (numbers.Integral, tuple)):
        if isinstance(target, bool):
            raise TypeError("target must be an int, tuple, list or tensor, not a bool.")
        return
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(
                f"target tensor has dtype {target.dtype}; targets are class indices, "
                "pass an integer tensor (e.g. `target.long()`)."
            )
        if target.numel() == 1:
            return
        if target.dim() != 1 or target.numel() != num_examples:
            raise ValueError(
                f"target is a tensor of shape {tuple(target.shape)} but the batch has "
                f"{num_examples} example(s); pass a 1-D tensor with one class index per "
                "example, or a single int."
            )
        return
    if isinstance(target, list):
        if len(target) != num_examples:
            raise ValueError(
                f"target is a list of {len(target)} element(s) but the batch has "
                f"{num_examples} example(s); pass one target per example, or a single int."
            )
        return
    raise TypeError(
        f"target has type {type(target).__name__}; use None, an int, a tuple, a list "
        "of ints/tuples, or an integer tensor (as in Captum)."
    )


def _check_index(index: int, size: int, where: str, shape: Tuple[int, ...]) -> None:
    if not -size <= index < size:
        raise ValueError(
            f"target {where}{index} is out of range for the model output of shape "
            f"{shape}: valid indices are 0..{size - 1}. Check that `target` holds class "
            "indices of this model."
        )


def select_output(output: Any, target: TargetType, num_examples: int) -> Tensor:
    """Validate ``target`` against the model output and select it (Captum semantics).

    Returns one value per example, shape ``(num_examples,)``.
    """
    if not isinstance(output, Tensor):
        raise TypeError(
            f"forward_func returned a {type(output).__name__}; it must return a tensor "
            "(wrap the model to pick the output to explain)."
        )
    shape = tuple(output.shape)
    if output.dim() == 0 or shape[0] != num_examples:
        raise ValueError(
            f"forward_func returned an output of shape {shape} for a batch of "
            f"{num_examples} example(s); XGradient needs one row per example "
            "(shape (N,) or (N, ...)). If your function reduces over the batch, return "
            "per-example values instead."
        )
    if target is not None and output.dim() >= 2:
        if isinstance(target, numbers.Integral):
            _check_index(int(target), shape[1], "", shape)
        elif isinstance(target, tuple):
            if len(target) != output.dim() - 1:
                raise ValueError(
                    f"target tuple {target} has {len(target)} index(es) but the model "
                    f"output of shape {shape} needs {output.dim() - 1} (one per "
                    "non-batch dimension)."
                )
            for d, t in enumerate(target):
                _check_index(int(t), shape[d + 1], f"index {d} = ", shape)
        elif isinstance(target, Tensor):
            if target.numel() == 1:
                _check_index(int(target.item()), shape[1], "", shape)
            else:
                lo, hi = int(target.min()), int(target.max())
                _check_index(lo, shape[1], "", shape)
                _check_index(hi, shape[1], "", shape)
        elif isinstance(target, list) and len(target) > 0:
            if isinstance(target[0], numbers.Integral):
                _check_index(min(int(t) for t in target), shape[1], "", shape)
                _check_index(max(int(t) for t in target), shape[1], "", shape)
    elif target is not None and output.dim() == 1:
        raise ValueError(
            f"target={_target_description(target)} was given but the model output has "
            f"shape {shape} (one value per example); use `target=None` for a model with "
            "a single output."
        )
    selected = _select_targets(output, target)
    if selected[0].numel() != 1:
        raise ValueError(
            f"the model output has shape {shape}, so each example has "
            f"{selected[0].numel()} outputs: pass `target` to choose which one to "
            "attribute (an int class index, a list or tensor with one index per "
            "example, or a tuple for multi-dimensional outputs)."
        )
    return selected.reshape(num_examples)


def check_finite_output(values: Tensor, what: str) -> None:
    if not all_finite(values):
        raise ValueError(
            f"the model produced NaN/Inf {what}; the attribution would be meaningless. "
            "Check the model and its inputs (e.g. with torch.autograd.detect_anomaly())."
        )


#: Resolved targets: one tuple of non-negative indices per target (``()`` for a model
#: with one output per example).
ResolvedTargets = List[Tuple[int, ...]]


def _is_index(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def validate_targets_argument(targets: Any) -> Optional[List[Union[int, Tuple[int, ...]]]]:
    """Check ``targets`` of ``attribute_targets`` before the forward pass.

    Returns ``None`` (every output) or a list of targets, each an ``int`` or a tuple of
    ``int`` (Captum's per-call form, applied to every example).

    Raises
    ------
    TypeError
        If ``targets`` is not ``None``, a list/tuple/range or an integer tensor, or an
        element is neither an int nor a tuple of ints.
    ValueError
        If ``targets`` is empty, or a tensor of more than two dimensions.
    """
    if targets is None:
        return None
    if isinstance(targets, Tensor):
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise TypeError(
                f"targets tensor has dtype {targets.dtype}; targets are class indices, "
                "pass an integer tensor (e.g. `targets.long()`)."
            )
        if targets.dim() not in (1, 2):
            raise ValueError(
                f"targets is a tensor of shape {tuple(targets.shape)}; pass a 1-D tensor "
                "of class indices, or a 2-D tensor with one row of indices per target "
                "for multi-dimensional outputs."
            )
        values = targets.detach().cpu().tolist()
        targets = [tuple(v) if isinstance(v, list) else v for v in values]
    elif _is_index(targets) or isinstance(targets, bool):
        raise TypeError(
            f"targets={targets!r} is a single target; attribute_targets takes a sequence "
            f"of targets, e.g. targets=[{targets!r}] (or use attribute(..., "
            f"target={targets!r}))."
        )
    elif not isinstance(targets, (list, tuple, range)):
        raise TypeError(
            f"targets has type {type(targets).__name__}; pass None (every output), a "
            "list of ints (class indices), or a list of tuples for multi-dimensional "
            "outputs."
        )
    result: List[Union[int, Tuple[int, ...]]] = []
    for i, t in enumerate(targets):
        if _is_index(t):
            result.append(int(t))
        elif isinstance(t, tuple) and len(t) > 0 and all(_is_index(v) for v in t):
            result.append(tuple(int(v) for v in t))
        else:
            hint = (
                " Per-example targets are for attribute(target=[...]); each entry of "
                "`targets` applies to every example."
                if isinstance(t, (list, Tensor)) else ""
            )
            raise TypeError(
                f"targets[{i}] = {t!r} ({type(t).__name__}) is not a target: each target "
                "is an int class index or a non-empty tuple of ints for a "
                f"multi-dimensional output.{hint}"
            )
    if not result:
        raise ValueError(
            "targets is empty; pass at least one target, or targets=None for every "
            "output of the model."
        )
    return result


def validate_target_batch_size(target_batch_size: Any) -> None:
    """Accept ``None`` or a positive integer."""
    if target_batch_size is not None and (
        not _is_index(target_batch_size) or target_batch_size < 1
    ):
        raise ValueError(
            f"target_batch_size must be None or a positive integer, got "
            f"{target_batch_size!r} (it is how many targets share one batched backward "
            "pass)."
        )


def expand_resolved_target(target: Tuple[int, ...]) -> TargetType:
    """One resolved target in Captum's per-call form (``None``, an int or a tuple)."""
    if len(target) == 0:
        return None
    return target[0] if len(target) == 1 else target


def require_differentiable(selected: Tensor) -> None:
    """Raise if the selected outputs do not depend on the inputs through autograd."""
    if not selected.requires_grad:
        raise RuntimeError(
            "the selected model output does not depend on the inputs through "
            "autograd (it does not require grad). Make sure forward_func does not "
            "run under torch.no_grad() or detach its inputs."
        )
