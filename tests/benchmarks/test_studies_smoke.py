"""Smoke tests of the two paper studies in benchmarks/ (their --small modes, into tmp_path).

They check that the scripts run end to end and write the JSON, Markdown and PNG with the
command, the machine and the expected rows; never the numbers' values (except exact
identities: X-Gradient and Captum IG agree on the bias-free CNN).
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def _run(script: str, argv, monkeypatch) -> None:
    path = BENCH / script
    monkeypatch.syspath_prepend(str(BENCH))  # as `python benchmarks/<script>` would
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(path), run_name="__main__")
    assert exc.value.code == 0


def _check_machine(meta):
    assert meta["command"].startswith("python ") and "--small" in meta["command"]
    assert meta["machine"]["torch"] == torch.__version__
    assert meta["machine"]["torch_threads"] == 1
    assert meta["machine"]["cpu_count"]


def test_sparsity_prior_small_with_noise_features(tmp_path, monkeypatch, one_thread):
    _run("sparsity_prior.py", ["--small", "--noise-features", "5", "--out", str(tmp_path)], monkeypatch)
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"sparsity_prior_noise5.{ext}").stat().st_size > 0
    doc = json.loads((tmp_path / "sparsity_prior_noise5.json").read_text())
    _check_machine(doc["meta"])
    assert doc["meta"]["noise_features"] == 5 and doc["meta"]["reps"] == 2
    assert "30) + 5 standard-normal" in doc["meta"]["dataset"]
    assert set(doc["rows"]) == {"unreg_bias", "unreg_nobias", "gini_grad", "gini_xgrad",
                                "gini_eg1", "gini_eg8"}
    lams = doc["meta"]["lambdas"]
    for key, row in doc["rows"].items():
        assert len(row["test_per_rep"]) == 2 and row["sec_per_epoch"] > 0
        if key.startswith("gini"):  # the same lambda grid for every prior row
            assert sorted(float(k) for k in row["all_lambdas"]) == sorted(lams)
    md = (tmp_path / "sparsity_prior_noise5.md").read_text()
    assert "Paired differences" in md and "at K = 5:" in md
    assert "K = 5" in md and "5 noise features" in md
    # the sweep summary over two runs
    doc["meta"]["noise_features"] = 0  # stands in for a second run, at K = 0
    (tmp_path / "k0.json").write_text(json.dumps(doc))
    _run("sparsity_prior.py", ["--sweep", str(tmp_path / "k0.json"),
                               str(tmp_path / "sparsity_prior_noise5.json"), "--out", str(tmp_path)],
         monkeypatch)
    sweep = (tmp_path / "sparsity_prior_sweep.md").read_text()
    assert "| K = 0 | K = 5 |" in sweep
    assert (tmp_path / "sparsity_prior_sweep.png").stat().st_size > 0


def _check_quality(tmp_path, quantus: bool):
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"attribution_quality.{ext}").stat().st_size > 0
    doc = json.loads((tmp_path / "attribution_quality.json").read_text())
    _check_machine(doc["meta"])
    seed = doc["per_seed"][0]
    assert set(seed["models"]) == {"regular", "xdnn"}
    for key, entry in seed["methods"].items():
        assert set(entry["auc"]) == {"keep_positive", "remove_positive", "keep_negative",
                                     "remove_negative", "keep_absolute", "remove_absolute"}
        assert all(len(c) == 16 for c in entry["curves"].values())
        assert entry["sec_per_image"] > 0
        assert ("quantus" in entry) == quantus
    if "xgradient" in seed["methods"] and "x_ig" in seed["methods"]:
        # the same attributions (to float32 rounding), hence the same masking AUCs
        assert seed["xgradient_vs_ig_max_rel_diff"] < 1e-4
        for m, v in seed["methods"]["xgradient"]["auc"].items():
            assert v == pytest.approx(seed["methods"]["x_ig"]["auc"][m], abs=1e-4)
    return doc


def test_attribution_quality_small_without_quantus(tmp_path, monkeypatch, one_thread):
    _run("attribution_quality.py", ["--small", "--no-quantus", "--out", str(tmp_path)], monkeypatch)
    doc = _check_quality(tmp_path, quantus=False)
    assert len(doc["per_seed"][0]["methods"]) == 8
    md = (tmp_path / "attribution_quality.md").read_text()
    assert "Verdict" in md and "Quantus metrics skipped" in md


def test_attribution_quality_small_with_quantus(tmp_path, monkeypatch, one_thread):
    pytest.importorskip("quantus")
    _run("attribution_quality.py", ["--small", "--methods", "ig", "xgradient", "x_ig",
                                    "--out", str(tmp_path)], monkeypatch)
    doc = _check_quality(tmp_path, quantus=True)
    q = doc["per_seed"][0]["methods"]["xgradient"]["quantus"]
    assert set(q) == {"faithfulness_correlation", "pixel_flipping_auc", "max_sensitivity",
                      "completeness"}
    assert -1.0 <= q["faithfulness_correlation"] <= 1.0
    assert 0.0 <= q["completeness"] <= 1.0
    assert "Quantus FaithfulnessCorrelation" in (tmp_path / "attribution_quality.md").read_text()
