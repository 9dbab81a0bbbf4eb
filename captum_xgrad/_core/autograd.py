"""The forward and backward passes: chunking over the batch, one forward and one backward
pass (:func:`gradient_and_output`), and the batched vector-Jacobian products over targets."""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .compat import TargetType, _format_additional_forward_args, _tuple_splice_range
from .validate import ResolvedTargets, require_differentiable, select_output

__all__ = [
    "baseline_points", "output_at_baseline", "slice_target", "chunks", "run_forward",
    "gradient_and_output", "per_example_sum", "DEFAULT_TARGET_BATCH_SIZE", "resolve_targets",
    "batched_target_gradients", "per_example_target_sum",
]

#: targets per batched backward pass of ``attribute_targets`` when ``target_batch_size=None``
DEFAULT_TARGET_BATCH_SIZE = 64


def slice_target(target: TargetType, start: int, end: int) -> TargetType:
    """Restrict a per-example target to examples ``start:end``."""
    if isinstance(target, list) or (isinstance(target, Tensor) and target.numel() > 1):
        return target[start:end]
    return target


def chunks(
    inputs: Tuple[Tensor, ...], additional_forward_args: Optional[Tuple[Any, ...]],
    target: TargetType, num_examples: int, internal_batch_size: Optional[int],
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
    forward_func: Callable[..., Any], inputs: Tuple[Tensor, ...],
    additional_forward_args: Optional[Tuple[Any, ...]],
) -> Any:
    """Call ``forward_func(*inputs, *additional_forward_args)`` as Captum does."""
    args = _format_additional_forward_args(additional_forward_args)
    return forward_func(*inputs) if args is None else forward_func(*inputs, *args)


def gradient_and_output(
    forward_func: Callable[..., Any], inputs: Tuple[Tensor, ...], target: TargetType,
    additional_forward_args: Optional[Tuple[Any, ...]], create_graph: bool,
) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...], Tensor]:
    """One forward and one backward pass: ``(inputs_used, grads, selected_output)``; the user's
    tensors are used where they require grad (to keep their graph), else detached aliases."""
    used = tuple(x if x.requires_grad else x.detach().requires_grad_(True) for x in inputs)
    with torch.enable_grad():
        output = run_forward(forward_func, used, additional_forward_args)
        selected = select_output(output, target, inputs[0].shape[0])
        require_differentiable(selected)
        grads = torch.autograd.grad(
            selected.sum(), used, create_graph=create_graph, allow_unused=True
        )
    grads = tuple(torch.zeros_like(x) if g is None else g for x, g in zip(used, grads))
    return used, grads, selected


def per_example_sum(tensors: Sequence[Tensor]) -> Tensor:
    """Sum every tensor over all but the first dimension and add them up."""
    return functools.reduce(torch.add, [t.reshape(t.shape[0], -1).sum(dim=1) for t in tensors])


def per_example_target_sum(tensors: Sequence[Tensor]) -> Tensor:
    """Sum tensors of shape ``(N, T, ...)`` over all but the first two dimensions and add them."""
    sums = [t.reshape(t.shape[0], t.shape[1], -1).sum(dim=2) for t in tensors]
    return functools.reduce(torch.add, sums)


def resolve_targets(
    output: Any, targets: Optional[List[Union[int, Tuple[int, ...]]]], num_examples: int
) -> Tuple[Tensor, ResolvedTargets]:
    """The selected outputs ``(N, T)`` of ``output`` ``(N, *S)`` and the checked ``targets``
    (``None``: every output) as non-negative indices into ``S``."""
    if not isinstance(output, Tensor) or output.dim() == 0 or output.shape[0] != num_examples:
        select_output(output, None, num_examples)  # the checks and messages of `attribute`
    shape = tuple(output.shape)
    dims = shape[1:]
    if targets is None:
        resolved: ResolvedTargets = [tuple(idx) for idx in itertools.product(*map(range, dims))]
        if not resolved:
            raise ValueError(
                f"the model output has shape {shape}: there are no outputs to attribute."
            )
    elif not dims:
        raise ValueError(
            f"targets were given but the model output has shape {shape} (one value per example); "
            "use `targets=None` for a model with a single output."
        )
    else:
        resolved = [_resolve_target(i, t, shape) for i, t in enumerate(targets)]
    flat = output.reshape(num_examples, -1)
    if not dims:
        return flat, resolved
    index = [sum(v * math.prod(dims[d + 1:]) for d, v in enumerate(idx)) for idx in resolved]
    index_tensor = torch.tensor(index, dtype=torch.long, device=output.device)
    return flat.index_select(1, index_tensor), resolved


def _resolve_target(
    i: int, target: Union[int, Tuple[int, ...]], shape: Tuple[int, ...]
) -> Tuple[int, ...]:
    """``targets[i]`` as non-negative indices into the non-batch dimensions of ``shape``."""
    dims = shape[1:]
    idx = (target,) if isinstance(target, int) else target
    if len(idx) != len(dims):
        kind = "an int" if isinstance(target, int) else f"a tuple of {len(idx)} index(es)"
        raise ValueError(
            f"targets[{i}] = {target!r} is {kind} but the model output of shape "
            f"{shape} needs {len(dims)} index(es) per target (one per non-batch "
            "dimension)" + (", e.g. a tuple." if len(dims) > 1 else ", an int.")
        )
    for d, (v, size) in enumerate(zip(idx, dims)):
        if not -size <= v < size:
            where = f"index {d} of targets[{i}]" if len(dims) > 1 else f"targets[{i}]"
            raise ValueError(
                f"{where} = {v} is out of range for the model output of shape "
                f"{shape}: valid indices are 0..{size - 1} (or -{size}..-1). Check "
                "that `targets` holds class indices of this model."
            )
    return tuple(v % size for v, size in zip(idx, dims))


def batched_target_gradients(
    selected: Tensor, wrt: Tuple[Tensor, ...], target_batch_size: Optional[int],
    create_graph: bool, warn_name: str = "attribute_targets",
    transform: Optional[Callable[[int, Tensor], Tensor]] = None,
) -> Tuple[Tensor, ...]:
    """Per ``w`` in ``wrt``, ``(N, T, *w.shape[1:])``: the gradients of each column of ``selected``,
    ``target_batch_size`` targets per batched backward pass (else a loop, with one warning);
    ``transform(i, g)`` maps each chunk of gradients of ``wrt[i]`` to what is returned."""
    num_examples, num_targets = selected.shape
    size = DEFAULT_TARGET_BATCH_SIZE if target_batch_size is None else target_batch_size
    size = max(1, min(size, num_targets))
    options = {"retain_graph": True, "create_graph": create_graph, "allow_unused": True}
    per_chunk: List[Tuple[Tensor, ...]] = []
    results: List[Tensor] = []
    batched = num_targets > 1
    for start in range(0, num_targets, size):
        part = selected[:, start:start + size]
        b = part.shape[1]
        grads: Optional[Sequence[Optional[Tensor]]] = None
        if batched and b > 1:
            eye = torch.eye(b, dtype=selected.dtype, device=selected.device).unsqueeze(1)
            try:
                grads = torch.autograd.grad(
                    part, wrt, eye.expand(b, num_examples, b), is_grads_batched=True, **options
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
            columns = [torch.autograd.grad(part[:, j].sum(), wrt, **options) for j in range(b)]
            grads = [
                torch.stack([torch.zeros_like(w) if c[i] is None else c[i] for c in columns])
                for i, w in enumerate(wrt)
            ]
        chunk = tuple(
            (torch.zeros((b, *w.shape), dtype=w.dtype, device=w.device) if g is None else g)
            .movedim(0, 1)
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
        if not results:  # write the chunks into one preallocated result per input
            results = [c.new_empty((num_examples, num_targets, *c.shape[2:])) for c in chunk]
        for r, c in zip(results, chunk):
            r[:, start:start + b] = c
        del chunk
    if not create_graph:
        return tuple(results)
    return tuple(torch.cat([c[i] for c in per_chunk], dim=1) for i in range(len(wrt)))


def baseline_points(
    inputs: Tuple[Tensor, ...], offsets: Optional[Sequence[Optional[Tensor]]] = None
) -> Tuple[Tensor, ...]:
    """The baseline :math:`b` as full-size inputs (zeros where no baseline is given)."""
    offsets = offsets if offsets is not None else [None] * len(inputs)
    return tuple(
        torch.zeros_like(x) if b is None else b.detach().to(x.dtype).expand_as(x).clone()
        for x, b in zip(inputs, offsets)
    )


def output_at_baseline(
    forward_func: Callable[..., Any], inputs: Tuple[Tensor, ...],
    offsets: Optional[Sequence[Optional[Tensor]]],
    additional_forward_args: Optional[Tuple[Any, ...]], target: TargetType,
    internal_batch_size: Optional[int] = None,
    targets: Optional[List[Any]] = None, many_targets: bool = False,
) -> Tensor:
    """:math:`f(b)`, no gradients: ``(N, T)`` for ``targets`` if ``many_targets``, else ``(N,)``."""
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
