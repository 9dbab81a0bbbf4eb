"""Plots of many attribution maps of one example, built on Captum's visualization.

:meth:`XGradient.attribute_targets <captum_xgrad.XGradient.attribute_targets>` returns
one map per target; :func:`visualize_targets` lays out the T maps of one example as a
grid (optionally after the image itself), each drawn with
:func:`captum.attr.visualization.visualize_image_attr` and titled with its class name.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ["visualize_targets"]

ArrayLike = Union[torch.Tensor, np.ndarray]


def _to_hwc(a: ArrayLike, what: str) -> np.ndarray:
    """(C, H, W) or (H, W) tensor/array -> (H, W, C) float numpy array."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().float().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2:
        return a[:, :, None]
    if a.ndim == 3:
        return np.transpose(a, (1, 2, 0))
    raise ValueError(
        f"{what} has shape {a.shape}; expected (C, H, W) or (H, W) for one map."
    )


def visualize_targets(
    attributions: ArrayLike,
    original_image: Optional[ArrayLike] = None,
    *,
    targets: Optional[Sequence[Any]] = None,
    class_names: Optional[Union[Sequence[str], Mapping[Any, str]]] = None,
    method: str = "heat_map",
    sign: str = "all",
    ncols: int = 5,
    outlier_perc: Union[int, float] = 2,
    cmap: Optional[str] = None,
    show_image: bool = True,
    title: Optional[str] = None,
    panel_size: float = 2.0,
) -> Tuple[Any, np.ndarray]:
    """Lay out the T attribution maps of one example as a grid of Captum plots.

    Each map is drawn by :func:`captum.attr.visualization.visualize_image_attr` (and
    normalised by it on its own, so the grid compares where each class looks, not
    how strongly).

    Parameters
    ----------
    attributions : Tensor or ndarray
        Shape ``(T, C, H, W)`` (or ``(T, H, W)``): the maps of one example, e.g.
        ``XGradient(model).attribute_targets(x)[i]``.
    original_image : Tensor or ndarray, optional
        The example, ``(C, H, W)`` (or ``(H, W)``), values in ``[0, 1]``. Shown as the
        first panel when ``show_image``, and needed by the methods that draw on it
        (``"blended_heat_map"``, ``"original_image"``, ``"masked_image"``,
        ``"alpha_scaling"``).
    targets : sequence, optional
        The target of each map (default ``0..T-1``), used to look up ``class_names``
        and in the default titles.
    class_names : sequence of str or mapping, optional
        Names of the classes, indexed (or keyed) by target; the panel titles.
        Default: ``"target <t>"``.
    method, sign, outlier_perc, cmap :
        Passed to :func:`~captum.attr.visualization.visualize_image_attr`.
    ncols : int, default 5
        Panels per row.
    show_image : bool, default True
        Show ``original_image`` (when given) as the first panel.
    title : str, optional
        Title of the figure.
    panel_size : float, default 2.0
        Width and height of each panel, in inches.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Not registered with :mod:`matplotlib.pyplot` (nothing to close); save it with
        ``fig.savefig(path)``.
    axes : ndarray of matplotlib.axes.Axes
        Shape ``(rows, ncols)``; unused panels are switched off.

    Raises
    ------
    ValueError
        If ``attributions`` is not 3-D or 4-D, ``targets`` or ``class_names`` do not
        cover the T maps, ``ncols`` is not positive, the image size does not match, or
        ``method`` needs ``original_image`` and it is missing.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad import XGradient
    >>> from captum_xgrad.visualization import visualize_targets
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(),
    ...                       nn.Flatten(), nn.Linear(4 * 8 * 8, 3, bias=False)).eval()
    >>> x = torch.rand(2, 1, 8, 8)
    >>> maps = XGradient(model).attribute_targets(x)        # (2, 3, 1, 8, 8)
    >>> fig, axes = visualize_targets(maps[0], x[0], class_names=["cat", "dog", "owl"],
    ...                               ncols=4)
    >>> [ax.get_title() for ax in axes.flat]
    ['input', 'cat', 'dog', 'owl']
    """
    from captum.attr import visualization as viz
    from matplotlib.figure import Figure

    if isinstance(attributions, torch.Tensor):
        attributions = attributions.detach().cpu().float().numpy()
    attributions = np.asarray(attributions, dtype=np.float64)
    if attributions.ndim not in (3, 4):
        raise ValueError(
            f"attributions has shape {attributions.shape}; expected (T, C, H, W) or "
            "(T, H, W): the maps of ONE example (index the batch first, e.g. maps[0])."
        )
    num_maps = attributions.shape[0]
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}.")
    if targets is None:
        targets = list(range(num_maps))
    targets = list(targets)
    if len(targets) != num_maps:
        raise ValueError(
            f"got {len(targets)} targets for {num_maps} maps; pass one target per map."
        )
    if class_names is None:
        names = [f"target {t}" for t in targets]
    else:
        try:
            names = [str(class_names[t]) for t in targets]  # type: ignore[index]
        except (IndexError, KeyError, TypeError) as exc:
            raise ValueError(
                f"class_names has no entry for one of the targets {targets}: pass a "
                "name for every class (a list indexed by class, or a mapping)."
            ) from exc
    image = None if original_image is None else _to_hwc(original_image, "original_image")
    maps = [_to_hwc(a, "each map") for a in attributions]
    if image is not None and image.shape[:2] != maps[0].shape[:2]:
        raise ValueError(
            f"original_image is {image.shape[0]}x{image.shape[1]} but the maps are "
            f"{maps[0].shape[0]}x{maps[0].shape[1]}."
        )
    if image is None and method != "heat_map":
        raise ValueError(
            f"method={method!r} draws on the image: pass original_image (or use "
            "method='heat_map')."
        )

    with_image = show_image and image is not None
    panels = num_maps + int(with_image)
    cols = min(ncols, panels)
    rows = -(-panels // cols)
    # a Figure outside pyplot: no backend switch, nothing to close; save it with
    # fig.savefig(path) or show it in a notebook
    fig = Figure(figsize=(panel_size * cols, panel_size * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = list(axes.flat)
    k = 0
    if with_image:
        assert image is not None
        ax = flat[0]
        ax.imshow(image[:, :, 0] if image.shape[2] == 1 else image, cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("input", fontsize=9)
        k = 1
    for a, name in zip(maps, names):
        ax = flat[k]
        viz.visualize_image_attr(
            a, image, method=method, sign=sign, plt_fig_axis=(fig, ax), use_pyplot=False,
            outlier_perc=outlier_perc, cmap=cmap, title=name,
        )
        ax.title.set_fontsize(9)
        k += 1
    for ax in flat[k:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig, axes
