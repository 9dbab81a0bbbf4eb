"""XGradient works with the rest of Captum, and with PyTorch wrappers, unchanged."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from captum.attr import IntegratedGradients, NoiseTunnel
from captum.attr import visualization as viz
from captum.metrics import infidelity, sensitivity_max
from torch import nn

from _models import build, max_rel_diff
from captum_xgrad import XGradient


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel_matches_ig(nt_type):
    model, (x,), _, target = build("cnn_max")
    torch.manual_seed(123)
    xg = NoiseTunnel(XGradient(model, check="off")).attribute(
        x, nt_type=nt_type, nt_samples=5, stdevs=0.1, target=target
    )
    torch.manual_seed(123)
    ig = NoiseTunnel(IntegratedGradients(model)).attribute(
        x, nt_type=nt_type, nt_samples=5, stdevs=0.1, target=target, n_steps=64
    )
    assert xg.shape == x.shape
    assert max_rel_diff(xg, ig) <= 1e-3


def test_noise_tunnel_with_delta_and_batching():
    model, (x,), _, target = build("mlp")
    torch.manual_seed(0)
    attr, delta = NoiseTunnel(XGradient(model, check="off")).attribute(
        x, nt_type="smoothgrad", nt_samples=4, nt_samples_batch_size=2, target=target,
        return_convergence_delta=True,
    )
    assert attr.shape == x.shape
    assert delta.shape == (4 * x.shape[0],)
    assert float(delta.abs().max()) < 1e-4


def _perturb(inputs):
    noise = torch.randn_like(inputs) * 0.05
    return noise, inputs - noise


def test_infidelity_same_as_for_ig():
    model, (x,), _, target = build("cnn_avg")
    a_xg = XGradient(model, check="off").attribute(x, target=target)
    a_ig = IntegratedGradients(model).attribute(x, target=target, n_steps=64)
    torch.manual_seed(7)
    inf_xg = infidelity(model, _perturb, x, a_xg, target=target, n_perturb_samples=8)
    torch.manual_seed(7)
    inf_ig = infidelity(model, _perturb, x, a_ig, target=target, n_perturb_samples=8)
    assert inf_xg.shape == (x.shape[0],)
    assert torch.allclose(inf_xg, inf_ig, rtol=1e-3, atol=1e-7)


def test_sensitivity_max_same_as_for_ig():
    model, (x,), _, target = build("mlp")
    torch.manual_seed(3)
    s_xg = sensitivity_max(XGradient(model, check="off").attribute, x, target=target, n_perturb_samples=4)
    torch.manual_seed(3)
    s_ig = sensitivity_max(IntegratedGradients(model).attribute, x, target=target, n_perturb_samples=4)
    assert s_xg.shape == (x.shape[0],)
    assert torch.allclose(s_xg, s_ig, rtol=1e-3, atol=1e-6)


def test_visualize_image_attr():
    model, (x,), _, target = build("cnn_max")
    attr = XGradient(model, check="off").attribute(x, target=target)
    img = x[0].permute(1, 2, 0).numpy()
    a = attr[0].permute(1, 2, 0).numpy()
    for method, sign in [("heat_map", "all"), ("blended_heat_map", "absolute_value")]:
        fig, ax = viz.visualize_image_attr(a, img, method=method, sign=sign, use_pyplot=False)
        assert fig is not None and ax is not None


def test_dataparallel():
    model, (x,), _, target = build("resnet_block")
    dp = nn.DataParallel(model)
    a = XGradient(dp, check="off").attribute(x, target=target)
    b = XGradient(model, check="off").attribute(x, target=target)
    assert torch.allclose(a, b, atol=1e-6)


def test_torch_compile():
    torch._dynamo.reset()
    model, (x,), _, target = build("mlp")
    compiled = torch.compile(model)
    a = XGradient(compiled, check="off").attribute(x, target=target)
    ig = IntegratedGradients(model).attribute(x, target=target, n_steps=32)
    assert max_rel_diff(a, ig) <= 1e-4
    torch._dynamo.reset()


def test_autocast_bfloat16():
    model, (x,), _, target = build("cnn_avg")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = XGradient(model, check="off").attribute(x, target=target)
        ig = IntegratedGradients(model).attribute(x, target=target, n_steps=16)
    assert a.dtype == x.dtype
    exact = XGradient(model, check="off").attribute(x, target=target)
    assert max_rel_diff(a, exact) <= 5e-2  # bf16 has ~3 significant digits
    assert max_rel_diff(a, ig) <= 5e-2


def test_float64():
    model, (x,), _, target = build("cnn_max", dtype=torch.float64)
    a = XGradient(model, check="off").attribute(x, target=target)
    assert a.dtype == torch.float64
    with torch.no_grad():
        out = model(x)[:, target]
    assert torch.allclose(a.sum(dim=(1, 2, 3)), out, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    model, (x,), _, target = build("resnet_block")
    cpu = XGradient(model, check="off").attribute(x, target=target)
    gpu = XGradient(model.cuda(), check="off").attribute(x.cuda(), target=target)
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)
