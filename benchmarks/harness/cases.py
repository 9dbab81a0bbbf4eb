"""What a benchmark runs: the models (bias-free and with biases) and the configuration."""

from __future__ import annotations

import argparse
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from captum_xgrad import models as zoo

__all__ = [
    "BenchConfig",
    "DEFAULT_MODELS",
    "MODELS",
    "ModelSpec",
    "add_arguments",
    "build_seeded",
    "config_from_args",
    "get_model_spec",
]


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
    >>> from benchmarks.harness.cases import MODELS
    >>> spec = MODELS["mlp"]
    >>> spec.title, spec.input_shape(True), spec.batch_sizes(True), spec.error_batch_size(True)
    ('bias-free MLP', (784,), (1, 64), 2)
    >>> model, source = spec.build_x(10, True)
    >>> source, model(torch.rand(2, 784)).shape
    ('benchmarks.harness MLP', torch.Size([2, 10]))
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


def build_seeded(build: Callable[[], Any], seed: int) -> Any:
    """``build()`` with the global RNG seeded to ``seed`` inside, and restored afterwards.

    Module constructors draw their initial weights from the global RNG; this makes them
    reproducible without changing the caller's random state.

    Parameters
    ----------
    build : callable
        Builds the model (or anything drawing from the global RNG).
    seed : int

    Returns
    -------
    object
        What ``build()`` returns.

    Examples
    --------
    >>> import torch
    >>> from benchmarks.harness.cases import build_seeded
    >>> state = torch.random.get_rng_state()
    >>> a = build_seeded(lambda: torch.nn.Linear(3, 2), 0)
    >>> b = build_seeded(lambda: torch.nn.Linear(3, 2), 0)
    >>> torch.equal(a.weight, b.weight), torch.equal(torch.random.get_rng_state(), state)
    (True, True)
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _last_feature_map(model: nn.Module) -> nn.Module:
    """The layer attributed by the layer methods: the last convolutional stage."""
    for name in ("layer4", "features"):
        layer = getattr(model, name, None)
        if isinstance(layer, nn.Module):
            return layer
    raise ValueError(f"{type(model).__name__} has neither `layer4` nor `features`.")


#: the benchmarked models by name (``--models``).
MODELS: Dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "mlp", "bias-free MLP",
            input_shape=lambda small: (784,) if small else (3072,),
            batch_sizes=lambda small: (1, 64) if small else (1, 256),
            build_x=lambda c, small: (_mlp(small, c, False), "benchmarks.harness MLP"),
            build_biased=lambda c, small: (_default_bias_init(_mlp(small, c, True)),
                                           "benchmarks.harness MLP with biases"),
            layer=lambda m: m.relu1,
        ),
        ModelSpec(
            "cnn", "tiny bias-free CNN",
            input_shape=lambda small: (3, 16, 16),
            batch_sizes=lambda small: (1, 16),
            build_x=lambda c, small: (_cnn(c, False), "benchmarks.harness tiny CNN"),
            build_biased=lambda c, small: (_default_bias_init(_cnn(c, True)),
                                           "benchmarks.harness tiny CNN with biases"),
            layer=_last_feature_map,
        ),
        ModelSpec(
            "xalexnet", "X-AlexNet",
            input_shape=lambda small: (3, 64, 64) if small else (3, 224, 224),
            batch_sizes=lambda small: (1,) if small else (1, 16),
            build_x=lambda c, small: (zoo.xalexnet(num_classes=c), "captum_xgrad.models.xalexnet"),
            build_biased=lambda c, small: (_default_bias_init(_torchvision("alexnet", c)),
                                           "torchvision alexnet, biases drawn at random"),
            layer=_last_feature_map,
        ),
        ModelSpec(
            "xvgg16", "X-VGG16",
            input_shape=lambda small: (3, 32, 32) if small else (3, 224, 224),
            batch_sizes=lambda small: (1,) if small else (1, 16),
            build_x=lambda c, small: (zoo.xvgg16(num_classes=c), "captum_xgrad.models.xvgg16"),
            error_batch_size=lambda small: 1 if small else 8,
            build_biased=lambda c, small: (_default_bias_init(_torchvision("vgg16", c)),
                                           "torchvision vgg16, biases drawn at random"),
            layer=_last_feature_map,
        ),
        ModelSpec(
            "xfixup_resnet50", "X-Fixup-ResNet-50",
            input_shape=lambda small: (3, 32, 32) if small else (3, 224, 224),
            batch_sizes=lambda small: (1,) if small else (1, 16),
            # Fixup's zero init (last branch convs and classifier at 0) gives a model that
            # outputs zeros; random weights everywhere instead
            build_x=lambda c, small: (zoo.xfixup_resnet50(num_classes=c, zero_init=False),
                                      "captum_xgrad.models.xfixup_resnet50(zero_init=False)"),
            build_biased=lambda c, small: (
                _default_bias_init(zoo.fixup_resnet50(num_classes=c, zero_init=False)),
                "captum_xgrad.models.fixup_resnet50(zero_init=False), biases drawn at random"),
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
    >>> from benchmarks.harness.cases import get_model_spec
    >>> get_model_spec("mlp").title
    'bias-free MLP'
    """
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown benchmark model {name!r}; choose from {', '.join(MODELS)}."
        ) from None


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
        :meth:`validate`, which the studies call first: for an unknown model or device, CUDA requested without a GPU, or
        a count that is not a positive integer.

    Examples
    --------
    >>> from benchmarks.harness.cases import BenchConfig
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


def add_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """Add the options of the speed or exactness study to ``parser`` (the one parsing layer).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    what : {"speed", "error"}
        The study: its own options are added after the shared ones.

    Raises
    ------
    argparse.ArgumentError
        If ``parser`` already has one of these options (e.g. when called twice).

    Examples
    --------
    >>> import argparse
    >>> from benchmarks.harness.cases import add_arguments
    >>> parser = argparse.ArgumentParser()
    >>> add_arguments(parser, what="error")
    >>> args = parser.parse_args(["--small", "--models", "mlp", "--n-steps", "4", "8"])
    >>> args.models, args.small, args.n_steps, args.reference_steps
    (['mlp'], True, [4, 8], 1024)
    >>> hasattr(args, "repeats")  # a speed-study option
    False
    """
    if what not in ("speed", "error"):
        raise ValueError(f"what must be 'speed' or 'error', got {what!r}.")
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
    parser.add_argument("--from-json", type=Path, default=None, metavar="JSON",
                        help="run nothing: re-render the Markdown and plots of an earlier "
                             "run's JSON into OUT/<its device>/")
    if what == "speed":
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
    if what == "error":
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
    >>> from benchmarks.harness.cases import add_arguments, config_from_args
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
