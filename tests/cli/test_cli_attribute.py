"""``captum-xgrad attribute``: digits and ImageFolder data, targets, weights, usage errors
(exit 2), and the same bytes under ``torchrun --nproc-per-node=2``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from captum_xgrad import AttributionStore, XGradient
from captum_xgrad._cli_attribute import load_data
from captum_xgrad.cli import main

ROOT = Path(__file__).resolve().parents[2]

MODEL_FILE = textwrap.dedent(
    """
    import torch
    from torch import nn

    def cnn():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(4 * 8 * 8, 10, bias=False),
        )

    def rgb_cnn():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 2, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Linear(8, 2, bias=False),
        )
    """
)


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(MODEL_FILE)
    return path


def _model(name="cnn"):
    namespace: dict = {}
    exec(MODEL_FILE, namespace)
    return namespace[name]().eval()


def _files(path: Path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(argv, capsys):
    code = main(["attribute", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_digits_store_matches_xgradient(tmp_path, model_file, capsys):
    out = tmp_path / "store"
    code, stdout, _ = _run([f"{model_file}:cnn", "digits", "--out", str(out), "--resize", "16",
                            "--batch-size", "256", "--dtype", "float32", "--target", "pred"],
                           capsys)
    assert code == 0, stdout
    assert "1797 examples" in stdout and "images/s" in stdout
    store = AttributionStore(out)
    data = load_data("digits", resize=16)
    model = _model()
    x = torch.stack([data[i][0] for i in range(256, 300)])
    ref = XGradient(model).attribute(x, target=model(x).argmax(1))
    assert store.shape == (1797, 1, 16, 16)
    assert torch.allclose(store[256:300], ref, atol=1e-6)
    assert torch.equal(store.targets[256:300], model(x).argmax(1))
    # resumed (nothing to do), --no-resume refuses, --overwrite replaces
    assert _run([f"{model_file}:cnn", "digits", "--out", str(out), "--resize", "16",
                 "--batch-size", "256", "--dtype", "float32", "--target", "pred"], capsys)[0] == 0
    code, _, err = _run([f"{model_file}:cnn", "digits", "--out", str(out), "--resize", "16",
                         "--no-resume"], capsys)
    assert code == 2 and "already holds an attribution store" in err
    code, _, err = _run([f"{model_file}:cnn", "digits", "--out", str(out), "--resize", "16",
                         "--batch-size", "128"], capsys)
    assert code == 2 and "batch_size" in err


def test_weights_target_int_and_ig(tmp_path, model_file, capsys):
    other = _model()
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-1.5)
    weights = tmp_path / "w.pt"
    torch.save(other.state_dict(), weights)
    data = load_data("digits", resize=16)
    x = torch.stack([data[i][0] for i in range(8)])
    out = tmp_path / "xg"
    code, _, _ = _run([f"{model_file}:cnn", "digits", "--out", str(out), "--resize", "16",
                       "--weights", str(weights), "--target", "4", "--no-progress"], capsys)
    assert code == 0
    store = AttributionStore(out)
    assert store.dtype == torch.float16 and bool((store.targets == 4).all())
    assert torch.allclose(store[:8].float(), XGradient(other).attribute(x, target=4),
                          atol=1e-3, rtol=1e-2)
    out = tmp_path / "ig"
    code, _, _ = _run([f"{model_file}:cnn", "digits", "--out", str(out), "--resize", "16",
                       "--weights", str(weights), "--target", "4", "--method", "ig",
                       "--n-steps", "8", "--batch-size", "600", "--dtype", "float32"], capsys)
    assert code == 0
    ig = IntegratedGradients(other).attribute(x, target=4, n_steps=8)
    assert torch.allclose(AttributionStore(out)[:8], ig, atol=1e-6)


def test_imagefolder(tmp_path, model_file, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for cls in ("ant", "bee"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.jpg")
    out = tmp_path / "store"
    code, stdout, _ = _run([f"{model_file}:rgb_cnn", f"imagefolder:{root}", "--out", str(out),
                            "--resize", "12", "--crop", "10", "--batch-size", "4",
                            "--normalize", "imagenet"], capsys)
    assert code == 0, stdout
    store = AttributionStore(out)
    assert store.shape == (6, 3, 10, 10)
    assert store.targets.tolist() == [0, 0, 0, 1, 1, 1]
    data = load_data(f"imagefolder:{root}", resize=12, crop=10, normalize="imagenet")
    x = torch.stack([data[i][0] for i in range(4, 6)])
    ref = XGradient(_model("rgb_cnn")).attribute(x, target=torch.tensor([1, 1]))
    assert torch.allclose(store[4:6].float(), ref, atol=1e-3, rtol=1e-2)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["torch.nn:Flatten", "mnist"], "DATA must be imagefolder:PATH or digits"),
        (["torch.nn:Flatten", "imagefolder:/no/such/dir"], "is not a directory"),
        (["torch.nn:Flatten", "digits", "--target", "cat"], "--target must be"),
        (["torch.nn:Flatten", "digits", "--crop", "4"], "apply to imagefolder"),
        (["torch.nn:Flatten", "digits", "--resize", "0"], "--resize must be"),
        (["torch.nn:Flatten", "digits", "--batch-size", "0"], "--batch-size"),
        (["nope:cnn", "digits"], "cannot import"),
        (["torch.nn:Flatten", "digits", "--weights", "/no/such.pt"], "--weights"),
    ],
)
def test_usage_errors_exit_2(tmp_path, argv, message, capsys):
    code, _, err = _run([*argv, "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and message in err, err
    assert not (tmp_path / "s").exists()


def test_torchrun_two_processes_give_the_bytes_of_one(tmp_path, model_file):
    args = [f"{model_file}:cnn", "digits", "--resize", "16", "--batch-size", "300",
            "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    one = subprocess.run(
        [sys.executable, "-m", "captum_xgrad", "attribute", *args, "--out", str(tmp_path / "one")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         "-m", "captum_xgrad", "attribute", *args, "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("1797 examples") == 1  # the summary comes from rank 0 only
    assert _files(tmp_path / "two") == _files(tmp_path / "one")


def test_a_model_that_fails_to_build_exits_1(tmp_path, capsys):
    code = main(["attribute", "torch.nn:Linear", "digits", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 1 and "building MODEL 'torch.nn:Linear' failed" in err
    assert not (tmp_path / "s").exists()
