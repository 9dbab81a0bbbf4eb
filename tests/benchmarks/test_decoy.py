"""The demo's decoy digits (captum_xgrad.demo): data set, CNN builder, share metric, short study."""

from __future__ import annotations

import pytest
import torch

from captum_xgrad.demo import (
    decoy_demo,
    decoy_share,
    digits_xcnn,
    evaluate_decoy,
    make_decoy_digits,
)


def decoy_cnn(bias=False, image_size=16):
    return digits_xcnn(bias=bias, image_size=image_size)


@pytest.fixture(scope="module")
def data():
    return make_decoy_digits(seed=0)


def test_shapes_masks_and_corners(data):
    assert data.x_train.shape == (1437, 1, 16, 16) and data.x_test.shape == (360, 1, 16, 16)
    for mask in (data.mask_train, data.mask_test):
        assert torch.all(mask.sum(dim=(1, 2, 3)) == 16)
        # a 4x4 square in one of the four corners
        corners = torch.stack([mask[:, 0, :4, :4].sum((1, 2)), mask[:, 0, :4, -4:].sum((1, 2)),
                               mask[:, 0, -4:, :4].sum((1, 2)), mask[:, 0, -4:, -4:].sum((1, 2))], 1)
        assert torch.all(corners.max(dim=1).values == 16)
        assert len(set(corners.argmax(1).tolist())) == 4  # all corners are used


def test_training_decoy_encodes_the_label_and_test_decoy_does_not(data):
    shade_tr = (data.x_train * data.mask_train).amax(dim=(1, 2, 3))
    assert torch.allclose(shade_tr, 1 - 0.08 * data.y_train.float())
    shade_te = (data.x_test * data.mask_test).amax(dim=(1, 2, 3))
    decoded = torch.round((1 - shade_te) / 0.08).long()
    assert decoded.min() >= 0 and decoded.max() <= 9
    agree = float((decoded == data.y_test).float().mean())
    assert agree < 0.2  # random shades: ~10% agreement by chance


def test_clean_images_differ_only_on_the_decoy_which_hides_no_ink(data):
    for x, clean, mask in ((data.x_train, data.x_train_clean, data.mask_train),
                           (data.x_test, data.x_test_clean, data.mask_test)):
        assert torch.equal(x * (1 - mask), clean * (1 - mask))
        assert float((clean * mask).abs().max()) == 0.0
        assert float(clean[:, :, 4:12, 4:12].sum()) > 0  # the digit sits in the middle


def test_make_decoy_digits_rejects_a_patch_larger_than_the_padding():
    with pytest.raises(ValueError, match="between 1 and pad"):
        make_decoy_digits(patch=5, pad=4)


def test_decoy_cnn_homogeneous_only_without_bias():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 16, 16)
    free, biased = decoy_cnn(bias=False).eval(), decoy_cnn(bias=True).eval()
    assert torch.allclose(free(2.5 * x), 2.5 * free(x), atol=1e-5)
    assert not torch.allclose(biased(2.5 * x), 2.5 * biased(x), atol=1e-3)
    assert decoy_cnn(image_size=12)(torch.rand(2, 1, 12, 12)).shape == (2, 10)
    with pytest.raises(ValueError, match="image_size must be even"):
        decoy_cnn(image_size=13)


def test_decoy_share_hand_values():
    a = torch.tensor([[1.0, -3.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    m = torch.tensor([0.0, 1.0, 0.0, 0.0])
    assert torch.allclose(decoy_share(a, m), torch.tensor([0.75, 0.25, 0.0]))
    with pytest.raises(ValueError, match="does not broadcast"):
        decoy_share(a, torch.ones(3))


def test_evaluate_xgradient_share_equals_ig_share_and_restores_mode(data):
    torch.manual_seed(0)
    model = decoy_cnn(bias=False).train()
    small = type(data)(*(t[:40] for t in (data.x_train, data.y_train, data.mask_train)),
                       data.x_test[:40], data.y_test[:40], data.mask_test[:40],
                       data.x_train_clean[:40], data.x_test_clean[:40])
    exact = evaluate_decoy(model, small, homogeneous=True)
    ig = evaluate_decoy(model, small, homogeneous=False, n_steps=8)  # exact on a ray: degree 1
    assert model.training
    assert exact["accuracy"] == ig["accuracy"]
    assert exact["decoy_share"] == pytest.approx(ig["decoy_share"], rel=1e-4)
    assert 0.0 < exact["decoy_share"] < 1.0


def test_decoy_demo_writes_heatmaps_and_reports_numbers(tmp_path, one_thread):
    messages = []
    before = torch.random.get_rng_state()
    res = decoy_demo(tmp_path / "xgrad_demo_decoy.png", seed=0, quick=True, log=messages.append)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is left alone
    assert res["heatmap"] == tmp_path / "xgrad_demo_decoy.png"
    assert res["heatmap"].stat().st_size > 0
    for key in ("plain", "xgrad_prior"):
        assert set(res[key]) == {"accuracy", "clean_accuracy", "decoy_share", "seconds_per_epoch"}
    # the prior moves attribution off the decoy and the accuracy on random decoys up
    assert res["xgrad_prior"]["decoy_share"] < 0.5 * res["plain"]["decoy_share"]
    assert res["xgrad_prior"]["accuracy"] > res["plain"]["accuracy"]
    assert any("decoy attribution share" in msg for msg in messages)
