"""``captum-xgrad bench``: the benchmarks of :mod:`captum_xgrad.bench` from the command line.

``captum-xgrad bench [speed|error|all] [--small] [--models ...] [--device ...] [--out DIR]``
runs the same code as ``benchmarks/attribution_speed.py`` and
``benchmarks/attribution_error.py`` and writes JSON, Markdown and PNG files under
``DIR/<device>/``.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` sub-command's options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Gets the positional ``{speed,error,all}`` and the options of both studies
        (see :func:`captum_xgrad.bench.add_arguments`).

    Raises
    ------
    argparse.ArgumentError
        If ``parser`` already has one of these options (e.g. when called twice).

    Examples
    --------
    >>> import argparse
    >>> from captum_xgrad._cli_bench import add_arguments
    >>> parser = argparse.ArgumentParser(prog="captum-xgrad bench")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["error", "--small", "--models", "mlp"])
    >>> args.what, args.small, args.models, args.repeats
    ('error', True, ['mlp'], 5)
    """
    from .bench import add_arguments as _add

    _add(parser, what=None)


def run(args: argparse.Namespace) -> int:
    """Run the selected benchmark; returns the exit code (0 ok, 2 bad configuration).

    Parameters
    ----------
    args : argparse.Namespace
        From a parser set up by :func:`add_arguments`.

    Returns
    -------
    int
        0 on success, 2 for an invalid configuration (message on stderr); see
        :func:`captum_xgrad.bench.run`.

    Raises
    ------
    RuntimeError, OSError
        As :func:`captum_xgrad.bench.run`.

    Examples
    --------
    A configuration error (a real run takes seconds, see
    :func:`captum_xgrad.bench.run`):

    >>> import argparse, contextlib, io
    >>> from captum_xgrad._cli_bench import add_arguments, run
    >>> parser = argparse.ArgumentParser(prog="captum-xgrad bench")
    >>> add_arguments(parser)
    >>> stderr = io.StringIO()
    >>> with contextlib.redirect_stderr(stderr):
    ...     code = run(parser.parse_args(["--warmup", "-1"]))
    >>> code, stderr.getvalue().strip()
    (2, 'captum-xgrad bench: error: warmup must be >= 0, got -1.')
    """
    from .bench import run as _run

    return _run(args, prog="captum-xgrad bench")
