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
    """Add the ``bench`` sub-command's options to ``parser``."""
    from .bench import add_arguments as _add

    _add(parser, what=None)


def run(args: argparse.Namespace) -> int:
    """Run the selected benchmark; returns the exit code (0 ok, 2 bad configuration)."""
    from .bench import run as _run

    return _run(args, prog="captum-xgrad bench")
