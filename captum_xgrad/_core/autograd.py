"""The forward and backward passes the attribution classes are built on.

One forward and one backward pass (:func:`gradient_and_output`), chunking over the
batch, and the batched vector-Jacobian products of ``attribute_targets``.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .compat import TargetType, _format_additional_forward_args, _tuple_splice_range
from .validate import ResolvedTargets, select_output

__all__ = ["baseline_points", "output_at_baseline", "slice_target", "chunks", "run_forward", "gradient_and_output", "per_example_sum", "DEFAULT_TARGET_BATCH_SIZE", "resolve_targets", "batched_target_gradients", "per_example_target_sum"]


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


def per_example_sum(tensors: Sequence[Tensor]) -> Tensor:
    """Sum every tensor over all but the first dimension and add them up."""
    total = None
    for t in tensors:
        s = t.reshape(t.shape[0], -1).sum(dim=1)
        total = s if total is None else total + s
    assert total is not None
    return total


#: Targets per batched backward pass of ``attribute_targets`` when
#: ``target_batch_size=None``: the batched backward holds about this many copies of one
#: backward's gradient tensors at once.
DEFAULT_TARGET_BATCH_SIZE = 64


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


def per_example_target_sum(tensors: Sequence[Tensor]) -> Tensor:
    """Sum tensors of shape ``(N, T, ...)`` over all but the first two dimensions."""
    total = None
    for t in tensors:
        s = t.reshape(t.shape[0], t.shape[1], -1).sum(dim=2)
        total = s if total is None else total + s
    assert total is not None
    return total


def baseline_points(inputs: Tuple[Tensor, ...], offsets: Optional[Sequence[Optional[Tensor]]] = None) -> Tuple[Tensor, ...]:
    """The baseline :math:`b` as full-size inputs (zeros where no baseline is given)."""
    offsets = offsets if offsets is not None else [None] * len(inputs)
    return tuple(
        torch.zeros_like(x) if b is None else b.detach().to(x.dtype).expand_as(x).clone()
        for x, b in zip(inputs, offsets)
    )


def output_at_baseline(
    forward_func: Callable[..., Any],
    inputs: Tuple[Tensor, ...],
    offsets: Optional[Sequence[Optional[Tensor]]],
    additional_forward_args: Optional[Tuple[Any, ...]],
    target: TargetType,
    internal_batch_size: Optional[int] = None,
    targets: Optional[List[Any]] = None,
    many_targets: bool = False,
) -> Tensor:
    """:math:`f(b)` for the convergence delta :math:`\sum \mathrm{attr} - (f(x) - f(b))`.

    One forward pass (per ``internal_batch_size`` chunk) without gradients. With
    ``many_targets`` the result has shape ``(N, T)`` for ``targets`` as
    ``attribute_targets`` takes them (``None``: every output); otherwise ``(N,)`` for
    ``target``.
    """
    points = baseline_points(inputs, offsets)
    n = points[0].shape[0]
    with torch.no_grad():
        if many_targets:
            out = run_forward(forward_func, points, additional_forward_args)
            return resolve_targets(out, targets, n)[0]
        values = []
        for chunk_inputs, chunk_args, chunk_target in chunks(
            points, additional_forward_args, target, n, internal_batch_size
        ):
            out = run_forward(forward_func, chunk_inputs, chunk_args)
            values.append(select_output(out, chunk_target, chunk_inputs[0].shape[0]))
    return torch.cat(values)
