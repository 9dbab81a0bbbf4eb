"""Command-line interface: ``captum-xgrad demo | check | bench | attribute``.

Each sub-command lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int`` (the process exit code). This module only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from typing import Optional, Sequence

from ._version import __version__

__all__ = ["main", "build_parser"]

#: Sub-command name -> (module implementing it, one-line help). Each module provides
#: ``add_arguments(parser)`` and ``run(args) -> int``.
COMMANDS = {
    "demo": ("captum_xgrad.demo", "train a small bias-free CNN on scikit-learn's digits and "
             "compare XGradient with Captum's IntegratedGradients"),
    "check": ("captum_xgrad._cli_check", "check whether a model is nonnegatively homogeneous "
              "(exit 0: yes, 1: no or the model failed, 2: usage error)"),
    "bench": ("captum_xgrad._cli_bench", "time XGradient against the bare forward+backward pass "
              "and Captum's IntegratedGradients on a model (exit 0: timed, 1: the model failed, "
              "2: usage error)"),
    "attribute": ("captum_xgrad._cli_attribute", "attribute a whole dataset into an on-disk "
                  "store (one process, or many under torchrun)"),
}

#: options whose value may start with "-" (argparse takes "--input-shape -3,64,64" for
#: two options; glued as "--input-shape=-3,64,64", the command's own check reports it)
_DASH_VALUE_OPTIONS = ("--input-shape",)


def _glue_dash_values(argv: Sequence[str]) -> list:
    out: list = []
    for arg in argv:
        if out and out[-1] in _DASH_VALUE_OPTIONS and re.match(r"-[\d,.]", arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """Build the ``captum-xgrad`` argument parser.

    Only the module of ``command`` (the sub-command being run) is imported, so that
    ``captum-xgrad --help`` and each sub-command start fast.

    Parameters
    ----------
    command : str, optional
        The sub-command whose options to add (one of :data:`COMMANDS`); the others
        are listed with their help text only.

    Returns
    -------
    argparse.ArgumentParser
        The parser; the chosen sub-command's ``run`` is stored as ``_run``.

    Raises
    ------
    ImportError
        If the sub-command's module needs an extra that is not installed (e.g.
        scikit-learn for ``demo``: ``pip install 'captum-xgrad[demo]'``).

    Examples
    --------
    >>> from captum_xgrad.cli import build_parser
    >>> args = build_parser("demo").parse_args(["demo", "--epochs", "2"])
    >>> args.epochs
    2
    """
    parser = argparse.ArgumentParser(
        prog="captum-xgrad",
        description="Exact Integrated Gradients in one backward pass (X-Gradient).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``captum-xgrad`` console script.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments without the program name; ``sys.argv[1:]`` if omitted.

    Returns
    -------
    int
        The exit code: the sub-command's (``check``: 0 homogeneous, 1 not), or 2 when
        no sub-command is given (the help is printed to stderr).

    Raises
    ------
    SystemExit
        From :mod:`argparse` on ``--help``, ``--version`` (code 0) and usage errors
        (code 2).

    Examples
    --------
    >>> from captum_xgrad.cli import main
    >>> main([])  # no sub-command: prints the help to stderr
    2
    """
    argv = _glue_dash_values(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args._run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
