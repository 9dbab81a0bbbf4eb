"""The benchmark harness (benchmarks.harness) and the speed/exactness studies in benchmarks/.

Smoke tests on a tiny configuration (tiny MLP/CNN, 2 repetitions): they check the
output files, the JSON schema and the measuring tools, never the times.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import attribution_error, attribution_speed
from benchmarks.harness import report
from benchmarks.harness.cases import BenchConfig, get_model_spec
from benchmarks.harness.memory import is_out_of_memory, peak_memory
from benchmarks.harness.timing import Timing, time_callable

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--models", "mlp", "cnn", "--small", "--device", "cpu", "--n-steps", "2", "4",
        "--no-progress"]


SPEED_CASES = {
    ("bare", None, None), ("xgradient", None, None), ("input_x_gradient", None, None),
    ("ig", 2, None), ("ig", 4, None), ("ig", 2, 4), ("ig", 4, 4),
    ("layer_xgradient", None, None), ("layer_ig", 50, None),
    ("train_plain", None, None), ("train_xgrad_prior", None, None),
    ("train_xgrad_prior_attribute", None, None), ("train_ig_prior", 8, None),
}


def _check_header(doc, kind, script):
    assert doc["schema"] == report.SCHEMA
    assert doc["kind"] == kind
    assert script in doc["command"] and "--models mlp cnn" in doc["command"]
    assert doc["device"]["type"] == "cpu"
    assert doc["device"]["threads"] == 1
    assert isinstance(doc["device"]["name"], str) and doc["device"]["name"]
    assert doc["versions"]["torch"] == torch.__version__
    assert {"captum", "captum_xgrad", "torchvision"} <= set(doc["versions"])
    assert {"platform", "cpu_count", "python", "processor", "git_commit"} <= set(doc["machine"])
    assert len(doc["loadavg"]["start"]) == 3 and len(doc["loadavg"]["end"]) == 3
    assert doc["elapsed_s"] > 0
    assert set(doc["models"]) == {"mlp", "cnn"}


def test_speed_script_writes_json_markdown_and_plots(tmp_path, one_thread):
    argv = TINY + ["--out", str(tmp_path), "--repeats", "2", "--batch-sizes", "3",
                   "--internal-batch-size", "4"]
    assert attribution_speed.main(argv) == 0
    out = tmp_path / "cpu"
    for name in ("speed.json", "speed.md", "time_vs_steps.png", "memory.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "time_vs_steps.png").read_bytes()[:4] == b"\x89PNG"

    doc = json.loads((out / "speed.json").read_text())
    _check_header(doc, "speed", "python -m benchmarks.attribution_speed")
    assert doc["config"]["repeats"] == 2 and doc["config"]["n_steps"] == [2, 4]
    assert "profile_memory=True" in doc["memory_method"]
    for model in ("mlp", "cnn"):
        rows = [r for r in doc["results"] if r["model"] == model]
        assert {(r["case"], r["n_steps"], r["internal_batch_size"]) for r in rows} == SPEED_CASES
        for r in rows:
            assert r["status"] == "ok" and r["batch_size"] == 3 and r["device"] == "cpu"
            assert r["repeats"] == len(r["samples_ms"]) == 2
            assert 0 < r["min_ms"] <= r["q1_ms"] <= r["median_ms"] <= r["q3_ms"] <= r["max_ms"]
            assert isinstance(r["peak_memory_bytes"], int) and r["peak_memory_bytes"] >= 0
            assert r["time_ratio_to_bare"] == pytest.approx(
                r["median_ms"] / rows[0]["median_ms"])
            if r["group"] == "train":
                assert "time_ratio_to_plain_step" in r
        bare = next(r for r in rows if r["case"] == "bare")
        assert bare["time_ratio_to_bare"] == 1.0 and bare["memory_ratio_to_bare"] == 1.0
        # IG(4) runs 4 scaled copies of the batch at once: it must hold more than IG(2)
        ig = {r["n_steps"]: r for r in rows if r["case"] == "ig" and not r["internal_batch_size"]}
        assert ig[4]["peak_memory_bytes"] > ig[2]["peak_memory_bytes"]
    assert {(s["model"], s["batch_size"]) for s in doc["summary"]} == {("mlp", 3), ("cnn", 3)}
    for s in doc["summary"]:
        assert s["xgradient_time_ratio"] > 0 and s["train_xgrad_prior_ratio"] > 0
        assert s["meets_xgradient_time_target"] in (True, False)

    md = (out / "speed.md").read_text()
    assert doc["command"] in md and "| mlp | 3 | XGradient |" in md
    assert "## Targets" in md


def test_error_script_shows_ig_equals_xgradient_on_x_models(tmp_path, one_thread):
    argv = TINY + ["--out", str(tmp_path), "--reference-steps", "64", "--error-batch-size", "3"]
    assert attribution_error.main(argv) == 0
    out = tmp_path / "cpu"
    for name in ("error.json", "error.md", "error_vs_steps.png"):
        assert (out / name).stat().st_size > 0, name
    doc = json.loads((out / "error.json").read_text())
    _check_header(doc, "error", "python -m benchmarks.attribution_error")
    assert doc["models"]["mlp"]["examples"] == 3
    rows = doc["results"]
    for model in ("mlp", "cnn"):
        x_ig = [r for r in rows if r["model"] == model and r["variant"] == "x"
                and r["method"] == "ig"]
        assert sorted(r["n_steps"] for r in x_ig) == [2, 4]
        for r in x_ig:  # IG(n) = X-Gradient at every n on a bias-free model
            assert r["reference"] == "xgradient"
            assert r["max_rel"] < 1e-4 and r["completeness_max_rel"] < 1e-4
        b_xg = next(r for r in rows if r["model"] == model and r["variant"] == "biased"
                    and r["method"] == "xgradient")
        assert b_xg["reference"] == "ig64"
        assert b_xg["max_rel"] > 1e-3  # with biases x * grad is not IG
        assert b_xg["completeness_max_rel"] > 1e-3
        for r in rows:
            assert {"max_rel", "mean_rel", "completeness_max_rel", "completeness_mean_rel"} <= set(r)
    assert "| mlp | X-model (bias-free) | IG | 2 | xgradient |" in (out / "error.md").read_text()


def test_from_json_re_renders_the_same_markdown(tmp_path, one_thread):
    argv = ["--models", "mlp", "--small", "--device", "cpu", "--n-steps", "2",
            "--reference-steps", "8", "--no-plots", "--no-progress", "--out", str(tmp_path)]
    assert attribution_error.main(argv) == 0
    md = (tmp_path / "cpu" / "error.md").read_text()
    again = tmp_path / "again"
    assert attribution_error.main(["--from-json", str(tmp_path / "cpu" / "error.json"),
                                   "--out", str(again), "--no-plots"]) == 0
    assert (again / "cpu" / "error.md").read_text() == md
    assert not (tmp_path / "cpu" / "error_vs_steps.png").exists()


def test_studies_run_as_modules_from_the_repository_root():
    out = subprocess.run([sys.executable, "-m", "benchmarks.attribution_speed", "--help"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "--from-json" in out and "--repeats" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_requested_without_cuda_is_a_clear_usage_error(tmp_path, capsys):
    code = attribution_speed.main(["--device", "cuda", "--models", "mlp", "--out", str(tmp_path)])
    assert code == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"use --device cpu"):
        BenchConfig(devices=("cuda",)).validate()


def test_peak_memory_cpu_counts_live_tensors_exactly():
    mib = 2**20

    def work():
        a = torch.empty(mib // 4)          # 1 MiB
        b = torch.empty(2 * mib // 4)      # 2 MiB, 3 MiB live
        del a
        c = torch.empty(mib // 4)          # 1 MiB, again 3 MiB live
        return b, c

    peak = peak_memory(work, "cpu")
    assert 3 * mib <= peak < 3 * mib + 4096
    assert peak_memory(lambda: None, "cpu") == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_memory_and_timing_on_cuda():
    mib = 2**20
    peak = peak_memory(lambda: torch.empty(4 * mib // 4, device="cuda"), "cuda")
    assert 4 * mib <= peak < 4 * mib + 2 * mib
    t = time_callable(lambda: torch.ones(256, 256, device="cuda") @ torch.ones(256, 256, device="cuda"),
                      "cuda", repeats=3, warmup=1)
    assert len(t.samples_ms) == 3 and t.median_ms > 0


def test_time_callable_counts_calls_and_validates():
    calls = []
    t = time_callable(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(t.samples_ms) == 3
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        time_callable(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="warmup must be a non-negative integer"):
        time_callable(lambda: None, warmup=-1)


def test_timing_quartiles_match_numpy():
    samples = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0]
    t = Timing(samples)
    assert t.median_ms == pytest.approx(np.median(samples))
    assert t.q1_ms == pytest.approx(np.percentile(samples, 25))
    assert t.q3_ms == pytest.approx(np.percentile(samples, 75))
    assert Timing([2.5]).q1_ms == 2.5


def test_is_out_of_memory():
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: 1 GB"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_unknown_model_and_bad_config_errors():
    with pytest.raises(ValueError, match=r"unknown benchmark model 'resnet9'; choose from"):
        get_model_spec("resnet9")
    with pytest.raises(ValueError, match=r"n_steps must be positive integers"):
        BenchConfig(models=["mlp"], n_steps=[0]).validate()
    with pytest.raises(ValueError, match=r"no models selected"):
        BenchConfig(models=[]).validate()


def test_machine_info_and_sem():
    info = report.machine_info()
    assert info["torch"] == torch.__version__ and info["torch_threads"] == torch.get_num_threads()
    assert report.sem([1.0, 2.0, 3.0, 6.0]) == pytest.approx(np.std([1, 2, 3, 6], ddof=1) / 2)
    assert np.isnan(report.sem([1.0]))


def test_benchmark_models_are_homogeneous_and_biased_ones_are_not():
    """The X-models come from the zoo; the 'with biases' variants really have biases."""
    model, source = get_model_spec("xalexnet").build_x(10, True)
    assert source == "captum_xgrad.models.xalexnet"
    assert all(m.bias is None for m in model.modules() if hasattr(m, "bias")
               and isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    torch.manual_seed(0)
    for name in ("mlp", "cnn"):
        spec = get_model_spec(name)
        x = torch.rand((2,) + spec.input_shape(True))
        for variant, homogeneous in ((spec.build_x, True), (spec.build_biased, False)):
            m = variant(10, True)[0].eval()
            with torch.no_grad():
                same = torch.allclose(m(3 * x), 3 * m(x), rtol=1e-4, atol=1e-6)
            assert same == homogeneous, (name, homogeneous)
