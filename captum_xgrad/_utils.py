"""Private helpers shared by XGradient and LayerXGradient.

Validation of the arguments Captum's ``attribute`` accepts (with error messages that
say what is wrong and how to fix it), the guard that leaves a user's model as it was,
and the single forward/backward pass both attribution classes are built on.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import numbers
import warnings
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn


from ._captum_compat import (
    SUPPORTED_METHODS,
    TargetType,
    _format_additional_forward_args,
    _select_targets,
    _tuple_splice_range,
)

Degree = Union[int, float, str]


# --------------------------------------------------------------------------- inputs
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


# --------------------------------------------------------------------------- targets
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


def slice_target(target: TargetType, start: int, end: int) -> TargetType:
    """Restrict a per-example target to examples ``start:end``."""
    if isinstance(target, list):
        return target[start:end]
    if isinstance(target, Tensor) and target.numel() > 1:
        return target[start:end]
    return target


def chunks(
    inputs: Tuple[Tensor, ...],
    additional_forward_args: Optional[Tuple[Any, ...]],
    target: TargetType,
    num_examples: int,
    internal_batch_size: Optional[int],
) -> Iterator[Tuple[Tuple[Tensor, ...], Optional[Tuple[Any, ...]], TargetType]]:
    """Split inputs, tensor additional args and per-example targets into chunks."""
    if internal_batch_size is None or internal_batch_size >= num_examples:
        yield inputs, additional_forward_args, target
        return
    for start in range(0, num_examples, internal_batch_size):
        end = min(start + internal_batch_size, num_examples)
        yield (
            _tuple_splice_range(inputs, start, end),
            _tuple_splice_range(additional_forward_args, start, end),
            slice_target(target, start, end),
        )


# ----------------------------------------------------------------- model state guard
def modules_of(forward_func: Callable[..., Any]) -> List[nn.Module]:
    """Every ``nn.Module`` behind ``forward_func``.

    The model itself, the owner of a bound method, the modules a
    :func:`functools.partial` holds, or those a lambda or closure captures: so that the
    state guard covers ``lambda x: model(x)[:, 0]`` as well as ``model``.
    """
    found: List[nn.Module] = []

    def visit(obj: Any, depth: int) -> None:
        if depth > 3 or obj is None:
            return
        if isinstance(obj, nn.Module):
            if not any(obj is f for f in found):
                found.append(obj)
            return
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, nn.Module):
            visit(owner, depth + 1)
            return
        if isinstance(obj, functools.partial):
            visit(obj.func, depth + 1)
            for a in list(obj.args) + list(obj.keywords.values()):
                visit(a, depth + 1)
            return
        for cell in getattr(obj, "__closure__", None) or ():
            try:
                visit(cell.cell_contents, depth + 1)
            except ValueError:  # an empty cell
                continue

    visit(forward_func, 0)
    return found


def model_of(forward_func: Callable[..., Any]) -> Optional[nn.Module]:
    """The one ``nn.Module`` that *is* ``forward_func`` (to trace it), else ``None``.

    The model itself (a ``DataParallel`` is unwrapped) or the owner of its bound
    ``forward``; a lambda or partial around a model is not the model.
    """
    if isinstance(forward_func, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return forward_func.module
    if isinstance(forward_func, nn.Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    if isinstance(owner, nn.Module) and getattr(forward_func, "__name__", "") in ("forward", "__call__"):
        return owner
    return None


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


@contextlib.contextmanager
def preserve_model_state(forward_func: Callable[..., Any]) -> Iterator[None]:
    """Leave every model behind ``forward_func`` as it was, also when the body raises.

    One contract for every entry point: the train/eval flag of every module, every
    buffer (running statistics, counters, caches: restored only where the forward pass
    changed one, detected by its version counter), the hooks (any added inside the
    block are removed) and the parameters' ``requires_grad``. Gradients are taken with
    :func:`torch.autograd.grad`, which never writes ``.grad``.
    """
    modules: List[nn.Module] = []
    for root in modules_of(forward_func):
        for m in root.modules():
            if not any(m is k for k in modules):
                modules.append(m)
    flags = [(m, m.training) for m in modules]
    hooks = [(m, name, set(getattr(m, name, {}).keys())) for m in modules for name in _HOOK_DICTS]
    buffers = [
        (m, name, buf, buf._version, buf.detach().clone())
        for m in modules
        for name, buf in m.named_buffers(recurse=False)
        if buf is not None
    ]
    grads = [(p, p.requires_grad) for m in modules for p in m.parameters(recurse=False)]
    try:
        yield
    finally:
        for m, flag in flags:
            if m.training != flag:
                m.train(flag)
        for m, name, keys in hooks:
            current = getattr(m, name, None)
            if current is not None:
                for key in [k for k in current if k not in keys]:
                    del current[key]
        with torch.no_grad():
            for m, name, buf, version, value in buffers:
                now = m._buffers.get(name)
                if now is not buf:  # the buffer was replaced: put the original back
                    m._buffers[name] = buf
                if buf._version != version or now is not buf:
                    if buf.shape == value.shape:
                        buf.copy_(value)
                    else:
                        buf.data = value
        for p, flag in grads:
            if p.requires_grad != flag:
                p.requires_grad_(flag)


# ------------------------------------------------------------------ forward/backward
def run_forward(
    forward_func: Callable[..., Any],
    inputs: Tuple[Tensor, ...],
    additional_forward_args: Optional[Tuple[Any, ...]],
) -> Any:
    """Call ``forward_func(*inputs, *additional_forward_args)`` as Captum does."""
    args = _format_additional_forward_args(additional_forward_args)
    if args is None:
        return forward_func(*inputs)
    return forward_func(*inputs, *args)


def gradient_and_output(
    forward_func: Callable[..., Any],
    inputs: Tuple[Tensor, ...],
    target: TargetType,
    additional_forward_args: Optional[Tuple[Any, ...]],
    create_graph: bool,
) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...], Tensor]:
    """One forward and one backward pass.

    Returns ``(inputs_used, grads, selected_output)`` where ``inputs_used`` are the
    tensors the gradient was taken with respect to (the user's own tensors when they
    already require grad, so that a graph to them is kept; detached aliases otherwise,
    so that the user's tensors are never modified).
    """
    num_examples = inputs[0].shape[0]
    used = tuple(x if x.requires_grad else x.detach().requires_grad_(True) for x in inputs)
    with torch.enable_grad():
        output = run_forward(forward_func, used, additional_forward_args)
        selected = select_output(output, target, num_examples)
        if not selected.requires_grad:
            raise RuntimeError(
                "the selected model output does not depend on the inputs through "
                "autograd (it does not require grad). Make sure forward_func does not "
                "run under torch.no_grad() or detach its inputs."
            )
        grads = torch.autograd.grad(
            selected.sum(), used, create_graph=create_graph, allow_unused=True
        )
    grads = tuple(torch.zeros_like(x) if g is None else g for x, g in zip(used, grads))
    return used, grads, selected


def check_finite_output(values: Tensor, what: str) -> None:
    if not all_finite(values):
        raise ValueError(
            f"the model produced NaN/Inf {what}; the attribution would be meaningless. "
            "Check the model and its inputs (e.g. with torch.autograd.detect_anomaly())."
        )


def per_example_sum(tensors: Sequence[Tensor]) -> Tensor:
    """Sum every tensor over all but the first dimension and add them up."""
    total = None
    for t in tensors:
        s = t.reshape(t.shape[0], -1).sum(dim=1)
        total = s if total is None else total + s
    assert total is not None
    return total


# ------------------------------------------------------------- many targets at once
#: Targets per batched backward pass of ``attribute_targets`` when
#: ``target_batch_size=None``: the batched backward holds about this many copies of one
#: backward's gradient tensors at once.
DEFAULT_TARGET_BATCH_SIZE = 64

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


def resolve_targets(
    output: Any,
    targets: Optional[List[Union[int, Tuple[int, ...]]]],
    num_examples: int,
) -> Tuple[Tensor, ResolvedTargets]:
    """Validate ``targets`` against the model output and select them.

    Parameters
    ----------
    output : Tensor
        The model output, shape ``(N, *S)``.
    targets : list or None
        From :func:`validate_targets_argument`; ``None`` means every output.
    num_examples : int
        ``N``.

    Returns
    -------
    selected : Tensor
        Shape ``(N, T)``: the selected outputs, differentiable.
    resolved : list of tuple of int
        Each target as a tuple of non-negative indices into ``S``.
    """
    # the output checks of `attribute` (type, batch dimension), with its messages
    if not isinstance(output, Tensor) or output.dim() == 0 or output.shape[0] != num_examples:
        select_output(output, None, num_examples)
    shape = tuple(output.shape)
    dims = shape[1:]
    if targets is None:
        resolved: ResolvedTargets = [tuple(idx) for idx in itertools.product(*map(range, dims))]
        if not resolved:
            raise ValueError(
                f"the model output has shape {shape}: there are no outputs to attribute."
            )
    else:
        if not dims:
            raise ValueError(
                f"targets were given but the model output has shape {shape} (one value "
                "per example); use `targets=None` for a model with a single output."
            )
        resolved = []
        for i, t in enumerate(targets):
            idx = (t,) if isinstance(t, int) else t
            if len(idx) != len(dims):
                kind = "an int" if isinstance(t, int) else f"a tuple of {len(idx)} index(es)"
                raise ValueError(
                    f"targets[{i}] = {t!r} is {kind} but the model output of shape "
                    f"{shape} needs {len(dims)} index(es) per target (one per non-batch "
                    "dimension)" + (", e.g. a tuple." if len(dims) > 1 else ", an int.")
                )
            norm = []
            for d, (v, size) in enumerate(zip(idx, dims)):
                if not -size <= v < size:
                    where = f"index {d} of targets[{i}]" if len(dims) > 1 else f"targets[{i}]"
                    raise ValueError(
                        f"{where} = {v} is out of range for the model output of shape "
                        f"{shape}: valid indices are 0..{size - 1} (or -{size}..-1). Check "
                        "that `targets` holds class indices of this model."
                    )
                norm.append(v % size)
            resolved.append(tuple(norm))
    flat = output.reshape(num_examples, -1)
    if dims:
        strides = [1] * len(dims)
        for d in range(len(dims) - 2, -1, -1):
            strides[d] = strides[d + 1] * dims[d + 1]
        index = torch.tensor(
            [sum(v * s for v, s in zip(idx, strides)) for idx in resolved],
            dtype=torch.long, device=output.device,
        )
        selected = flat.index_select(1, index)
    else:
        selected = flat
    return selected, resolved


def expand_resolved_target(target: Tuple[int, ...]) -> TargetType:
    """One resolved target in Captum's per-call form (``None``, an int or a tuple)."""
    if len(target) == 0:
        return None
    return target[0] if len(target) == 1 else target


def batched_target_gradients(
    selected: Tensor,
    wrt: Tuple[Tensor, ...],
    target_batch_size: Optional[int],
    create_graph: bool,
    warn_name: str = "attribute_targets",
    transform: Optional[Callable[[int, Tensor], Tensor]] = None,
) -> Tuple[Tensor, ...]:
    """Gradients of every column of ``selected`` (summed over examples) w.r.t. ``wrt``.

    ``selected`` has shape ``(N, T)``; the result holds one tensor per entry of
    ``wrt``, of shape ``(N, T, *w.shape[1:])``: row ``t`` is the gradient of
    ``selected[:, t].sum()``, i.e. one vector-Jacobian product per target. They are
    computed ``target_batch_size`` targets at a time with one batched backward pass
    (``torch.autograd.grad(..., is_grads_batched=True)``); where batching is not
    supported (an op without a batching rule), the remaining targets are computed in a
    loop of ordinary backward passes, with one warning.

    ``transform(i, g)``, if given, maps the gradients ``g`` of one chunk of targets
    (shape ``(N, b, *wrt[i].shape[1:])``) to what is returned for them (e.g. the
    attributions), so that only one chunk of raw gradients is alive at a time. Without
    ``create_graph`` the chunks are written into one preallocated result per input.
    """
    num_examples, num_targets = selected.shape
    size = DEFAULT_TARGET_BATCH_SIZE if target_batch_size is None else target_batch_size
    size = max(1, min(size, num_targets))
    per_chunk: List[Tuple[Tensor, ...]] = []
    results: List[Tensor] = []
    batched = num_targets > 1
    for start in range(0, num_targets, size):
        end = min(start + size, num_targets)
        part = selected[:, start:end]
        b = end - start
        grads: Optional[Tuple[Optional[Tensor], ...]] = None
        if batched and b > 1:
            eye = torch.eye(b, dtype=selected.dtype, device=selected.device)
            grad_outputs = eye.unsqueeze(1).expand(b, num_examples, b)
            try:
                grads = torch.autograd.grad(
                    part, wrt, grad_outputs, retain_graph=True, create_graph=create_graph,
                    allow_unused=True, is_grads_batched=True,
                )
            except RuntimeError as exc:
                msg = str(exc).lower()
                if "out of memory" in msg or "can't allocate memory" in msg:
                    raise
                batched = False
                warnings.warn(
                    f"{warn_name}: the batched backward pass over targets is not supported "
                    f"by this model ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                    "falling back to one backward pass per target (same result, slower).",
                    RuntimeWarning,
                    stacklevel=3,
                )
        if grads is None:
            columns = [
                torch.autograd.grad(
                    part[:, j].sum(), wrt, retain_graph=True, create_graph=create_graph,
                    allow_unused=True,
                )
                for j in range(b)
            ]
            grads = tuple(
                None if all(c[i] is None for c in columns) else torch.stack([
                    torch.zeros_like(w) if c[i] is None else c[i] for c in columns
                ])
                for i, w in enumerate(wrt)
            )
        chunk = tuple(
            (torch.zeros((b,) + tuple(w.shape), dtype=w.dtype, device=w.device)
             if g is None else g).movedim(0, 1)
            for w, g in zip(wrt, grads)
        )
        del grads
        if transform is not None:
            chunk = tuple(transform(i, g) for i, g in enumerate(chunk))
        if size >= num_targets:
            return chunk
        if create_graph:
            per_chunk.append(chunk)
            continue
        if not results:
            results = [
                torch.empty((num_examples, num_targets) + tuple(c.shape[2:]), dtype=c.dtype,
                            device=c.device)
                for c in chunk
            ]
        for r, c in zip(results, chunk):
            r[:, start:end] = c
        del chunk
    if not create_graph:
        return tuple(results)
    return tuple(torch.cat([c[i] for c in per_chunk], dim=1) for i in range(len(wrt)))


def require_differentiable(selected: Tensor) -> None:
    """Raise if the selected outputs do not depend on the inputs through autograd."""
    if not selected.requires_grad:
        raise RuntimeError(
            "the selected model output does not depend on the inputs through "
            "autograd (it does not require grad). Make sure forward_func does not "
            "run under torch.no_grad() or detach its inputs."
        )


def per_example_target_sum(tensors: Sequence[Tensor]) -> Tensor:
    """Sum tensors of shape ``(N, T, ...)`` over all but the first two dimensions."""
    total = None
    for t in tensors:
        s = t.reshape(t.shape[0], t.shape[1], -1).sum(dim=2)
        total = s if total is None else total + s
    assert total is not None
    return total
