"""``captum-xgrad check``: exit codes 0/1/2, table and JSON output, --convert, MODEL specs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest

from captum_xgrad.cli import main


def _run(argv, capsys):
    code = main(["check", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_homogeneous_zoo_model_exits_0(capsys):
    code, out, _ = _run(["captum_xgrad:xalexnet", "--input-shape", "3,63,63"], capsys)
    assert code == 0
    assert "XAlexNet on inputs (2, 3, 63, 63): homogeneous" in out


def test_biased_model_exits_1_and_convert_fixes_it(capsys):
    code, out, _ = _run(["torchvision:resnet18", "--input-shape", "3,32,32"], capsys)
    assert code == 1
    assert "NOT homogeneous" in out and "fc" in out
    code, out, _ = _run(["torchvision:resnet18", "--input-shape", "3,32,32", "--convert"], capsys)
    assert code == 0
    assert "make_x_dnn(torchvision:resnet18): removed 1 bias(es), folded 20 BatchNorm(s)" in out


def test_json_output(capsys):
    code, out, _ = _run(["torchvision:squeezenet1_1", "--input-shape", "3,32,32", "--json", "--convert"], capsys)
    data = json.loads(out)
    assert data["model"] == "torchvision:squeezenet1_1"
    assert data["homogeneous"] is data["converted_report"]["is_homogeneous"] is True
    assert code == 0
    assert len(data["conversion"]["removed_biases"]) == 26


def test_factory_in_a_file(tmp_path, capsys):
    path = tmp_path / "mymodel.py"
    path.write_text(textwrap.dedent("""
        from torch import nn
        def make():
            return nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2, bias=False))
        def not_a_model():
            return 42
        def broken():
            raise RuntimeError("boom")
    """))
    code, out, _ = _run([f"{path}:make", "--input-shape", "6"], capsys)
    assert code == 1
    assert "Offending modules (2)" in out and "Tanh" in out
    code, _, err = _run([f"{path}:not_a_model"], capsys)
    assert code == 2 and "returned a int, not a torch.nn.Module" in err
    code, _, err = _run([f"{path}:broken"], capsys)  # the model fails: not a usage error
    assert code == 1 and "building MODEL" in err and "RuntimeError: boom" in err
    code, _, err = _run([f"{path}:missing"], capsys)
    assert code == 2 and "has no callable 'missing'" in err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["torchvision:resnet9000"], "torchvision has no classification model 'resnet9000'"),
        (["captum_xgrad:xresnet"], "captum_xgrad.models has no model 'xresnet'"),
        (["resnet18"], "must be torchvision:NAME, captum_xgrad:NAME or path/to/file.py:FACTORY"),
        (["nowhere/model.py:make"], "MODEL file 'nowhere/model.py' does not exist"),
        (["no_such_package_xyz:make"], "cannot import 'no_such_package_xyz'"),
        (["captum_xgrad:xalexnet", "--input-shape", "3,x"], "is not a comma-separated list of positive integers"),
        (["captum_xgrad:xalexnet", "--input-shape", "3,0,4"], "is not a comma-separated list"),
        (["captum_xgrad:xalexnet", "--batch-size", "0"], "--batch-size must be a positive integer"),
        (["captum_xgrad:xalexnet", "--input-shape", "-3,64,64"], r"--input-shape '-3,64,64' is not a comma-separated list"),
        (["captum_xgrad:xalexnet", "--input-shape=-3,64,64"], r"--input-shape '-3,64,64' is not a comma-separated list"),
        (["captum_xgrad:xalexnet", "--input-shape", "-1"], r"--input-shape '-1' is not a comma-separated list"),
    ],
)
def test_usage_errors_exit_2_with_message(argv, message, capsys):
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert out == ""
    assert re.search(message, err), err


def test_model_that_fails_on_the_input_exits_1_with_the_error(capsys):
    code, out, err = _run(["captum_xgrad:xfixup_resnet18", "--input-shape", "5"], capsys)
    assert code == 1 and out == ""
    assert re.search(r"(?s)the model raised RuntimeError.*--input-shape", err), err


def test_argparse_usage_error_exits_2():
    with pytest.raises(SystemExit) as exc:
        main(["check"])
    assert exc.value.code == 2


def test_console_entry_point_exit_code():
    proc = subprocess.run(
        [sys.executable, "-m", "captum_xgrad", "check", "torchvision:resnet18", "--input-shape", "3,32,32"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1, proc.stderr
    assert "NOT homogeneous" in proc.stdout


def test_prove_exit_codes_and_certificate(capsys):
    code, out, _ = _run(["torchvision:resnet18", "--input-shape", "3,32,32", "--prove"], capsys)
    assert code == 1
    assert "Degree certificate of ResNet: NOT homogeneous" in out and "fc" in out
    code, out, _ = _run(["torchvision:resnet18", "--input-shape", "3,32,32", "--prove", "--convert"], capsys)
    assert code == 0 and "proved homogeneous of degree 1" in out
    code, out, _ = _run(["captum_xgrad:xalexnet", "--input-shape", "3,63,63", "--prove", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["certificate"]["status"] == "proved" and data["certificate"]["degree"] == 1.0


def test_prove_unknown_falls_back_to_the_empirical_check(tmp_path, capsys):
    path = tmp_path / "untraceable.py"
    path.write_text(textwrap.dedent('''
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self, act):
                super().__init__()
                self.fc = nn.Linear(4, 2, bias=False)
                self.act = act

            def forward(self, x):
                if x.sum() > -1e9:  # data-dependent: fx cannot trace it
                    x = self.act(x)
                return self.fc(x)

        def good():
            return Net(nn.ReLU())

        def bad():
            return Net(nn.Tanh())
    '''))
    code, out, _ = _run([f"{path}:good", "--input-shape", "4", "--prove"], capsys)
    assert code == 0 and "unknown" in out and "Homogeneity check" in out
    code, out, _ = _run([f"{path}:bad", "--input-shape", "4", "--prove"], capsys)
    assert code == 1 and "unknown" in out and "NOT homogeneous" in out


def test_check_prints_the_centre_of_a_normalising_model(tmp_path, capsys):
    path = tmp_path / "wrapped.py"
    path.write_text(textwrap.dedent('''
        import torch
        from torch import nn

        class Wrapped(nn.Module):
            def __init__(self):
                super().__init__()
                self.register_buffer("mean", torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1))
                self.conv = nn.Conv2d(3, 2, 3, bias=False)

            def forward(self, x):
                return torch.relu(self.conv(x - self.mean)).mean((2, 3))

        def build():
            return Wrapped()
    '''))
    code, out, _ = _run([f"{path}:build", "--input-shape", "3,8,8"], capsys)
    assert code == 1 and "centre" in out and "mean" in out


def test_the_same_numbers_on_every_run():
    outs = [
        subprocess.run(
            [sys.executable, "-m", "captum_xgrad", "check", "torchvision:resnet18", "--input-shape", "3,32,32"],
            capture_output=True, text=True,
        ).stdout
        for _ in range(2)
    ]
    assert outs[0] == outs[1] and "estimated" in outs[0]
