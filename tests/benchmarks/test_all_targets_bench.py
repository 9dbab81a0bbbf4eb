"""Smoke test of benchmarks/all_targets.py (--small): output files, schema, exactness.

Never checks times (no timing assertions); checks that the batched maps equal the
loops, that extrapolated loops are marked, and that both ways of running it work.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "all_targets.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("all_targets_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_small_run_writes_json_md_png(script, tmp_path, one_thread):
    code = script.main(["--small", "--out", str(tmp_path), "--no-progress",
                        "--min-run-time", "0.02", "--n-steps", "8"])
    assert code == 0
    out = tmp_path / "cpu"
    doc = json.loads((out / "all_targets.json").read_text())
    assert (out / "all_targets.png").stat().st_size > 10_000
    md = (out / "all_targets.md").read_text()
    assert "batched / XG loop" in md and "--small" in doc["command"]
    (res,) = doc["results"]
    assert [r["T"] for r in res["rows"]] == [1, 4, 16]
    for r in res["rows"]:
        for method in ("batched", "xgrad_loop", "ig_loop"):
            assert r[method]["median_s"] > 0 and r[method]["peak_bytes"] >= 0
            assert r[method]["extrapolated"] is False
        assert r["batched/xgrad_loop"] == pytest.approx(
            r["batched"]["median_s"] / r["xgrad_loop"]["median_s"])
    # the maps are identical to the loop's, and IG's on this bias-free model
    assert res["exactness"]["maps_max_abs"] > 0  # not a comparison of zeros
    assert res["exactness"]["batched_vs_xgrad_loop_max_rel"] < 1e-5
    assert res["exactness"]["batched_vs_ig_loop_max_rel"] < 1e-4
    assert doc["memory_method"].startswith("torch.profiler")


def test_loops_over_budget_are_extrapolated_and_marked(script, tmp_path, one_thread):
    code = script.main(["--small", "--out", str(tmp_path), "--no-progress", "--no-plot",
                        "--no-memory", "--min-run-time", "0.01", "--n-steps", "4",
                        "--loop-budget", "0"])
    assert code == 0
    doc = json.loads((tmp_path / "cpu" / "all_targets.json").read_text())
    rows = doc["results"][0]["rows"]
    assert rows[0]["ig_loop"]["extrapolated"] is False  # T = 1 is always measured
    for r in rows[1:]:
        for method in ("xgrad_loop", "ig_loop"):
            e = r[method]
            assert e["extrapolated"] is True and e["measured_targets"] == 1
            assert e["median_s"] == pytest.approx(rows[0][method]["median_s"] * r["T"])
        assert r["batched"]["extrapolated"] is False
    md = (tmp_path / "cpu" / "all_targets.md").read_text()
    assert "*" in md.split("| small_cnn |")[2]
    assert not (tmp_path / "cpu" / "all_targets.png").exists()


def test_runs_as_a_module(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.all_targets", "--small", "--targets", "1", "2",
         "--no-memory", "--no-plot", "--no-progress", "--min-run-time", "0.01",
         "--n-steps", "2", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "cpu" / "all_targets.md").is_file()
