"""AttributionPrior: gradients vs manual double backward and gradcheck, AMP, DDP, bad input."""

from __future__ import annotations

import os
import socket
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from captum.attr import IntegratedGradients
from torch import nn

from captum_xgrad import NonHomogeneousWarning, XGradient
from captum_xgrad.priors import gini_prior, l1_prior, mask_prior
from captum_xgrad.training import (
    AttributionPrior,
    ExpectedGradientsMethod,
    GradientMethod,
    IntegratedGradientsMethod,
    XGradientMethod,
)


def _xmlp(seed=0, d_in=5, hidden=8, d_out=3, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(d_in, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, d_out, bias=False)
    ).to(dtype)


def _tanh_mlp(seed=0, d_in=5, hidden=8, d_out=3, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, d_out)).to(dtype)


def _batch(n=6, d_in=5, classes=3, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=g, dtype=dtype), torch.randint(0, classes, (n,), generator=g)


def _grads(model, loss):
    return torch.autograd.grad(loss, list(model.parameters()))


def _assert_close(ga, gb, tol=1e-10):
    for a, b in zip(ga, gb):
        assert torch.allclose(a, b, rtol=tol, atol=tol), float((a - b).abs().max())


# ------------------------------------------------- helper vs manual double backward
def test_xgradient_helper_equals_manual_double_backward_with_xgradient_attribute():
    model = _xmlp()
    x, y = _batch()
    parts = AttributionPrior(model, gini_prior, weight=0.7)(x, y)
    helper_grads = _grads(model, parts.loss)

    # manual: separate forward for the task loss; attributions from XGradient itself
    task = F.cross_entropy(model(x), y)
    attr = XGradient(model).attribute(x, target=y, create_graph=True)
    manual_grads = _grads(model, task + 0.7 * gini_prior(attr))
    _assert_close(helper_grads, manual_grads)
    assert torch.allclose(parts.attributions, attr.detach(), atol=1e-12)
    assert float(parts.prior_loss.detach()) == pytest.approx(float(gini_prior(attr).detach()), abs=1e-12)
    # and the prior really contributes (the test could fail)
    plain = _grads(model, F.cross_entropy(model(x), y))
    assert max(float((a - b).abs().max()) for a, b in zip(helper_grads, plain)) > 1e-4


def test_xgradient_method_degree_matches_xgradient():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 2, bias=False)).double()
    b = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 2, bias=False)).double()

    class Product(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = a, b

        def forward(self, x):
            return self.a(x) * self.b(x)

    model = Product()
    x, y = _batch(d_in=4, classes=2)
    _, attr = XGradientMethod(degree=2).forward_and_attribute(
        model, x, lambda rows, out_x: rows.gather(1, y.view(-1, 1)).squeeze(1)
    )
    ref = XGradient(model, degree=2).attribute(x, target=y)
    assert torch.allclose(attr, ref, atol=1e-12)


def test_ig_helper_matches_captum_values_and_manual_double_backward():
    model = _tanh_mlp()
    x, y = _batch()
    n_steps = 6
    helper = AttributionPrior(model, l1_prior, weight=0.3,
                              attribution=IntegratedGradientsMethod(n_steps=n_steps))
    parts = helper(x, y)
    captum = IntegratedGradients(model).attribute(x, target=y, n_steps=n_steps)
    assert torch.allclose(parts.attributions, captum, rtol=1e-6, atol=1e-7)

    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    attr = torch.zeros_like(x)
    for node, w in zip(nodes, weights):  # one forward per path point
        p = ((node + 1) / 2 * x).detach().requires_grad_(True)
        out = model(p).gather(1, y.view(-1, 1)).sum()
        attr = attr + (w / 2) * x * torch.autograd.grad(out, p, create_graph=True)[0]
    manual = F.cross_entropy(model(x), y) + 0.3 * l1_prior(attr)
    _assert_close(_grads(model, parts.loss), _grads(model, manual))


def test_ig_nonzero_baseline_and_riemann_rules():
    model = _tanh_mlp()
    x, y = _batch()
    base = torch.full((5,), 0.5, dtype=torch.float64)
    select = lambda rows, out_x: rows.gather(1, y.repeat(rows.shape[0] // 6).view(-1, 1)).squeeze(1)  # noqa: E731
    for method in ("riemann_middle", "riemann_right"):
        _, attr = IntegratedGradientsMethod(n_steps=7, baseline=base, method=method).forward_and_attribute(
            model, x, select
        )
        ref = IntegratedGradients(model).attribute(
            x, baselines=base.expand_as(x), target=y, n_steps=7, method=method
        )
        assert torch.allclose(attr, ref, rtol=1e-6, atol=1e-7), method
    # Captum's trapezoid weights sum to (n - 1) / n; ours are the textbook rule (sum 1),
    # so check convergence to the integral instead: error O(1 / n^2).
    _, trap = IntegratedGradientsMethod(n_steps=200, baseline=base, method="riemann_trapezoid"
                                        ).forward_and_attribute(model, x, select)
    _, gl = IntegratedGradientsMethod(n_steps=32, baseline=base).forward_and_attribute(model, x, select)
    assert float((trap - gl).detach().abs().max() / gl.detach().abs().max()) < 1e-4
    with torch.no_grad():
        f_x = model(x).gather(1, y.view(-1, 1)).squeeze(1)
        f_b = model(base.expand_as(x)).gather(1, y.view(-1, 1)).squeeze(1)
    assert torch.allclose(gl.sum(1), f_x - f_b, atol=1e-10)  # completeness


def test_expected_gradients_matches_manual_draws_and_double_backward():
    model = _tanh_mlp()
    x, y = _batch()
    refs = _batch(n=11, seed=7)[0]
    k = 3
    method = ExpectedGradientsMethod(refs, k=k, generator=torch.Generator().manual_seed(5))
    parts = AttributionPrior(model, gini_prior, weight=2.0, attribution=method)(x, y)

    g = torch.Generator().manual_seed(5)  # the same draws, in the documented order
    idx = torch.randint(0, len(refs), (k * len(x),), generator=g)
    alphas = torch.rand(k * len(x), generator=g).double()
    attr = torch.zeros_like(x)
    for j in range(k):
        sl = slice(j * len(x), (j + 1) * len(x))
        start = refs[idx[sl]]
        p = (start + alphas[sl].view(-1, 1) * (x - start)).detach().requires_grad_(True)
        out = model(p).gather(1, y.view(-1, 1)).sum()
        attr = attr + (x - start) * torch.autograd.grad(out, p, create_graph=True)[0] / k
    assert torch.allclose(parts.attributions, attr.detach(), atol=1e-12)
    manual = F.cross_entropy(model(x), y) + 2.0 * gini_prior(attr)
    _assert_close(_grads(model, parts.loss), _grads(model, manual))


def test_expected_gradients_of_linear_model_is_weight_times_offset():
    model = nn.Linear(4, 1).double()
    refs = _batch(n=9, d_in=4, seed=3)[0]
    x = _batch(n=5, d_in=4, seed=4)[0]
    # with k huge, the mean over draws of (x - x') approaches x - mean(refs)
    method = ExpectedGradientsMethod(refs, k=4000, generator=torch.Generator().manual_seed(0))
    _, attr = method.forward_and_attribute(model, x, lambda rows, out_x: rows[:, 0])
    expected = model.weight.detach() * (x - refs.mean(0))
    assert torch.allclose(attr, expected, atol=0.05)


# ------------------------------------------------------------------- gradcheck
def _functional_loss(module, method_factory, prior, x, y, target="label", loss_fn=None):
    names = [n for n, _ in module.named_parameters()]

    def loss(*params):
        pd = dict(zip(names, params))
        fmodel = lambda inp: torch.func.functional_call(module, pd, (inp,))  # noqa: E731
        helper = AttributionPrior(fmodel, prior, weight=0.5, attribution=method_factory(),
                                  target=target, loss_fn=loss_fn)
        return helper(x, y).loss

    return loss, tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())


@pytest.mark.parametrize(
    "kind", ["xgradient", "gradient", "input_x_gradient", "ig", "eg"]
)
def test_gradcheck_of_combined_loss_wrt_parameters(kind):
    x, y = _batch()
    refs = _batch(n=8, seed=9)[0]
    if kind == "xgradient":
        module, factory = _xmlp(hidden=6), lambda: XGradientMethod()
    else:
        module = _tanh_mlp(hidden=6)
        factory = {
            "gradient": lambda: GradientMethod(),
            "input_x_gradient": lambda: GradientMethod(multiply_by_inputs=True),
            "ig": lambda: IntegratedGradientsMethod(n_steps=3),
            "eg": lambda: ExpectedGradientsMethod(refs, k=2, generator=torch.Generator().manual_seed(1)),
        }[kind]
    fn, params = _functional_loss(module, factory, gini_prior, x, y)
    assert torch.autograd.gradcheck(fn, params, eps=1e-6, atol=1e-6)


def test_gradcheck_single_logit_bce_and_mask_prior():
    module = _tanh_mlp(d_out=1, hidden=6)
    x, _ = _batch()
    y = (x[:, :1] > 0).double()
    mask = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    fn, params = _functional_loss(module, GradientMethod,
                                  lambda a: mask_prior(a, mask), x, y,
                                  loss_fn=nn.BCEWithLogitsLoss())
    assert torch.autograd.gradcheck(fn, params, eps=1e-6, atol=1e-6)


# -------------------------------------------------------------- behaviour details
class _Counting(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls, self.rows = inner, 0, []

    def forward(self, x):
        self.calls += 1
        self.rows.append(x.shape[0])
        return self.inner(x)


@pytest.mark.parametrize(
    "method, rows",
    [
        (XGradientMethod(check=False), 6),
        (GradientMethod(), 6),
        (IntegratedGradientsMethod(n_steps=4), 30),
        (ExpectedGradientsMethod(torch.randn(5, 5, dtype=torch.float64), k=2), 18),
    ],
)
def test_one_model_call_per_step_and_model_untouched(method, rows):
    model = _Counting(_xmlp()).train()
    x, y = _batch()
    x_before = x.clone()
    before = [p.detach().clone() for p in model.parameters()]
    parts = AttributionPrior(model, l1_prior, weight=1.0, attribution=method)(x, y)
    assert model.calls == 1 and model.rows == [rows]
    assert model.training  # mode left alone
    assert all(p.grad is None for p in model.parameters())  # nothing written before backward
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert parts.output.shape == (6, 3) and not parts.output.requires_grad
    assert parts.attributions.shape == x.shape and not parts.attributions.requires_grad
    parts.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_weight_zero_is_a_plain_step():
    model = _Counting(_xmlp())
    x, y = _batch()
    parts = AttributionPrior(model, gini_prior, weight=0.0)(x, y)
    assert parts.attributions is None and float(parts.prior_loss) == 0.0
    assert torch.equal(parts.loss, parts.task_loss)
    assert float(parts.loss.detach()) == pytest.approx(float(F.cross_entropy(model(x), y).detach()))


def test_targets_pred_int_callable():
    model = _xmlp()
    x, y = _batch()
    with torch.no_grad():
        pred = model(x).argmax(1)
    ref_pred = XGradient(model).attribute(x, target=pred)
    ref_two = XGradient(model).attribute(x, target=2)
    ref_sum = XGradient(model).attribute(x, target=0) + XGradient(model).attribute(x, target=1)
    got_pred = AttributionPrior(model, l1_prior, target="pred")(x, y).attributions
    got_two = AttributionPrior(model, l1_prior, target=2)(x, y).attributions
    got_sum = AttributionPrior(model, l1_prior, target=lambda out: out[:, 0] + out[:, 1])(x, y).attributions
    assert torch.allclose(got_pred, ref_pred, atol=1e-12)
    assert torch.allclose(got_two, ref_two, atol=1e-12)
    assert torch.allclose(got_sum, ref_sum, atol=1e-12)


def test_works_with_lbfgs_closure_and_reduces_the_loss():
    model = _xmlp(hidden=16)
    x, y = _batch(n=32, seed=3)
    helper = AttributionPrior(model, gini_prior, weight=0.1)
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)

    def closure():
        opt.zero_grad()
        loss = helper(x, y).loss
        loss.backward()
        return loss

    first = float(helper(x, y).loss.detach())
    for _ in range(3):
        opt.step(closure)
    assert float(helper(x, y).loss.detach()) < first - 0.1


def test_autocast_bfloat16_matches_float32_gradients():
    model = _xmlp(hidden=32, dtype=torch.float32)
    x, y = _batch(n=16, dtype=torch.float32)
    helper = AttributionPrior(model, gini_prior, weight=1.0)
    ref = torch.cat([g.flatten() for g in _grads(model, helper(x, y).loss)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts = helper(x, y)
    assert parts.output.dtype == torch.bfloat16  # autocast really ran the model in bf16
    assert parts.loss.dtype == torch.float32 and torch.isfinite(parts.loss)
    got = torch.cat([g.flatten() for g in _grads(model, parts.loss)])
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert float(F.cosine_similarity(got, ref, dim=0)) > 0.99
    assert float((got - ref).norm() / ref.norm()) < 0.1


def test_xgradient_method_warns_on_biased_models():
    model = _tanh_mlp()
    x, y = _batch()
    helper = AttributionPrior(model, gini_prior)
    with pytest.warns(NonHomogeneousWarning, match=r"bias.*XGradientMethod\(check=False\)"):
        helper(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        helper(x, y)  # once per model
        AttributionPrior(model, gini_prior, attribution=XGradientMethod(check=False))(x, y)
        AttributionPrior(_xmlp(), gini_prior)(x, y)


def test_attribution_shortcuts():
    model = _tanh_mlp()
    assert isinstance(AttributionPrior(model, l1_prior, attribution=XGradient).method, XGradientMethod)
    h = AttributionPrior(model, l1_prior, attribution="integrated_gradients")
    assert isinstance(h.method, IntegratedGradientsMethod) and h.method.n_steps == 8
    h = AttributionPrior(model, l1_prior, attribution="input_x_gradient")
    assert isinstance(h.method, GradientMethod) and h.method.multiply_by_inputs
    assert "weight=1" in repr(h)


def test_bad_arguments_have_clear_messages():
    model = _xmlp()
    x, y = _batch()
    with pytest.raises(TypeError, match="model must be callable"):
        AttributionPrior(3, gini_prior)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="prior must be callable"):
        AttributionPrior(model, "gini")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
        AttributionPrior(model, gini_prior, weight=-1)
    with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
        AttributionPrior(model, gini_prior, weight=float("nan"))
    with pytest.raises(ValueError, match="unknown attribution 'ig'"):
        AttributionPrior(model, gini_prior, attribution="ig")
    with pytest.raises(ValueError, match=r"needs a reference set.*ExpectedGradientsMethod"):
        AttributionPrior(model, gini_prior, attribution="expected_gradients")
    with pytest.raises(TypeError, match="attribution must be"):
        AttributionPrior(model, gini_prior, attribution=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target must be"):
        AttributionPrior(model, gini_prior, target="logit")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        AttributionPrior(model, gini_prior, loss_fn="ce")  # type: ignore[arg-type]
    helper = AttributionPrior(model, gini_prior)
    with pytest.raises(ValueError, match=r"one row per example \(6\)"):
        helper(x, y[:4])
    with pytest.raises(TypeError, match="floating-point tensor"):
        helper(x.long(), y)
    with pytest.raises(ValueError, match="integer class labels"):
        helper(x, y.double())
    with pytest.raises(ValueError, match="out of range"):
        AttributionPrior(model, gini_prior, target=5)(x, y)
    with pytest.raises(ValueError, match="must return a scalar"):
        AttributionPrior(model, lambda a: a.abs())(x, y)
    with pytest.raises(ValueError, match=r"callable target must map.*\(R,\)"):
        AttributionPrior(model, gini_prior, target=lambda out: out)(x, y)
    with pytest.raises(ValueError, match="degree must be a positive"):
        XGradientMethod(degree=0)
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        IntegratedGradientsMethod(n_steps=0)
    with pytest.raises(ValueError, match="method must be one of"):
        IntegratedGradientsMethod(method="simpson")
    with pytest.raises(ValueError, match="does not broadcast"):
        AttributionPrior(model, gini_prior,
                         attribution=IntegratedGradientsMethod(baseline=torch.zeros(3)))(x, y)
    with pytest.raises(TypeError, match="references must be a floating-point tensor"):
        ExpectedGradientsMethod(torch.ones(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="reference set is empty"):
        ExpectedGradientsMethod(torch.ones(0, 5))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ExpectedGradientsMethod(torch.ones(3, 5), k=0)
    with pytest.raises(ValueError, match=r"feature shape \(4,\).*\(5,\)"):
        AttributionPrior(model, gini_prior,
                         attribution=ExpectedGradientsMethod(torch.ones(3, 4, dtype=torch.float64)))(x, y)


# ------------------------------------------------------------------------- DDP
_DDP_STEPS, _DDP_N = 4, 8


def _ddp_problem(kind):
    torch.manual_seed(11)
    if kind == "xgradient":
        model = nn.Sequential(nn.Linear(5, 16, bias=False), nn.ReLU(), nn.Linear(16, 3, bias=False))
        method = XGradientMethod()
    else:
        model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))
        method = IntegratedGradientsMethod(n_steps=4)
    g = torch.Generator().manual_seed(12)
    x = torch.randn(_DDP_N, 5, generator=g)
    y = torch.randint(0, 3, (_DDP_N,), generator=g)
    mask = (torch.rand(_DDP_N, 5, generator=g) > 0.5).float()
    return model, method, x, y, mask


def _train(model, method, x, y, mask):
    helper = AttributionPrior(model, mask_prior, weight=0.5, attribution=method)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.5)
    for _ in range(_DDP_STEPS):
        opt.zero_grad()
        helper(x, y, mask).loss.backward()
        opt.step()


def _ddp_worker(rank, world, port, out_path):
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        result = {}
        for kind in ("xgradient", "ig"):
            model, method, x, y, mask = _ddp_problem(kind)
            part = slice(rank * _DDP_N // world, (rank + 1) * _DDP_N // world)
            _train(DDP(model), method, x[part], y[part], mask[part])
            result[kind] = [p.detach().clone() for p in model.parameters()]
        if rank == 0:
            torch.save(result, out_path)
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_processes_match_single_process(tmp_path):
    out = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    ddp = torch.load(out)
    for kind in ("xgradient", "ig"):
        model, method, x, y, mask = _ddp_problem(kind)
        init = [p.detach().clone() for p in model.parameters()]
        _train(model, method, x, y, mask)  # one process, the whole batch
        for p, q, p0 in zip(model.parameters(), ddp[kind], init):
            assert float((p.detach() - p0).abs().max()) > 1e-3  # it trained
            assert torch.allclose(p.detach(), q, rtol=1e-5, atol=1e-6), kind
