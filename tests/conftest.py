"""Shared test setup: ``tests/`` is importable (``from _models import ...``) from every
sub-folder, which mirror the package (``homogeneity/``, ``dataset/``, ``models/``,
``cli/``) and the benchmark harness (``benchmarks/``)."""

from __future__ import annotations

import sys
from pathlib import Path


_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

