"""The ``captum-xgrad`` command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from captum_xgrad import __version__
from captum_xgrad.cli import COMMANDS, main


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_no_command_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    for name in COMMANDS:
        assert name in err


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_python_dash_m_demo_help():
    out = subprocess.run(
        [sys.executable, "-m", "captum_xgrad", "demo", "--help"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "--epochs" in out and "--out" in out
