"""The masking metrics of benchmarks/masking.py on hand-made cases with known answers.

A model that reads exactly one pixel ``p`` of a 4x4 image (target logit ``10 * x[p]``,
the other class a constant 1); the images are all ones and the fill all zeros, so the
target logit is 10 where ``p`` is kept and 0 where it is filled, and the prediction is
right exactly when ``p`` is kept. Fractions 0.25, 0.5, 1 keep k = 4, 8, 16 pixels.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _load_masking():
    spec = importlib.util.spec_from_file_location("_bench_masking", ROOT / "benchmarks" / "masking.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


masking = _load_masking()
P = 5  # the pixel the model reads
FRACTIONS = [0.25, 0.5, 1.0]


def one_pixel_model(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1)
    return torch.stack([10.0 * flat[:, P], torch.ones(len(x))], dim=1)


def _attr(values) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32).view(1, 1, 4, 4)


def pointing_at_p() -> torch.Tensor:
    """All positive, p ranked first."""
    a = 0.5 - 0.01 * torch.arange(16, dtype=torch.float32)
    a[P] = 1.0
    return _attr(a)


def pointing_elsewhere() -> torch.Tensor:
    """All positive, p ranked last."""
    a = 0.5 - 0.01 * torch.arange(16, dtype=torch.float32)
    a[P] = 0.001
    return _attr(a)


def _curves(attr):
    x = torch.ones(1, 1, 4, 4)
    return masking.masking_curves(one_pixel_model, x, attr, torch.tensor([0]), torch.zeros_like(x),
                                  FRACTIONS)


def _aucs(attr):
    return masking.masking_aucs(_curves(attr), FRACTIONS)


# hand-computed trapezoids over [0.25, 0.5, 1]: widths 0.25 and 0.5
AUC_ALWAYS_10 = 0.25 * 10 + 0.5 * 10  # 7.5
AUC_ONLY_AT_1 = 0.25 * 0 + 0.5 * (0 + 10) / 2  # 2.5


def test_attribution_at_the_pixel_is_best_on_keep_and_worst_on_remove():
    curves = _curves(pointing_at_p())
    np.testing.assert_allclose(curves["keep_positive"], [[10, 10, 10]])
    np.testing.assert_allclose(curves["remove_positive"], [[0, 0, 10]])
    aucs = _aucs(pointing_at_p())
    assert aucs["keep_positive"] == pytest.approx(AUC_ALWAYS_10)
    assert aucs["remove_positive"] == pytest.approx(AUC_ONLY_AT_1)
    # absolute order: accuracy, right exactly when p is kept
    assert aucs["keep_absolute"] == pytest.approx(0.75)
    assert aucs["remove_absolute"] == pytest.approx(0.25)
    # all attributions positive: nothing is a candidate for the negative order, all filled
    assert aucs["keep_negative"] == 0.0 and aucs["remove_negative"] == 0.0


def test_attribution_elsewhere_scores_the_opposite():
    aucs = _aucs(pointing_elsewhere())
    assert aucs["keep_positive"] == pytest.approx(AUC_ONLY_AT_1)
    assert aucs["remove_positive"] == pytest.approx(AUC_ALWAYS_10)
    assert aucs["keep_absolute"] == pytest.approx(0.25)
    assert aucs["remove_absolute"] == pytest.approx(0.75)
    good = _aucs(pointing_at_p())
    for name, higher in masking.HIGHER_IS_BETTER.items():
        if "negative" in name:
            continue
        assert (good[name] > aucs[name]) == higher, name


def test_negative_order_ranks_the_most_negative_pixel_first():
    a = 0.5 - 0.01 * torch.arange(16, dtype=torch.float32)
    a[P] = -1.0  # the only negative pixel
    aucs = _aucs(_attr(a))
    # only one candidate: k = min(floor(f * 16), 1) = 1 at every fraction, and it is p
    assert aucs["keep_negative"] == pytest.approx(AUC_ALWAYS_10)
    assert aucs["remove_negative"] == pytest.approx(AUC_ALWAYS_10)
    # for the positive order p is never a candidate: always filled
    assert aucs["keep_positive"] == 0.0 and aucs["remove_positive"] == 0.0
    # absolute: |a_p| = 1 is the largest
    assert aucs["keep_absolute"] == pytest.approx(0.75)


def test_number_kept_is_capped_by_the_positive_pixels():
    a = torch.zeros(16)
    a[[1, 2]] = torch.tensor([2.0, 1.0])
    a[3] = -1.0
    for f, mode, expected in [(0.25, "keep", {1, 2}), (1.0, "keep", {1, 2}),
                              (0.0625, "keep", {1}), (0.0625, "remove", {2}),
                              (0.125, "remove", {1, 2})]:
        kept = masking.keep_mask(_attr(a), f, "positive", mode).flatten().nonzero().flatten()
        assert set(kept.tolist()) == expected, (f, mode)
    assert not masking.keep_mask(_attr(a), 0.01, "positive", "keep").any()  # floor(0.16) = 0


def test_curves_are_per_image_and_auc_is_the_trapezoid():
    x = torch.ones(2, 1, 4, 4)
    attr = torch.cat([pointing_at_p(), pointing_elsewhere()])
    curves = masking.masking_curves(one_pixel_model, x, attr, torch.tensor([0, 0]), torch.zeros_like(x),
                                    FRACTIONS, orders=["positive"], modes=["keep"])
    assert set(curves) == {"keep_positive"}
    np.testing.assert_allclose(curves["keep_positive"], [[10, 10, 10], [0, 0, 10]])
    auc = masking.masking_aucs(curves, FRACTIONS)["keep_positive"]
    assert auc == pytest.approx((AUC_ALWAYS_10 + AUC_ONLY_AT_1) / 2)
    assert masking.curve_auc([0.0, 1.0, 3.0], np.array([1.0, 3.0, 3.0])) == pytest.approx(2 + 6)


def test_fill_replaces_the_masked_pixels_with_the_blurred_image():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 8, 8)
    fill = masking.blur_fill(x, 5, 2.0)
    assert fill.shape == x.shape and not torch.allclose(fill, x)
    const = torch.full((1, 1, 8, 8), 0.7)
    torch.testing.assert_close(masking.blur_fill(const, 5, 2.0), const)
    seen = []

    def recorder(z):
        seen.append(z.clone())
        return torch.zeros(len(z), 2)

    attr = torch.rand(3, 1, 8, 8) + 0.1  # all positive
    masking.masking_curves(recorder, x, attr, torch.zeros(3, dtype=torch.long), fill, [0.5, 1.0],
                           orders=["positive"], modes=["keep"])
    keep = masking.keep_mask(attr, 0.5, "positive", "keep")
    torch.testing.assert_close(seen[0], torch.where(keep, x, fill))
    assert int(keep.sum()) == 3 * 32
    torch.testing.assert_close(seen[1], x)  # everything positive, fraction 1: all kept


def test_bad_input_is_rejected_with_a_clear_message():
    a = pointing_at_p()
    with pytest.raises(ValueError, match="order"):
        masking.keep_mask(a, 0.5, "largest", "keep")
    with pytest.raises(ValueError, match="mode"):
        masking.keep_mask(a, 0.5, "positive", "delete")
    with pytest.raises(ValueError, match="fraction"):
        masking.keep_mask(a, 1.5, "positive", "keep")
    x = torch.ones(1, 1, 4, 4)
    with pytest.raises(ValueError, match="same"):
        masking.masking_curves(one_pixel_model, x, a, torch.tensor([0]), torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="increase"):
        masking.masking_curves(one_pixel_model, x, a, torch.tensor([0]), torch.zeros_like(x), [0.5, 0.25])
