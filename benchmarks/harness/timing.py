"""Timing: repeated calls, interleaved round by round, reported as median and quartiles."""

from __future__ import annotations

import gc
import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence

import torch
from torch.utils import benchmark

__all__ = ["Timing", "time_callable", "time_interleaved"]


@dataclass
class Timing:
    """Wall times of repeated calls, in milliseconds.

    Attributes
    ----------
    samples_ms : list of float
        One time per timed repetition (warm-up runs excluded).

    Examples
    --------
    Made by :func:`time_callable` and :func:`time_interleaved`; the quartiles
    interpolate linearly, as :func:`numpy.quantile` does by default:

    >>> from benchmarks.harness.timing import Timing
    >>> timing = Timing([3.0, 1.0, 2.0, 4.0])
    >>> timing.median_ms, timing.q1_ms, timing.q3_ms
    (2.5, 1.75, 3.25)
    >>> timing.as_dict()["repeats"], timing.as_dict()["min_ms"]
    (4, 1.0)
    """

    samples_ms: List[float]

    @property
    def median_ms(self) -> float:
        """Median of the samples."""
        return float(statistics.median(self.samples_ms))

    @property
    def q1_ms(self) -> float:
        """First quartile (the spread is reported as ``[q1, q3]``)."""
        return _quantile(self.samples_ms, 0.25)

    @property
    def q3_ms(self) -> float:
        """Third quartile."""
        return _quantile(self.samples_ms, 0.75)

    def as_dict(self) -> Dict[str, Any]:
        """The summary written to the JSON file.

        Returns
        -------
        dict
            ``median_ms``, ``q1_ms``, ``q3_ms``, ``min_ms``, ``max_ms`` (floats),
            ``repeats`` (int) and ``samples_ms`` (list of float).

        Raises
        ------
        ValueError
            If :attr:`samples_ms` is empty (there is no median).
        """
        return {
            "median_ms": self.median_ms,
            "q1_ms": self.q1_ms,
            "q3_ms": self.q3_ms,
            "min_ms": float(min(self.samples_ms)),
            "max_ms": float(max(self.samples_ms)),
            "repeats": len(self.samples_ms),
            "samples_ms": [float(s) for s in self.samples_ms],
        }


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), for any number of values."""
    v = sorted(values)
    if len(v) == 1:
        return float(v[0])
    pos = q * (len(v) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def device_of(device: Any) -> torch.device:
    """``device`` as a :class:`torch.device`."""
    return device if isinstance(device, torch.device) else torch.device(device)


def time_callable(
    fn: Callable[[], Any], device: Any = "cpu", repeats: int = 5, warmup: int = 1
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones.

    Each call is timed on :func:`torch.utils.benchmark.timer`, the clock of
    :class:`torch.utils.benchmark.Timer`, which synchronizes CUDA before each reading, so
    that the time covers the GPU work and not only the kernel launches. Python's garbage
    collector is paused while timing (as
    :mod:`timeit` does; it is not run before, call :func:`gc.collect` yourself if
    needed, it can take a good fraction of a second).

    Parameters
    ----------
    fn : callable
        The work to time; its return value is discarded.
    device : str or torch.device, default "cpu"
        Where ``fn`` runs.
    repeats : int, default 5
        Timed calls (at least 1).
    warmup : int, default 1
        Untimed calls before (at least 0).

    Returns
    -------
    Timing

    Raises
    ------
    ValueError
        If ``repeats < 1`` or ``warmup < 0``.

    Examples
    --------
    >>> from benchmarks.harness.timing import time_callable
    >>> t = time_callable(lambda: sum(range(100)), repeats=5, warmup=1)
    >>> len(t.samples_ms), t.median_ms >= 0
    (5, True)
    """
    return time_interleaved([fn], device, repeats=repeats, warmup=warmup)[0]


def time_interleaved(
    fns: Sequence[Callable[[], Any]], device: Any = "cpu", repeats: int = 5, warmup: int = 1
) -> List[Timing]:
    """Time several callables in round-robin order: ``f1, f2, ..., f1, f2, ...``.

    Each round calls every function once, so a slow period of a shared machine (other
    processes, frequency changes) hits all of them alike and their *ratios* stay
    meaningful. Timing as in :func:`time_callable`.

    Parameters
    ----------
    fns : sequence of callable
        The work to compare.
    device : str or torch.device, default "cpu"
    repeats : int, default 5
        Timed rounds (at least 1).
    warmup : int, default 1
        Untimed rounds before (at least 0).

    Returns
    -------
    list of Timing
        One per function, in the order of ``fns``.

    Raises
    ------
    ValueError
        If ``repeats < 1`` or ``warmup < 0``.

    Examples
    --------
    >>> from benchmarks.harness.timing import time_interleaved
    >>> short, long = time_interleaved([lambda: sum(range(10)),
    ...                                 lambda: sum(range(100000))], repeats=5)
    >>> short.median_ms < long.median_ms
    True
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}.")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}.")
    dev = device_of(device)
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples: List[List[float]] = [[] for _ in fns]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for fn, out in zip(fns, samples):
                out.append(_time_one(fn, dev))
    finally:
        if gc_was_enabled:
            gc.enable()
    return [Timing(s) for s in samples]


def _time_one(fn: Callable[[], Any], dev: torch.device) -> float:
    """Milliseconds of one call, read on :func:`torch.utils.benchmark.timer`.

    That is the clock of :class:`torch.utils.benchmark.Timer`: it synchronizes the
    accelerator before reading :func:`timeit.default_timer`, so a CUDA time covers the GPU
    work and not only the kernel launches. (``Timer.timeit`` itself would call ``fn`` more
    than once per sample, for its own warm-up; the rounds here must call it exactly once.)
    """
    start = benchmark.timer()
    fn()
    return 1e3 * (benchmark.timer() - start)
