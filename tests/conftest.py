"""Shared test setup: ``tests/`` is importable (``from _models import ...``) from every
sub-folder, which mirror the package (``homogeneity/``, ``dataset/``, ``models/``,
``cli/``) and the benchmark harness (``benchmarks/``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch


_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (on a busy shared machine, OpenMP barriers make tiny ops
    very slow); the thread count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
