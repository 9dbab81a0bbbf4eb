"""make_x_dnn: bias removal, BatchNorm folding (closed forms), reporting, and torchvision
models whose conversion passes the checker and gives X-Gradient == Captum IG."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from captum.attr import IntegratedGradients
from torch import nn

from captum_xgrad.convert import ChannelScale, make_x_dnn
from captum_xgrad.errors import NonHomogeneousError, NonHomogeneousWarning
from captum_xgrad.homogeneity import check_homogeneity, static_findings
from captum_xgrad.xgradient import XGradient


def _random_bn(bn):
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2.0)
        if bn.affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)
    return bn


def _scale(bn):
    s = 1.0 / torch.sqrt(bn.running_var + bn.eps)
    return s * bn.weight.detach() if bn.affine else s


def test_conv_bn_fold_closed_form():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3)
    bn = _random_bn(nn.BatchNorm2d(3))
    model = nn.Sequential(conv, bn, nn.ReLU()).eval()
    x = torch.randn(4, 2, 6, 6)
    xm, report = make_x_dnn(model, return_report=True)
    assert report.folded_batchnorms == (("1", "0"),)
    assert report.removed_biases == ("0",)
    assert isinstance(xm[1], nn.Identity) and xm[0].bias is None
    s = _scale(bn)
    assert torch.allclose(xm[0].weight, conv.weight * s.view(-1, 1, 1, 1), atol=1e-6)
    # X-DNN output: relu(s * conv_without_bias(x))
    expected = torch.relu(s.view(1, -1, 1, 1) * nn.functional.conv2d(x, conv.weight))
    assert torch.allclose(xm(x), expected, atol=1e-5)


def test_linear_bn1d_and_conv_transpose_fold():
    torch.manual_seed(0)
    lin, bn1 = nn.Linear(4, 5), _random_bn(nn.BatchNorm1d(5))
    model = nn.Sequential(lin, bn1).eval()
    x = torch.randn(3, 4)
    xm = make_x_dnn(model)
    assert torch.allclose(xm(x), (x @ lin.weight.T) * _scale(bn1), atol=1e-5)

    ct, bn2 = nn.ConvTranspose2d(2, 3, 3), _random_bn(nn.BatchNorm2d(3))
    model = nn.Sequential(ct, bn2).eval()
    x = torch.randn(2, 2, 4, 4)
    xm, report = make_x_dnn(model, return_report=True)
    assert report.folded_batchnorms == (("1", "0"),)
    expected = nn.functional.conv_transpose2d(x, ct.weight) * _scale(bn2).view(1, -1, 1, 1)
    assert torch.allclose(xm(x), expected, atol=1e-5)


class _SharedConv(nn.Module):
    """A BatchNorm first, and a conv whose output feeds two modules: nothing to fold."""

    def __init__(self) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(2)
        self.conv = nn.Conv2d(2, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x):
        y = self.conv(self.bn0(x))
        return self.bn(y) + y


def test_unfoldable_batchnorm_becomes_channel_scale():
    torch.manual_seed(0)
    model = _SharedConv()
    _random_bn(model.bn0), _random_bn(model.bn)
    model.eval()
    x = torch.randn(2, 2, 3, 3)
    xm, report = make_x_dnn(model, return_report=True)
    assert report.folded_batchnorms == ()
    assert set(report.scaled_batchnorms) == {"bn0", "bn"}
    assert isinstance(xm.bn, ChannelScale) and isinstance(xm.bn0, ChannelScale)
    s0, s = _scale(model.bn0).view(1, -1, 1, 1), _scale(model.bn).view(1, -1, 1, 1)
    y = nn.functional.conv2d(x * s0, model.conv.weight)
    assert torch.allclose(xm(x), y * s + y, atol=1e-5)
    assert check_homogeneity(xm, x).is_homogeneous


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU())

    def forward(self, x):
        if float(x.sum()) > 1e9:  # data-dependent control flow: torch.fx cannot trace it
            return x
        return self.body(x).flatten(1)


def test_untraceable_model_folds_inside_sequential():
    torch.manual_seed(0)
    model = _Untraceable()
    _random_bn(model.body[1])
    model.eval()
    xm, report = make_x_dnn(model, return_report=True)
    assert report.folded_batchnorms == (("body.1", "body.0"),)
    assert any("torch.fx could not trace" in n for n in report.notes)
    assert check_homogeneity(xm, torch.randn(2, 1, 5, 5)).is_homogeneous


def test_original_untouched_unless_inplace():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), _random_bn(nn.BatchNorm2d(2))).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    xm = make_x_dnn(model)
    assert xm is not model
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(model[1], nn.BatchNorm2d) and model[0].bias is not None

    weight = model[0].weight
    same = make_x_dnn(model, inplace=True)
    assert same is model and model[0].bias is None and isinstance(model[1], nn.Identity)
    assert model[0].weight is weight  # folded in place: optimisers keep working


def test_train_mode_batchnorm_uses_running_stats_and_keeps_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), _random_bn(nn.BatchNorm1d(4))).train()
    xm, report = make_x_dnn(model, return_report=True)
    assert any("training mode" in n for n in report.notes)
    assert xm.training
    x = torch.randn(5, 3)
    assert torch.allclose(xm(x), (x @ model[0].weight.T) * _scale(model[1]), atol=1e-5)


def test_unconvertible_parts_warn_or_raise():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Sigmoid(), nn.Linear(4, 2))
    with pytest.warns(NonHomogeneousWarning, match=r"(?s)cannot be made homogeneous.*1 \(LayerNorm\).*2 \(Sigmoid\)"):
        xm, report = make_x_dnn(model, return_report=True)
    assert report.removed_biases == ("0", "3")
    assert len(report.unconverted) == 2
    with pytest.raises(NonHomogeneousError, match=r"2 part\(s\) of Sequential cannot be made homogeneous"):
        make_x_dnn(model, strict=True)
    with pytest.raises(NonHomogeneousError):
        make_x_dnn(model, strict=True, inplace=True)
    assert model[0].bias is not None  # strict failure left the model untouched


def test_replace_activations():
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU6(), nn.Linear(4, 4, bias=False),
                          nn.GELU(), nn.Linear(4, 2, bias=False))
    with pytest.warns(NonHomogeneousWarning):
        make_x_dnn(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xm, report = make_x_dnn(model, replace_activations=True, return_report=True)
    assert report.replaced_activations == ("1", "3")
    assert isinstance(xm[1], nn.ReLU) and isinstance(xm[3], nn.ReLU)
    assert static_findings(xm) == []


def test_bad_input():
    with pytest.raises(TypeError, match="make_x_dnn needs an nn.Module, got function"):
        make_x_dnn(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ChannelScale with 3 channels got an input of shape"):
        ChannelScale(torch.ones(3))(torch.ones(2, 4))
    with pytest.raises(ValueError, match="weight must be 1-D"):
        ChannelScale(torch.ones(2, 2))


# ------------------------------------------------------------------- torchvision
_FAMILIES = {  # name -> input size
    "resnet18": 32,
    "vgg11_bn": 32,
    "alexnet": 63,
    "densenet121": 32,
    "mobilenet_v2": 32,
    "regnet_x_400mf": 32,
    "squeezenet1_0": 32,
    "shufflenet_v2_x0_5": 32,
    "googlenet": 32,
}


@pytest.mark.parametrize("name", list(_FAMILIES))
def test_converted_torchvision_model_is_homogeneous_and_xgradient_equals_ig(name):
    size = _FAMILIES[name]
    kwargs = {"init_weights": False} if name == "googlenet" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            _random_bn(m)
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            nn.init.uniform_(m.bias, 0.1, 0.5)
    model.eval()
    x = torch.rand(2, 3, size, size)
    assert not check_homogeneity(model, x, blame=False).is_homogeneous
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonHomogeneousWarning)  # everything is convertible
        xm = make_x_dnn(model, inplace=True, replace_activations=True)
    report = check_homogeneity(xm, x)
    assert report.is_homogeneous, str(report)
    assert report.degree == 1.0
    assert static_findings(xm) == []
    if name in ("resnet18", "alexnet"):
        # float64: float32 rounding at ReLU kinks of these deep, unnormalised stacks makes
        # batched IG differ by up to ~1e-2 relative; in float64 both agree to ~1e-9
        xm, xd, tol = xm.double(), x.double(), 1e-5
    else:  # float32 (float64 depthwise convolutions are very slow on CPU), one example
        xd, tol = x[:1], 1e-4
    xg = XGradient(xm).attribute(xd, target=3)
    ig = IntegratedGradients(xm).attribute(xd, target=3, n_steps=4)
    assert float((xg - ig).abs().max()) <= tol * float(ig.abs().max())
