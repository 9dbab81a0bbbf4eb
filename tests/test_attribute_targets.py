"""XGradient.attribute_targets / LayerXGradient.attribute_targets: many targets at once.

Every result is compared with independent references: a stack of per-target
``attribute`` calls, Captum's (Layer)IntegratedGradients per target with many steps,
and hand-computed Jacobians.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from torch import nn

from captum_xgrad import LayerXGradient, NonHomogeneousError, NonHomogeneousWarning, XGradient

from _models import (
    TwoBranchProduct,
    TwoInput,
    WithExtraArgs,
    assert_same_snapshot,
    build,
    max_rel_diff,
    snapshot_model,
)


def _stack(per_target, is_tuple):
    if is_tuple:
        return tuple(torch.stack([p[i] for p in per_target], dim=1) for i in range(len(per_target[0])))
    return torch.stack(per_target, dim=1)


def _as_tuple(a):
    return a if isinstance(a, tuple) else (a,)


class MultiDim(nn.Module):
    """Output of shape (N, 2, 3): bias-free, degree 1."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 12, bias=False), nn.ReLU(), nn.Linear(12, 6, bias=False))

    def forward(self, x):
        return self.net(x).reshape(-1, 2, 3)


class NoVmapRelu(torch.autograd.Function):
    """ReLU whose backward cannot run under vmap (it calls ``.item()``)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if grad.abs().sum().item() < 0:  # never true; .item() is what vmap refuses
            raise AssertionError
        return grad * (x > 0).to(grad.dtype)


class NoVmapModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 8, bias=False)
        self.b = nn.Linear(8, 4, bias=False)

    def forward(self, x):
        return self.b(NoVmapRelu.apply(self.a(x)))


def _count_forwards(model: nn.Module):
    calls = []
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    return calls, handle


# ----------------------------------------------------------------- equals attribute
@pytest.mark.parametrize("name", ["mlp", "cnn_max", "cnn_avg", "resnet_block",
                                  "two_branch_product", "two_input"])
def test_equals_stacked_attribute_and_captum_ig(name):
    model, inputs, degree, _ = build(name)
    n_out = model(*inputs).shape[1]
    targets = list(range(n_out))
    xg = XGradient(model, degree=degree, check="off")
    x = inputs if len(inputs) > 1 else inputs[0]
    maps, delta = xg.attribute_targets(x, targets, return_convergence_delta=True)
    is_tuple = len(inputs) > 1
    ref = _stack([xg.attribute(x, target=t) for t in targets], is_tuple)
    for a, r, inp in zip(_as_tuple(maps), _as_tuple(ref), inputs):
        assert a.shape == (inp.shape[0], n_out) + inp.shape[1:]
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-6)
    ig = IntegratedGradients(model)
    ig_ref = _stack([ig.attribute(x, target=t, n_steps=128) for t in targets], is_tuple)
    assert max_rel_diff(maps, ig_ref) < 1e-4
    assert delta.shape == (inputs[0].shape[0], n_out)
    assert float(delta.abs().max()) < 1e-4


def test_none_means_every_output_and_single_output_models():
    model, (x,), _, _ = build("cnn_max")
    xg = XGradient(model, check="off")
    all_maps = xg.attribute_targets(x)
    torch.testing.assert_close(all_maps, xg.attribute_targets(x, list(range(5))))
    for name in ("single_output_n", "single_output_n1"):
        model, (x,), _, _ = build(name)
        xg = XGradient(model, check="off")
        maps = xg.attribute_targets(x)
        assert maps.shape == (x.shape[0], 1) + x.shape[1:]
        torch.testing.assert_close(maps[:, 0], xg.attribute(x))


def test_hand_computed_jacobian_of_a_linear_model():
    # f(x) = W x: the map of class c is x * W[c] (degree 1), with no autograd reference
    torch.manual_seed(0)
    lin = nn.Linear(4, 3, bias=False)
    x = torch.randn(2, 4)
    maps = XGradient(lin, check="off").attribute_targets(x, [2, 0, 0, -1])
    w = lin.weight.detach()
    expected = torch.stack([x * w[c] for c in (2, 0, 0, 2)], dim=1)
    torch.testing.assert_close(maps, expected)


def test_additional_forward_args():
    torch.manual_seed(0)
    model = WithExtraArgs().eval()
    x, gate = torch.randn(4, 5), torch.rand(4, 3)
    xg = XGradient(model, check="off")
    maps = xg.attribute_targets(x, [0, 1, 2], additional_forward_args=(gate, 2))
    ref = _stack([xg.attribute(x, target=t, additional_forward_args=(gate, 2)) for t in range(3)], False)
    torch.testing.assert_close(maps, ref)
    ig = _stack([IntegratedGradients(model).attribute(x, target=t, additional_forward_args=(gate, 2),
                                                      n_steps=64) for t in range(3)], False)
    assert max_rel_diff(maps, ig) < 1e-4


def test_degree_two_and_auto_degree():
    torch.manual_seed(0)
    model = TwoBranchProduct().eval()
    x = torch.randn(4, 6)
    ig = _stack([IntegratedGradients(model).attribute(x, target=t, n_steps=128) for t in range(3)], False)
    for degree in (2, "auto"):
        xg = XGradient(model, degree=degree, check="off")
        maps, delta = xg.attribute_targets(x, return_convergence_delta=True)
        assert max_rel_diff(maps, ig) < 1e-4
        assert float(delta.abs().max()) < 1e-4
        assert xg.last_degree == 2.0
    # the wrong degree is visible in the delta
    _, delta = XGradient(model, degree=1, check="off").attribute_targets(
        x, return_convergence_delta=True)
    assert float(delta.abs().max()) > 1e-2


def test_multidimensional_output_with_tuple_targets():
    torch.manual_seed(0)
    model = MultiDim().eval()
    x = torch.randn(3, 5)
    xg = XGradient(model, check="off")
    targets = [(0, 0), (1, 2), (0, -1), (1, 0)]
    maps, delta = xg.attribute_targets(x, targets, return_convergence_delta=True)
    ref = _stack([xg.attribute(x, target=t) for t in targets], False)
    torch.testing.assert_close(maps, ref)
    ig = _stack([IntegratedGradients(model).attribute(x, target=t, n_steps=64) for t in targets], False)
    assert max_rel_diff(maps, ig) < 1e-4
    assert float(delta.abs().max()) < 1e-4
    # None: every output, row-major
    everything = xg.attribute_targets(x)
    assert everything.shape == (3, 6, 5)
    torch.testing.assert_close(everything[:, 5], xg.attribute(x, target=(1, 2)))
    # a 2-D integer tensor: one row per target
    torch.testing.assert_close(xg.attribute_targets(x, torch.tensor(targets)), maps)


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 5, 7, 100])
def test_chunk_sizes_do_not_change_the_result(chunk):
    model, (x,), _, _ = build("cnn_max")
    xg = XGradient(model, check="off")
    targets = [0, 1, 2, 3, 4]
    ref = _stack([xg.attribute(x, target=t) for t in targets], False)
    maps, delta = xg.attribute_targets(x, targets, target_batch_size=chunk,
                                       return_convergence_delta=True)
    torch.testing.assert_close(maps, ref)
    assert delta.shape == (4, 5)


def test_tuple_inputs_with_chunks_and_no_multiply():
    torch.manual_seed(0)
    model = TwoInput().eval()
    x1, x2 = torch.randn(3, 5), torch.randn(3, 1, 6, 6)
    for mbi in (True, False):
        xg = XGradient(model, multiply_by_inputs=mbi, check="off")
        maps = xg.attribute_targets((x1, x2), [3, 0, 1], target_batch_size=2)
        assert isinstance(maps, tuple) and maps[0].shape == (3, 3, 5)
        assert maps[1].shape == (3, 3, 1, 6, 6)
        ref = _stack([xg.attribute((x1, x2), target=t) for t in (3, 0, 1)], True)
        for a, r in zip(maps, ref):
            torch.testing.assert_close(a, r)
        ig = IntegratedGradients(model, multiply_by_inputs=mbi)
        ig_ref = _stack([ig.attribute((x1, x2), target=t, n_steps=64) for t in (3, 0, 1)], True)
        assert max_rel_diff(maps, ig_ref) < 1e-4


def test_create_graph_gives_the_same_parameter_gradients():
    model, (x,), _, _ = build("cnn_avg")
    xg = XGradient(model, check="off")
    targets = [0, 2, 4]
    maps = xg.attribute_targets(x, targets, create_graph=True, target_batch_size=2)
    assert maps.requires_grad
    params = [p for p in model.parameters()]
    g_batched = torch.autograd.grad((maps ** 2).sum(), params)
    loss = sum((xg.attribute(x, target=t, create_graph=True) ** 2).sum() for t in targets)
    g_loop = torch.autograd.grad(loss, params)
    for a, b in zip(g_batched, g_loop):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert not xg.attribute_targets(x, targets).requires_grad


def test_input_that_requires_grad_keeps_its_graph():
    model, (x,), _, _ = build("mlp")
    x = x.clone().requires_grad_(True)
    maps = XGradient(model, check="off").attribute_targets(x, [0, 1], create_graph=True)
    (gx,) = torch.autograd.grad(maps.sum(), x)
    assert gx.shape == x.shape and x.grad is None


# ----------------------------------------------------------------------- passes
def test_one_forward_pass_per_call_first_call_included():
    model, (x,), _, _ = build("cnn_max")
    calls, handle = _count_forwards(model)
    try:
        xg = XGradient(model)  # default check="static": no forward pass
        xg.attribute_targets(x, list(range(5)), target_batch_size=2)
        assert len(calls) == 1
        xg.attribute_targets(x)
        assert len(calls) == 2
        xg.attribute_targets(x, [1, 3], return_convergence_delta=True)  # + f(0)
        assert len(calls) == 4
        lx = LayerXGradient(model, model[3])
        lx.attribute_targets(x, [0, 4, 2], target_batch_size=2)
        assert len(calls) == 5
    finally:
        handle.remove()


def test_model_state_and_train_mode_batchnorm_are_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Linear(8, 3, bias=False)).train()
    x = torch.randn(6, 5)
    before = snapshot_model(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonHomogeneousWarning)
        XGradient(model).attribute_targets(x, return_convergence_delta=True)
        LayerXGradient(model, model[2]).attribute_targets(x, return_convergence_delta=True)
    assert_same_snapshot(before, snapshot_model(model))
    assert model.training


# ------------------------------------------------------------------- validation
def test_target_validation_matches_attribute():
    model, (x,), _, _ = build("cnn_max")  # 5 classes
    xg = XGradient(model, check="off")
    torch.testing.assert_close(xg.attribute_targets(x, [-1])[:, 0], xg.attribute(x, target=-1))
    with pytest.raises(ValueError, match="out of range"):
        xg.attribute(x, target=-6)
    with pytest.raises(ValueError, match=r"targets\[1\] = -6 is out of range.*0\.\.4"):
        xg.attribute_targets(x, [0, -6])
    with pytest.raises(ValueError, match="out of range"):
        xg.attribute_targets(x, [5])
    with pytest.raises(ValueError, match="empty"):
        xg.attribute_targets(x, [])
    with pytest.raises(TypeError, match=r"targets=\[3\]"):
        xg.attribute_targets(x, 3)
    with pytest.raises(TypeError, match="not a target"):
        xg.attribute_targets(x, [1.5])
    with pytest.raises(TypeError, match="Per-example targets"):
        xg.attribute_targets(x, [[0, 1, 2, 3]])
    with pytest.raises(TypeError):
        xg.attribute_targets(x, "all")
    with pytest.raises(TypeError, match="dtype"):
        xg.attribute_targets(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="needs 1 index"):
        xg.attribute_targets(x, [(0, 1)])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="target_batch_size"):
            xg.attribute_targets(x, [0], target_batch_size=bad)
    with pytest.raises(ValueError, match="NaN/Inf"):
        xg.attribute_targets(torch.full_like(x, float("nan")), [0])
    with pytest.raises(TypeError, match="dtype"):
        xg.attribute_targets(x.long(), [0])


def test_targets_that_do_not_fit_the_output():
    torch.manual_seed(0)
    xg = XGradient(MultiDim().eval(), check="off")
    x = torch.randn(2, 5)
    with pytest.raises(ValueError, match=r"targets\[0\] = 1 is an int .* needs 2 index"):
        xg.attribute_targets(x, [1])
    with pytest.raises(ValueError, match=r"index 1 of targets\[1\] = 3 is out of range"):
        xg.attribute_targets(x, [(0, 0), (1, 3)])
    model, (x,), _, _ = build("single_output_n")
    with pytest.raises(ValueError, match="one value per example"):
        XGradient(model, check="off").attribute_targets(x, [0])


def test_guard_runs_as_for_attribute():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(4, 5)
    with pytest.warns(NonHomogeneousWarning):
        XGradient(model).attribute_targets(x)
    with pytest.raises(NonHomogeneousError):
        XGradient(model, check="raise").attribute_targets(x)
    with pytest.raises(NonHomogeneousError):
        XGradient(model, degree="auto", check="off").attribute_targets(x)


def test_fallback_loop_when_batching_is_unsupported():
    torch.manual_seed(0)
    model = NoVmapModel().eval()
    x = torch.randn(3, 5)
    xg = XGradient(model, check="off")
    ref = _stack([xg.attribute(x, target=t) for t in range(4)], False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = xg.attribute_targets(x, target_batch_size=2)  # two chunks, one warning
    mine = [w for w in caught if "falling back" in str(w.message)]
    assert len(mine) == 1 and issubclass(mine[0].category, RuntimeWarning)
    torch.testing.assert_close(maps, ref)
    lx = LayerXGradient(model, model.a)
    with pytest.warns(RuntimeWarning, match="falling back"):
        lmaps = lx.attribute_targets(x)
    torch.testing.assert_close(lmaps, _stack([lx.attribute(x, target=t) for t in range(4)], False))


# ------------------------------------------------------------------------- layer
@pytest.mark.parametrize("to_input", [False, True])
def test_layer_equals_stacked_attribute_and_captum(to_input):
    model, (x,), _, _ = build("resnet_block")
    layer = model[3]
    lx = LayerXGradient(model, layer)
    targets = [4, 0, 2, 2, -1]
    maps, delta = lx.attribute_targets(x, targets, target_batch_size=3,
                                       attribute_to_layer_input=to_input,
                                       return_convergence_delta=True)
    ref = _stack([lx.attribute(x, target=t, attribute_to_layer_input=to_input) for t in targets], False)
    torch.testing.assert_close(maps, ref)
    lig = LayerIntegratedGradients(model, layer)
    lig_ref = _stack([lig.attribute(x, target=t, n_steps=128, attribute_to_layer_input=to_input)
                      for t in targets], False)
    assert max_rel_diff(maps, lig_ref) < 1e-4
    assert float(delta.abs().max()) < 1e-4 and delta.shape == (4, 5)


def test_layer_list_tuple_inputs_multi_dim_and_create_graph():
    torch.manual_seed(0)
    model = TwoInput().eval()
    x1, x2 = torch.randn(3, 5), torch.randn(3, 1, 6, 6)
    lx = LayerXGradient(model, [model.a, model.conv], multiply_by_inputs=False)
    maps = lx.attribute_targets((x1, x2), [0, 3], additional_forward_args=None)
    assert isinstance(maps, list) and len(maps) == 2
    refs = [lx.attribute((x1, x2), target=t) for t in (0, 3)]
    for i in range(2):
        torch.testing.assert_close(maps[i], torch.stack([r[i] for r in refs], 1))

    model = MultiDim().eval()
    x = torch.randn(3, 5)
    lx = LayerXGradient(model, model.net[1])
    targets = [(1, 1), (0, 2)]
    maps = lx.attribute_targets(x, targets, create_graph=True)
    assert maps.requires_grad
    params = list(model.parameters())
    g_batched = torch.autograd.grad(maps.pow(2).sum(), params)
    loss = sum(lx.attribute(x, target=t, create_graph=True).pow(2).sum() for t in targets)
    for a, b in zip(g_batched, torch.autograd.grad(loss, params)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_layer_validation():
    model, (x,), _, _ = build("cnn_max")
    lx = LayerXGradient(model, model[1])
    with pytest.raises(ValueError, match="out of range"):
        lx.attribute_targets(x, [-6])
    with pytest.raises(ValueError, match="empty"):
        lx.attribute_targets(x, [])
    with pytest.raises(ValueError, match="target_batch_size"):
        lx.attribute_targets(x, target_batch_size=0)


def test_layer_with_additional_forward_args_and_delta():
    torch.manual_seed(0)
    model = WithExtraArgs().eval()
    x, gate = torch.randn(4, 5), torch.rand(4, 3)
    lx = LayerXGradient(model, model.mlp[1])  # repeat=1: the layer runs once
    maps, delta = lx.attribute_targets(x, [2, 1], additional_forward_args=(gate, 1),
                                       return_convergence_delta=True)
    ref = _stack([lx.attribute(x, target=t, additional_forward_args=(gate, 1)) for t in (2, 1)], False)
    torch.testing.assert_close(maps, ref)
    assert float(delta.abs().max()) < 1e-4
