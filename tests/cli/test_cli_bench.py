"""``captum-xgrad bench MODEL``: the compact timing of a user's own model (never the times)."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from captum_xgrad.cli import main

FAST = ["--min-run-time", "0.01", "--n-steps", "4"]


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _run(argv, capsys):
    code = main(["bench", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_has_the_three_methods_with_ratios_to_the_bare_pass(capsys):
    code, out, err = _run(["captum_xgrad:xalexnet", "--input-shape", "3,63,63", "--json", *FAST],
                          capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["input_shape"] == [1, 3, 63, 63] and doc["notes"] == []
    rows = {r["method"]: r for r in doc["results"]}
    assert list(rows) == ["bare forward+backward", "XGradient", "IntegratedGradients(n_steps=4)"]
    assert rows["bare forward+backward"]["x_bare"] == 1.0
    for r in rows.values():
        assert r["median_ms"] > 0 and r["iqr_ms"] >= 0 and r["runs"] >= 1
        assert r["x_bare"] == pytest.approx(r["median_ms"] / rows["bare forward+backward"]["median_ms"])


def test_table_for_a_model_in_a_file_notes_that_it_is_not_homogeneous(tmp_path, capsys):
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent("""
        from torch import nn
        def make():
            return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    """))
    code, out, _ = _run([f"{path}:make", "--input-shape", "6", "--batch-size", "4", *FAST], capsys)
    assert code == 0
    lines = out.splitlines()
    assert "on inputs (4, 6), cpu, 1 thread(s)" in lines[0]
    assert [ln.split()[0] for ln in lines[2:5]] == ["bare", "XGradient", "IntegratedGradients(n_steps=4)"]
    assert "not look nonnegatively homogeneous" in out and f"captum-xgrad check {path}:make" in out


@pytest.mark.parametrize(
    "argv,code,message",
    [
        (["captum_xgrad:xalexnet", "--input-shape", "-3,64,64"], 2, "is not a comma-separated list"),
        (["captum_xgrad:nope"], 2, "captum_xgrad.models has no model 'nope'"),
        (["torch.nn:Identity", "--n-steps", "0"], 2, "--n-steps must be a positive integer"),
        (["captum_xgrad:xfixup_resnet18", "--input-shape", "5"], 1, "the model raised RuntimeError"),
        (["torch.nn:Linear"], 1, "building MODEL 'torch.nn:Linear' failed"),
    ],
)
def test_usage_errors_exit_2_and_failing_models_exit_1(argv, code, message, capsys):
    got, out, err = _run(argv, capsys)
    assert got == code and out == ""
    assert message in err and err.startswith("captum-xgrad bench: error:")
