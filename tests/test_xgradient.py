"""XGradient against Captum's IntegratedGradients, closed forms and bad inputs."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from _models import (
    assert_same_snapshot,
    CASES,
    WithExtraArgs,
    biased_mlp,
    build,
    max_rel_diff,
    mlp,
    reference_ig_float64,
    snapshot_model,
)
from captum_xgrad import NonHomogeneousError, XGradient
from captum_xgrad.xgradient import estimate_degree


def _unpack(inputs):
    return inputs if len(inputs) > 1 else inputs[0]


# ------------------------------------------------------------------ agreement with IG
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_captum_ig_float32(name):
    model, inputs, degree, target = build(name)
    xg = XGradient(model, degree=degree, check="off").attribute(_unpack(inputs), target=target)
    ig = IntegratedGradients(model).attribute(_unpack(inputs), target=target, n_steps=128)
    assert max_rel_diff(xg, ig) <= 1e-4


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference_ig_float64(name):
    model, inputs, degree, target = build(name, dtype=torch.float64)
    xg = XGradient(model, degree=degree, check="off").attribute(_unpack(inputs), target=target)
    ref = reference_ig_float64(model, inputs, target)
    xg = xg if isinstance(xg, tuple) else (xg,)
    assert max_rel_diff(xg, ref) <= 1e-10


@pytest.mark.parametrize("name", ["mlp", "cnn_max", "resnet_block", "two_input"])
def test_matches_captum_ig_float64_exact_weights(name):
    # riemann_middle with 64 steps uses weights 1/64, exact in the float32 Captum casts
    # them to; for degree 1 the nodes do not matter, so Captum's IG is exact here too.
    model, inputs, degree, target = build(name, dtype=torch.float64)
    xg = XGradient(model, check="off").attribute(_unpack(inputs), target=target)
    ig = IntegratedGradients(model).attribute(
        _unpack(inputs), target=target, n_steps=64, method="riemann_middle"
    )
    assert max_rel_diff(xg, ig) <= 1e-10


def test_degree_two_float64_against_captum_two_point_gauss():
    # 2-point Gauss-Legendre integrates alpha exactly and its weights (1/2) are exact.
    model, inputs, degree, target = build("two_branch_product", dtype=torch.float64)
    xg = XGradient(model, degree=2, check="off").attribute(inputs[0], target=target)
    ig = IntegratedGradients(model).attribute(inputs[0], target=target, n_steps=2)
    assert max_rel_diff(xg, ig) <= 1e-10


def test_matches_ig_with_additional_forward_args():
    torch.manual_seed(0)
    model = WithExtraArgs().eval()
    x = torch.randn(4, 5)
    gate = torch.rand(4, 3) + 0.5
    args = (gate, 2)
    xg = XGradient(model, check="off").attribute(x, target=1, additional_forward_args=args)
    ig = IntegratedGradients(model).attribute(x, target=1, additional_forward_args=args, n_steps=64)
    assert max_rel_diff(xg, ig) <= 1e-4
    # the gate really is used: a different gate gives a different attribution
    other = XGradient(model, check="off").attribute(x, target=1, additional_forward_args=(gate * 3, 2))
    assert torch.allclose(other, 3 * xg, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "target_form",
    ["int", "tuple", "list", "tensor_n", "tensor_scalar", "list_tuples"],
)
def test_every_captum_target_form(target_form):
    model, (x,), _, _ = build("cnn_max")
    targets = [0, 3, 1, 4]
    target = {
        "int": 2,
        "tuple": (2,),
        "list": targets,
        "tensor_n": torch.tensor(targets),
        "tensor_scalar": torch.tensor(2),
        "list_tuples": [(t,) for t in targets],
    }[target_form]
    xg = XGradient(model, check="off").attribute(x, target=target)
    ig = IntegratedGradients(model).attribute(x, target=target, n_steps=64)
    assert max_rel_diff(xg, ig) <= 1e-4


def test_target_is_not_ignored():
    model, (x,), _, _ = build("mlp")
    xg = XGradient(model, check="off")
    a0, a1 = xg.attribute(x, target=0), xg.attribute(x, target=1)
    assert not torch.allclose(a0, a1)
    # completeness per target pins down which output was attributed
    with torch.no_grad():
        out = model(x)
    assert torch.allclose(a0.sum(1), out[:, 0], atol=1e-5)
    assert torch.allclose(a1.sum(1), out[:, 1], atol=1e-5)


def test_per_example_targets_are_not_mixed_up():
    model, (x,), _, _ = build("mlp")
    targets = [3, 0, 2, 1]
    batch = XGradient(model, check="off").attribute(x, target=targets)
    for i, t in enumerate(targets):
        single = XGradient(model, check="off").attribute(x[i : i + 1], target=t)
        assert torch.allclose(batch[i : i + 1], single, atol=1e-6)


def test_degree_scaling_is_applied():
    # On a degree-2 model, 1/degree matters: degree=1 would be off by a factor 2.
    model, (x,), _, target = build("two_branch_product")
    ig = IntegratedGradients(model).attribute(x, target=target, n_steps=64)
    right = XGradient(model, degree=2, check="off").attribute(x, target=target)
    wrong = XGradient(model, degree=1, check="off").attribute(x, target=target)
    assert max_rel_diff(right, ig) <= 1e-4
    assert torch.allclose(wrong, 2 * right)
    assert max_rel_diff(wrong, ig) > 0.5


def test_multiply_by_inputs_false_matches_ig():
    for name in ["cnn_avg", "two_branch_product"]:
        model, inputs, degree, target = build(name)
        xg = XGradient(model, multiply_by_inputs=False, degree=degree, check="off")
        ig = IntegratedGradients(model, multiply_by_inputs=False)
        assert xg.multiplies_by_inputs is False
        a = xg.attribute(inputs[0], target=target)
        b = ig.attribute(inputs[0], target=target, n_steps=64)
        assert max_rel_diff(a, b) <= 1e-4


def test_closed_form_linear_model():
    # f(x) = w . x: IG = w * x exactly, by hand.
    lin = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[2.0, -1.0, 0.5]]))
    x = torch.tensor([[1.0, 2.0, 4.0]])
    attr = XGradient(lin, check="off").attribute(x)
    assert torch.equal(attr, torch.tensor([[2.0, -2.0, 2.0]]))


def test_closed_form_quadratic():
    # f(x) = (x1 * x2) is homogeneous of degree 2; IG = x1*x2/2 for each input.
    def f(x):
        return (x[:, 0] * x[:, 1]).unsqueeze(1)

    x = torch.tensor([[3.0, 5.0], [-1.0, 2.0]])
    attr = XGradient(f, degree=2).attribute(x)
    assert torch.allclose(attr, torch.tensor([[7.5, 7.5], [-1.0, -1.0]]))


def test_structure_is_preserved():
    model, inputs, _, target = build("two_input")
    out = XGradient(model, check="off").attribute(inputs, target=target)
    assert isinstance(out, tuple) and len(out) == 2
    assert all(o.shape == i.shape and o.dtype == i.dtype for o, i in zip(out, inputs))
    model, (x,), _, target = build("mlp")
    single = XGradient(model, check="off").attribute(x, target=target)
    assert isinstance(single, torch.Tensor)
    one_tuple = XGradient(model, check="off").attribute((x,), target=target)
    assert isinstance(one_tuple, tuple) and len(one_tuple) == 1
    assert torch.equal(one_tuple[0], single)


# ------------------------------------------------------------ n_steps / method / batching
@pytest.mark.parametrize("method", ["gausslegendre", "riemann_left", "riemann_trapezoid"])
@pytest.mark.parametrize("n_steps", [2, 50])
def test_n_steps_and_method_do_not_change_the_result(method, n_steps):
    model, (x,), _, target = build("cnn_avg")
    base = XGradient(model, check="off").attribute(x, target=target)
    other = XGradient(model, check="off").attribute(x, target=target, n_steps=n_steps, method=method)
    assert torch.equal(base, other)


def test_riemann_left_converges_to_xgradient():
    # Riemann-left samples alpha=0, where a bias-free ReLU net has zero gradient, so IG
    # is (1 - 1/n) of the integral; X-Gradient is the limit.
    model, (x,), _, target = build("mlp")
    xg = XGradient(model, check="off").attribute(x, target=target)
    errs = []
    for n in (4, 16, 64):
        ig = IntegratedGradients(model).attribute(x, target=target, n_steps=n, method="riemann_left")
        errs.append(max_rel_diff(ig, xg))
        assert math.isclose(errs[-1], 1.0 / n, rel_tol=1e-3)
    assert errs[0] > errs[1] > errs[2]


@pytest.mark.parametrize("ibs", [1, 3, 4, 100])
def test_internal_batch_size(ibs):
    model, inputs, _, _ = build("two_input")
    targets = [0, 1, 2, 3]
    gate = None
    full = XGradient(model, check="off").attribute(inputs, target=targets)
    chunked = XGradient(model, check="off").attribute(inputs, target=targets, internal_batch_size=ibs)
    for a, b in zip(full, chunked):
        assert torch.allclose(a, b, atol=1e-6)
    del gate


def test_internal_batch_size_splits_additional_args_and_counts_passes():
    torch.manual_seed(1)
    model = WithExtraArgs().eval()
    x, gate = torch.randn(5, 5), torch.rand(5, 3)
    calls = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        a = XGradient(model, check="off").attribute(
            x, target=torch.tensor([0, 1, 2, 0, 1]), additional_forward_args=(gate, 1),
            internal_batch_size=2,
        )
    finally:
        handle.remove()
    assert calls == [2, 2, 1]
    b = XGradient(model, check="off").attribute(
        x, target=torch.tensor([0, 1, 2, 0, 1]), additional_forward_args=(gate, 1)
    )
    assert torch.allclose(a, b, atol=1e-6)


# ----------------------------------------------------------------------- passes
def _count_forwards(model, fn):
    calls = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        fn()
    finally:
        handle.remove()
    return len(calls)


def test_one_forward_pass_per_attribute_call():
    model, (x,), _, target = build("resnet_block")
    xg = XGradient(model)  # default check="static": a structural scan, no forward
    assert _count_forwards(model, lambda: xg.attribute(x, target=target)) == 1
    assert _count_forwards(model, lambda: xg.attribute(x, target=target)) == 1
    assert _count_forwards(
        model, lambda: xg.attribute(x, target=target, return_convergence_delta=True)
    ) == 2
    ig_calls = _count_forwards(
        model, lambda: IntegratedGradients(model).attribute(x, target=target, n_steps=8)
    )
    assert ig_calls == 1  # Captum batches its 8 steps into one call of batch 8N...
    # ...so count examples instead: XGradient sees N examples, IG sees n_steps * N.
    seen = []
    h = model.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    try:
        xg.attribute(x, target=target)
        IntegratedGradients(model).attribute(x, target=target, n_steps=8)
    finally:
        h.remove()
    assert seen == [x.shape[0], 8 * x.shape[0]]


# ----------------------------------------------------------------- convergence delta
def test_convergence_delta_homogeneous_is_zero():
    for name in ["cnn_max", "two_branch_product", "two_input"]:
        model, inputs, degree, target = build(name)
        attr, delta = XGradient(model, degree=degree, check="off").attribute(
            _unpack(inputs), target=target, return_convergence_delta=True
        )
        assert delta.shape == (inputs[0].shape[0],)
        with torch.no_grad():
            out = model(*inputs)[:, target]
        assert float(delta.abs().max()) <= 1e-4 * float(out.abs().max())


def test_convergence_delta_matches_captum_formula_on_biased_model():
    torch.manual_seed(0)
    model = biased_mlp().eval()
    x = torch.randn(6, 5)
    xg = XGradient(model, check="off")
    attr, delta = xg.attribute(x, target=1, return_convergence_delta=True)
    with torch.no_grad():
        expected = attr.sum(1) - (model(x)[:, 1] - model(torch.zeros_like(x))[:, 1])
    assert torch.allclose(delta, expected, atol=1e-6)
    # Captum's own compute_convergence_delta agrees (inherited from GradientAttribution)
    captum_delta = xg.compute_convergence_delta(attr, 0, x, target=1)
    assert torch.allclose(delta, captum_delta, atol=1e-6)
    assert float(delta.abs().max()) > 1e-2  # large on a non-homogeneous model
    assert xg.has_convergence_delta()


# ------------------------------------------------------------------- degree="auto"
@pytest.mark.parametrize("name,degree", [("mlp", 1), ("resnet_block", 1), ("two_branch_product", 2)])
def test_degree_auto(name, degree):
    model, (x,), _, target = build(name)
    xg = XGradient(model, degree="auto", check="off")
    auto = xg.attribute(x, target=target)
    assert xg.last_degree == degree
    explicit = XGradient(model, degree=degree, check="off").attribute(x, target=target)
    assert torch.allclose(auto, explicit)
    # one extra forward pass
    assert _count_forwards(model, lambda: xg.attribute(x, target=target)) == 2


def test_degree_auto_non_integer_degree():
    def f(x):  # degree 1.5
        return x.abs().sum(1, keepdim=True) ** 1.5

    x = torch.rand(3, 4, dtype=torch.float64) + 0.1
    xg = XGradient(f, degree="auto")
    attr = xg.attribute(x)
    assert abs(xg.last_degree - 1.5) < 1e-6
    assert torch.allclose(attr.sum(1), f(x).squeeze(1))


def test_degree_auto_rejects_biased_model():
    torch.manual_seed(0)
    model = biased_mlp().eval()
    with pytest.raises(NonHomogeneousError, match="not nonnegatively homogeneous"):
        XGradient(model, degree="auto", check="off").attribute(torch.randn(4, 5), target=0)


def test_estimate_degree_rejects_zero_outputs():
    z = torch.zeros(3)
    with pytest.raises(NonHomogeneousError, match="all zero"):
        estimate_degree(z, z, z)


# ------------------------------------------------------------------------ create_graph
def test_create_graph_gradients_match_manual_double_backward():
    model, (x,), _, target = build("cnn_avg")
    params = [p for p in model.parameters()]
    attr = XGradient(model, check="off").attribute(x, target=target, create_graph=True)
    assert attr.requires_grad
    loss = attr.abs().sum()
    got = torch.autograd.grad(loss, params)

    xr = x.detach().requires_grad_(True)
    out = model(xr)[:, target].sum()
    (g,) = torch.autograd.grad(out, xr, create_graph=True)
    manual = torch.autograd.grad((xr * g).abs().sum(), params)
    for a, b in zip(got, manual):
        assert torch.allclose(a, b, atol=1e-6)
    assert any(float(t.abs().max()) > 0 for t in got)
    assert all(p.grad is None for p in params)


def test_default_keeps_no_graph():
    model, (x,), _, target = build("mlp")
    xr = x.clone().requires_grad_(True)
    attr = XGradient(model, check="off").attribute(xr, target=target)
    assert not attr.requires_grad and attr.grad_fn is None


def test_create_graph_keeps_graph_to_inputs_that_require_grad():
    model, (x,), _, target = build("mlp")
    xr = x.clone().requires_grad_(True)
    attr = XGradient(model, check="off").attribute(xr, target=target, create_graph=True)
    (gx,) = torch.autograd.grad(attr.sum(), xr)
    # sum(attr) = f(x) for degree 1, so d/dx sum(attr) = grad f(x)
    xr2 = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(xr2)[:, target].sum(), xr2)
    assert torch.allclose(gx, expected, atol=1e-5)


# --------------------------------------------------------------------- no side effects
class _Stateful(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.drop = nn.Dropout(0.0)
        self.fc = nn.Linear(3 * 6 * 6, 4, bias=False)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))


@pytest.mark.parametrize("train_mode", [False, True])
@pytest.mark.parametrize("with_grads", [False, True])
def test_no_side_effects(train_mode, with_grads):
    torch.manual_seed(0)
    model = _Stateful()
    model.train(train_mode)
    model.bn.train(True)  # mixed modes must survive too
    if with_grads:
        model(torch.randn(2, 1, 8, 8)).sum().backward()
    model.fc.register_forward_hook(lambda m, i, o: None)
    before = snapshot_model(model)
    x = torch.randn(3, 1, 8, 8)
    x_rg = x.requires_grad
    for kwargs in ({}, {"return_convergence_delta": True}, {"create_graph": True}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            XGradient(model, degree=1).attribute(x, target=1, **kwargs)
        assert_same_snapshot(before, snapshot_model(model))
        assert x.requires_grad == x_rg and x.grad is None


def test_no_side_effects_when_raising():
    torch.manual_seed(0)
    model = _Stateful().train()
    before = snapshot_model(model)
    x = torch.randn(3, 1, 8, 8)
    with pytest.raises(ValueError, match="out of range"):
        XGradient(model, check="off").attribute(x, target=9)
    assert_same_snapshot(before, snapshot_model(model))
    assert not x.requires_grad


def test_user_tensor_requires_grad_untouched():
    model, (x,), _, target = build("mlp")
    assert not x.requires_grad
    XGradient(model, check="off").attribute(x, target=target)
    assert not x.requires_grad and x.grad is None and x.is_leaf


def test_works_under_no_grad():
    model, (x,), _, target = build("mlp")
    ref = XGradient(model, check="off").attribute(x, target=target)
    with torch.no_grad():
        inside = XGradient(model, check="off").attribute(x, target=target)
    assert torch.equal(ref, inside)


# ------------------------------------------------------------------------ bad inputs
@pytest.fixture
def mlp_case():
    torch.manual_seed(0)
    return mlp().eval(), torch.randn(4, 5)


@pytest.mark.parametrize(
    "baselines",
    [1.0, 0.5 * torch.ones(4, 5), torch.ones(1, 5), (torch.zeros(4, 5) + 1e-3,)],
)
def test_nonzero_baseline_raises(mlp_case, baselines):
    model, x = mlp_case
    with pytest.raises(ValueError, match="non-zero baseline.*IntegratedGradients"):
        XGradient(model, check="off").attribute(x, baselines=baselines, target=0)


@pytest.mark.parametrize("baselines", [None, 0, 0.0, torch.zeros(4, 5), torch.zeros(1, 5), (0,)])
def test_zero_baselines_accepted(mlp_case, baselines):
    model, x = mlp_case
    ref = XGradient(model, check="off").attribute(x, target=0)
    got = XGradient(model, check="off").attribute(x, baselines=baselines, target=0)
    assert torch.equal(ref, got)


def test_nonzero_baseline_in_second_input_is_named():
    model, inputs, _, _ = build("two_input")
    with pytest.raises(ValueError, match="input #1"):
        XGradient(model, check="off").attribute(inputs, baselines=(0, 1.0), target=0)


@pytest.mark.parametrize(
    "target,exc,match",
    [
        (4, ValueError, r"target 4 is out of range .* valid indices are 0\.\.3"),
        (-5, ValueError, "out of range"),
        ([0, 1, 2], ValueError, "list of 3 element"),
        (torch.tensor([0, 1]), ValueError, r"shape \(2,\) but the batch has 4"),
        (torch.tensor([0.0, 1.0, 2.0, 3.0]), TypeError, "integer tensor"),
        (torch.tensor([0, 1, 2, 7]), ValueError, "target 7 is out of range"),
        ([0, 1, 2, 9], ValueError, "out of range"),
        ((0, 1), ValueError, "needs 1"),
        ("cat", TypeError, "target has type str"),
        (None, ValueError, "pass `target`"),
    ],
)
def test_bad_target(mlp_case, target, exc, match):
    model, x = mlp_case
    with pytest.raises(exc, match=match):
        XGradient(model, check="off").attribute(x, target=target)


def test_target_on_single_output_model():
    model, (x,), _, _ = build("single_output_n")
    with pytest.raises(ValueError, match="target=None"):
        XGradient(model, check="off").attribute(x, target=0)


def test_nan_inputs(mlp_case):
    model, x = mlp_case
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN/Inf"):
        XGradient(model, check="off").attribute(x, target=0)


def test_nan_outputs():
    def f(x):
        return torch.log(x - 10.0).sum(1, keepdim=True)  # NaN for x < 10

    with pytest.raises(ValueError, match="NaN/Inf outputs"):
        XGradient(f, check="off").attribute(torch.rand(2, 3))


def test_integer_inputs(mlp_case):
    model, _ = mlp_case
    with pytest.raises(TypeError, match="dtype torch.int64.*float"):
        XGradient(model, check="off").attribute(torch.ones(2, 5, dtype=torch.long), target=0)


def test_batch_size_mismatch():
    model, (x1, x2), _, _ = build("two_input")
    with pytest.raises(ValueError, match="batch size 3 but input #0 has 4"):
        XGradient(model, check="off").attribute((x1, x2[:3]), target=0)


def test_output_without_batch_dimension():
    with pytest.raises(ValueError, match="one row per example"):
        XGradient(lambda x: x.sum(), check="off").attribute(torch.rand(3, 2))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n_steps": 0}, "n_steps must be a positive integer"),
        ({"n_steps": 2.5}, "n_steps must be a positive integer"),
        ({"method": "simpson"}, "method must be one of"),
        ({"internal_batch_size": 0}, "internal_batch_size must be"),
    ],
)
def test_bad_ig_arguments(mlp_case, kwargs, match):
    model, x = mlp_case
    with pytest.raises(ValueError, match=match):
        XGradient(model, check="off").attribute(x, target=0, **kwargs)


@pytest.mark.parametrize("degree", [0, -1, float("nan"), "two", True])
def test_bad_degree(degree):
    with pytest.raises(ValueError, match="degree must be"):
        XGradient(mlp(), degree=degree)


def test_bad_constructor_arguments():
    with pytest.raises(TypeError, match="callable"):
        XGradient("model")
    with pytest.raises(ValueError, match="check must be one of"):
        XGradient(mlp(), check="sometimes")


def test_input_independent_of_model_output_gives_zero():
    model, (x,), _, _ = build("mlp")

    def f(a, b):
        return model(a)

    a, b = XGradient(f, check="off").attribute((x, torch.randn(4, 2)), target=0)
    assert torch.equal(b, torch.zeros_like(b))


def test_output_that_does_not_require_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        XGradient(lambda x: x.detach().sum(1, keepdim=True), check="off").attribute(torch.rand(2, 3))


def test_attribute_future_not_supported():
    with pytest.raises(NotImplementedError):
        XGradient(mlp()).attribute_future()


def test_shared_and_expanded_gradients_are_not_corrupted():
    # autograd returns one gradient tensor for both summands and an expanded view for a
    # sum; attributions must not write into them.
    def f(a, b):
        return (a + b).sum(1, keepdim=True)

    a, b = torch.rand(3, 4) + 1, torch.rand(3, 4) + 1
    att_a, att_b = XGradient(f).attribute((a, b))
    assert torch.allclose(att_a, a) and torch.allclose(att_b, b)


def test_all_finite_is_exact():
    from captum_xgrad._core.validate import all_finite

    big = torch.full((4,), 3e38)  # finite elements whose sum overflows
    assert all_finite(big)
    assert not all_finite(torch.tensor([1.0, float("inf")]))
    assert not all_finite(torch.tensor([float("inf"), float("-inf")]))
    assert not all_finite(torch.tensor([0.0, float("nan")]))
