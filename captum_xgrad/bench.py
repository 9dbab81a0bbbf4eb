r"""Benchmarks: X-Gradient against Captum's Integrated Gradients (speed, memory, exactness).

The harness behind ``benchmarks/attribution_speed.py``, ``benchmarks/attribution_error.py``
and ``captum-xgrad bench``. Two studies:

*Speed and memory* (:func:`run_speed`). For every model, batch size and device it times,
with warm-up and ``repeats`` repetitions (median and quartiles):

- ``bare``: one forward pass and :func:`torch.autograd.grad` of the target logits with
  respect to the input, the physical limit of any gradient attribution;
- ``xgradient``: :class:`captum_xgrad.XGradient`; ``input_x_gradient``: Captum's
  ``InputXGradient``;
- ``ig``: Captum's ``IntegratedGradients`` for every ``n_steps``, with and without
  ``internal_batch_size``;
- ``layer_xgradient`` and ``layer_ig``: :class:`captum_xgrad.LayerXGradient` and Captum's
  ``LayerIntegratedGradients`` on the model's last feature map;
- ``train_plain``, ``train_xgrad_prior``, ``train_xgrad_prior_attribute``,
  ``train_ig_prior``: one SGD step on the cross-entropy, alone or plus the attribution
  prior :math:`\lambda\,\Omega_{L1}(A(x))` (:func:`captum_xgrad.priors.l1_prior`) with
  :math:`A` the X-Gradient (:class:`captum_xgrad.training.AttributionPrior`, one forward
  pass; or ``XGradient.attribute(create_graph=True)`` plus a task forward pass) or a
  differentiable IG (``AttributionPrior`` with ``IntegratedGradientsMethod``).

The cases of a group (gradient methods, IG, layer methods, training steps) are timed
interleaved, round by round (:func:`time_interleaved`), so that load changes on a
shared machine affect the compared methods alike. Each time is also reported as a
ratio to ``bare`` (training steps also to ``train_plain``), and each case's peak
memory is measured once, in its first (warm-up) call:

- CUDA: :func:`torch.cuda.max_memory_allocated` minus the memory allocated before the
  call (after :func:`torch.cuda.reset_peak_memory_stats`);
- CPU: the peak of the running sum of the CPU allocator's allocation and free events
  recorded by :mod:`torch.profiler` with ``profile_memory=True`` during the call, i.e.
  the largest amount of tensor memory live at once above what was live before the call
  (the CPU analogue of the CUDA number; process RSS is not used because glibc keeps
  freed memory mapped).

*Exactness* (:func:`run_error`). On the X-models (bias-free, homogeneous) the relative
difference between ``XGradient`` and ``IntegratedGradients(n_steps=n)``; on the same
architectures with biases, ``IG(n)`` against ``IG(reference_steps)`` and the
completeness delta of ``IG(n)``.

Results are written as JSON (machine, versions, device, threads, the command, the load
average at start and end), a Markdown table and PNG plots, under ``<out>/<device>/``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import gc
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BenchConfig",
    "ModelSpec",
    "Timing",
    "MODELS",
    "SCHEMA",
    "add_arguments",
    "config_from_args",
    "environment_info",
    "get_model_spec",
    "is_out_of_memory",
    "main",
    "peak_memory",
    "run",
    "run_error",
    "run_speed",
    "time_callable",
    "time_interleaved",
]

#: identifies the layout of the JSON files; bump it when keys change.
SCHEMA = "captum-xgrad-bench/1"

Log = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, flush=True)


# =============================================================================== timing
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

    >>> from captum_xgrad.bench import Timing
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


def _device_of(device: Any) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def time_callable(
    fn: Callable[[], Any], device: Any = "cpu", repeats: int = 5, warmup: int = 1
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones.

    On CPU each call is timed with :func:`time.perf_counter`. On CUDA it is timed with
    a pair of :class:`torch.cuda.Event` recorded around the call, after a
    :func:`torch.cuda.synchronize`, so that the time covers the GPU work and not only
    the kernel launches. Python's garbage collector is paused while timing (as
    :mod:`timeit` does; it is not run before, call :func:`gc.collect` yourself if
    needed, it can take a good fraction of a second).

    Parameters
    ----------
    fn : callable
        The work to time; its return value is discarded.
    device : str or torch.device, default "cpu"
        Where ``fn`` runs; ``"cuda"`` selects event timing.
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
    >>> from captum_xgrad.bench import time_callable
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
    >>> from captum_xgrad.bench import time_interleaved
    >>> short, long = time_interleaved([lambda: sum(range(10)),
    ...                                 lambda: sum(range(100000))], repeats=5)
    >>> short.median_ms < long.median_ms
    True
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}.")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}.")
    dev = _device_of(device)
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
    """Milliseconds of one call (CUDA: between two events, after a synchronize)."""
    if dev.type == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(dev)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    t0 = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - t0)


# =============================================================================== memory
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
    >>> from captum_xgrad.bench import peak_memory
    >>> def work():
    ...     a = torch.ones(1024, 256)          # 1 MiB
    ...     b = a * 2                          # another MiB, both alive
    ...     return float(b.sum())
    >>> peak_memory(work) >= 2 * 2**20
    True
    """
    dev = _device_of(device)
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
    >>> from captum_xgrad.bench import is_out_of_memory
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


# =============================================================================== models
@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: how to build it (bias-free and with biases) and feed it.

    Attributes
    ----------
    name : str
        Registry key (``--models``).
    title : str
        Human-readable name for tables and plots.
    input_shape : callable
        ``input_shape(small) -> tuple`` of one example's shape.
    batch_sizes : callable
        ``batch_sizes(small) -> tuple`` of default batch sizes.
    build_x : callable
        ``build_x(num_classes, small) -> (model, source)``: the bias-free
        (homogeneous) model and a description of where it comes from.
    build_biased : callable
        ``build_biased(num_classes, small) -> (model, source)``: the same
        architecture with biases (not homogeneous).
    layer : callable
        ``layer(model) -> nn.Module``: the layer attributed by the layer methods.
    error_batch_size : callable, optional
        ``error_batch_size(small) -> int``: examples in the exactness study (2 when
        small, else 8).

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.bench import MODELS
    >>> spec = MODELS["mlp"]
    >>> spec.title, spec.input_shape(True), spec.batch_sizes(True), spec.error_batch_size(True)
    ('bias-free MLP', (784,), (1, 64), 2)
    >>> model, source = spec.build_x(10, True)
    >>> source, model(torch.rand(2, 784)).shape
    ('captum_xgrad.bench MLP', torch.Size([2, 10]))
    >>> spec.layer(model)
    ReLU()
    """

    name: str
    title: str
    input_shape: Callable[[bool], Tuple[int, ...]]
    batch_sizes: Callable[[bool], Tuple[int, ...]]
    build_x: Callable[[int, bool], Tuple[nn.Module, str]]
    build_biased: Callable[[int, bool], Tuple[nn.Module, str]]
    layer: Callable[[nn.Module], nn.Module]
    error_batch_size: Callable[[bool], int] = lambda small: 2 if small else 8


def _zoo(builder: str) -> Optional[Callable[..., nn.Module]]:
    """The builder from :mod:`captum_xgrad.models` if that module provides it."""
    try:
        from . import models as zoo  # type: ignore[attr-defined]
    except ImportError:
        return None
    fn = getattr(zoo, builder, None)
    return fn if callable(fn) else None


def _strip_biases(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias = None
    return model


def _default_bias_init(model: nn.Module) -> nn.Module:
    """Give every bias PyTorch's default layer init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    and normalisation layers random affine parameters and running statistics, so that
    the model is far from homogeneous, as a trained model with biases is (torchvision's
    VGG/ResNet initialise biases to 0 and BN to the identity)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                m.bias.uniform_(-bound, bound)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.1)
                if m.track_running_stats:
                    assert m.running_mean is not None and m.running_var is not None
                    m.running_mean.normal_(0.0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
            else:
                for name, p in m.named_parameters(recurse=False):
                    if "bias" in name and p.numel() == 1:  # Fixup's scalar biases
                        p.normal_(0.0, 0.1)
    return model


def _mlp(small: bool, num_classes: int, bias: bool) -> nn.Sequential:
    d, h = (784, 256) if small else (3072, 1024)
    return nn.Sequential(OrderedDict(
        flatten=nn.Flatten(),
        fc1=nn.Linear(d, h, bias=bias),
        relu1=nn.ReLU(),
        fc2=nn.Linear(h, h, bias=bias),
        relu2=nn.ReLU(),
        fc3=nn.Linear(h, num_classes, bias=bias),
    ))


def _cnn(num_classes: int, bias: bool) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1, bias=bias), nn.ReLU(),
        ),
        pool=nn.AdaptiveAvgPool2d(1),
        flatten=nn.Flatten(),
        classifier=nn.Linear(16, num_classes, bias=bias),
    ))


def _torchvision(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    import torchvision

    return getattr(torchvision.models, name)(weights=None, num_classes=num_classes, **kwargs)


def _build_xalexnet(num_classes: int, small: bool) -> Tuple[nn.Module, str]:
    zoo = _zoo("xalexnet")
    if zoo is not None:
        return zoo(num_classes=num_classes), "captum_xgrad.models.xalexnet"
    return (_strip_biases(_torchvision("alexnet", num_classes)),
            "torchvision alexnet, biases removed (fallback: captum_xgrad.models missing)")


def _build_xvgg16(num_classes: int, small: bool) -> Tuple[nn.Module, str]:
    zoo = _zoo("xvgg16")
    if zoo is not None:
        return zoo(num_classes=num_classes), "captum_xgrad.models.xvgg16"
    return (_strip_biases(_torchvision("vgg16", num_classes)),
            "torchvision vgg16, biases removed (fallback: captum_xgrad.models missing)")


def _fixup_like_resnet50(num_classes: int) -> nn.Module:
    """Bias-free torchvision ResNet-50 without normalisation, residual branches scaled
    down as Fixup does (so that activations do not grow with depth)."""
    model = _strip_biases(_torchvision("resnet50", num_classes, norm_layer=lambda c: nn.Identity()))
    n_blocks = sum(len(getattr(model, f"layer{i}")) for i in range(1, 5))
    with torch.no_grad():
        for i in range(1, 5):
            for block in getattr(model, f"layer{i}"):
                block.conv3.weight.mul_(n_blocks ** (-0.5))
    return model


def _build_xfixup_resnet50(num_classes: int, small: bool) -> Tuple[nn.Module, str]:
    zoo = _zoo("xfixup_resnet50")
    if zoo is not None:
        # Fixup's zero init (last branch convs and classifier at 0) gives a model that
        # outputs zeros; random weights everywhere instead
        return (zoo(num_classes=num_classes, zero_init=False),
                "captum_xgrad.models.xfixup_resnet50(zero_init=False)")
    return (_fixup_like_resnet50(num_classes),
            "torchvision resnet50 without BN and biases, Fixup-scaled (fallback: "
            "captum_xgrad.models missing)")


def _build_biased_resnet50(num_classes: int, small: bool) -> Tuple[nn.Module, str]:
    zoo = _zoo("fixup_resnet50")
    if zoo is not None:
        return (_default_bias_init(zoo(num_classes=num_classes, zero_init=False)),
                "captum_xgrad.models.fixup_resnet50(zero_init=False), biases drawn at random")
    return (_default_bias_init(_torchvision("resnet50", num_classes)),
            "torchvision resnet50 (BN, biases), biases and BN statistics drawn at random")


def _last_feature_map(model: nn.Module) -> nn.Module:
    """The layer attributed by the layer methods: the last convolutional stage."""
    for name in ("layer4", "features"):
        layer = getattr(model, name, None)
        if isinstance(layer, nn.Module):
            return layer
    raise ValueError(f"{type(model).__name__} has neither `layer4` nor `features`.")


# Documented in docs/api/bench.rst (a ``#:`` comment here would describe it twice).
MODELS: Dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "mlp", "bias-free MLP",
            input_shape=lambda small: (784,) if small else (3072,),
            batch_sizes=lambda small: (1, 64) if small else (1, 256),
            build_x=lambda c, small: (_mlp(small, c, False), "captum_xgrad.bench MLP"),
            build_biased=lambda c, small: (_default_bias_init(_mlp(small, c, True)),
                                           "captum_xgrad.bench MLP with biases"),
            layer=lambda m: m.relu1,
        ),
        ModelSpec(
            "cnn", "tiny bias-free CNN",
            input_shape=lambda small: (3, 16, 16),
            batch_sizes=lambda small: (1, 16),
            build_x=lambda c, small: (_cnn(c, False), "captum_xgrad.bench tiny CNN"),
            build_biased=lambda c, small: (_default_bias_init(_cnn(c, True)),
                                           "captum_xgrad.bench tiny CNN with biases"),
            layer=_last_feature_map,
        ),
        ModelSpec(
            "xalexnet", "X-AlexNet",
            input_shape=lambda small: (3, 64, 64) if small else (3, 224, 224),
            batch_sizes=lambda small: (1,) if small else (1, 16),
            build_x=_build_xalexnet,
            build_biased=lambda c, small: (_default_bias_init(_torchvision("alexnet", c)),
                                           "torchvision alexnet, biases drawn at random"),
            layer=_last_feature_map,
        ),
        ModelSpec(
            "xvgg16", "X-VGG16",
            input_shape=lambda small: (3, 32, 32) if small else (3, 224, 224),
            batch_sizes=lambda small: (1,) if small else (1, 16),
            build_x=_build_xvgg16,
            error_batch_size=lambda small: 1 if small else 8,
            build_biased=lambda c, small: (_default_bias_init(_torchvision("vgg16", c)),
                                           "torchvision vgg16, biases drawn at random"),
            layer=_last_feature_map,
        ),
        ModelSpec(
            "xfixup_resnet50", "X-Fixup-ResNet-50",
            input_shape=lambda small: (3, 32, 32) if small else (3, 224, 224),
            batch_sizes=lambda small: (1,) if small else (1, 16),
            build_x=_build_xfixup_resnet50,
            build_biased=_build_biased_resnet50,
            layer=_last_feature_map,
        ),
    ]
}

#: the models run when ``--models`` is not given (all of :data:`MODELS` but ``cnn``).
DEFAULT_MODELS = ("mlp", "xalexnet", "xvgg16", "xfixup_resnet50")


def get_model_spec(name: str) -> ModelSpec:
    """Look a benchmark model up by name.

    Parameters
    ----------
    name : str
        A key of :data:`MODELS`.

    Returns
    -------
    ModelSpec
        ``MODELS[name]``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).

    Examples
    --------
    >>> from captum_xgrad.bench import get_model_spec
    >>> get_model_spec("mlp").title
    'bias-free MLP'
    """
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown benchmark model {name!r}; choose from {', '.join(MODELS)}."
        ) from None


# =============================================================================== config
@dataclass
class BenchConfig:
    """What to run. The defaults are the full (GPU-sized) benchmark; ``small=True``
    shrinks inputs, batch sizes and classes to CPU size.

    Attributes
    ----------
    models : sequence of str
        Keys of :data:`MODELS`.
    small : bool
        CPU size: small images (X-AlexNet 64x64, the smallest it accepts; X-VGG16 and
        X-Fixup-ResNet-50 32x32), 10 classes, batch size 1 for the CNNs.
    devices : sequence of str
        ``"cpu"`` and/or ``"cuda"``.
    batch_sizes : sequence of int, optional
        Overrides every model's default batch sizes.
    n_steps : sequence of int
        ``n_steps`` of IntegratedGradients.
    repeats, warmup : int
        Timed and untimed calls per case.
    memory : bool
        Measure peak memory, in the first warm-up call of each case.
    internal_batch_size : int
        ``internal_batch_size`` of the "with internal_batch_size" IG runs (scaled
        inputs per forward/backward pass); these runs are skipped where
        ``n_steps * batch <= internal_batch_size`` (one chunk, the same computation).
    layer_n_steps : int
        ``n_steps`` of LayerIntegratedGradients.
    prior_ig_steps : int
        Steps of the differentiable IG in the IG-prior training step.
    prior_lambda : float
        Weight of the attribution prior.
    reference_steps : int
        ``n_steps`` of the reference IG in the exactness study.
    error_batch_size : int, optional
        Examples in the exactness study (default per model: 8, small 2; X-VGG16 small 1).
    error_internal_batch_size : int
        ``internal_batch_size`` of the IG runs in the exactness study.
    seed : int
        Seed of models and inputs.
    progress : bool
        tqdm progress bars on stderr.
    plots : bool
        Write PNG plots (needs matplotlib).

    Raises
    ------
    ValueError
        Not from the constructor, which stores the values as given, but from
        :meth:`validate`, which :func:`run_speed`, :func:`run_error` and :func:`run`
        call first: for an unknown model or device, CUDA requested without a GPU, or
        a count that is not a positive integer.

    Examples
    --------
    >>> from captum_xgrad.bench import BenchConfig
    >>> cfg = BenchConfig(models=["mlp"], small=True, n_steps=[4, 8])
    >>> cfg.num_classes, cfg.devices
    (10, ('cpu',))
    >>> cfg.validate()  # consistent: nothing happens
    >>> BenchConfig(models=["mlp"], repeats=0).validate()
    Traceback (most recent call last):
    ...
    ValueError: repeats must be positive integers, got [0].
    """

    models: Sequence[str] = DEFAULT_MODELS
    small: bool = False
    devices: Sequence[str] = ("cpu",)
    batch_sizes: Optional[Sequence[int]] = None
    n_steps: Sequence[int] = (8, 16, 32, 50, 128)
    repeats: int = 5
    warmup: int = 1
    memory: bool = True
    internal_batch_size: int = 16
    layer_n_steps: int = 50
    prior_ig_steps: int = 8
    prior_lambda: float = 0.1
    reference_steps: int = 1024
    error_batch_size: Optional[int] = None
    error_internal_batch_size: int = 64
    seed: int = 0
    progress: bool = True
    plots: bool = True

    @property
    def num_classes(self) -> int:
        """10 classes in small mode, 1000 otherwise."""
        return 10 if self.small else 1000

    def validate(self) -> None:
        """Raise :class:`ValueError` for an inconsistent configuration.

        Raises
        ------
        ValueError
            For an unknown model name or an empty ``models``; a device other than
            ``"cpu"`` or ``"cuda"``, or ``"cuda"`` when CUDA is not available; an
            ``n_steps``, batch size, repeat count, ``internal_batch_size``,
            ``layer_n_steps``, ``prior_ig_steps``, ``reference_steps`` or
            ``error_*`` value that is not a positive integer; a negative ``warmup``.
        """
        for name in self.models:
            get_model_spec(name)
        if not self.models:
            raise ValueError("no models selected; pass --models with at least one name.")
        for dev in self.devices:
            if dev not in ("cpu", "cuda"):
                raise ValueError(f"device must be 'cpu' or 'cuda', got {dev!r}.")
            if dev == "cuda" and not torch.cuda.is_available():
                raise ValueError(
                    "device 'cuda' was requested but torch.cuda.is_available() is False "
                    "(no GPU, or a CPU-only torch build); use --device cpu, or --device all "
                    "to run on CUDA only when it is present."
                )
        positive = {
            "n_steps": list(self.n_steps),
            "batch_sizes": list(self.batch_sizes or [1]),
            "repeats": [self.repeats],
            "internal_batch_size": [self.internal_batch_size],
            "layer_n_steps": [self.layer_n_steps],
            "prior_ig_steps": [self.prior_ig_steps],
            "reference_steps": [self.reference_steps],
            "error_batch_size": [self.error_batch_size or 1],
            "error_internal_batch_size": [self.error_internal_batch_size],
        }
        for name, values in positive.items():
            if not values or any(int(v) != v or v < 1 for v in values):
                raise ValueError(f"{name} must be positive integers, got {values}.")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}.")


# ========================================================================= environment
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def environment_info(device: str) -> Dict[str, Any]:
    """Machine, library versions and device of a benchmark run (for the JSON files).

    Parameters
    ----------
    device : {"cpu", "cuda"}

    Returns
    -------
    dict
        Keys ``machine``, ``versions``, ``device``.

    Raises
    ------
    RuntimeError
        For ``device="cuda"`` when torch finds no usable GPU.

    Examples
    --------
    >>> from captum_xgrad.bench import environment_info
    >>> info = environment_info("cpu")
    >>> sorted(info), info["device"]["type"]
    (['device', 'machine', 'versions'], 'cpu')
    """
    import captum
    import numpy

    from ._version import __version__

    try:
        import torchvision

        tv = torchvision.__version__
    except ImportError:  # pragma: no cover
        tv = None
    dev: Dict[str, Any] = {"type": device, "threads": torch.get_num_threads()}
    if device == "cuda":
        idx = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        dev.update(
            name=torch.cuda.get_device_name(idx),
            total_memory_bytes=int(props.total_memory),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
            tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
            tf32_cudnn=bool(torch.backends.cudnn.allow_tf32),
        )
    else:
        dev.update(name=_cpu_name(), interop_threads=torch.get_num_interop_threads())
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": {
            "captum_xgrad": __version__,
            "torch": torch.__version__,
            "torchvision": tv,
            "captum": captum.__version__,
            "numpy": numpy.__version__,
        },
        "device": dev,
    }


# ============================================================================ progress
class _Progress:
    """tqdm when available and wanted, otherwise nothing."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self._bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
            except ImportError:  # pragma: no cover
                self._bar = None

    def update(self, label: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(label, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# ========================================================================= speed cases
@dataclass
class _Case:
    name: str
    group: str
    fn: Callable[[], Any]
    n_steps: Optional[int] = None
    internal_batch_size: Optional[int] = None


def _bare(model: nn.Module, x: Tensor, t: Tensor) -> Callable[[], Any]:
    def fn() -> Any:
        xi = x.detach().requires_grad_(True)
        out = model(xi)
        return torch.autograd.grad(out.gather(1, t[:, None]).sum(), xi)[0]

    return fn


def _prior_losses(model: nn.Module, x: Tensor, y: Tensor, cfg: "BenchConfig"
                  ) -> Dict[str, Callable[[], Tensor]]:
    """The losses of the training-step cases, ``name -> () -> loss``.

    ``train_xgrad_prior`` and ``train_ig_prior`` use
    :class:`captum_xgrad.training.AttributionPrior` with :func:`~captum_xgrad.priors.l1_prior`
    (one model call per step, shared by the task loss and the attribution);
    ``train_xgrad_prior_attribute`` is what a drop-in user of
    ``XGradient.attribute(create_graph=True)`` writes: the attribution's forward pass
    plus a second forward pass for the task loss.
    """
    from .priors import l1_prior
    from .training import AttributionPrior, IntegratedGradientsMethod
    from .xgradient import XGradient

    lam = cfg.prior_lambda
    xg_prior = AttributionPrior(model, l1_prior, weight=lam, attribution="xgradient")
    ig_prior = AttributionPrior(model, l1_prior, weight=lam,
                                attribution=IntegratedGradientsMethod(n_steps=cfg.prior_ig_steps))
    xg = XGradient(model, check="off")

    def attribute_then_forward() -> Tensor:
        attr = xg.attribute(x, target=y, create_graph=True)
        return F.cross_entropy(model(x), y) + lam * l1_prior(attr)

    return {
        "train_plain": lambda: F.cross_entropy(model(x), y),
        "train_xgrad_prior": lambda: xg_prior(x, y).loss,
        "train_xgrad_prior_attribute": attribute_then_forward,
        "train_ig_prior": lambda: ig_prior(x, y).loss,
    }


def _train_step(
    model: nn.Module, opt: torch.optim.Optimizer, loss_fn: Callable[[], Tensor]
) -> Callable[[], Any]:
    def fn() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return None

    return fn


def _speed_cases(
    spec: ModelSpec,
    model: nn.Module,
    train_model: nn.Module,
    opt: torch.optim.Optimizer,
    x: Tensor,
    t: Tensor,
    cfg: BenchConfig,
) -> List[_Case]:
    from captum.attr import (
        InputXGradient,
        IntegratedGradients,
        LayerIntegratedGradients,
    )

    from .layer_xgradient import LayerXGradient
    from .xgradient import XGradient

    xg = XGradient(model)
    ixg = InputXGradient(model)
    ig = IntegratedGradients(model)
    layer = spec.layer(model)
    lxg = LayerXGradient(model, layer)
    lig = LayerIntegratedGradients(model, layer)
    ibs = cfg.internal_batch_size
    cases = [
        _Case("bare", "gradient", _bare(model, x, t)),
        _Case("xgradient", "gradient", lambda: xg.attribute(x, target=t)),
        _Case("input_x_gradient", "gradient", lambda: ixg.attribute(x, target=t)),
    ]
    for n in cfg.n_steps:
        cases.append(_Case("ig", "ig", lambda n=n: ig.attribute(x, target=t, n_steps=n),
                           n_steps=n))
    for n in cfg.n_steps:
        if n * x.shape[0] <= ibs:
            continue  # one chunk: the same computation as without internal_batch_size
        cases.append(_Case(
            "ig", "ig",
            lambda n=n: ig.attribute(x, target=t, n_steps=n, internal_batch_size=ibs),
            n_steps=n, internal_batch_size=ibs,
        ))
    cases += [
        _Case("layer_xgradient", "layer", lambda: lxg.attribute(x, target=t)),
        _Case("layer_ig", "layer",
              lambda: lig.attribute(x, target=t, n_steps=cfg.layer_n_steps),
              n_steps=cfg.layer_n_steps),
    ]
    losses = _prior_losses(train_model, x, t, cfg)
    for name, loss_fn in losses.items():
        cases.append(_Case(name, "train", _train_step(train_model, opt, loss_fn),
                           n_steps=cfg.prior_ig_steps if name == "train_ig_prior" else None))
    return cases


def _measure_block(cases: List[_Case], device: str, cfg: BenchConfig,
                   bar: "_Progress") -> List[Dict[str, Any]]:
    """Measure every case of one (model, device, batch) block.

    First each case once on its own: its peak memory (this call is also its first
    warm-up call) or, with memory off, a plain warm-up call; a case that runs out of
    memory is recorded as such and not timed. Then the timing, interleaved within
    each group (gradient, IG, layer, training), so that load changes on a shared
    machine hit the compared methods alike.
    """
    rows: List[Dict[str, Any]] = []
    for case in cases:
        row: Dict[str, Any] = {
            "case": case.name,
            "group": case.group,
            "n_steps": case.n_steps,
            "internal_batch_size": case.internal_batch_size,
            "status": "ok",
        }
        try:
            if cfg.memory:
                row["peak_memory_bytes"] = peak_memory(case.fn, device)
            else:
                case.fn()
        except Exception as exc:  # noqa: BLE001 - recorded, then the run goes on
            if not is_out_of_memory(exc):
                raise
            row["status"] = "out of memory"
            row["error"] = str(exc).splitlines()[0][:200]
        if row["status"] != "ok":
            # here the exception and the frames it kept alive are gone
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
        bar.update(f"memory: {_short_label(case)}")
    warmup = max(cfg.warmup - 1, 0)
    groups: List[str] = []
    for case in cases:
        if case.group not in groups:
            groups.append(case.group)
    for group in groups:
        members = [(c, r) for c, r in zip(cases, rows) if c.group == group and r["status"] == "ok"]
        if not members:
            continue
        timings = time_interleaved([c.fn for c, _ in members], device,
                                   repeats=cfg.repeats, warmup=warmup)
        for (c, r), timing in zip(members, timings):
            r.update(timing.as_dict())
            bar.update(f"time: {_short_label(c)}")
    return rows


def _short_label(case: _Case) -> str:
    label = case.name + (f"(n={case.n_steps})" if case.n_steps else "")
    return label + (f" ibs={case.internal_batch_size}" if case.internal_batch_size else "")


def _add_ratios(rows: List[Dict[str, Any]]) -> None:
    """Add ``time_ratio_to_bare``, ``memory_ratio_to_bare`` (and, for training steps,
    ``time_ratio_to_plain_step``) to every row of one (model, device, batch) block."""
    by_name = {r["case"]: r for r in rows if r["group"] != "ig"}
    bare = by_name.get("bare", {})
    plain = by_name.get("train_plain", {})
    for r in rows:
        if r["status"] != "ok":
            continue
        if bare.get("median_ms"):
            r["time_ratio_to_bare"] = r["median_ms"] / bare["median_ms"]
        if bare.get("peak_memory_bytes") and "peak_memory_bytes" in r:
            r["memory_ratio_to_bare"] = r["peak_memory_bytes"] / bare["peak_memory_bytes"]
        if r["group"] == "train" and plain.get("median_ms"):
            r["time_ratio_to_plain_step"] = r["median_ms"] / plain["median_ms"]
            if plain.get("peak_memory_bytes") and "peak_memory_bytes" in r:
                r["memory_ratio_to_plain_step"] = (
                    r["peak_memory_bytes"] / plain["peak_memory_bytes"]
                )


#: the issue's targets, checked in the summary (never in tests).
TARGETS = {
    "xgradient_time_ratio_max": 1.05,
    "xgradient_memory_ratio_max": 1.10,
    "train_xgrad_prior_ratio_max": 2.5,
}


def _summarise(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One summary line per (model, device, batch): the target ratios."""
    out = []
    keys = []
    for r in rows:
        k = (r["model"], r["device"], r["batch_size"])
        if k not in keys:
            keys.append(k)
    for model, device, batch in keys:
        block = [r for r in rows
                 if (r["model"], r["device"], r["batch_size"]) == (model, device, batch)]

        def get(case: str, n: Optional[int] = None, ibs: Optional[int] = None) -> Dict[str, Any]:
            for r in block:
                if (r["case"] == case and r["status"] == "ok"
                        and (n is None or r["n_steps"] == n)
                        and r["internal_batch_size"] == ibs):
                    return r
            return {}

        xg, ig50 = get("xgradient"), get("ig", 50)
        s: Dict[str, Any] = {"model": model, "device": device, "batch_size": batch}
        s["xgradient_time_ratio"] = xg.get("time_ratio_to_bare")
        s["xgradient_memory_ratio"] = xg.get("memory_ratio_to_bare")
        s["ig50_over_xgradient_time"] = (
            ig50["median_ms"] / xg["median_ms"] if ig50 and xg else None
        )
        s["ig50_over_xgradient_memory"] = (
            ig50["peak_memory_bytes"] / xg["peak_memory_bytes"]
            if ig50.get("peak_memory_bytes") and xg.get("peak_memory_bytes") else None
        )
        s["train_xgrad_prior_ratio"] = get("train_xgrad_prior").get("time_ratio_to_plain_step")
        s["train_xgrad_prior_attribute_ratio"] = get("train_xgrad_prior_attribute").get(
            "time_ratio_to_plain_step")
        s["train_ig_prior_ratio"] = get("train_ig_prior", None).get("time_ratio_to_plain_step")

        def ok(value: Optional[float], limit: float) -> Optional[bool]:
            return None if value is None else bool(value <= limit)

        s["meets_xgradient_time_target"] = ok(
            s["xgradient_time_ratio"], TARGETS["xgradient_time_ratio_max"])
        s["meets_xgradient_memory_target"] = ok(
            s["xgradient_memory_ratio"], TARGETS["xgradient_memory_ratio_max"])
        s["meets_train_prior_target"] = ok(
            s["train_xgrad_prior_ratio"], TARGETS["train_xgrad_prior_ratio_max"])
        out.append(s)
    return out


def run_speed(cfg: BenchConfig, log: Log = _print) -> Dict[str, Dict[str, Any]]:
    """Run the speed/memory study; returns one result dict per device.

    Parameters
    ----------
    cfg : BenchConfig
    log : callable, default print
        Receives progress lines.

    Returns
    -------
    dict
        ``{device: {"models": ..., "results": [...], "summary": [...], ...}}`` (see the
        JSON files for the keys).

    Raises
    ------
    ValueError
        For an invalid configuration (:meth:`BenchConfig.validate`).

    Examples
    --------
    A real run takes seconds even for the small MLP (every method is timed), so this
    example only shows the configuration check that comes first; :func:`run_error`
    has a complete run.

    >>> from captum_xgrad.bench import BenchConfig, run_speed
    >>> run_speed(BenchConfig(models=["mlp"], devices=["tpu"]))
    Traceback (most recent call last):
    ...
    ValueError: device must be 'cpu' or 'cuda', got 'tpu'.
    """
    cfg.validate()
    with warnings.catch_warnings():
        # Captum's notes on auto-enabled requires_grad / clipped internal_batch_size
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")
        return _run_speed(cfg, log)


def _run_speed(cfg: BenchConfig, log: Log) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for device in cfg.devices:
        rows: List[Dict[str, Any]] = []
        sources: Dict[str, str] = {}
        shapes: Dict[str, List[int]] = {}
        for name in cfg.models:
            spec = get_model_spec(name)
            torch.manual_seed(cfg.seed)
            model, source = spec.build_x(cfg.num_classes, cfg.small)
            model = model.to(device).eval()
            sources[name] = source
            shape = spec.input_shape(cfg.small)
            shapes[name] = list(shape)
            train_model = copy.deepcopy(model).train()
            opt = torch.optim.SGD(train_model.parameters(), lr=1e-4)
            for batch in (cfg.batch_sizes or spec.batch_sizes(cfg.small)):
                gen = torch.Generator().manual_seed(cfg.seed + batch)
                x = torch.rand((batch,) + shape, generator=gen).to(device)
                t = torch.randint(0, cfg.num_classes, (batch,), generator=gen).to(device)
                cases = _speed_cases(spec, model, train_model, opt, x, t, cfg)
                gc.collect()  # once per block: a full collection takes ~0.3 s
                cases[0].fn()  # warm the model up (first-call allocations, kernels)
                bar = _Progress(2 * len(cases), f"{device} {name} batch {batch}",
                                cfg.progress)
                try:
                    block = _measure_block(cases, device, cfg, bar)
                finally:
                    bar.close()
                for row in block:
                    row.update(model=name, device=device, batch_size=batch)
                _add_ratios(block)
                rows.extend(block)
                bare = next(r for r in block if r["case"] == "bare")
                xg = next(r for r in block if r["case"] == "xgradient")
                if bare["status"] == "ok" and xg["status"] == "ok":
                    log(f"  {device} {name} batch {batch}: bare {bare['median_ms']:.2f} ms, "
                        f"XGradient {xg['median_ms']:.2f} ms "
                        f"({xg['time_ratio_to_bare']:.3f}x)")
            del model, train_model, opt
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        out[device] = {
            "models": {n: {"source": sources[n], "input_shape": shapes[n],
                           "title": get_model_spec(n).title} for n in cfg.models},
            "results": rows,
            "summary": _summarise(rows),
            "targets": dict(TARGETS),
            "memory_method": MEMORY_METHODS["cuda" if device == "cuda" else "cpu"],
        }
    return out


# ========================================================================== exactness
def _relative_errors(attr: Tensor, ref: Tensor) -> Tuple[float, float]:
    """(max over examples of max|a-r|/max|r|, mean over examples of sum|a-r|/sum|r|)."""
    a = attr.detach().double().reshape(attr.shape[0], -1)
    r = ref.detach().double().reshape(ref.shape[0], -1)
    tiny = torch.finfo(torch.float64).tiny
    diff = (a - r).abs()
    max_rel = diff.max(1).values / r.abs().max(1).values.clamp_min(tiny)
    mean_rel = diff.sum(1) / r.abs().sum(1).clamp_min(tiny)
    return float(max_rel.max()), float(mean_rel.mean())


def _completeness(delta: Tensor, f_x: Tensor, f_0: Tensor) -> Tuple[float, float]:
    rel = delta.detach().double().abs() / (f_x - f_0).detach().double().abs().clamp_min(1e-30)
    return float(rel.max()), float(rel.mean())


@contextlib.contextmanager
def _full_precision(device: str) -> Iterator[Dict[str, Any]]:
    """Switch TF32 off on CUDA for the exactness study (restored afterwards): TF32
    convolutions round to ~1e-3 and would hide the differences being measured."""
    if device != "cuda":
        yield {}
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield {"tf32": "disabled for the exactness study"}
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def run_error(cfg: BenchConfig, log: Log = _print) -> Dict[str, Dict[str, Any]]:
    """Run the exactness study; returns one result dict per device.

    For each model: on the bias-free X-model, ``XGradient`` against
    ``IntegratedGradients(n_steps=n)`` (Captum's default Gauss-Legendre rule) for every
    ``n``; on the same architecture with biases, ``IG(n)`` against
    ``IG(reference_steps)``, and ``XGradient`` (here *not* exact) against the same
    reference. Errors are relative:
    ``max_rel = max_i max_j |a_ij - r_ij| / max_j |r_ij|`` and
    ``mean_rel = mean_i sum_j |a_ij - r_ij| / sum_j |r_ij|`` over examples ``i`` and
    input elements ``j``; the completeness error is
    ``|sum_j a_ij - (f(x_i) - f(0))| / |f(x_i) - f(0)|``.

    Parameters
    ----------
    cfg : BenchConfig
    log : callable, default print

    Returns
    -------
    dict
        ``{device: {"models": ..., "results": [...]}}``.

    Raises
    ------
    ValueError
        For an invalid configuration (:meth:`BenchConfig.validate`).
    RuntimeError
        If a model gives :math:`f(x) = f(0)` on the benchmark inputs (a degenerate
        initialisation, which makes relative errors meaningless).

    Examples
    --------
    >>> from captum_xgrad.bench import BenchConfig, run_error
    >>> cfg = BenchConfig(models=["mlp"], small=True, n_steps=[4], reference_steps=16,
    ...                   error_batch_size=1, progress=False)
    >>> result = run_error(cfg, log=lambda line: None)
    >>> rows = result["cpu"]["results"]
    >>> [(r["variant"], r["method"], r["reference"]) for r in rows]
    [('x', 'xgradient', 'xgradient'), ('x', 'ig', 'xgradient'), ('biased', 'xgradient', 'ig16'), ('biased', 'ig', 'ig16')]
    >>> rows[1]["max_rel"] < 1e-4  # IG(4) equals X-Gradient on the bias-free MLP
    True
    >>> rows[2]["max_rel"] > 1e-2  # ... but X-Gradient is not IG once there are biases
    True
    """
    cfg.validate()
    out: Dict[str, Dict[str, Any]] = {}
    for device in cfg.devices:
        with _full_precision(device) as precision:
            out[device] = _run_error_on(device, cfg, log)
            out[device].update(precision)
    return out


def _run_error_on(device: str, cfg: BenchConfig, log: Log) -> Dict[str, Any]:
    from captum.attr import IntegratedGradients

    from .xgradient import XGradient

    ibs = cfg.error_internal_batch_size
    rows: List[Dict[str, Any]] = []
    models_info: Dict[str, Any] = {}
    steps = sorted(set(cfg.n_steps))
    bar = _Progress(len(cfg.models) * (2 * len(steps) + 3), f"{device} exactness",
                    cfg.progress)
    try:
        for name in cfg.models:
            spec = get_model_spec(name)
            shape = spec.input_shape(cfg.small)
            n_examples = cfg.error_batch_size or spec.error_batch_size(cfg.small)
            gen = torch.Generator().manual_seed(cfg.seed)
            x = torch.rand((n_examples,) + shape, generator=gen).to(device)
            info: Dict[str, Any] = {"title": spec.title, "input_shape": list(shape),
                                    "examples": n_examples}
            for variant, build in (("x", spec.build_x), ("biased", spec.build_biased)):
                torch.manual_seed(cfg.seed)
                model, source = build(cfg.num_classes, cfg.small)
                model = model.to(device).eval()
                info[f"{variant}_source"] = source
                with torch.no_grad():
                    f_x_all = model(x)
                    f_0_all = model(torch.zeros_like(x))
                t = f_x_all.argmax(1)
                f_x = f_x_all.gather(1, t[:, None])[:, 0]
                f_0 = f_0_all.gather(1, t[:, None])[:, 0]
                if not bool(((f_x - f_0).abs() > 1e-6 * f_x.abs().clamp_min(1.0)).all()):
                    raise RuntimeError(
                        f"{name} ({variant}, {source}): f(x) = f(0) on the benchmark "
                        "inputs, so every attribution is ~0 and relative errors are "
                        "meaningless; the model's initialisation is degenerate."
                    )
                ig = IntegratedGradients(model)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # biased models warn, by design
                    xg, xg_delta = XGradient(model).attribute(
                        x, target=t, return_convergence_delta=True)
                bar.update(f"{name} {variant} XGradient")
                base = {"model": name, "device": device, "variant": variant}
                if variant == "x":
                    ref, ref_name = xg, "xgradient"
                else:
                    ref = ig.attribute(x, target=t, n_steps=cfg.reference_steps,
                                       internal_batch_size=ibs)
                    ref_name = f"ig{cfg.reference_steps}"
                    bar.update(f"{name} IG({cfg.reference_steps})")
                    mx, mn = _relative_errors(xg, ref)
                    cmx, cmn = _completeness(xg_delta, f_x, f_0)
                    rows.append(dict(base, method="xgradient", n_steps=None,
                                     reference=ref_name, max_rel=mx, mean_rel=mn,
                                     completeness_max_rel=cmx, completeness_mean_rel=cmn))
                if variant == "x":
                    cmx, cmn = _completeness(xg_delta, f_x, f_0)
                    rows.append(dict(base, method="xgradient", n_steps=None,
                                     reference="xgradient", max_rel=0.0, mean_rel=0.0,
                                     completeness_max_rel=cmx, completeness_mean_rel=cmn))
                for n in steps:
                    a, delta = ig.attribute(x, target=t, n_steps=n, internal_batch_size=ibs,
                                            return_convergence_delta=True)
                    mx, mn = _relative_errors(a, ref)
                    cmx, cmn = _completeness(delta, f_x, f_0)
                    rows.append(dict(base, method="ig", n_steps=n, reference=ref_name,
                                     max_rel=mx, mean_rel=mn,
                                     completeness_max_rel=cmx, completeness_mean_rel=cmn))
                    bar.update(f"{name} {variant} IG({n})")
                del model, ig
                gc.collect()
            models_info[name] = info
            x_rows = [r for r in rows if r["model"] == name and r["variant"] == "x"
                      and r["method"] == "ig"]
            b_rows = [r for r in rows if r["model"] == name and r["variant"] == "biased"
                      and r["method"] == "ig"]
            log(f"  {device} {name}: max |IG(n) - XGradient| / max |XGradient| over n = "
                f"{max(r['max_rel'] for r in x_rows):.1e} (X-model); with biases "
                f"IG({b_rows[0]['n_steps']}) vs IG({cfg.reference_steps}): "
                f"{b_rows[0]['max_rel']:.1e}")
    finally:
        bar.close()
    return {"models": models_info, "results": rows, "error_internal_batch_size": ibs}


# ============================================================================= output
def _fmt_bytes(n: Optional[int]) -> str:
    return "" if n is None else f"{n / 2**20:.1f}"


def _fmt(v: Optional[float], spec: str = ".2f") -> str:
    return "" if v is None else format(v, spec)


def _case_label(r: Dict[str, Any]) -> str:
    label = {
        "bare": "bare forward+backward",
        "xgradient": "XGradient",
        "input_x_gradient": "Captum InputXGradient",
        "ig": "Captum IG",
        "layer_xgradient": "LayerXGradient",
        "layer_ig": "Captum LayerIG",
        "train_plain": "train step, plain",
        "train_xgrad_prior": "train step, X-Gradient prior (AttributionPrior)",
        "train_xgrad_prior_attribute": "train step, X-Gradient prior (XGradient.attribute + task forward)",
        "train_ig_prior": "train step, IG prior",
    }[r["case"]]
    if r["n_steps"]:
        label += f" (n={r['n_steps']}"
        label += f", ibs={r['internal_batch_size']})" if r["internal_batch_size"] else ")"
    return label


def _header_md(doc: Dict[str, Any], title: str) -> List[str]:
    dev = doc["device"]
    ver = doc["versions"]
    lines = [
        f"# {title}: {dev['name']} ({dev['type']})",
        "",
        f"Made by `{doc['command']}` on {doc['created']} (took {doc['elapsed_s']:.0f} s).",
        "",
        f"- machine: {doc['machine']['platform']}, {doc['machine']['cpu_count']} CPUs, "
        f"Python {doc['machine']['python']}",
        f"- device: {dev['name']}, torch threads: {dev['threads']}",
        f"- versions: torch {ver['torch']}, torchvision {ver['torchvision']}, captum "
        f"{ver['captum']}, captum-xgrad {ver['captum_xgrad']}",
        f"- 1-minute load average at start / end: {doc['loadavg']['start']} / "
        f"{doc['loadavg']['end']} (a load above the thread count means other "
        "processes shared the cores and the times are noisy)",
    ]
    for name, m in doc["models"].items():
        src = m.get("source") or m.get("x_source")
        line = f"- {name}: {m['title']}, input {tuple(m['input_shape'])}, from {src}"
        if m.get("examples"):
            line += f"; {m['examples']} example(s)"
        if m.get("biased_source"):
            line += f"; with biases: {m['biased_source']}"
        lines.append(line)
    return lines + [""]


def speed_markdown(doc: Dict[str, Any]) -> str:
    """The Markdown report of a speed run (the ``speed.md`` file)."""
    lines = _header_md(doc, "Attribution speed and memory")
    lines += [
        f"Peak memory: {doc['memory_method']}",
        "",
        "## Targets",
        "",
        "| model | batch | XGradient time / bare (≤ 1.05) | XGradient memory / bare (≤ 1.10) "
        "| IG(50) time / XGradient | IG(50) memory / XGradient "
        "| X-Gradient-prior step / plain step (≤ 2.5) | same via XGradient.attribute "
        "| IG-prior step / plain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in doc["summary"]:
        lines.append(
            f"| {s['model']} | {s['batch_size']} | {_fmt(s['xgradient_time_ratio'], '.3f')} "
            f"| {_fmt(s['xgradient_memory_ratio'], '.3f')} "
            f"| {_fmt(s['ig50_over_xgradient_time'], '.1f')} "
            f"| {_fmt(s['ig50_over_xgradient_memory'], '.1f')} "
            f"| {_fmt(s['train_xgrad_prior_ratio'], '.2f')} "
            f"| {_fmt(s['train_xgrad_prior_attribute_ratio'], '.2f')} "
            f"| {_fmt(s['train_ig_prior_ratio'], '.2f')} |"
        )
    lines += [
        "",
        "## All cases",
        "",
        f"Median of {doc['config']['repeats']} timed calls after warm-up; spread is the "
        "interquartile range [q1, q3]. Ratios are to the bare forward+backward of the same "
        "model and batch (training steps: also to the plain step).",
        "",
        "| model | batch | case | median ms | [q1, q3] ms | time / bare | time / plain step "
        "| peak MiB | memory / bare |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['batch_size']} | {_case_label(r)} "
                         f"| {r['status']} | | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {_case_label(r)} | {r['median_ms']:.2f} "
            f"| [{r['q1_ms']:.2f}, {r['q3_ms']:.2f}] "
            f"| {_fmt(r.get('time_ratio_to_bare'), '.2f')} "
            f"| {_fmt(r.get('time_ratio_to_plain_step'), '.2f')} "
            f"| {_fmt_bytes(r.get('peak_memory_bytes'))} "
            f"| {_fmt(r.get('memory_ratio_to_bare'), '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def error_markdown(doc: Dict[str, Any]) -> str:
    """The Markdown report of an exactness run (the ``error.md`` file)."""
    lines = _header_md(doc, "Attribution exactness")
    lines += [
        "Random inputs (per model, see above), each attributed to its "
        "predicted class; IG is Captum's IntegratedGradients (Gauss-Legendre, zero "
        "baseline). Errors are relative: max_rel = max over examples of "
        "max|a - r| / max|r|, mean_rel = mean over examples of sum|a - r| / sum|r|; "
        "completeness = |sum(a) - (f(x) - f(0))| / |f(x) - f(0)|. Weights are random "
        "(no downloads); in the models with biases, biases and normalisation statistics "
        "are drawn at random too (see `captum_xgrad.bench`).",
        "",
        "| model | variant | method | n_steps | reference | max_rel | mean_rel "
        "| completeness (max) | completeness (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        lines.append(
            f"| {r['model']} | {'X-model (bias-free)' if r['variant'] == 'x' else 'with biases'} "
            f"| {'XGradient' if r['method'] == 'xgradient' else 'IG'} "
            f"| {r['n_steps'] or ''} | {r['reference']} | {r['max_rel']:.2e} "
            f"| {r['mean_rel']:.2e} | {r['completeness_max_rel']:.2e} "
            f"| {r['completeness_mean_rel']:.2e} |"
        )
    return "\n".join(lines) + "\n"


def _blocks(doc: Dict[str, Any]) -> List[Tuple[str, int]]:
    keys: List[Tuple[str, int]] = []
    for r in doc["results"]:
        k = (r["model"], r["batch_size"])
        if k not in keys:
            keys.append(k)
    return keys


def plot_speed(doc: Dict[str, Any], out_dir: Path) -> List[Path]:
    """Write ``time_vs_steps.png`` and ``memory.png``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = _blocks(doc)
    ncols = min(len(keys), 3)
    nrows = math.ceil(len(keys) / ncols)
    paths = []

    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.8 * nrows), squeeze=False)
    for ax, (model, batch) in zip(axes.flat, keys):
        block = [r for r in doc["results"] if (r["model"], r["batch_size"]) == (model, batch)
                 and r["status"] == "ok"]
        for ibs, style in ((None, "o-"), (doc["config"]["internal_batch_size"], "s--")):
            pts = sorted((r["n_steps"], r["median_ms"]) for r in block
                         if r["case"] == "ig" and r["internal_batch_size"] == ibs)
            if pts:
                label = "Captum IG" + (f" (internal_batch_size={ibs})" if ibs else "")
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
        for case, color, label in (("xgradient", "C2", "XGradient"),
                                   ("bare", "k", "bare forward+backward")):
            r = next((r for r in block if r["case"] == case), None)
            if r is not None:
                ax.axhline(r["median_ms"], color=color, ls="-" if case == "xgradient" else ":",
                           label=f"{label} ({r['median_ms']:.1f} ms)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("n_steps")
        ax.set_ylabel("median time (ms)")
        ax.set_title(f"{model}, batch {batch}")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.suptitle(f"Attribution time on {doc['device']['name']} ({doc['device']['type']})")
    fig.tight_layout()
    paths.append(out_dir / "time_vs_steps.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    if any("peak_memory_bytes" in r for r in doc["results"]):
        fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4.2 * nrows), squeeze=False)
        for ax, (model, batch) in zip(axes.flat, keys):
            block = [r for r in doc["results"]
                     if (r["model"], r["batch_size"]) == (model, batch)
                     and "peak_memory_bytes" in r
                     and (r["case"] != "ig" or r["n_steps"] in (50, max(doc["config"]["n_steps"])))]
            labels = [_case_label(r).replace("train step, ", "step: ")
                      .replace("XGradient.attribute + task forward", "attribute + fwd")
                      for r in block]
            values = [max(r["peak_memory_bytes"], 1) / 2**20 for r in block]
            colors = ["C2" if "xgrad" in r["case"] else "k" if r["case"] == "bare"
                      else "C0" for r in block]
            ax.barh(range(len(values)), values, color=colors)
            ax.set_yticks(range(len(values)))
            ax.set_yticklabels(labels, fontsize=6)
            ax.invert_yaxis()
            ax.set_xscale("log")
            ax.set_xlabel("peak memory (MiB)")
            ax.set_title(f"{model}, batch {batch}")
        for ax in list(axes.flat)[len(keys):]:
            ax.set_visible(False)
        fig.suptitle(f"Peak memory on {doc['device']['name']} ({doc['device']['type']})")
        fig.tight_layout()
        paths.append(out_dir / "memory.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def plot_error(doc: Dict[str, Any], out_dir: Path) -> List[Path]:
    """Write ``error_vs_steps.png``; returns its path in a list."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-12
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, model in enumerate(doc["models"]):
        color = f"C{i}"
        for ax, variant in ((ax1, "x"), (ax2, "biased")):
            pts = sorted((r["n_steps"], r["mean_rel"], r["completeness_max_rel"])
                         for r in doc["results"] if r["model"] == model
                         and r["variant"] == variant and r["method"] == "ig")
            if not pts:
                continue
            n = [p[0] for p in pts]
            ax.plot(n, [max(p[1], floor) for p in pts], "o-", color=color,
                    label=f"{model}: attribution (mean_rel)")
            ax.plot(n, [max(p[2], floor) for p in pts], "x:", color=color,
                    label=f"{model}: completeness")
    ref = [r["reference"] for r in doc["results"] if r["variant"] == "biased"]
    ax1.set_title("X-models: IG(n) vs XGradient")
    ax2.set_title(f"with biases: IG(n) vs {ref[0] if ref else 'reference'}")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("IG n_steps")
        ax.set_ylabel(f"relative error (floored at {floor:g})")
        ax.legend(fontsize=7)
    fig.suptitle(f"Exactness on {doc['device']['name']} ({doc['device']['type']})")
    fig.tight_layout()
    path = out_dir / "error_vs_steps.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _write(kind: str, per_device: Dict[str, Dict[str, Any]], cfg: BenchConfig,
           command: str, out_root: Path, created: str, load_start: Optional[List[float]],
           elapsed: float, log: Log) -> List[Path]:
    paths: List[Path] = []
    for device, result in per_device.items():
        out_dir = out_root / device
        out_dir.mkdir(parents=True, exist_ok=True)
        doc: Dict[str, Any] = {
            "schema": SCHEMA,
            "kind": kind,
            "command": command,
            "created": created,
            "elapsed_s": elapsed,
            "loadavg": {"start": load_start, "end": _loadavg()},
            **environment_info(device),
            "config": _jsonable(asdict(cfg)),
            **result,
        }
        json_path = out_dir / f"{kind}.json"
        json_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        md_path = out_dir / f"{kind}.md"
        md_path.write_text(speed_markdown(doc) if kind == "speed" else error_markdown(doc),
                           encoding="utf-8")
        paths += [json_path, md_path]
        if cfg.plots:
            paths += plot_speed(doc, out_dir) if kind == "speed" else plot_error(doc, out_dir)
    for p in paths:
        log(f"  wrote {p}")
    return paths


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# ================================================================================ CLI
def add_arguments(parser: argparse.ArgumentParser, what: Optional[str] = None) -> None:
    """Add the benchmark options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    what : {"speed", "error"}, optional
        Fix the study (the scripts in ``benchmarks/``); if ``None`` a positional
        ``{speed,error,all}`` argument is added (``captum-xgrad bench``).

    Raises
    ------
    argparse.ArgumentError
        If ``parser`` already has one of these options (e.g. when called twice).

    Examples
    --------
    >>> import argparse
    >>> from captum_xgrad.bench import add_arguments
    >>> parser = argparse.ArgumentParser()
    >>> add_arguments(parser, what="error")
    >>> args = parser.parse_args(["--small", "--models", "mlp", "--n-steps", "4", "8"])
    >>> args.models, args.small, args.n_steps, args.reference_steps
    (['mlp'], True, [4, 8], 1024)
    >>> hasattr(args, "repeats")  # a speed-study option
    False
    """
    if what is None:
        parser.add_argument("what", nargs="?", default="speed", choices=("speed", "error", "all"),
                            help="which study to run (default: speed)")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=list(MODELS),
                        metavar="MODEL",
                        help=f"models to run, from {', '.join(MODELS)} (default: "
                             f"{' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--small", action="store_true",
                        help="CPU size: small images, 10 classes, small batches")
    parser.add_argument("--device", default="all", choices=("cpu", "cuda", "all"),
                        help="where to run; 'all' = cpu, and cuda when present (default: all)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks") / "results",
                        help="results root; files go to OUT/<device>/ (default: %(default)s)")
    parser.add_argument("--n-steps", nargs="+", type=int, default=[8, 16, 32, 50, 128],
                        help="IG n_steps (default: 8 16 32 50 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-plots", action="store_true", help="no PNG plots")
    if what in (None, "speed"):
        parser.add_argument("--batch-sizes", nargs="+", type=int, default=None,
                            help="batch sizes for every model (default: per model)")
        parser.add_argument("--repeats", type=int, default=5,
                            help="timed repetitions per case (default: 5)")
        parser.add_argument("--warmup", type=int, default=1,
                            help="untimed warm-up calls per case (default: 1)")
        parser.add_argument("--no-memory", action="store_true", help="skip peak-memory runs")
        parser.add_argument("--internal-batch-size", type=int, default=16,
                            help="IG internal_batch_size of the chunked runs (default: 16)")
        parser.add_argument("--prior-ig-steps", type=int, default=8,
                            help="steps of the differentiable IG in the IG-prior step (default: 8)")
    if what in (None, "error"):
        parser.add_argument("--reference-steps", type=int, default=1024,
                            help="n_steps of the reference IG on models with biases "
                                 "(default: 1024)")
        parser.add_argument("--error-batch-size", type=int, default=None,
                            help="examples in the exactness study (default per model: 8; "
                                 "--small: 2, X-VGG16 1)")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Build a :class:`BenchConfig` from parsed arguments (see :func:`add_arguments`).

    Parameters
    ----------
    args : argparse.Namespace
        From a parser set up by :func:`add_arguments`; options of the other study
        (absent when ``what`` was fixed) keep the :class:`BenchConfig` defaults.
        ``--device all`` becomes ``("cpu", "cuda")`` when CUDA is available, else
        ``("cpu",)``.

    Returns
    -------
    BenchConfig
        Not validated yet (see :meth:`BenchConfig.validate`).

    Raises
    ------
    AttributeError
        If ``args`` lacks an option that every study has (``device``, ``models``,
        ``small``, ``n_steps``, ``seed``, ``no_progress``, ``no_plots``).

    Examples
    --------
    >>> import argparse
    >>> from captum_xgrad.bench import add_arguments, config_from_args
    >>> parser = argparse.ArgumentParser()
    >>> add_arguments(parser, what="speed")
    >>> cfg = config_from_args(parser.parse_args(
    ...     ["--small", "--models", "mlp", "--device", "cpu", "--repeats", "3", "--no-memory"]))
    >>> cfg.models, cfg.devices, cfg.small, cfg.repeats, cfg.memory
    (['mlp'], ('cpu',), True, 3, False)
    """
    if args.device == "all":
        devices: Tuple[str, ...] = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    else:
        devices = (args.device,)
    cfg = BenchConfig(models=list(args.models), small=bool(args.small), devices=devices,
                      n_steps=list(args.n_steps), seed=args.seed,
                      progress=not args.no_progress, plots=not args.no_plots)
    for attr, arg in (("batch_sizes", "batch_sizes"), ("repeats", "repeats"),
                      ("warmup", "warmup"), ("internal_batch_size", "internal_batch_size"),
                      ("prior_ig_steps", "prior_ig_steps"),
                      ("reference_steps", "reference_steps"),
                      ("error_batch_size", "error_batch_size")):
        if hasattr(args, arg):
            setattr(cfg, attr, getattr(args, arg))
    if hasattr(args, "no_memory"):
        cfg.memory = not args.no_memory
    return cfg


def run(args: argparse.Namespace, what: Optional[str] = None, prog: str = "captum-xgrad bench",
        argv: Optional[Sequence[str]] = None, log: Log = _print) -> int:
    """Run the benchmark(s) selected by ``args`` and write the results; returns the exit code.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser set up by :func:`add_arguments`.
    what : {"speed", "error", "all"}, optional
        The study; defaults to ``args.what``.
    prog : str
        How the command was invoked, written into every result file with ``argv``.
    argv : sequence of str, optional
        The arguments as given; if ``None`` they are rebuilt from ``args``.
    log : callable, default print

    Returns
    -------
    int
        0 on success, 2 for an invalid configuration (the message is written to
        stderr).

    Raises
    ------
    RuntimeError
        From :func:`run_error` for a degenerate model (:math:`f(x) = f(0)`).
    OSError
        If the result files cannot be written under ``args.out``.

    Examples
    --------
    The exactness study of the small MLP, written to a temporary folder:

    >>> import argparse, contextlib, io, os, tempfile
    >>> from captum_xgrad.bench import add_arguments, run
    >>> parser = argparse.ArgumentParser()
    >>> add_arguments(parser)
    >>> options = ["--small", "--models", "mlp", "--device", "cpu", "--n-steps", "4",
    ...            "--reference-steps", "16", "--error-batch-size", "1", "--no-progress",
    ...            "--no-plots"]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     args = parser.parse_args(["error", *options, "--out", tmp])
    ...     code = run(args, log=lambda line: None)
    ...     written = sorted(os.listdir(os.path.join(tmp, "cpu")))
    >>> code, written
    (0, ['error.json', 'error.md'])

    An invalid configuration gives exit code 2 and a message on stderr:

    >>> stderr = io.StringIO()
    >>> with contextlib.redirect_stderr(stderr):
    ...     code = run(parser.parse_args(["--repeats", "0"]))
    >>> code, stderr.getvalue()
    (2, 'captum-xgrad bench: error: repeats must be positive integers, got [0].\\n')
    """
    what = what or getattr(args, "what", "speed")
    try:
        cfg = config_from_args(args)
        cfg.validate()
    except ValueError as exc:
        print(f"captum-xgrad bench: error: {exc}", file=sys.stderr)
        return 2
    command = f"{prog} {shlex.join(list(argv) if argv is not None else _rebuild_argv(args))}"
    # thread settings change the results: say them as part of the command
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in _THREAD_ENV if k in os.environ]
    command = " ".join(env + [command])
    out_root = Path(args.out)
    studies = ("speed", "error") if what == "all" else (what,)
    log(f"{command}\n  devices: {', '.join(cfg.devices)}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average {_loadavg()}")
    for study in studies:
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        load_start = _loadavg()
        t0 = time.perf_counter()
        log(f"[{study}]")
        result = run_speed(cfg, log) if study == "speed" else run_error(cfg, log)
        _write(study, result, cfg, command, out_root, created, load_start,
               time.perf_counter() - t0, log)
    return 0


#: environment variables that set the number of threads (written with the command).
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _rebuild_argv(args: argparse.Namespace) -> List[str]:
    """A command line equivalent to ``args`` (used when the original one is unknown)."""
    argv: List[str] = []
    if getattr(args, "what", None):
        argv.append(args.what)
    for key, value in vars(args).items():
        if key in ("what", "command") or key.startswith("_") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag] + [str(v) for v in value]
        else:
            argv += [flag, str(value)]
    return argv


def main(what: str, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """Entry point of ``benchmarks/attribution_speed.py`` (``what="speed"``) and
    ``benchmarks/attribution_error.py`` (``what="error"``).

    Parameters
    ----------
    what : {"speed", "error"}
    argv : sequence of str, optional
        Defaults to ``sys.argv[1:]``.
    prog : str, optional
        Shown in the help and written into the result files; defaults to
        ``python <script>``.

    Returns
    -------
    int
        The exit code of :func:`run`.

    Raises
    ------
    SystemExit
        From :mod:`argparse`, for ``--help`` or an invalid command line.
    KeyError
        If ``what`` is neither ``"speed"`` nor ``"error"``.
    RuntimeError, OSError
        As :func:`run`.

    Examples
    --------
    Progress lines go to stdout (captured here):

    >>> import contextlib, io, tempfile
    >>> from captum_xgrad.bench import main
    >>> stdout = io.StringIO()
    >>> with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(stdout):
    ...     code = main("error", ["--small", "--models", "mlp", "--device", "cpu",
    ...                           "--n-steps", "4", "--reference-steps", "16",
    ...                           "--error-batch-size", "1", "--no-progress", "--no-plots",
    ...                           "--out", tmp], prog="attribution_error.py")
    >>> code, stdout.getvalue().splitlines()[2]
    (0, '[error]')
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or f"python {os.path.relpath(sys.argv[0]) if sys.argv[0] else 'bench.py'}"
    doc = {
        "speed": "Time and peak memory of XGradient vs Captum's attributions.",
        "error": "Exactness of XGradient vs Captum's IntegratedGradients.",
    }[what]
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    add_arguments(parser, what)
    args = parser.parse_args(argv)
    return run(args, what=what, prog=prog, argv=argv)
