"""The one model-state guard, and which modules are behind a ``forward_func``."""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, List, Optional

import torch
from torch import nn

__all__ = ["modules_of", "model_of", "preserve_model_state"]

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def modules_of(forward_func: Callable[..., Any]) -> List[nn.Module]:
    """Every ``nn.Module`` behind ``forward_func`` (itself, bound, in a partial or closure)."""
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
            for a in [obj.func, *obj.args, *obj.keywords.values()]:
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
    """The ``nn.Module`` that *is* ``forward_func`` (unwrapped, or owning its bound forward)."""
    if isinstance(forward_func, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return forward_func.module
    if isinstance(forward_func, nn.Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    name = getattr(forward_func, "__name__", "")
    return owner if isinstance(owner, nn.Module) and name in ("forward", "__call__") else None


@contextlib.contextmanager
def preserve_model_state(forward_func: Callable[..., Any]) -> Iterator[None]:
    """Restore modes, changed buffers, hooks and ``requires_grad`` of every model behind it."""
    modules = list({id(m): m for root in modules_of(forward_func) for m in root.modules()}.values())
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
            for key in [k for k in current or () if k not in keys]:
                del current[key]
        with torch.no_grad():
            for m, name, buf, version, value in buffers:
                replaced = m._buffers.get(name) is not buf
                if replaced:  # put the original back
                    m._buffers[name] = buf
                # batch_norm updates running statistics without bumping the version counter
                same_shape = buf.shape == value.shape
                unchanged = not replaced and buf._version == version and same_shape
                if not (unchanged and torch.equal(buf, value)):
                    if same_shape:
                        buf.copy_(value)
                    else:
                        buf.data = value
        for p, flag in grads:
            if p.requires_grad != flag:
                p.requires_grad_(flag)
