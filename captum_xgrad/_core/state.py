"""The one model-state guard, and which modules are behind a ``forward_func``."""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, List, Optional

import torch
from torch import nn


__all__ = ["modules_of", "model_of", "preserve_model_state"]


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
    changed one), the hooks (any added inside the
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
                # kernels such as batch_norm update running statistics without bumping
                # the version counter, so compare the values too
                if now is not buf or buf._version != version or buf.shape != value.shape or not torch.equal(buf, value):
                    if buf.shape == value.shape:
                        buf.copy_(value)
                    else:
                        buf.data = value
        for p, flag in grads:
            if p.requires_grad != flag:
                p.requires_grad_(flag)
