"""``captum-xgrad check MODEL``: is a model nonnegatively homogeneous?

MODEL is ``torchvision:NAME`` (built with ``weights=None``), ``captum_xgrad:NAME``
(:func:`captum_xgrad.models.get_model`), or ``path/to/file.py:FACTORY`` /
``package.module:FACTORY`` where ``FACTORY()`` returns an ``nn.Module``. The model (in eval
mode unless ``--train-mode``, its initialisation seeded with ``--seed``) is checked with
:func:`~captum_xgrad.homogeneity.check_homogeneity` on a random batch of shape
``(--batch-size, *--input-shape)``; ``--convert`` also checks ``make_x_dnn(model)`` and
``--prove`` prints the graph certificate (:func:`~captum_xgrad.certify_homogeneity`).

Exit status: 0 if the model (with ``--convert``: the converted one) is homogeneous; 1 if not,
or if the model itself fails (its factory, file or forward pass raises; the error is on
stderr); 2 on a usage error (a malformed or unknown MODEL, a bad ``--input-shape`` or
``--batch-size``). ``model_and_input`` and ``exit_code_of`` are shared by the other commands.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import warnings
from typing import Any, Callable, Dict, Tuple

import torch
from torch import nn

__all__ = ["ModelError", "UsageError", "add_arguments", "exit_code_of", "load_model",
           "model_and_input", "parse_shape", "run"]

_SPECS = "torchvision:NAME, captum_xgrad:NAME, path/to/file.py:FACTORY or package.module:FACTORY"


class UsageError(Exception):
    """A problem with the command line: reported on stderr, exit status 2."""


class ModelError(Exception):
    """The model itself failed (factory, file or forward pass): stderr, exit status 1."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``check`` sub-command's arguments to ``parser``."""
    parser.add_argument("model", metavar="MODEL",
                        help=f"{_SPECS} (torchvision models are built with weights=None; "
                        "FACTORY() returns an nn.Module)")
    parser.add_argument("--input-shape", default="3,224,224", metavar="C,H,W",
                        help="shape of one input example, comma-separated (default: 3,224,224; "
                        "any number of dimensions, e.g. 16 for an MLP)")
    parser.add_argument("--batch-size", type=int, default=2,
                        help="examples in the random batch (default: 2)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random inputs (default: 0)")
    parser.add_argument("--convert", action="store_true",
                        help="also convert the model with make_x_dnn and check the result; the "
                        "exit status then refers to the converted model")
    parser.add_argument("--prove", action="store_true",
                        help="prove homogeneity from the traced graph (certify_homogeneity) and "
                        "print the certificate; the empirical check is printed too when the "
                        "certificate is unknown. Exit 0 when proved (or unknown and the "
                        "empirical check passes), 1 otherwise")
    parser.add_argument("--json", action="store_true", help="print the report(s) as JSON")
    parser.add_argument("--train-mode", action="store_true",
                        help="check the model in training mode (default: model.eval() first)")


def parse_shape(text: str) -> Tuple[int, ...]:
    """Parse ``"3,224,224"`` into ``(3, 224, 224)``, or raise :class:`UsageError`."""
    try:
        shape = tuple(int(p) for p in text.replace(" ", "").split(","))
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise UsageError(f"--input-shape {text!r} is not a comma-separated list of positive "
                         "integers (e.g. --input-shape 3,224,224).")
    return shape


def _module_of(source: str) -> Any:
    if not source.endswith(".py"):
        try:
            return importlib.import_module(source)
        except ImportError as exc:
            raise UsageError(f"cannot import {source!r} ({exc}); MODEL must be {_SPECS}.") from exc
    if not os.path.isfile(source):
        raise UsageError(f"MODEL file {source!r} does not exist.")
    name = "_captum_xgrad_check_" + os.path.splitext(os.path.basename(source))[0]
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {source!r} as a Python file.")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ModelError(f"importing {source!r} failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_model(spec: str) -> nn.Module:
    """Build the model of a MODEL spec; :class:`UsageError` or :class:`ModelError` if it fails."""
    source, sep, name = spec.rpartition(":")
    if not sep or not source or not name:
        raise UsageError(f"MODEL {spec!r} must be torchvision:NAME, captum_xgrad:NAME or "
                         "path/to/file.py:FACTORY.")
    factory: Any
    if source == "torchvision":
        import torchvision

        known = torchvision.models.list_models(module=torchvision.models)
        if name not in known:
            raise UsageError(
                f"torchvision has no classification model {name!r}; known: {', '.join(known)}.")
        factory = lambda: torchvision.models.get_model(name, weights=None)  # noqa: E731
    elif source == "captum_xgrad":
        from . import models

        if name not in models.list_models():
            raise UsageError(f"captum_xgrad.models has no model {name!r}; known: "
                             f"{', '.join(models.list_models())}.")
        factory = lambda: models.get_model(name)  # noqa: E731
    else:
        factory = getattr(_module_of(source), name, None)
        if not callable(factory):
            raise UsageError(f"{source!r} has no callable {name!r}.")
    try:
        model = factory()
    except Exception as exc:
        raise ModelError(f"building MODEL {spec!r} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"MODEL {spec!r} returned a {type(model).__name__}, not a torch.nn.Module.")
    return model


def model_failed(exc: Exception, x: torch.Tensor) -> ModelError:
    """The :class:`ModelError` for a model that raised ``exc`` on ``x``."""
    return ModelError(
        f"the model raised {type(exc).__name__} on inputs of shape {tuple(x.shape)}: {exc}\n"
        "(set the shape of one example with --input-shape, e.g. --input-shape 3,32,32)")


def model_and_input(args: argparse.Namespace) -> Tuple[nn.Module, torch.Tensor]:
    """The model of ``args.model`` (eval mode unless ``args.train_mode``) and a seeded batch."""
    shape = parse_shape(args.input_shape)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be a positive integer, got {args.batch_size}.")
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)  # the model's random initialisation, reproducibly
        model = load_model(args.model)
    if not getattr(args, "train_mode", False):
        model.eval()
    generator = torch.Generator().manual_seed(args.seed)
    return model, torch.rand((args.batch_size,) + shape, generator=generator)


def exit_code_of(prog: str, fn: Callable[[], int]) -> int:
    """``fn()``, with a :class:`UsageError` reported as exit 2 and a :class:`ModelError` as 1."""
    try:
        return fn()
    except (UsageError, ModelError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1


def run(args: argparse.Namespace) -> int:
    """Run ``captum-xgrad check``: the report on stdout; the exit status (0, 1 or 2)."""
    return exit_code_of("captum-xgrad check", lambda: _run(args))


def _check(model: nn.Module, x: torch.Tensor) -> Any:
    from .homogeneity import check_homogeneity

    try:
        return check_homogeneity(model, x)
    except Exception as exc:  # the model failed on these inputs: not a usage error
        raise model_failed(exc, x) from exc


def _run(args: argparse.Namespace) -> int:
    from .homogeneity import certify_homogeneity

    model, x = model_and_input(args)
    report = final = _check(model, x)
    if args.convert:
        from .convert import make_x_dnn

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model_checked, conversion = make_x_dnn(model, return_report=True)
        final = _check(model_checked, x)
    certificate = certify_homogeneity(model_checked if args.convert else model, x)
    what = f"make_x_dnn({args.model})" if args.convert else args.model
    heading = f"({'training' if args.train_mode else 'eval'} mode)"
    if args.prove:
        unknown = certificate.status == "unknown"
        code = 0 if certificate.status == "proved" or (unknown and final.is_homogeneous) else 1
        if args.json:
            print(json.dumps({"model": args.model, "certificate": certificate.to_dict(),
                              "report": final.to_dict() if unknown else None,
                              "homogeneous": code == 0}, indent=2))
        else:
            print(f"{what} {heading}\n{certificate}" + (f"\n\n{final}" if unknown else ""))
        return code
    if args.json:
        payload: Dict[str, Any] = {"model": args.model, "report": report.to_dict()}
        if args.convert:
            payload["conversion"] = {
                key: [list(p) for p in conversion.folded_batchnorms]
                if key == "folded_batchnorms" else list(getattr(conversion, key))
                for key in ("removed_biases", "folded_batchnorms", "scaled_batchnorms",
                            "replaced_activations", "unconverted", "notes")}
            payload["converted_report"] = final.to_dict()
        payload["homogeneous"] = bool(final.is_homogeneous)
        print(json.dumps(payload, indent=2))
        return 0 if final.is_homogeneous else 1
    print(f"{args.model} {heading}\n{report}")
    if certificate.centre is not None:
        print(f"centre: the model begins with {certificate.centre_expression}; X-Gradient "
              "is exact with baselines=certify_homogeneity(model, x).centre")
    if args.convert:
        print(f"\nmake_x_dnn({args.model}): {conversion}\n{final}")
    return 0 if final.is_homogeneous else 1
