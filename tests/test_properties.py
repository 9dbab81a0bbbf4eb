"""Property-based tests: random homogeneous architectures, XGradient == IG.

Hypothesis draws the architecture (MLP or CNN, depth, widths, max/avg pooling,
residual additions, LeakyReLU slopes, a multiplicative second branch of degree 2,
number of outputs, batch size) and checks XGradient against Captum's
IntegratedGradients and against completeness. Two mutation tests show the property
catches the classic bugs: dropping ``1/degree`` and dropping the input product.
"""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from captum.attr import IntegratedGradients
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from captum_xgrad import XGradient

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)


class _Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


class _Product(nn.Module):
    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return self.a(x) * self.b(x)


def _act(slope: float) -> nn.Module:
    return nn.ReLU() if slope == 0.0 else nn.LeakyReLU(slope)


@st.composite
def architectures(draw):
    kind = draw(st.sampled_from(["mlp", "cnn"]))
    depth = draw(st.integers(1, 3))
    widths = draw(st.lists(st.integers(2, 6), min_size=depth, max_size=depth))
    slopes = draw(st.lists(st.sampled_from([0.0, 0.01, 0.2, 0.5]), min_size=depth, max_size=depth))
    residual = draw(st.lists(st.booleans(), min_size=depth, max_size=depth))
    pool = draw(st.sampled_from(["none", "max", "avg"]))
    n_out = draw(st.integers(1, 4))
    product = draw(st.booleans())
    batch = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 10_000))
    return dict(kind=kind, widths=widths, slopes=slopes, residual=residual, pool=pool,
                n_out=n_out, product=product, batch=batch, seed=seed)


def _branch(spec, in_features):
    layers = []
    if spec["kind"] == "mlp":
        prev = in_features
        for w, s, r in zip(spec["widths"], spec["slopes"], spec["residual"]):
            if r and prev == w:
                layers.append(_Residual(nn.Sequential(nn.Linear(w, w, bias=False), _act(s))))
            else:
                layers += [nn.Linear(prev, w, bias=False), _act(s)]
            prev = w
        layers.append(nn.Linear(prev, spec["n_out"], bias=False))
    else:
        prev = 1
        for w, s, r in zip(spec["widths"], spec["slopes"], spec["residual"]):
            layers += [nn.Conv2d(prev, w, 3, padding=1, bias=False), _act(s)]
            if r:
                layers.append(_Residual(nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), _act(s))))
            prev = w
        if spec["pool"] == "max":
            layers.append(nn.MaxPool2d(2))
        elif spec["pool"] == "avg":
            layers.append(nn.AvgPool2d(2))
        side = 3 if spec["pool"] != "none" else 6
        layers += [nn.Flatten(), nn.Linear(prev * side * side, spec["n_out"], bias=False)]
    return nn.Sequential(*layers)


def _build(spec):
    torch.manual_seed(spec["seed"])
    in_features = 5
    model = _branch(spec, in_features)
    if spec["product"]:
        model = _Product(model, _branch(spec, in_features))
    model = model.double().eval()
    shape = (spec["batch"], in_features) if spec["kind"] == "mlp" else (spec["batch"], 1, 6, 6)
    x = torch.randn(*shape, dtype=torch.float64)
    degree = 2 if spec["product"] else 1
    target = None if spec["n_out"] == 1 else spec["seed"] % spec["n_out"]
    return model, x, degree, target


def _check(spec):
    model, x, degree, target = _build(spec)
    attr = XGradient(model, degree=degree, check="off").attribute(x, target=target)
    ig = IntegratedGradients(model).attribute(x, target=target, n_steps=8)
    scale = max(float(ig.abs().max()), 1e-12)
    assert float((attr - ig).abs().max()) <= 1e-6 * scale, "XGradient != IG"
    with torch.no_grad():
        out = model(x)
        out = out[:, target] if target is not None else out.reshape(-1)
    sums = attr.reshape(attr.shape[0], -1).sum(1)
    assert torch.allclose(sums, out, rtol=1e-8, atol=1e-10), "completeness violated"


@SETTINGS
@given(architectures())
def test_random_homogeneous_architectures(spec):
    _check(spec)


def _drop_degree(self, used_chunks, grads_chunks, degree, create_graph, offsets=None):
    return tuple(
        torch.cat([u[i].detach() * g[i].detach() for u, g in zip(used_chunks, grads_chunks)])
        for i in range(len(used_chunks[0]))
    )


def _drop_input_product(self, used_chunks, grads_chunks, degree, create_graph, offsets=None):
    return tuple(
        torch.cat([g[i].detach() / degree for g in grads_chunks])
        for i in range(len(used_chunks[0]))
    )


@pytest.mark.parametrize("mutant", [_drop_degree, _drop_input_product])
def test_property_catches_mutants(mutant):
    @SETTINGS
    @given(architectures())
    def prop(spec):
        _check(spec)

    with mock.patch.object(XGradient, "_combine", mutant):
        with pytest.raises(AssertionError, match="XGradient != IG|completeness violated"):
            prop()
