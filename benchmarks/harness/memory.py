"""Peak memory of one call: CUDA allocator statistics, or the CPU profiler's allocation events."""

from __future__ import annotations

from typing import Any, Callable

import torch

from .timing import device_of

__all__ = ["MEMORY_METHODS", "is_out_of_memory", "peak_memory"]

#: how peak memory is measured, per device type (written to the JSON files).
MEMORY_METHODS = {
    "cuda": (
        "torch.cuda.max_memory_allocated() after torch.cuda.reset_peak_memory_stats(), "
        "minus torch.cuda.memory_allocated() before the call: the peak of tensor memory "
        "allocated by the call, excluding the model and inputs that were already there."
    ),
    "cpu": (
        "torch.profiler.profile(activities=[CPU], profile_memory=True) around one call; "
        "the peak of the running sum of the CPU allocator's allocation (+) and free (-) "
        "events in time order: the largest amount of tensor memory live at once above "
        "what was live before the call (the model and inputs are not counted). Process "
        "RSS is not used because the C allocator keeps freed memory mapped."
    ),
}


def peak_memory(fn: Callable[[], Any], device: Any = "cpu") -> int:
    """Peak tensor memory, in bytes, allocated by one call of ``fn`` above the start level.

    See :data:`MEMORY_METHODS` for the method used on each device type: CUDA's
    allocator statistics, or on CPU the allocation events recorded by
    :mod:`torch.profiler`.

    Parameters
    ----------
    fn : callable
        The work to measure; its return value is discarded before the peak is read
        (it still counts if it was alive at the peak).
    device : str or torch.device, default "cpu"
        ``"cpu"`` or a CUDA device.

    Returns
    -------
    int
        Bytes; 0 if ``fn`` allocated nothing.

    Raises
    ------
    RuntimeError
        If the profiler of this torch version does not expose its memory events.

    Examples
    --------
    >>> import torch
    >>> from benchmarks.harness.memory import peak_memory
    >>> def work():
    ...     a = torch.ones(1024, 256)          # 1 MiB
    ...     b = a * 2                          # another MiB, both alive
    ...     return float(b.sum())
    >>> peak_memory(work) >= 2 * 2**20
    True
    """
    dev = device_of(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        result = fn()
        del result
        torch.cuda.synchronize(dev)
        return max(0, int(torch.cuda.max_memory_allocated(dev)) - int(base))
    return _cpu_peak_memory(fn)


def _cpu_peak_memory(fn: Callable[[], Any]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
        del result
    try:
        events = prof.profiler.kineto_results.events()  # type: ignore[union-attr]
    except AttributeError as exc:  # pragma: no cover - depends on the torch version
        raise RuntimeError(
            "this torch version's profiler does not expose its memory events "
            "(prof.profiler.kineto_results); CPU peak memory cannot be measured. Run "
            "the benchmark with --no-memory."
        ) from exc
    cpu = torch.autograd.DeviceType.CPU
    allocations = sorted(
        (e.start_ns(), i, int(e.nbytes()))
        for i, e in enumerate(events)
        if e.name() == "[memory]" and e.device_type() == cpu
    )
    live = peak = 0
    for _, _, nbytes in allocations:
        live += nbytes
        peak = max(peak, live)
    return int(peak)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error (CUDA or CPU allocator).

    Parameters
    ----------
    exc : BaseException
        The exception caught around a benchmarked call.

    Returns
    -------
    bool
        ``True`` for a :class:`MemoryError`, a :class:`torch.OutOfMemoryError`, or a
        :class:`RuntimeError` whose message says "out of memory" or "can't allocate
        memory"; ``False`` otherwise.

    Examples
    --------
    >>> from benchmarks.harness.memory import is_out_of_memory
    >>> is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    True
    >>> is_out_of_memory(ValueError("bad target"))
    False
    """
    if isinstance(exc, MemoryError):
        return True
    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in msg or "can't allocate memory" in msg
    )
