"""Command-line interface: ``captum-xgrad demo | check | bench``.

Each sub-command lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int`` (the process exit code). This module only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional, Sequence

from ._version import __version__

__all__ = ["main", "build_parser"]

#: sub-command name -> (module implementing it, one-line help)
COMMANDS = {
    "demo": (
        "captum_xgrad.demo",
        "train a small bias-free CNN on scikit-learn's digits and compare XGradient "
        "with Captum's IntegratedGradients",
    ),
    "check": (
        "captum_xgrad._cli_check",
        "check whether a model is nonnegatively homogeneous (exit 0: yes, 1: no, 2: usage error)",
    ),
    "bench": (
        "captum_xgrad._cli_bench",
        "time XGradient against Captum's IntegratedGradients (see benchmarks/)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """Build the ``captum-xgrad`` argument parser with all sub-commands."""
    parser = argparse.ArgumentParser(
        prog="captum-xgrad",
        description="Exact Integrated Gradients in one backward pass (X-Gradient).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``captum-xgrad`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args._run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
