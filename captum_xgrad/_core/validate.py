"""Validation of what ``attribute`` accepts: one validator each for inputs, baselines,
targets and the degree, with error messages that name the problem and the fix."""

from __future__ import annotations

import math
import numbers
from typing import Any, List, Optional, Tuple, Union

import torch
from torch import Tensor

from .compat import SUPPORTED_METHODS, TargetType, _select_targets

__all__ = [
    "all_finite", "validate_inputs", "baseline_tensors", "validate_ig_arguments",
    "validate_degree", "validate_target_shape", "select_output", "check_finite_output",
    "validate_targets_argument", "validate_target_batch_size", "require_differentiable",
    "expand_resolved_target", "ResolvedTargets",
]

#: one tuple of non-negative indices per target (``()`` for one output per example)
ResolvedTargets = List[Tuple[int, ...]]
_PARITY = " (it is accepted for IntegratedGradients compatibility and does not change the result)"


def all_finite(t: Tensor) -> bool:
    """Whether every element is finite; the element-wise test runs only if the sum is not."""
    t = t.detach()
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _is_index(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _require_positive_int(name: str, value: Any, optional: bool = True, note: str = "") -> None:
    """Raise ``ValueError`` unless ``value`` is a positive integer (or ``None`` if optional)."""
    if not ((optional and value is None) or (_is_index(value) and value >= 1)):
        allowed = "None or a positive integer" if optional else "a positive integer"
        raise ValueError(f"{name} must be {allowed}, got {value!r}{note}.")


def _require_index_tensor(t: Tensor, name: str) -> None:
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(
            f"{name} tensor has dtype {t.dtype}; targets are class indices, pass an integer "
            f"tensor (e.g. `{name}.long()`)."
        )


def validate_inputs(inputs: Tuple[Tensor, ...]) -> int:
    """Check the formatted inputs (tensors, floating point, batched, finite); the batch size."""
    if len(inputs) == 0:
        raise ValueError("`inputs` is empty: pass a tensor or a tuple of tensors.")
    for i, inp in enumerate(inputs):
        if not isinstance(inp, Tensor):
            raise TypeError(
                f"input #{i} is a {type(inp).__name__}, not a torch.Tensor; XGradient takes a "
                "tensor or a tuple of tensors (put non-differentiable arguments in "
                "`additional_forward_args`)."
            )
        if not (inp.is_floating_point() or inp.is_complex()):
            raise TypeError(
                f"input #{i} has dtype {inp.dtype}; gradients need floating-point inputs. "
                "Convert it with `.float()`, or pass integer arguments (token ids, masks) "
                "through `additional_forward_args` and attribute to an embedding layer with "
                "LayerXGradient."
            )
        if inp.dim() == 0:
            raise ValueError(
                f"input #{i} is a 0-dim tensor; inputs need a leading batch dimension (use "
                "`x.unsqueeze(0)` for a single example)."
            )
    n = inputs[0].shape[0]
    for i, inp in enumerate(inputs):
        if inp.shape[0] != n:
            raise ValueError(
                f"input #{i} has batch size {inp.shape[0]} but input #0 has {n}; all inputs "
                "must share their first (batch) dimension."
            )
    for i, inp in enumerate(inputs):
        if not all_finite(inp):
            raise ValueError(
                f"input #{i} contains {int((~torch.isfinite(inp)).sum())} NaN/Inf value(s); "
                "attributions of non-finite inputs are meaningless. Clean the inputs (e.g. "
                "`torch.nan_to_num`) before calling `attribute`."
            )
    return int(n)


def baseline_tensors(
    baselines: Tuple[Any, ...], inputs: Tuple[Tensor, ...]
) -> Tuple[Optional[Tensor], ...]:
    """Captum-formatted baselines as ``None`` (zero) or tensors ``(1 or N, *x.shape[1:])``."""
    if len(baselines) != len(inputs):
        raise ValueError(
            f"got {len(baselines)} baselines for {len(inputs)} inputs; pass one baseline per "
            "input (or leave `baselines=None`)."
        )
    out: List[Optional[Tensor]] = []
    for i, (b, x) in enumerate(zip(baselines, inputs)):
        one_example = (1, *x.shape[1:])
        if isinstance(b, (bool, numbers.Number)) and not isinstance(b, Tensor):
            kwargs = {"dtype": x.dtype, "device": x.device}
            out.append(None if b == 0 else torch.full(one_example, float(b), **kwargs))
            continue
        if not isinstance(b, Tensor):
            raise TypeError(
                f"baseline #{i} has type {type(b).__name__}; XGradient accepts None, a number, "
                "or a tensor broadcastable to one example (or one per example)."
            )
        if b.numel() == 0 or not bool(torch.count_nonzero(b.detach()) > 0):
            out.append(None)
            continue
        t = b.detach().to(dtype=x.dtype, device=x.device)
        if t.dim() == x.dim() - 1 or t.dim() == 0:
            t = t.unsqueeze(0) if t.dim() else t.reshape(1)
        try:
            if t.dim() == x.dim():
                t = t.expand(t.shape[0], *x.shape[1:])
            else:
                t = torch.broadcast_to(t, one_example)
        except RuntimeError:
            raise ValueError(
                f"baseline #{i} has shape {tuple(b.shape)}, which does not broadcast to one "
                f"example of input #{i} (shape {tuple(x.shape[1:])}) or to the batch."
            ) from None
        if t.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"baseline #{i} has {t.shape[0]} rows but the batch has {x.shape[0]} examples; "
                "pass one baseline per example or one for all."
            )
        out.append(t)
    return tuple(out)


def validate_ig_arguments(n_steps: Any, method: Any, internal_batch_size: Any) -> None:
    """Validate the IntegratedGradients arguments that XGradient accepts for parity."""
    _require_positive_int("n_steps", n_steps, optional=False, note=_PARITY)
    if method not in SUPPORTED_METHODS:
        raise ValueError(f"method must be one of {SUPPORTED_METHODS}, got {method!r}{_PARITY}.")
    _require_positive_int("internal_batch_size", internal_batch_size)


def validate_target_batch_size(target_batch_size: Any) -> None:
    """Accept ``None`` or a positive integer."""
    note = " (it is how many targets share one batched backward pass)"
    _require_positive_int("target_batch_size", target_batch_size, note=note)


def validate_degree(degree: Any, allow_auto: bool = True, allow_none: bool = False) -> Any:
    """Return ``degree`` if it is a positive finite number (or ``"auto"``, or ``None``)."""
    auto = allow_auto and isinstance(degree, str) and degree == "auto"
    if auto or (allow_none and degree is None):
        return degree
    real = isinstance(degree, numbers.Real) and not isinstance(degree, bool)
    if not (real and math.isfinite(float(degree)) and degree > 0):
        options = (["None (estimate it)"] if allow_none else []) + ["a positive number"]
        allowed = " or ".join(options + (['"auto"'] if allow_auto else []))
        raise ValueError(
            f"degree must be {allowed}, got {degree!r}. It is the k in f(a*x) = a**k f(x) "
            "(1 for bias-free ReLU networks, 2 for a product of two such branches)."
        )
    return degree


def validate_target_shape(target: TargetType, num_examples: int) -> None:
    """Check what can be checked about ``target`` before the forward pass."""
    if isinstance(target, bool):
        raise TypeError("target must be an int, tuple, list or tensor, not a bool.")
    if isinstance(target, Tensor):
        _require_index_tensor(target, "target")
        if target.numel() != 1 and (target.dim() != 1 or target.numel() != num_examples):
            raise ValueError(
                f"target is a tensor of shape {tuple(target.shape)} but the batch has "
                f"{num_examples} example(s); pass a 1-D tensor with one class index per "
                "example, or a single int."
            )
    elif isinstance(target, list):
        if len(target) != num_examples:
            raise ValueError(
                f"target is a list of {len(target)} element(s) but the batch has "
                f"{num_examples} example(s); pass one target per example, or a single int."
            )
    elif not (target is None or isinstance(target, (numbers.Integral, tuple))):
        raise TypeError(
            f"target has type {type(target).__name__}; use None, an int, a tuple, a list of "
            "ints/tuples, or an integer tensor (as in Captum)."
        )


def _check_index(index: int, size: int, where: str, shape: Tuple[int, ...]) -> None:
    if not -size <= index < size:
        raise ValueError(
            f"target {where}{index} is out of range for the model output of shape {shape}: "
            f"valid indices are 0..{size - 1}. Check that `target` holds class indices of "
            "this model."
        )


def select_output(output: Any, target: TargetType, num_examples: int) -> Tensor:
    """Validate ``target`` against the model output and select it: shape ``(num_examples,)``."""
    if not isinstance(output, Tensor):
        raise TypeError(
            f"forward_func returned a {type(output).__name__}; it must return a tensor (wrap "
            "the model to pick the output to explain)."
        )
    shape = tuple(output.shape)
    if output.dim() == 0 or shape[0] != num_examples:
        raise ValueError(
            f"forward_func returned an output of shape {shape} for a batch of {num_examples} "
            "example(s); XGradient needs one row per example (shape (N,) or (N, ...)). If "
            "your function reduces over the batch, return per-example values instead."
        )
    if target is not None and output.dim() == 1:
        if isinstance(target, Tensor):
            given = f"tensor of shape {tuple(target.shape)}"
        else:
            given = f"list of length {len(target)}" if isinstance(target, list) else repr(target)
        raise ValueError(
            f"target={given} was given but the model output has shape {shape} (one value per "
            "example); use `target=None` for a model with a single output."
        )
    if isinstance(target, tuple):
        if len(target) != output.dim() - 1:
            raise ValueError(
                f"target tuple {target} has {len(target)} index(es) but the model output of "
                f"shape {shape} needs {output.dim() - 1} (one per non-batch dimension)."
            )
        for d, t in enumerate(target):
            _check_index(int(t), shape[d + 1], f"index {d} = ", shape)
    else:
        extremes: List[int] = []
        if isinstance(target, numbers.Integral):
            extremes = [int(target)]
        elif isinstance(target, Tensor):
            one = target.numel() == 1
            extremes = [int(target.item())] if one else [int(target.min()), int(target.max())]
        elif isinstance(target, list) and target and isinstance(target[0], numbers.Integral):
            extremes = [min(int(t) for t in target), max(int(t) for t in target)]
        for index in extremes:
            _check_index(index, shape[1], "", shape)
    selected = _select_targets(output, target)
    if selected[0].numel() != 1:
        raise ValueError(
            f"the model output has shape {shape}, so each example has {selected[0].numel()} "
            "outputs: pass `target` to choose which one to attribute (an int class index, a "
            "list or tensor with one index per example, or a tuple for multi-dimensional "
            "outputs)."
        )
    return selected.reshape(num_examples)


def check_finite_output(values: Tensor, what: str) -> None:
    """Raise if the model produced NaN/Inf ``what``."""
    if not all_finite(values):
        raise ValueError(
            f"the model produced NaN/Inf {what}; the attribution would be meaningless. Check "
            "the model and its inputs (e.g. with torch.autograd.detect_anomaly())."
        )


def validate_targets_argument(targets: Any) -> Optional[List[Union[int, Tuple[int, ...]]]]:
    """Check ``targets`` of ``attribute_targets``: ``None`` (every output) or a list of targets."""
    if targets is None:
        return None
    if isinstance(targets, Tensor):
        _require_index_tensor(targets, "targets")
        if targets.dim() not in (1, 2):
            raise ValueError(
                f"targets is a tensor of shape {tuple(targets.shape)}; pass a 1-D tensor of "
                "class indices, or a 2-D tensor with one row of indices per target for "
                "multi-dimensional outputs."
            )
        targets = [tuple(v) if isinstance(v, list) else v for v in targets.detach().cpu().tolist()]
    elif isinstance(targets, numbers.Integral):
        raise TypeError(
            f"targets={targets!r} is a single target; attribute_targets takes a sequence of "
            f"targets, e.g. targets=[{targets!r}] (or use attribute(..., target={targets!r}))."
        )
    elif not isinstance(targets, (list, tuple, range)):
        raise TypeError(
            f"targets has type {type(targets).__name__}; pass None (every output), a list of "
            "ints (class indices), or a list of tuples for multi-dimensional outputs."
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
                "`targets` applies to every example." if isinstance(t, (list, Tensor)) else ""
            )
            raise TypeError(
                f"targets[{i}] = {t!r} ({type(t).__name__}) is not a target: each target is "
                f"an int class index or a non-empty tuple of ints for a multi-dimensional "
                f"output.{hint}"
            )
    if not result:
        raise ValueError(
            "targets is empty; pass at least one target, or targets=None for every output of "
            "the model."
        )
    return result


def expand_resolved_target(target: Tuple[int, ...]) -> TargetType:
    """One resolved target in Captum's per-call form (``None``, an int or a tuple)."""
    return None if len(target) == 0 else target[0] if len(target) == 1 else target


def require_differentiable(selected: Tensor) -> None:
    """Raise if the selected outputs do not depend on the inputs through autograd."""
    if not selected.requires_grad:
        raise RuntimeError(
            "the selected model output does not depend on the inputs through autograd (it "
            "does not require grad). Make sure forward_func does not run under "
            "torch.no_grad() or detach its inputs."
        )
