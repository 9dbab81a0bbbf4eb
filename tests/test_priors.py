"""Attribution priors: hand-computed values, reference formulas, gradcheck, bad input."""

from __future__ import annotations

import itertools

import pytest
import torch

from captum_xgrad.priors import (
    energy_loss,
    gini_coefficient,
    gini_prior,
    l1_prior,
    mask_prior,
    total_variation_prior,
)


def _pairwise_gini(v: torch.Tensor) -> torch.Tensor:
    """Reference: sum_ij |v_i - v_j| / (2 D^2 mean v), straight from the definition."""
    d = v.shape[-1]
    total = sum(abs(v[i] - v[j]) for i, j in itertools.product(range(d), range(d)))
    return total / (2 * d * v.sum())


def _rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------------- Gini
@pytest.mark.parametrize(
    "values, expected",
    [
        ([1.0, 1.0, 1.0, 1.0], 0.0),
        ([0.0, 0.0, 0.0, 2.0], 0.75),
        ([1.0, 2.0, 3.0], 8.0 / 36.0),  # pairwise |diffs| sum 8, 2 * 3 * 6 = 36
        ([0.0, 5.0], 0.5),
        ([3.0], 0.0),
    ],
)
def test_gini_coefficient_hand_values(values, expected):
    got = gini_coefficient(torch.tensor(values, dtype=torch.float64))
    assert float(got) == pytest.approx(expected, abs=1e-12)


def test_gini_coefficient_matches_pairwise_definition_and_its_gradient():
    v = _rand(9, seed=1).abs().requires_grad_(True)
    ours = gini_coefficient(v)
    ref = _pairwise_gini(v)
    assert float(ours.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
    g_ours = torch.autograd.grad(ours, v)[0]
    g_ref = torch.autograd.grad(_pairwise_gini(v), v)[0]
    assert torch.allclose(g_ours, g_ref, atol=1e-12)


def test_gini_coefficient_dim_and_scale_invariance():
    v = _rand(4, 6, seed=2).abs()
    rows = gini_coefficient(v, dim=1)
    cols = gini_coefficient(v, dim=0)
    assert rows.shape == (4,) and cols.shape == (6,)
    for i in range(4):
        assert float(rows[i]) == pytest.approx(float(_pairwise_gini(v[i])), rel=1e-12)
    for j in range(6):
        assert float(cols[j]) == pytest.approx(float(_pairwise_gini(v[:, j])), rel=1e-12)
    assert torch.allclose(gini_coefficient(7.0 * v, dim=1), rows, atol=1e-12)


def test_gini_coefficient_of_zeros_is_zero_not_nan():
    assert float(gini_coefficient(torch.zeros(5))) == 0.0


def test_gini_prior_hand_value():
    a = torch.tensor([[1.0, -1.0, 0.0], [3.0, 1.0, 0.0]], dtype=torch.float64)
    # mean |a| = [2, 1, 0]: pairwise |diffs| sum 2 * (1 + 2 + 1) = 8, / (2 * 3 * 3)
    assert float(gini_prior(a)) == pytest.approx(-8.0 / 18.0, abs=1e-12)


def test_gini_prior_pools_tuple_inputs_and_image_dims():
    a1, a2 = _rand(3, 2, 2, seed=3), _rand(3, 5, seed=4)
    pooled = torch.cat([a1.reshape(3, -1), a2], dim=1)
    assert float(gini_prior((a1, a2))) == pytest.approx(float(gini_prior(pooled)), rel=1e-12)
    assert float(gini_prior(pooled)) == pytest.approx(
        -float(_pairwise_gini(pooled.abs().mean(0))), rel=1e-12
    )


# --------------------------------------------------------------------------- L1
def test_l1_prior_hand_value():
    a = torch.tensor([[[1.0, -2.0]], [[0.5, 0.5]]])
    assert float(l1_prior(a)) == pytest.approx(2.0)  # (3 + 1) / 2
    assert float(l1_prior((a, -a))) == pytest.approx(4.0)


# ------------------------------------------------------------------------- masks
def test_mask_prior_hand_values_per_example_and_shared_masks():
    a = torch.tensor([[1.0, -2.0, 3.0], [4.0, 0.5, -1.0]])
    per_example = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    # example 0: 4 + 9, example 1: 16 -> 29 / 2
    assert float(mask_prior(a, per_example)) == pytest.approx(14.5)
    assert float(mask_prior(a, per_example, power=1)) == pytest.approx((5 + 4) / 2)
    shared = torch.tensor([True, False, False])
    assert float(mask_prior(a, shared)) == pytest.approx((1 + 16) / 2)
    weighted = torch.tensor([0.5, 0.0, 2.0])
    assert float(mask_prior(a, weighted)) == pytest.approx((0.5 + 18 + 8 + 2) / 2)


def test_mask_prior_tuple():
    a1, a2 = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0]])
    got = mask_prior((a1, a2), (torch.tensor([1.0, 0.0]), torch.tensor([1.0])))
    assert float(got) == pytest.approx(10.0)


def test_energy_loss_hand_values():
    a = torch.tensor([[3.0, 1.0, -5.0], [-1.0, -2.0, -3.0], [0.0, 2.0, 2.0]])
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    # 1 - 3/4 ; no positive attribution -> 1 ; all inside -> 0
    assert float(energy_loss(a, mask)) == pytest.approx((0.25 + 1.0 + 0.0) / 3, abs=1e-6)


def test_total_variation_hand_values():
    a = torch.tensor([[[0.0, 1.0], [0.0, 3.0]]])  # (1, 2, 2)
    assert float(total_variation_prior(a)) == pytest.approx(6.0)
    img = torch.tensor([[1.0, 2.0, 4.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    # vertical: |0-1|+|0-2|+|0-4| + 1+1+1 = 10 ; horizontal: 1+2 + 0+0 + 0+0 = 3
    batch = torch.stack([img, 2 * img]).unsqueeze(1).repeat(1, 2, 1, 1)  # (2, 2, 3, 3)
    # example 0: 2 channels * 13; example 1: 2 channels * 26 -> (26 + 52) / 2
    assert float(total_variation_prior(batch)) == pytest.approx(39.0)


# ---------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize(
    "func",
    [
        lambda a: gini_prior(a),
        lambda a: l1_prior(a),
        lambda a: mask_prior(a, (torch.rand(3, 2, 4, 4, dtype=torch.float64,
                                                generator=torch.Generator().manual_seed(5)) > 0.5).double()),
        lambda a: mask_prior(a, torch.ones(2, 4, 4, dtype=torch.float64), power=1.5),
        lambda a: energy_loss(a, (torch.arange(32).reshape(2, 4, 4) % 3 == 0).double()),
        lambda a: total_variation_prior(a),
        lambda a: gini_coefficient(a.abs().reshape(3, -1), dim=1).sum(),
    ],
    ids=["gini", "l1", "mask", "mask_p1.5", "energy", "tv", "gini_coefficient"],
)
def test_gradcheck_float64(func):
    a = _rand(3, 2, 4, 4, seed=6).requires_grad_(True)
    assert torch.autograd.gradcheck(func, (a,), eps=1e-6, atol=1e-7)


# ---------------------------------------------------------------------- bad input
def test_bad_inputs_have_clear_messages():
    a = torch.randn(2, 3)
    with pytest.raises(TypeError, match="tensor or a tuple of tensors"):
        gini_prior([[1.0, 2.0]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating point"):
        l1_prior(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"batch first.*unsqueeze"):
        l1_prior(torch.ones(3))
    with pytest.raises(ValueError, match="same batch size"):
        gini_prior((torch.ones(2, 3), torch.ones(3, 3)))
    with pytest.raises(ValueError, match="empty tuple"):
        l1_prior(())
    with pytest.raises(ValueError, match="non-negative.*abs"):
        gini_coefficient(torch.tensor([1.0, -1.0]))
    with pytest.raises(TypeError, match="floating-point tensor"):
        gini_coefficient(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="eps must be a positive"):
        gini_coefficient(torch.tensor([1.0]), eps=0)
    with pytest.raises(ValueError, match=r"does not broadcast.*\(2, 3\)"):
        mask_prior(a, torch.ones(4))
    with pytest.raises(ValueError, match="one mask per input"):
        mask_prior((a, a), torch.ones(3))
    with pytest.raises(ValueError, match="negative entries"):
        mask_prior(a, torch.tensor([1.0, -1.0, 0.0]))
    with pytest.raises(TypeError, match="mask 0 must be a tensor"):
        mask_prior(a, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="power must be a positive"):
        mask_prior(a, torch.ones(3), power=0)
    with pytest.raises(ValueError, match="entries above 1"):
        energy_loss(a, torch.full((3,), 2.0))
    with pytest.raises(ValueError, match=r"images of shape.*gini_prior"):
        total_variation_prior(a)
