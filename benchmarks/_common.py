"""Helpers shared by the benchmark scripts in this folder (not part of the package)."""

from __future__ import annotations

import datetime
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch


def machine_info() -> Dict[str, object]:
    """Where the numbers come from: platform, CPU, versions, threads, commit, date."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=Path(__file__).resolve().parent, check=False,
        ).stdout.strip() or None
    except OSError:
        commit = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "git_commit": commit,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def sem(values: List[float]) -> float:
    """Standard error of the mean (NaN for fewer than two values)."""
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
