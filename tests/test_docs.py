"""Build the Sphinx documentation as CI does: HTML with -W, and run its doctests.

``sphinx-build -W --keep-going -b html`` fails on any warning (a broken reference, a
docstring that does not parse, a missing image), and ``-b doctest`` runs every ``>>>``
example of the pages and of the public docstrings (pulled in by autodoc). Skipped only
when Sphinx (the ``docs`` extra) is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("furo") is None,
    reason="Sphinx/furo are not installed; install the docs extra: pip install -e '.[docs]'",
)


def _sphinx(builder: str, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("XGRAD_DOCS_ONLINE", None)  # intersphinx needs the network; CI has none
    env.setdefault("MPLBACKEND", "Agg")
    return subprocess.run(
        [
            sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q",
            "-b", builder, "-d", str(out / "doctrees"), str(DOCS), str(out / builder),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _report(proc: subprocess.CompletedProcess, out: Path, builder: str) -> str:
    text = f"sphinx -b {builder} exited {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    output = out / builder / "output.txt"  # the doctest builder's own summary
    if output.is_file():
        text += "\n" + output.read_text()[-6000:]
    return text


def test_html_builds_without_warnings(tmp_path: Path) -> None:
    proc = _sphinx("html", tmp_path)
    assert proc.returncode == 0, _report(proc, tmp_path, "html")
    html = tmp_path / "html"
    for page in ("index", "installation", "migration", "theory", "benchmarks", "api/index"):
        assert (html / f"{page}.html").is_file(), f"{page}.html was not built"
    # the quick-start figure is shown (and was copied into the site)
    assert "digits_attributions.png" in (html / "installation.html").read_text()
    assert (html / "_images" / "digits_attributions.png").is_file()
    # autodoc really documented the core API (an import failure would leave it empty)
    api = (html / "api" / "xgradient.html").read_text()
    assert "captum_xgrad.xgradient.XGradient.attribute" in api


def test_doctests_pass(tmp_path: Path) -> None:
    proc = _sphinx("doctest", tmp_path)
    assert proc.returncode == 0, _report(proc, tmp_path, "doctest")
    summary = (tmp_path / "doctest" / "output.txt").read_text()
    assert "0 failures in tests" in summary, summary[-3000:]
    # the examples really ran: the pages alone hold dozens of them
    counts = re.findall(r"^\s*(\d+) tests?$", summary, flags=re.M)
    assert counts and int(counts[-1]) >= 50, summary[-3000:]
