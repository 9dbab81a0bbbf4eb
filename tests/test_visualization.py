"""captum_xgrad.visualization.visualize_targets: a grid of the T maps of one example."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from captum_xgrad import XGradient
from captum_xgrad.visualization import visualize_targets


def _maps(num_classes: int = 4, channels: int = 1):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1, bias=False), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, num_classes, bias=False)).eval()
    x = torch.rand(2, channels, 6, 6)
    return XGradient(model).attribute_targets(x), x


def test_grid_layout_and_class_names(tmp_path):
    maps, x = _maps(7)
    names = [f"class-{i}" for i in range(7)]
    fig, axes = visualize_targets(maps[1], x[1], class_names=names, ncols=3, title="one image")
    assert axes.shape == (3, 3)  # image + 7 maps = 8 panels in rows of 3
    titles = [ax.get_title() for ax in axes.flat]
    assert titles[:8] == ["input"] + names and titles[8] == ""
    assert not axes.flat[8].axison  # the unused panel is off
    assert fig._suptitle.get_text() == "one image"
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 5_000


def test_each_panel_shows_its_own_map():
    # the heat map in panel t is the normalised |map t| of sign "absolute_value"
    maps, x = _maps(3)
    fig, axes = visualize_targets(maps[0], show_image=False, sign="absolute_value",
                                  outlier_perc=0)
    for t, ax in enumerate(axes.flat):
        shown = np.asarray(ax.images[0].get_array())
        expected = maps[0, t].abs().sum(0).numpy()
        np.testing.assert_allclose(shown, expected / expected.max(), rtol=1e-5, atol=1e-6)


def test_targets_and_mapping_names_and_rgb_blend():
    maps, x = _maps(5, channels=3)
    fig, axes = visualize_targets(maps[0, [4, 1]], x[0], targets=[4, 1],
                                  class_names={4: "four", 1: "one"},
                                  method="blended_heat_map")
    assert [ax.get_title() for ax in axes.flat] == ["input", "four", "one"]
    fig, axes = visualize_targets(maps[0, :2].squeeze(1)[:, 0], targets=[7, 8])  # (T, H, W)
    assert [ax.get_title() for ax in axes.flat] == ["target 7", "target 8"]


def test_bad_arguments_are_explained():
    maps, x = _maps(3)
    with pytest.raises(ValueError, match="ONE example"):
        visualize_targets(maps)  # (N, T, C, H, W)
    with pytest.raises(ValueError, match="one target per map"):
        visualize_targets(maps[0], targets=[0, 1])
    with pytest.raises(ValueError, match="class_names"):
        visualize_targets(maps[0], class_names=["a", "b"])
    with pytest.raises(ValueError, match="original_image"):
        visualize_targets(maps[0], method="blended_heat_map")
    with pytest.raises(ValueError, match="ncols"):
        visualize_targets(maps[0], ncols=0)
    with pytest.raises(ValueError, match="6x6"):
        visualize_targets(maps[0], torch.rand(1, 5, 5))


def test_demo_figure_of_all_digit_classes(tmp_path):
    from captum_xgrad import demo

    torch.manual_seed(0)
    model = demo.digits_xcnn().eval()
    image = torch.rand(1, 8, 8)
    path = demo.plot_all_classes(model, image, tmp_path / "xgrad_demo_all_classes.png", label=3)
    assert path.stat().st_size > 5_000
