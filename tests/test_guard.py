"""The default guard uses the certificate: every silent-wrong-number case now warns or raises.

Each warning is shown to be deserved by measuring the attribution against Captum's
(Layer)IntegratedGradients; each proof by the absence of a warning and agreement with IG.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerIntegratedGradients, NoiseTunnel
from torch import Tensor, nn

from captum_xgrad import LayerXGradient, NonHomogeneousWarning, XGradient, certify_homogeneity, make_x_dnn
from captum_xgrad.models import xalexnet, xfixup_resnet18, xvgg11

from _models import TwoBranchProduct, max_rel_diff


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _no_warning(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonHomogeneousWarning)
        return fn()


def _warns(fn, match: str = ""):
    with pytest.warns(NonHomogeneousWarning, match=match) as rec:
        out = fn()
    return out, rec


class Normalized(nn.Module):
    def __init__(self, net: nn.Module, mean, std) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean) / self.std)


def _xresnet18() -> nn.Module:
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_x_dnn(tv.models.resnet18(num_classes=10).eval())


class FnNet(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(1, 4, 3, bias=False)
        self.fc1 = nn.Linear(6, 8, bias=False)
        self.fc2 = nn.Linear(8, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "gelu":
            return F.gelu(self.conv(x)).mean((2, 3))
        if self.kind == "clamp":
            return self.fc2(torch.clamp(self.fc1(x), 0, 1))
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x) - 0.5)))


class TwoBranchSum(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 6, bias=False)
        self.b = nn.Linear(4, 6, bias=False)
        self.head = nn.Linear(6, 3, bias=False)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.head(F.relu(self.a(x1) + self.b(x2)))


# ------------------------------------------------------------ the table's rows
@pytest.mark.parametrize("kind,x", [
    ("gelu", torch.rand(3, 1, 6, 6)),
    ("clamp", torch.randn(3, 6) * 3),
    ("sigmoid", torch.randn(3, 6)),
])
def test_functional_code_in_forward_now_warns(kind, x):
    torch.manual_seed(0)
    model = FnNet(kind).eval()
    (attr, _), rec = (_warns(lambda: (XGradient(model).attribute(x, target=0), None), "not nonnegatively homogeneous"))
    ig = IntegratedGradients(model).attribute(x, target=0, n_steps=64)
    assert _rel(attr, ig) > 1e-3  # the warning is deserved
    text = str(rec[0].message)
    assert {"gelu": "gelu", "clamp": "clamp", "sigmoid": "sub"}[kind] in text


def test_normalize_wrapper_warns_and_names_the_centre():
    model = Normalized(_xresnet18(), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).eval()
    x = torch.rand(2, 3, 32, 32)
    (attr, _), rec = _warns(lambda: (XGradient(model).attribute(x, target=1), None))
    assert "mean" in str(rec[0].message)
    ig = IntegratedGradients(model).attribute(x, target=1, n_steps=64)
    assert _rel(attr, ig) > 0.1


def test_degree_mismatch_raises_naming_the_proved_degree():
    torch.manual_seed(0)
    model = TwoBranchProduct().eval()
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match=r"degree 2.*auto"):
        XGradient(model).attribute(x, target=0)
    with pytest.raises(ValueError, match="degree 1"):
        XGradient(nn.Linear(6, 2, bias=False), degree=2).attribute(x, target=0)
    ok = XGradient(model, degree=2).attribute(x, target=0)
    ig = IntegratedGradients(model).attribute(x, target=0, n_steps=64)
    assert _rel(ok, ig) < 1e-4


def test_auto_degree_on_a_proved_model_takes_one_forward_pass():
    torch.manual_seed(0)
    model = TwoBranchProduct().eval()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    xg = XGradient(model, degree="auto")
    x = torch.randn(4, 6)
    for _ in range(2):
        calls.clear()
        xg.attribute(x, target=0)
        assert calls == [1]
    assert xg.last_degree == 2.0


def test_one_forward_pass_per_call_including_the_first_with_the_default_guard():
    model = xvgg11(num_classes=5).eval()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    xg = XGradient(model)
    x = torch.rand(1, 3, 32, 32)
    for _ in range(3):
        calls.clear()
        _no_warning(lambda: xg.attribute(x, target=0))
        assert calls == [1]


def test_untraceable_model_falls_back_to_the_empirical_check():
    class Untraceable(nn.Module):
        def __init__(self, bias: bool) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2, bias=bias)

        def forward(self, x):
            if x.sum() > -1e9:  # data-dependent control flow: fx cannot trace it
                x = torch.tanh(x) if self.fc.bias is not None else x
            return self.fc(F.relu(x))

    torch.manual_seed(0)
    x = torch.randn(3, 4)
    assert certify_homogeneity(Untraceable(True), x).status == "unknown"
    _warns(lambda: XGradient(Untraceable(True).eval()).attribute(x, target=0), "could not be proved")
    _no_warning(lambda: XGradient(Untraceable(False).eval()).attribute(x, target=0))


def test_proof_is_invalidated_by_an_optimizer_step_and_by_mode_changes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 2, bias=False)).eval()
    nn.init.zeros_(model[1].bias)
    x = torch.rand(2, 1, 6, 6)
    xg = XGradient(model)
    _no_warning(lambda: xg.attribute(x, target=0))
    with torch.no_grad():
        model[1].bias.add_(0.5)  # as an optimizer step would
    _warns(lambda: xg.attribute(x, target=0), "shift")
    with torch.no_grad():
        model[1].bias.zero_()
    _no_warning(lambda: xg.attribute(x, target=0))
    model.train()
    _warns(lambda: xg.attribute(x, target=0), "training mode")
    assert model.training  # and the mode is left as it was


ZOO = [
    ("xalexnet", lambda: xalexnet(num_classes=10)),
    ("xvgg11", lambda: xvgg11(num_classes=10)),
    ("xfixup_resnet18", lambda: xfixup_resnet18(num_classes=10)),
]


@pytest.mark.parametrize("name,build", ZOO)
def test_no_warning_on_zoo_models(name, build):
    model = build().eval()
    x = torch.rand(1, 3, 64, 64)
    _no_warning(lambda: XGradient(model).attribute(x, target=0))
    assert certify_homogeneity(model, x).proved


@pytest.mark.parametrize("arch", ["resnet18", "vgg11_bn", "alexnet", "densenet121", "mobilenet_v2", "squeezenet1_0"])
def test_no_warning_on_converted_torchvision_models(arch):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = getattr(tv.models, arch)(num_classes=10).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_model = make_x_dnn(model, replace_activations=True)
    x = torch.rand(1, 3, 64, 64)
    cert = certify_homogeneity(x_model, x)
    assert cert.proved, str(cert)
    _no_warning(lambda: XGradient(x_model).attribute(x, target=0))


# ------------------------------------------------------------------- layers
def test_layer_inside_a_residual_block_warns_and_is_wrong():
    model = xfixup_resnet18(num_classes=10).eval()
    torch.manual_seed(0)
    for p in model.parameters():  # Fixup starts with zero residual branches: give them weight
        if p.dim() > 1:
            nn.init.normal_(p, std=0.1)
    x = torch.rand(2, 3, 32, 32)
    layer = model.layer1[0].conv2
    (attr, _), rec = _warns(lambda: (LayerXGradient(model, layer).attribute(x, target=0), None), "layer1.0")
    assert "exact" in str(rec[0].message)
    lig = LayerIntegratedGradients(model, layer).attribute(x, target=0, n_steps=64)
    assert _rel(attr, lig) > 1e-2


def test_layer_on_one_branch_of_two_inputs_warns_and_is_wrong():
    torch.manual_seed(0)
    model = TwoBranchSum().eval()
    x = (torch.randn(4, 5), torch.randn(4, 4))
    (attr, _), rec = _warns(lambda: (LayerXGradient(model, model.a).attribute(x, target=0), None), "bypass")
    lig = LayerIntegratedGradients(model, model.a).attribute(x, target=0, n_steps=64)
    assert _rel(attr, lig) > 1e-2


def test_layer_on_a_biased_mlp_warns_and_is_wrong():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(4, 5)
    (attr, _), rec = _warns(lambda: (LayerXGradient(model, model[1]).attribute(x, target=0), None), "bias")
    lig = LayerIntegratedGradients(model, model[1]).attribute(x, target=0, n_steps=64)
    assert _rel(attr, lig) > 1e-2


def _resnet_with_weights():
    model = xfixup_resnet18(num_classes=10).eval()
    torch.manual_seed(0)
    for p in model.parameters():
        if p.dim() > 1:
            nn.init.normal_(p, std=0.1)
    return model


@pytest.mark.parametrize("path", ["relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"])
def test_layer_equals_layer_ig_on_cut_layers(path):
    model = _resnet_with_weights()
    layer = model.get_submodule(path)
    x = torch.rand(2, 3, 32, 32)
    to_input = path == "fc"  # the classifier's input
    attr = _no_warning(lambda: LayerXGradient(model, layer).attribute(x, target=3, attribute_to_layer_input=to_input))
    lig = LayerIntegratedGradients(model, layer).attribute(x, target=3, n_steps=64, attribute_to_layer_input=to_input)
    assert _rel(attr, lig) < 1e-3


@pytest.mark.parametrize("path", ["layer1.0.conv2", "layer1.1.conv2", "layer2.0.conv2", "layer2.1.conv2", "layer3.0.downsample", "layer4.1.conv2"])
def test_layer_inside_blocks_warns_and_the_warning_is_deserved(path):
    model = _resnet_with_weights()
    layer = model.get_submodule(path)
    x = torch.rand(2, 3, 32, 32)
    attr, rec = _warns(lambda: LayerXGradient(model, layer).attribute(x, target=3))
    block = ".".join(path.split(".")[:2])
    assert block in str(rec[0].message)
    lig = LayerIntegratedGradients(model, layer).attribute(x, target=3, n_steps=64)
    assert _rel(attr, lig) > 1e-3
    exact = _no_warning(lambda: LayerXGradient(model, model.get_submodule(block)).attribute(x, target=3))
    lig_block = LayerIntegratedGradients(model, model.get_submodule(block)).attribute(x, target=3, n_steps=64)
    assert _rel(exact, lig_block) < 1e-3


# ---------------------------------------------------------------- baselines
def test_normalized_resnet_with_mean_baseline_equals_ig():
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    model = Normalized(_xresnet18(), mean, std).eval()
    x = torch.rand(2, 3, 32, 32)
    b = model.mean.expand(1, 3, 32, 32)
    attr, delta = _no_warning(lambda: XGradient(model).attribute(x, baselines=b, target=1, return_convergence_delta=True))
    ig = IntegratedGradients(model).attribute(x, baselines=b, target=1, n_steps=64)
    assert max_rel_diff(attr, ig) <= 1e-4
    assert float(delta.abs().max()) < 1e-4 * float(model(x)[:, 1].abs().max())
    cert = certify_homogeneity(model, x)
    assert torch.allclose(cert.centre, b)


def test_normalize_wrapper_with_zero_baseline_is_refused_naming_mean():
    model = Normalized(_xresnet18(), [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]).eval()
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="mean"):
        XGradient(model).attribute(x, baselines=0, target=0)
    with pytest.raises(ValueError, match="not homogeneous about the given baselines"):
        XGradient(model).attribute(x, baselines=0.25, target=0)


class Shifted(nn.Module):
    """A bias-free MLP of x - c: homogeneous about c (and with d, f(c) = d != 0)."""

    def __init__(self, c: Tensor, d: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("c", c)
        self.d = d
        self.net = nn.Sequential(nn.Linear(5, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x - self.c) + self.d


@pytest.mark.parametrize("mult", [True, False])
def test_shifted_mlp_with_its_offset_as_baseline(mult):
    torch.manual_seed(0)
    c = torch.randn(5)
    model = Shifted(c).eval()
    x = torch.randn(4, 5)
    attr = XGradient(model, multiply_by_inputs=mult).attribute(x, baselines=c.unsqueeze(0), target=2)
    ig = IntegratedGradients(model, multiply_by_inputs=mult).attribute(x, baselines=c.unsqueeze(0), target=2, n_steps=64)
    assert max_rel_diff(attr, ig) <= 1e-4


def test_per_example_baselines_and_create_graph():
    torch.manual_seed(0)
    c = torch.randn(5)
    model = Shifted(c).eval()
    x = torch.randn(4, 5)
    b = c.expand(4, 5).clone()
    attr = XGradient(model).attribute(x, baselines=b, target=[0, 1, 2, 0], create_graph=True)
    ig = IntegratedGradients(model).attribute(x, baselines=b, target=[0, 1, 2, 0], n_steps=64)
    assert max_rel_diff(attr.detach(), ig) <= 1e-4
    assert attr.requires_grad
    attr.sum().backward()
    assert model.net[0].weight.grad is not None
    # a per-example baseline that is not the centre everywhere is refused
    b2 = b.clone()
    b2[2] += 1.0
    with pytest.raises(ValueError, match="not homogeneous about"):
        XGradient(model).attribute(x, baselines=b2, target=0)


def test_baseline_with_nonzero_output_is_refused():
    torch.manual_seed(0)
    c = torch.randn(5)
    model = Shifted(c, d=0.7).eval()
    with pytest.raises(ValueError, match=r"f\(baseline\) != 0"):
        XGradient(model).attribute(torch.randn(3, 5), baselines=c.unsqueeze(0), target=0)


def test_baseline_the_model_is_not_homogeneous_about_is_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False)).eval()
    with pytest.raises(ValueError, match="not homogeneous about the given baselines"):
        XGradient(model).attribute(torch.randn(3, 5), baselines=0.3, target=0)


class TwoInputCentred(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("m", torch.tensor([0.2, -0.1, 0.4]))
        self.a = nn.Linear(3, 6, bias=False)
        self.b = nn.Linear(4, 6, bias=False)
        self.head = nn.Linear(6, 2, bias=False)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.head(F.relu(self.a(x1 - self.m)) + F.relu(self.b(x2)))


def test_tuple_inputs_one_centred_one_zero():
    torch.manual_seed(0)
    model = TwoInputCentred().eval()
    x = (torch.randn(4, 3), torch.randn(4, 4))
    bl = (model.m.unsqueeze(0), 0)
    attr = _no_warning(lambda: XGradient(model).attribute(x, baselines=bl, target=1))
    ig = IntegratedGradients(model).attribute(x, baselines=bl, target=1, n_steps=64)
    for a, i in zip(attr, ig):
        assert max_rel_diff(a, i) <= 1e-4
    with pytest.raises(ValueError):
        XGradient(model).attribute(x, baselines=(0, 0), target=1)


def test_noise_tunnel_passes_the_baseline_through():
    torch.manual_seed(0)
    c = torch.randn(5)
    model = Shifted(c).eval()
    x = torch.randn(3, 5)
    b = c.unsqueeze(0)
    torch.manual_seed(1)
    got = NoiseTunnel(XGradient(model)).attribute(x, baselines=b, nt_type="smoothgrad", nt_samples=4, stdevs=0.1, target=0)
    torch.manual_seed(1)
    ref = NoiseTunnel(IntegratedGradients(model)).attribute(x, baselines=b, nt_type="smoothgrad", nt_samples=4, stdevs=0.1, target=0, n_steps=64)
    assert max_rel_diff(got, ref) <= 1e-4


def test_baseline_verdict_is_cached_per_baseline():
    torch.manual_seed(0)
    c = torch.randn(5)
    model = Shifted(c).eval()
    xg = XGradient(model)
    x = torch.randn(3, 5)
    xg.attribute(x, baselines=c.unsqueeze(0), target=0)
    with pytest.raises(ValueError):
        xg.attribute(x, baselines=c.unsqueeze(0) + 1, target=0)
    xg.attribute(x, baselines=c.unsqueeze(0), target=0)


@pytest.mark.parametrize("name", __import__("captum_xgrad").models.list_models(homogeneous_only=True))
def test_every_zoo_model_is_proved_and_the_guard_is_silent(name):
    from captum_xgrad import models

    model = models.get_model(name, num_classes=10).eval()
    x = torch.rand(1, 3, 64, 64)
    cert = certify_homogeneity(model, x)
    assert cert.proved and cert.degree == 1.0, str(cert)
    xg = XGradient(model)
    assert _no_warning(lambda: xg._guard.verify(model, (x,), None, 0, xg.degree)) == 1.0


@pytest.mark.parametrize("build,path,to_input", [
    (lambda: xalexnet(num_classes=10), "features", False),
    (lambda: xalexnet(num_classes=10), "avgpool", False),
    (lambda: xalexnet(num_classes=10), "classifier", True),
    (lambda: xvgg11(num_classes=10), "features", False),
    (lambda: xvgg11(num_classes=10), "classifier.6", True),
])
def test_cut_layers_of_alexnet_and_vgg_equal_layer_ig(build, path, to_input):
    torch.manual_seed(0)
    model = build().eval()
    layer = model.get_submodule(path)
    x = torch.rand(2, 3, 64, 64)
    attr = _no_warning(lambda: LayerXGradient(model, layer).attribute(x, target=2, attribute_to_layer_input=to_input))
    lig = LayerIntegratedGradients(model, layer).attribute(x, target=2, n_steps=64, attribute_to_layer_input=to_input)
    assert _rel(attr, lig) < 1e-3


def test_metrics_and_visualization_with_a_baseline():
    from captum.attr import visualization as viz
    from captum.metrics import infidelity, sensitivity_max

    torch.manual_seed(0)
    model = Normalized(nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2, bias=False)),
                       [0.5, 0.4, 0.3], [0.2, 0.2, 0.2]).eval()
    x = torch.rand(2, 3, 8, 8)
    b = certify_homogeneity(model, x).centre
    xg = XGradient(model)
    sens = sensitivity_max(xg.attribute, x, baselines=b, target=0, n_perturb_samples=2)
    ig = IntegratedGradients(model)
    torch.manual_seed(3)
    sens_ig = sensitivity_max(ig.attribute, x, baselines=b, target=0, n_perturb_samples=2, n_steps=64)
    assert sens.shape == (2,) and torch.isfinite(sens).all() and sens_ig.shape == (2,)
    attr = xg.attribute(x, baselines=b, target=0)

    def perturb(inputs):
        noise = torch.randn_like(inputs) * 0.01
        return noise, inputs - noise

    infid = infidelity(model, perturb, x, attr, target=0, n_perturb_samples=4)
    assert infid.shape == (2,) and torch.isfinite(infid).all()
    import matplotlib

    matplotlib.use("Agg")
    fig, _ = viz.visualize_image_attr(attr[0].permute(1, 2, 0).numpy(), x[0].permute(1, 2, 0).numpy(), method="heat_map", sign="all", use_pyplot=False)
    assert fig is not None
