"""Small models with known homogeneity degree, and reference attributions.

Shared by the core test modules. Every model here is built without biases, so it is
nonnegatively homogeneous of the degree stated in ``DEGREE``; ``biased_mlp`` is the
counter-example.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import numpy as np
import torch
from torch import Tensor, nn


class Residual(nn.Module):
    """x + conv(relu(conv(x))), all bias-free: degree 1."""

    def __init__(self, channels: int, slope: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.act = nn.LeakyReLU(slope) if slope else nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class TwoBranchProduct(nn.Module):
    """Elementwise product of two degree-1 branches: degree 2."""

    def __init__(self, d_in: int = 6, d_out: int = 3) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Linear(d_in, 8, bias=False), nn.ReLU(), nn.Linear(8, d_out, bias=False))
        self.b = nn.Sequential(nn.Linear(d_in, 8, bias=False), nn.LeakyReLU(0.2), nn.Linear(8, d_out, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.a(x) * self.b(x)


class TwoInput(nn.Module):
    """f(x1, x2) = head(relu(A x1) + relu(B conv(x2))): degree 1 jointly."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 8, bias=False)
        self.conv = nn.Conv2d(1, 2, 3, bias=False)
        self.b = nn.Linear(2 * 4 * 4, 8, bias=False)
        self.head = nn.Linear(8, 4, bias=False)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        h = torch.relu(self.a(x1)) + torch.relu(self.b(torch.relu(self.conv(x2)).flatten(1)))
        return self.head(h)


class WithExtraArgs(nn.Module):
    """f(x, gate, power) = (mlp(x) * gate) with a python-int argument; degree 1 in x."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(5, 7, bias=False), nn.ReLU(), nn.Linear(7, 3, bias=False))

    def forward(self, x: Tensor, gate: Tensor, repeat: int) -> Tensor:
        out = self.mlp(x) * gate
        for _ in range(repeat - 1):
            out = out + self.mlp(x) * gate
        return out


class SingleOutput(nn.Module):
    """One output per example, shape (N,) (``squeeze``) or (N, 1)."""

    def __init__(self, squeeze: bool) -> None:
        super().__init__()
        self.squeeze = squeeze
        self.net = nn.Sequential(nn.Linear(5, 6, bias=False), nn.ReLU(), nn.Linear(6, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x)
        return out.squeeze(1) if self.squeeze else out


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(5, 16, bias=False), nn.ReLU(), nn.Linear(16, 16, bias=False),
        nn.LeakyReLU(0.1), nn.Linear(16, 4, bias=False),
    )


def cnn_max() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, 5, bias=False),
    )


def cnn_avg() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.LeakyReLU(0.3), nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(6, 5, bias=False),
    )


def resnet_block() -> nn.Module:
    bn = nn.BatchNorm2d(3, affine=True)
    with torch.no_grad():  # eval-mode BatchNorm without shift: a pure per-channel scale
        bn.running_mean.zero_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.zero_()
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False), bn, nn.ReLU(), Residual(3), Residual(3, 0.2),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 4 * 4, 5, bias=False),
    )


def biased_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 4))


# name -> (builder, input factory, degree, target)
CASES: Dict[str, Tuple[Callable[[], nn.Module], Callable[[int], Tuple[Tensor, ...]], int, object]] = {
    "mlp": (mlp, lambda n: (torch.randn(n, 5),), 1, 2),
    "cnn_max": (cnn_max, lambda n: (torch.randn(n, 1, 8, 8),), 1, 1),
    "cnn_avg": (cnn_avg, lambda n: (torch.randn(n, 1, 8, 8),), 1, 3),
    "resnet_block": (resnet_block, lambda n: (torch.randn(n, 1, 8, 8),), 1, 0),
    "two_branch_product": (TwoBranchProduct, lambda n: (torch.randn(n, 6),), 2, 1),
    "two_input": (TwoInput, lambda n: (torch.randn(n, 5), torch.randn(n, 1, 6, 6)), 1, 2),
    "single_output_n": (lambda: SingleOutput(True), lambda n: (torch.randn(n, 5),), 1, None),
    "single_output_n1": (lambda: SingleOutput(False), lambda n: (torch.randn(n, 5),), 1, None),
}


def build(name: str, seed: int = 0, dtype: torch.dtype = torch.float32):
    """Return (model in eval mode, inputs tuple, degree, target) for a named case."""
    builder, make_inputs, degree, target = CASES[name]
    torch.manual_seed(seed)
    model = builder().eval().to(dtype)
    inputs = tuple(x.to(dtype) for x in make_inputs(4))
    return model, inputs, degree, target


def max_rel_diff(a, b) -> float:
    """max |a - b| / max |b| over a tensor or a tuple of tensors."""
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    num = max(float((x - y).abs().max()) for x, y in zip(a, b))
    den = max(float(y.abs().max()) for y in b)
    return num / max(den, 1e-30)


def reference_ig_float64(model, inputs: Tuple[Tensor, ...], target, n_steps: int = 64,
                         additional_forward_args=None) -> Tuple[Tensor, ...]:
    """Independent IG with the zero baseline: Gauss-Legendre on [0, 1] in float64.

    Written without Captum (Captum rounds its quadrature weights to float32, which
    limits its float64 accuracy to ~1e-9), so that float64 tests can ask for 1e-10.
    """
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    alphas = (nodes + 1.0) / 2.0
    weights = weights / 2.0
    total = [torch.zeros_like(x) for x in inputs]
    extra = () if additional_forward_args is None else tuple(additional_forward_args)
    for alpha, w in zip(alphas.tolist(), weights.tolist()):
        scaled = tuple((alpha * x).detach().requires_grad_(True) for x in inputs)
        out = model(*scaled, *extra)
        if target is not None:
            out = out[:, target]
        grads = torch.autograd.grad(out.sum(), scaled)
        for t, g in zip(total, grads):
            t += w * g
    return tuple(x * t for x, t in zip(inputs, total))


def snapshot_model(model: nn.Module):
    """Everything attribution must leave unchanged: state, grads, modes, hooks, requires_grad."""
    return (
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()},
        {n: m.training for n, m in model.named_modules()},
        {n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
         for n, m in model.named_modules()},
        {n: p.requires_grad for n, p in model.named_parameters()},
    )


def assert_same_snapshot(a, b) -> None:
    """Assert two :func:`snapshot_model` results are equal, naming what differs."""
    sd_a, grads_a, modes_a, hooks_a, rg_a = a
    sd_b, grads_b, modes_b, hooks_b, rg_b = b
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    for k in grads_a:
        assert (grads_a[k] is None) == (grads_b[k] is None), k
        if grads_a[k] is not None:
            assert torch.equal(grads_a[k], grads_b[k]), k
    assert modes_a == modes_b
    assert hooks_a == hooks_b
    assert rg_a == rg_b
