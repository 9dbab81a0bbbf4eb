"""The X-model zoo: architectures match the official checkpoints key for key, builders,
registry, and homogeneity of the X-models (vs. the biased Fixup baseline)."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from captum_xgrad import models
from captum_xgrad.homogeneity import check_homogeneity, static_findings
from captum_xgrad.xgradient import XGradient

OFFICIAL = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "official_state_dicts.json"


def _official():
    if not OFFICIAL.is_file():
        pytest.skip(f"{OFFICIAL} is absent (the shared/ folder beside the repository)")
    return json.loads(OFFICIAL.read_text())


def _meta_model(name, **kwargs):
    with torch.device("meta"):  # no memory, no initialisation cost
        return models.get_model(name, **kwargs)


@pytest.mark.parametrize(
    "name",
    ["xalexnet", "xvgg11", "xvgg13", "xvgg16", "xvgg19", "xfixup_resnet18", "xfixup_resnet50",
     "fixup_resnet50"],
)
def test_state_dict_matches_official_key_for_key(name):
    official = _official()[name]
    model = _meta_model(name)
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == list(official["state_dict"].items())  # same keys, order and shapes
    assert sum(p.numel() for p in model.parameters()) == official["num_parameters"]


def test_every_official_model_is_registered():
    assert set(_official()) <= set(models.list_models())


@pytest.mark.parametrize("name", models.list_models())
def test_builders_num_classes_and_x_models_have_no_bias(name):
    model = _meta_model(name, num_classes=7)
    head = model.fc if hasattr(model, "fc") else model.classifier[-1]
    assert head.out_features == 7
    assert model.arch == name
    if name.startswith("x"):
        assert not any(k.endswith("bias") for k in model.state_dict())
        assert static_findings(model.eval()) == []
    else:
        assert any("custom module" in f for f in static_findings(model.eval()))


def test_registry_errors_and_listing():
    assert models.list_models(homogeneous_only=True) == sorted(
        n for n in models.list_models() if n.startswith("x")
    )
    with pytest.raises(ValueError, match=r"unknown model 'xresnet9'; captum_xgrad.models has: .*xvgg16"):
        models.get_model("xresnet9")
    with pytest.raises(TypeError, match="path of a checkpoint file, got int"):
        models.xalexnet(weights=3)


def _randomise(model):
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, (2.0 / m.weight[0].numel()) ** 0.5)
    for n, p in model.named_parameters():
        if "bias" in n:
            nn.init.uniform_(p, 0.1, 0.3)
    return model.eval()


@pytest.mark.parametrize(
    "name,size", [("xalexnet", 63), ("xvgg11", 32), ("xfixup_resnet18", 32), ("xfixup_resnet50", 32)]
)
def test_x_models_are_homogeneous_and_xgradient_equals_ig(name, size):
    model = _randomise(models.get_model(name, num_classes=10))
    x = torch.rand(2, 3, size, size)
    report = check_homogeneity(model, x)
    assert report.is_homogeneous and report.degree == 1.0, str(report)
    if name.startswith("xfixup"):  # small: float64, tight tolerance
        model, xd, tol = model.double(), x.double(), 1e-5
    else:  # 60-130M parameters: float32, one example
        xd, tol = x[:1], 1e-4
    xg = XGradient(model).attribute(xd, target=4)
    ig = IntegratedGradients(model).attribute(xd, target=4, n_steps=4)
    assert float((xg - ig).abs().max()) <= tol * float(ig.abs().max())


def test_biased_fixup_is_not_homogeneous_and_blame_names_its_blocks():
    model = _randomise(models.fixup_resnet18(num_classes=10))
    report = check_homogeneity(model, torch.rand(2, 3, 32, 32))
    assert not report.is_homogeneous
    names = {o.name for o in report.offenders}
    # the scalar biases live in the blocks' own forward (and fc has a bias)
    assert {"layer1.0", "layer4.1", "fc"} <= names


def test_fixup_zero_init_gives_zero_output():
    model = models.xfixup_resnet18(num_classes=5).eval()
    assert torch.count_nonzero(model(torch.rand(1, 3, 32, 32))) == 0
    assert torch.count_nonzero(model.fc.weight) == 0
    assert torch.count_nonzero(model.layer1[0].conv2.weight) == 0


# ------------------------------------------------------------- contrast invariance
def _load_example(name):
    import importlib.util

    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("a", [1e-3, 0.3, 7.0, 1e3])
def test_x_model_predictions_are_contrast_invariant(a):
    x_model = _randomise(models.xfixup_resnet18(num_classes=10, zero_init=False))
    biased = _randomise(models.fixup_resnet18(num_classes=10, zero_init=False))
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(x_model(a * x).argmax(1), x_model(x).argmax(1))
        if a == 1e-3:  # the biases dominate at low contrast: argmax f(a x) -> argmax f(0)
            assert torch.unique(biased(a * x).argmax(1)).numel() == 1


def test_contrast_invariance_example():
    example = _load_example("contrast_invariance")
    results = example.main(epochs=1)
    assert set(results["X-DNN (bias-free)"].values()) == {1.0}
    assert results["CNN with biases"][0.01] < 0.9
