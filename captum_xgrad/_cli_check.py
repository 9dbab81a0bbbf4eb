"""``captum-xgrad check MODEL``: is a model nonnegatively homogeneous?

MODEL is one of

- ``torchvision:NAME``: ``torchvision.models.get_model(NAME, weights=None)``;
- ``captum_xgrad:NAME``: :func:`captum_xgrad.models.get_model` (e.g. ``xvgg16``);
- ``path/to/file.py:FACTORY`` or ``package.module:FACTORY``: ``FACTORY()`` must return
  an ``nn.Module``.

The model is put in eval mode (unless ``--train-mode``) and checked with
:func:`captum_xgrad.homogeneity.check_homogeneity` on a random batch of shape
``(--batch-size, *--input-shape)``. ``--convert`` also checks
``make_x_dnn(model)``. The report is printed as a table, or as JSON with ``--json``.
``--prove`` prints the graph certificate (:func:`captum_xgrad.certify_homogeneity`)
instead, with the empirical report when the certificate is unknown. The model's
random initialisation is seeded with ``--seed`` (default 0), so every run prints
the same numbers.

Exit status: 0 if the model (with ``--convert``: the converted model) is homogeneous,
1 if not, or if the model itself fails (its factory or file raises, or its forward
pass raises on inputs of that shape; the error is on stderr), 2 on a usage error (a
malformed or unknown MODEL, a bad ``--input-shape`` or ``--batch-size``).

:func:`model_and_input` and :func:`exit_code_of` are shared with ``captum-xgrad bench``.
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

__all__ = [
    "ModelError",
    "UsageError",
    "add_arguments",
    "exit_code_of",
    "load_model",
    "model_and_input",
    "parse_shape",
    "run",
]


class UsageError(Exception):
    """A problem with the command line; reported on stderr with exit status 2.

    Raised by :func:`parse_shape` and :func:`load_model`, and caught by :func:`run`.

    Examples
    --------
    >>> from captum_xgrad._cli_check import UsageError, parse_shape
    >>> try:
    ...     parse_shape("3,x")
    ... except UsageError as exc:
    ...     print(exc)
    --input-shape '3,x' is not a comma-separated list of positive integers (e.g. --input-shape 3,224,224).
    """


class ModelError(Exception):
    """The model itself failed (its factory, its file or its forward pass raised).

    Not a usage error: reported on stderr with exit status 1.

    Examples
    --------
    >>> from captum_xgrad._cli_check import ModelError, load_model
    >>> try:
    ...     load_model("torch.nn:Linear")  # Linear() needs in/out features
    ... except ModelError as exc:
    ...     print(str(exc)[:39])
    building MODEL 'torch.nn:Linear' failed
    """


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``check`` sub-command's arguments to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Gets the positional ``MODEL`` and the options ``--input-shape``,
        ``--batch-size``, ``--seed``, ``--convert``, ``--json`` and ``--train-mode``.

    Raises
    ------
    argparse.ArgumentError
        If ``parser`` already has one of these options (e.g. when called twice).

    Examples
    --------
    >>> import argparse
    >>> from captum_xgrad._cli_check import add_arguments
    >>> parser = argparse.ArgumentParser(prog="captum-xgrad check")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["captum_xgrad:xvgg16", "--input-shape", "3,32,32"])
    >>> args.model, args.input_shape, args.batch_size, args.convert
    ('captum_xgrad:xvgg16', '3,32,32', 2, False)
    """
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="torchvision:NAME (built with weights=None), captum_xgrad:NAME (e.g. "
        "captum_xgrad:xvgg16), or path/to/file.py:FACTORY / package.module:FACTORY "
        "(FACTORY() returns an nn.Module)",
    )
    parser.add_argument(
        "--input-shape",
        default="3,224,224",
        metavar="C,H,W",
        help="shape of one input example, comma-separated (default: 3,224,224; any "
        "number of dimensions, e.g. 16 for an MLP)",
    )
    parser.add_argument("--batch-size", type=int, default=2, help="examples in the random batch (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    parser.add_argument(
        "--convert",
        action="store_true",
        help="also convert the model with make_x_dnn and check the result; the exit "
        "status then refers to the converted model",
    )
    parser.add_argument(
        "--prove",
        action="store_true",
        help="prove homogeneity from the traced graph (certify_homogeneity) and print the "
        "certificate; the empirical check is printed too when the certificate is unknown. "
        "Exit 0 when proved (or unknown and the empirical check passes), 1 otherwise",
    )
    parser.add_argument("--json", action="store_true", help="print the report(s) as JSON")
    parser.add_argument(
        "--train-mode",
        action="store_true",
        help="check the model in training mode (default: model.eval() first)",
    )


def parse_shape(text: str) -> Tuple[int, ...]:
    """Parse ``"3,224,224"`` into ``(3, 224, 224)``.

    Parameters
    ----------
    text : str
        The ``--input-shape`` value: comma-separated sizes of one example (spaces
        are ignored).

    Returns
    -------
    tuple of int

    Raises
    ------
    UsageError
        If it is not a comma-separated list of positive integers.

    Examples
    --------
    >>> from captum_xgrad._cli_check import parse_shape
    >>> parse_shape("3, 32, 32"), parse_shape("16")
    ((3, 32, 32), (16,))
    """
    try:
        shape = tuple(int(p) for p in text.replace(" ", "").split(","))
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise UsageError(
            f"--input-shape {text!r} is not a comma-separated list of positive integers "
            "(e.g. --input-shape 3,224,224)."
        )
    return shape


def _from_file(path: str, factory: str) -> Any:
    if not os.path.isfile(path):
        raise UsageError(f"MODEL file {path!r} does not exist.")
    name = "_captum_xgrad_check_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path!r} as a Python file.")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ModelError(f"importing {path!r} failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_model(spec: str) -> nn.Module:
    """Build the model named by a MODEL spec (see the module docstring).

    Parameters
    ----------
    spec : str
        ``torchvision:NAME``, ``captum_xgrad:NAME``, ``path/to/file.py:FACTORY`` or
        ``package.module:FACTORY``. A file is imported (its top-level code runs).

    Returns
    -------
    nn.Module
        The freshly built model, in the mode its factory left it in.

    Raises
    ------
    UsageError
        If the spec is malformed, names an unknown model, or the factory returns
        something that is not an ``nn.Module``.
    ModelError
        If the file's top-level code or the factory raises.

    Examples
    --------
    >>> from captum_xgrad._cli_check import UsageError, load_model
    >>> load_model("torch.nn:Identity")
    Identity()
    >>> try:
    ...     load_model("captum_xgrad:vgg16")
    ... except UsageError as exc:
    ...     print(str(exc)[:50])
    captum_xgrad.models has no model 'vgg16'; known: f
    """
    source, sep, name = spec.rpartition(":")
    if not sep or not source or not name:
        raise UsageError(
            f"MODEL {spec!r} must be torchvision:NAME, captum_xgrad:NAME or "
            "path/to/file.py:FACTORY."
        )
    if source == "torchvision":
        import torchvision

        known = torchvision.models.list_models(module=torchvision.models)
        if name not in known:
            raise UsageError(
                f"torchvision has no classification model {name!r}; known: {', '.join(known)}."
            )
        factory: Any = lambda: torchvision.models.get_model(name, weights=None)  # noqa: E731
    elif source == "captum_xgrad":
        from . import models

        if name not in models.list_models():
            raise UsageError(
                f"captum_xgrad.models has no model {name!r}; known: "
                f"{', '.join(models.list_models())}."
            )
        factory = lambda: models.get_model(name)  # noqa: E731
    else:
        if source.endswith(".py"):
            module = _from_file(source, name)
        else:
            try:
                module = importlib.import_module(source)
            except ImportError as exc:
                raise UsageError(
                    f"cannot import {source!r} ({exc}); MODEL must be torchvision:NAME, "
                    "captum_xgrad:NAME, path/to/file.py:FACTORY or package.module:FACTORY."
                ) from exc
        factory = getattr(module, name, None)
        if not callable(factory):
            raise UsageError(f"{source!r} has no callable {name!r}.")
    try:
        model = factory()
    except Exception as exc:
        raise ModelError(f"building MODEL {spec!r} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"MODEL {spec!r} returned a {type(model).__name__}, not a torch.nn.Module."
        )
    return model


def _check(model: nn.Module, x: torch.Tensor) -> Any:
    from .homogeneity import check_homogeneity

    try:
        return check_homogeneity(model, x)
    except Exception as exc:  # the model failed on these inputs: not a usage error
        raise ModelError(
            f"the model raised {type(exc).__name__} on inputs of shape {tuple(x.shape)}: "
            f"{exc}\n(set the shape of one example with --input-shape, e.g. "
            "--input-shape 3,32,32)"
        ) from exc


def model_and_input(args: argparse.Namespace) -> Tuple[nn.Module, torch.Tensor]:
    """The model of ``args.model`` (in eval mode unless ``args.train_mode``) and a random batch.

    Parameters
    ----------
    args : argparse.Namespace
        With ``model``, ``input_shape``, ``batch_size``, ``seed`` and optionally
        ``train_mode``.

    Returns
    -------
    (nn.Module, Tensor)
        The model and ``torch.rand((batch_size, *input_shape))`` drawn from a local
        generator seeded with ``args.seed``.

    Raises
    ------
    UsageError
        For a bad MODEL, ``--input-shape`` or ``--batch-size``.
    ModelError
        If building the model raises.

    Examples
    --------
    >>> import argparse
    >>> from captum_xgrad._cli_check import model_and_input
    >>> args = argparse.Namespace(model="torch.nn:Identity", input_shape="4", batch_size=3,
    ...                           seed=0)
    >>> model, x = model_and_input(args)
    >>> model.training, tuple(x.shape)
    (False, (3, 4))
    """
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
    """``fn()``, with a :class:`UsageError` reported as exit 2 and a :class:`ModelError` as 1.

    Parameters
    ----------
    prog : str
        Prefix of the message on stderr (e.g. ``"captum-xgrad check"``).
    fn : callable
        Does the work and returns the exit status.

    Returns
    -------
    int

    Examples
    --------
    >>> import contextlib, io
    >>> from captum_xgrad._cli_check import UsageError, exit_code_of
    >>> def bad():
    ...     raise UsageError("no such thing.")
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     code = exit_code_of("captum-xgrad check", bad)
    >>> code, err.getvalue()
    (2, 'captum-xgrad check: error: no such thing.\\n')
    """
    try:
        return fn()
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except ModelError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    """Run ``captum-xgrad check``; returns the exit status (0, 1 or 2).

    The report goes to stdout, a usage error to stderr.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser set up by :func:`add_arguments`.

    Returns
    -------
    int
        0 if the model (with ``--convert``: the converted model) is homogeneous, 1 if
        not or if the model fails (building it, or its forward pass on inputs of that
        shape: the error that :func:`~captum_xgrad.homogeneity.check_homogeneity`
        raises for it is reported on stderr, not raised), 2 on a usage error (bad
        MODEL, ``--input-shape`` or ``--batch-size``).

    Examples
    --------
    >>> import argparse, contextlib, io
    >>> from captum_xgrad._cli_check import add_arguments, run
    >>> parser = argparse.ArgumentParser(prog="captum-xgrad check")
    >>> add_arguments(parser)
    >>> stdout = io.StringIO()
    >>> with contextlib.redirect_stdout(stdout):
    ...     code = run(parser.parse_args(["torch.nn:Tanh", "--input-shape", "4"]))
    >>> code, stdout.getvalue().splitlines()[1]
    (1, 'Homogeneity check of Tanh on inputs (2, 4): NOT homogeneous')
    >>> with contextlib.redirect_stdout(io.StringIO()):
    ...     code = run(parser.parse_args(["torch.nn:Identity", "--input-shape", "4"]))
    >>> code
    0
    """
    return exit_code_of("captum-xgrad check", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    model, x = model_and_input(args)
    report = _check(model, x)
    converted_report = None
    conversion = None
    if args.convert:
        from .convert import make_x_dnn

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted, conversion = make_x_dnn(model, return_report=True)
        converted_report = _check(converted, x)
    from .homogeneity import certify_homogeneity

    certificate = certify_homogeneity(converted if args.convert else model, x)
    final = converted_report if converted_report is not None else report
    if args.prove:
        if certificate.status == "proved":
            code = 0
        elif certificate.status == "unknown":
            code = 0 if final.is_homogeneous else 1
        else:
            code = 1
        if args.json:
            print(json.dumps({
                "model": args.model, "certificate": certificate.to_dict(),
                "report": final.to_dict() if certificate.status == "unknown" else None,
                "homogeneous": code == 0,
            }, indent=2))
        else:
            mode = "training" if args.train_mode else "eval"
            what = f"make_x_dnn({args.model})" if args.convert else args.model
            print(f"{what} ({mode} mode)")
            print(certificate)
            if certificate.status == "unknown":
                print()
                print(final)
        return code
    if args.json:
        payload: Dict[str, Any] = {"model": args.model, "report": report.to_dict()}
        if converted_report is not None and conversion is not None:
            payload["conversion"] = {
                "removed_biases": list(conversion.removed_biases),
                "folded_batchnorms": [list(p) for p in conversion.folded_batchnorms],
                "scaled_batchnorms": list(conversion.scaled_batchnorms),
                "replaced_activations": list(conversion.replaced_activations),
                "unconverted": list(conversion.unconverted),
                "notes": list(conversion.notes),
            }
            payload["converted_report"] = converted_report.to_dict()
        payload["homogeneous"] = bool(final.is_homogeneous)
        print(json.dumps(payload, indent=2))
    else:
        mode = "training" if args.train_mode else "eval"
        print(f"{args.model} ({mode} mode)")
        print(report)
        if certificate.centre is not None:
            print(
                f"centre: the model begins with {certificate.centre_expression}; X-Gradient "
                "is exact with baselines=certify_homogeneity(model, x).centre"
            )
        if converted_report is not None:
            print()
            print(f"make_x_dnn({args.model}): {conversion}")
            print(converted_report)
    return 0 if final.is_homogeneous else 1
