"""Smoke test of benchmarks/dataset_throughput.py (--small, one workload, one process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dataset_throughput_small(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dataset_throughput.py"), "--small",
         "--workloads", "digits64", "--procs", "1", "--ig-images", "2", "--no-plot",
         "--threads", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "cpu" / "dataset_throughput.json").read_text())
    runs = {r["method"]: r for r in results["runs"]}
    assert set(runs) == {"xgradient", "ig"}
    assert runs["xgradient"]["images"] == 64 and runs["ig"]["images"] == 2
    assert all(r["images_per_s"] > 0 for r in runs.values())
    assert runs["xgradient"]["speedup_vs_ig"] == (
        runs["xgradient"]["images_per_s"] / runs["ig"]["images_per_s"])
    table = (tmp_path / "cpu" / "dataset_throughput.md").read_text()
    assert "| digits64 | xgradient | 1 |" in table and "Command: `python" in table
