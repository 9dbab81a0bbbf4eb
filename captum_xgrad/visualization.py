"""Grids of many attribution maps of one example, drawn with Captum's visualization."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ["visualize_targets"]

ArrayLike = Union[torch.Tensor, np.ndarray]


def _numpy(a: ArrayLike) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().float().numpy()
    return np.asarray(a, dtype=np.float64)


def _to_hwc(a: ArrayLike, what: str) -> np.ndarray:
    """(C, H, W) or (H, W) tensor/array -> (H, W, C) float numpy array."""
    a = _numpy(a)
    if a.ndim not in (2, 3):
        raise ValueError(f"{what} has shape {a.shape}; expected (C, H, W) or (H, W) for one map.")
    return a[:, :, None] if a.ndim == 2 else np.transpose(a, (1, 2, 0))


def _show_image(ax: Any, image: np.ndarray, title: str) -> None:
    """Draw an (H, W, C) image (gray if one channel) without ticks."""
    ax.imshow(image[:, :, 0] if image.shape[2] == 1 else image, cmap="gray")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def visualize_targets(
    attributions: ArrayLike, original_image: Optional[ArrayLike] = None, *,
    targets: Optional[Sequence[Any]] = None,
    class_names: Optional[Union[Sequence[str], Mapping[Any, str]]] = None,
    method: str = "heat_map", sign: str = "all", ncols: int = 5,
    outlier_perc: Union[int, float] = 2, cmap: Optional[str] = None, show_image: bool = True,
    title: Optional[str] = None, panel_size: float = 2.0,
) -> Tuple[Any, np.ndarray]:
    """Lay out the T maps of one example as a grid, one Captum plot per target.

    Each map is drawn and normalised on its own by
    :func:`captum.attr.visualization.visualize_image_attr`: where each class looks, not how much.

    Parameters
    ----------
    attributions : Tensor or ndarray
        ``(T, C, H, W)`` or ``(T, H, W)``, e.g. ``XGradient(model).attribute_targets(x)[i]``.
    original_image : Tensor or ndarray, optional
        ``(C, H, W)`` or ``(H, W)`` in ``[0, 1]``: the first panel, and needed by every
        ``method`` but ``"heat_map"``.
    targets : sequence, optional
        The target of each map (default ``0..T-1``).
    class_names : sequence of str or mapping, optional
        Panel titles, indexed or keyed by target (default ``"target <t>"``).
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
        Outside :mod:`matplotlib.pyplot` (nothing to close); ``fig.savefig(path)``.
    axes : ndarray of matplotlib.axes.Axes
        Shape ``(rows, ncols)``; unused panels are off.

    Raises
    ------
    ValueError
        If ``attributions`` is not 3-D or 4-D, ``targets`` or ``class_names`` do not cover
        the maps, ``ncols`` is not positive, the image size differs, or ``method`` needs
        ``original_image`` and it is missing.

    Examples
    --------
    >>> from captum_xgrad.visualization import visualize_targets
    >>> maps, image = torch.randn(3, 1, 8, 8), torch.rand(1, 8, 8)  # T=3 maps of one image
    >>> fig, axes = visualize_targets(maps, image, class_names=["cat", "dog", "owl"], ncols=4)
    >>> [ax.get_title() for ax in axes.flat]
    ['input', 'cat', 'dog', 'owl']
    """
    from captum.attr import visualization as viz
    from matplotlib.figure import Figure

    attributions = _numpy(attributions)
    if attributions.ndim not in (3, 4):
        raise ValueError(
            f"attributions has shape {attributions.shape}; expected (T, C, H, W) or "
            "(T, H, W): the maps of ONE example (index the batch first, e.g. maps[0])."
        )
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}.")
    targets = list(range(len(attributions)) if targets is None else targets)
    if len(targets) != len(attributions):
        raise ValueError(
            f"got {len(targets)} targets for {len(attributions)} maps; pass one target per map."
        )
    try:
        names = [f"target {t}" if class_names is None else str(class_names[t]) for t in targets]
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
    first = int(show_image and image is not None)  # panel of the first map
    panels = len(maps) + first
    cols = min(ncols, panels)
    rows = -(-panels // cols)
    fig = Figure(figsize=(panel_size * cols, panel_size * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = list(axes.flat)
    if first:
        _show_image(flat[0], image, "input")
    for ax, a, name in zip(flat[first:], maps, names):
        viz.visualize_image_attr(
            a, image, method=method, sign=sign, plt_fig_axis=(fig, ax), use_pyplot=False,
            outlier_perc=outlier_perc, cmap=cmap, title=name,
        )
        ax.title.set_fontsize(9)
    for ax in flat[panels:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig, axes
