r"""``captum-xgrad demo``: X-Gradient vs Integrated Gradients on scikit-learn's digits.

Trains a bias-free CNN on the bundled 8x8 digits, compares :class:`~captum_xgrad.XGradient`
with Captum's IntegratedGradients and plots heat maps, then runs a short decoy-digits study
(a patch whose shade encodes the label in training only, after DecoyMNIST) where a mask prior
removes the shortcut. Randomness comes from local generators seeded by ``seed``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from captum.attr import IntegratedGradients
from torch import Tensor, nn

from ._core.state import preserve_model_state
from .priors import mask_prior
from .training import AttributionMethod, AttributionPrior, XGradientMethod
from .visualization import _show_image, visualize_targets
from .xgradient import XGradient

__all__ = [
    "DecoyDigits", "add_arguments", "compare_with_ig", "decoy_demo", "decoy_share", "digits_xcnn",
    "evaluate_decoy", "ig_attributions", "load_digits_tensors", "plot_all_classes",
    "make_decoy_digits", "plot_attributions", "run", "train_classifier", "train_with_prior",
]

Log = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, flush=True)


def load_digits_tensors(
    test_fraction: float = 0.2, seed: int = 0
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Load scikit-learn's digits, ``float32`` ``(N, 1, 8, 8)`` in ``[0, 1]``, with labels.

    Parameters
    ----------
    test_fraction : float, default 0.2
        Fraction of the 1797 images held out for testing (stratified).
    seed : int, default 0
        Seed of the split.

    Returns
    -------
    tuple of Tensor
        ``x_train, y_train, x_test, y_test``.

    Raises
    ------
    ImportError
        If scikit-learn is missing (install the ``demo`` extra).

    Examples
    --------
    >>> from captum_xgrad.demo import load_digits_tensors
    >>> x_train, y_train, x_test, y_test = load_digits_tensors()
    >>> tuple(x_test.shape), float(x_train.max())
    ((360, 1, 8, 8), 1.0)
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - exercised only without sklearn
        raise ImportError("the demo needs scikit-learn: pip install 'captum-xgrad[demo]'") from exc
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(
        list(range(len(y))), test_size=test_fraction, random_state=seed, stratify=data.target
    )
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


def digits_xcnn(
    num_classes: int = 10, width: int = 16, *, bias: bool = False, image_size: int = 8,
    generator: Optional[torch.Generator] = None,
) -> nn.Sequential:
    """A small CNN for the digits: bias-free (nonnegatively homogeneous of degree 1) by default.

    ``conv3x3 - ReLU - conv3x3 - ReLU - maxpool2 - linear(64) - ReLU - linear``. Without
    biases X-Gradient equals Integrated Gradients (zero baseline) on it exactly.

    Parameters
    ----------
    num_classes : int, default 10
        Number of outputs.
    width : int, default 16
        Channels of the first convolution (the second has twice as many).
    bias : bool, default False
        Give the layers biases (then the model is not homogeneous).
    image_size : int, default 8
        Side of the square one-channel input (16 for the decoy digits); even.
    generator : torch.Generator, optional
        Draws PyTorch's default init :math:`U(\\pm 1/\\sqrt{fan_{in}})`; else the global RNG.

    Returns
    -------
    torch.nn.Sequential

    Raises
    ------
    ValueError
        If ``image_size`` is odd or smaller than 2.

    Examples
    --------
    >>> from captum_xgrad.demo import digits_xcnn
    >>> model, x = digits_xcnn(generator=torch.Generator().manual_seed(0)), torch.rand(2, 1, 8, 8)
    >>> torch.allclose(model(3 * x), 3 * model(x), atol=1e-5)
    True
    >>> digits_xcnn(image_size=16, bias=True)(torch.rand(2, 1, 16, 16)).shape
    torch.Size([2, 10])
    """
    if image_size < 2 or image_size % 2:
        raise ValueError(f"image_size must be even and >= 2, got {image_size}.")
    with torch.device("meta") if generator is not None else contextlib.nullcontext():
        model = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=bias), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=bias), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(2 * width * (image_size // 2) ** 2, 64, bias=bias), nn.ReLU(),
            nn.Linear(64, num_classes, bias=bias),
        )
    if generator is None:
        return model
    model = model.to_empty(device="cpu")  # built on "meta": nothing drawn from the global RNG
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                bound = 1.0 / math.sqrt(layer.weight[0].numel())
                for p in layer.parameters():
                    p.uniform_(-bound, bound, generator=generator)
    return model


def _fit(
    model: nn.Module, n: int, step: Callable[[Tensor], List[Tensor]], epochs: int,
    batch_size: int, lr: float, seed: int, log: Optional[Log], line: str,
) -> List[float]:
    """Adam over seeded batch orders; ``step(idx)`` returns the loss, then logged terms."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    times = []
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen)
        start = time.perf_counter()
        sums: List[float] = []
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            losses = step(idx)
            losses[0].backward()
            opt.step()
            terms = [float(v.detach()) * len(idx) for v in losses]
            sums = [s + t for s, t in zip(sums, terms)] if sums else terms
        times.append(time.perf_counter() - start)
        if log is not None:
            log(line.format(*(s / n for s in sums), e=epoch + 1, epochs=epochs, s=times[-1]))
    return times


def train_classifier(
    model: nn.Module, x: Tensor, y: Tensor, epochs: int = 8, batch_size: int = 64,
    lr: float = 3e-3, seed: int = 0, log: Optional[Log] = None,
) -> nn.Module:
    """Train ``model`` in place with Adam and cross-entropy; returns it in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier.
    x, y : Tensor
        Training inputs and integer labels.
    epochs, batch_size, lr, seed :
        Optimisation settings (the seed fixes the batch order).
    log : callable, optional
        Called with one progress line per epoch.

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> from captum_xgrad.demo import digits_xcnn, train_classifier
    >>> x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    >>> train_classifier(digits_xcnn(), x, y, epochs=1).training
    False
    """
    loss_fn = nn.CrossEntropyLoss()
    line = "  epoch {e}/{epochs}: loss {0:.4f} ({s:.2f} s)"
    _fit(model, len(x), lambda idx: [loss_fn(model(x[idx]), y[idx])], epochs, batch_size, lr,
         seed, log, line)
    return model.eval()


def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _mean_time(fn: Callable[[], object], repeats: int) -> float:
    from torch.utils.benchmark import Timer

    fn()  # warm-up
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return float(timer.timeit(repeats).mean)


def compare_with_ig(
    model: nn.Module, x: Tensor, target: Tensor, n_steps: int = 50, repeats: int = 5
) -> Dict[str, object]:
    """Compare XGradient with Captum's IntegratedGradients (``n_steps``) on one batch.

    Parameters
    ----------
    model : torch.nn.Module
        A homogeneous model in eval mode.
    x, target : Tensor
        Batch of inputs and one class index per example.
    n_steps : int, default 50
        Steps of the Integrated Gradients reference.
    repeats : int, default 5
        Timed calls of each method (after a warm-up; :class:`torch.utils.benchmark.Timer`).

    Returns
    -------
    dict
        ``xgrad``, ``ig`` (attributions), ``max_rel_error`` (:math:`\\max|XG - IG| / \\max|IG|`),
        ``completeness_error`` (:math:`\\max|\\sum_i XG_i - f(x)| / \\max|f(x)|`), ``delta``,
        ``t_xgrad``, ``t_ig`` (mean seconds) and ``speedup``.

    Examples
    --------
    >>> from captum_xgrad.demo import compare_with_ig, digits_xcnn
    >>> x, target = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    >>> compare_with_ig(digits_xcnn().eval(), x, target, repeats=1)["max_rel_error"] < 1e-4
    True
    """
    xg, ig = XGradient(model), IntegratedGradients(model)
    a_xg, delta = xg.attribute(x, target=target, return_convergence_delta=True)
    a_ig = ig.attribute(x, target=target, n_steps=n_steps)
    with torch.no_grad():
        f_x = model(x).gather(1, target.view(-1, 1)).squeeze(1)
    sums = a_xg.reshape(len(x), -1).sum(1)
    t_xg = _mean_time(lambda: xg.attribute(x, target=target), repeats)
    t_ig = _mean_time(lambda: ig.attribute(x, target=target, n_steps=n_steps), repeats)
    scale = float(a_ig.abs().max())
    return {
        "xgrad": a_xg, "ig": a_ig, "delta": delta, "t_xgrad": t_xg, "t_ig": t_ig,
        "max_rel_error": float((a_xg - a_ig).abs().max()) / max(scale, 1e-30),
        "completeness_error": float((sums - f_x).abs().max()) / max(float(f_x.abs().max()), 1e-30),
        "speedup": t_ig / t_xg if t_xg > 0 else math.inf,
    }


@dataclass(frozen=True)
class DecoyDigits:
    """Decoy digits from :func:`make_decoy_digits`: ``float32`` ``(N, 1, 16, 16)`` in ``[0, 1]``.

    Parameters
    ----------
    x_train, y_train, mask_train : Tensor
        Training images (the decoy shade encodes the label), labels, masks (1 on the decoy).
    x_test, y_test, mask_test : Tensor
        Test images (random decoy shade), labels and masks.
    x_train_clean, x_test_clean : Tensor
        The same images without the patch.

    Raises
    ------
    TypeError
        If a field is missing (it is a plain dataclass).

    Examples
    --------
    >>> from captum_xgrad.demo import make_decoy_digits
    >>> data = make_decoy_digits(seed=0)
    >>> tuple(data.x_train.shape[1:]), bool((data.mask_train.sum((1, 2, 3)) == 16).all())
    ((1, 16, 16), True)
    """

    x_train: Tensor
    y_train: Tensor
    mask_train: Tensor
    x_test: Tensor
    y_test: Tensor
    mask_test: Tensor
    x_train_clean: Tensor
    x_test_clean: Tensor


def _add_decoys(
    images: Tensor, shade_labels: Tensor, pad: int, patch: int, gen: torch.Generator
) -> Tuple[Tensor, Tensor, Tensor]:
    """Pad, then paint a patch of shade ``1 - 0.08 * label`` in a random corner."""
    clean = nn.functional.pad(images, (pad, pad, pad, pad))
    size = clean.shape[-1]
    corners = clean.new_zeros((4,) + clean.shape[1:])
    for c, (r0, c0) in enumerate(product((0, size - patch), repeat=2)):
        corners[c, :, r0 : r0 + patch, c0 : c0 + patch] = 1.0
    mask = corners[torch.randint(0, 4, (len(images),), generator=gen)]
    shades = (1.0 - 0.08 * shade_labels.float()).view(-1, 1, 1, 1)
    return clean * (1 - mask) + mask * shades, mask, clean


def make_decoy_digits(
    seed: int = 0, test_fraction: float = 0.2, patch: int = 4, pad: int = 4
) -> DecoyDigits:
    r"""Pad the digits by ``pad`` and put a ``patch`` x ``patch`` decoy in a random corner.

    The decoy (in the padding, hiding no ink) has shade :math:`s = 1 - 0.08\,c > 0`, with
    :math:`c` the label in training and a random digit at test time.

    Parameters
    ----------
    seed : int, default 0
        Seed of the split, the corners and the test-time shades.
    test_fraction : float, default 0.2
        Fraction held out for testing.
    patch, pad : int
        Side of the decoy square and the padding per side.

    Returns
    -------
    DecoyDigits

    Raises
    ------
    ValueError
        If ``patch`` is not an int between 1 and ``pad``.

    Examples
    --------
    >>> from captum_xgrad.demo import make_decoy_digits
    >>> data = make_decoy_digits()
    >>> shade = (data.x_train * data.mask_train).amax(dim=(1, 2, 3))
    >>> bool(torch.allclose(shade, 1 - 0.08 * data.y_train.float()))  # encodes the label
    True
    """
    if not isinstance(patch, int) or not isinstance(pad, int) or not 1 <= patch <= pad:
        raise ValueError(
            f"patch must be an int between 1 and pad ({pad}) so that the decoy lies in "
            f"the padding, got patch={patch!r}."
        )
    x_tr, y_tr, x_te, y_te = load_digits_tensors(test_fraction=test_fraction, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    xd_tr, m_tr, xc_tr = _add_decoys(x_tr, y_tr, pad, patch, gen)
    random_labels = torch.randint(0, 10, (len(y_te),), generator=gen)
    xd_te, m_te, xc_te = _add_decoys(x_te, random_labels, pad, patch, gen)
    return DecoyDigits(xd_tr, y_tr, m_tr, xd_te, y_te, m_te, xc_tr, xc_te)


def decoy_share(attributions: Tensor, mask: Tensor) -> Tensor:
    r"""Share of the absolute attribution on the decoy, :math:`\sum_d m_d|a_d| / \sum_d |a_d|`.

    Parameters
    ----------
    attributions, mask : Tensor
        ``(N, ...)``, and a mask broadcastable to it, 1 on the decoy.

    Returns
    -------
    Tensor
        Shape ``(N,)``, in ``[0, 1]`` (0 where all attributions are zero).

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Examples
    --------
    >>> from captum_xgrad.demo import decoy_share
    >>> decoy_share(torch.tensor([[1.0, -3.0]]), torch.tensor([[0.0, 1.0]]))
    tensor([0.7500])
    """
    try:
        mask = torch.broadcast_to(mask, attributions.shape)
    except RuntimeError as exc:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to attributions of "
            f"shape {tuple(attributions.shape)}."
        ) from exc
    a = attributions.detach().abs().reshape(attributions.shape[0], -1)
    m = mask.reshape(attributions.shape[0], -1).to(a.dtype)
    total = a.sum(dim=1)
    share = (a * m).sum(dim=1) / total.clamp_min(1e-30)
    return torch.where(total > 0, share, torch.zeros_like(total))


def ig_attributions(
    model: nn.Module, x: Tensor, target: Tensor, homogeneous: bool, n_steps: int = 32
) -> Tensor:
    """Integrated Gradients (zero baseline): exact by XGradient, or Captum's with ``n_steps``.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier (in eval mode).
    x, target : Tensor
        Images ``(N, 1, H, W)`` and one class index per image.
    homogeneous : bool
        Use :class:`~captum_xgrad.XGradient` (``True``) or Captum's IG (``False``).
    n_steps : int, default 32
        IG steps when ``homogeneous`` is ``False``.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> from captum_xgrad.demo import digits_xcnn, ig_attributions
    >>> model, x, t = digits_xcnn().eval(), torch.rand(2, 1, 8, 8), torch.tensor([1, 2])
    >>> approx = ig_attributions(model, x, t, homogeneous=False, n_steps=4)
    >>> torch.allclose(ig_attributions(model, x, t, homogeneous=True), approx, atol=1e-5)
    True
    """
    if homogeneous:
        return XGradient(model, check="off").attribute(x, target=target)
    return IntegratedGradients(model).attribute(
        x, target=target, n_steps=n_steps, internal_batch_size=len(x)
    )


def evaluate_decoy(
    model: nn.Module, data: DecoyDigits, homogeneous: bool, n_steps: int = 32
) -> Dict[str, float]:
    """Test accuracy (random decoys, no decoy) and decoy share of the true class's IG.

    Parameters
    ----------
    model : torch.nn.Module
        A trained classifier (evaluated in eval mode, then its mode is restored).
    data : DecoyDigits
        The data set.
    homogeneous, n_steps :
        As in :func:`ig_attributions`.

    Returns
    -------
    dict
        ``accuracy``, ``clean_accuracy``, ``decoy_share`` (mean; the decoy is 6.25% of pixels).

    Examples
    --------
    >>> from captum_xgrad.demo import digits_xcnn, evaluate_decoy, make_decoy_digits
    >>> res = evaluate_decoy(digits_xcnn(image_size=16), make_decoy_digits(), homogeneous=True)
    >>> sorted(res)
    ['accuracy', 'clean_accuracy', 'decoy_share']
    """
    with preserve_model_state(model):
        model.eval()
        attr = ig_attributions(model, data.x_test, data.y_test, homogeneous, n_steps)
        return {
            "accuracy": _accuracy(model, data.x_test, data.y_test),
            "clean_accuracy": _accuracy(model, data.x_test_clean, data.y_test),
            "decoy_share": float(decoy_share(attr, data.mask_test).mean()),
        }


def train_with_prior(
    model: nn.Module, x: Tensor, y: Tensor, mask: Tensor,
    method: Optional[AttributionMethod] = None, weight: float = 0.0, epochs: int = 10,
    batch_size: int = 64, lr: float = 1e-3, seed: int = 0, log: Optional[Log] = None,
) -> List[float]:
    r"""Train with Adam on cross-entropy + ``weight`` times the mask prior on ``mask``.

    The loss is :class:`~captum_xgrad.training.AttributionPrior` with
    :func:`~captum_xgrad.priors.mask_prior` on the true-class attribution of ``method``
    (``weight=0`` or ``method=None``: plain training); ``model`` is left in train mode.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place.
    x, y, mask : Tensor
        Training images, labels and decoy masks.
    method : AttributionMethod, optional
        The attribution inside the prior.
    weight : float, default 0.0
        The prior's weight :math:`\lambda`.
    epochs, batch_size, lr, seed, log :
        As in :func:`train_classifier`.

    Returns
    -------
    list of float
        Wall-clock seconds of each epoch.

    Examples
    --------
    >>> from captum_xgrad.demo import digits_xcnn, train_with_prior
    >>> x, y = torch.rand(16, 1, 16, 16), torch.randint(0, 10, (16,))
    >>> len(train_with_prior(digits_xcnn(image_size=16), x, y, torch.zeros_like(x), epochs=1))
    1
    """
    weight = weight if method is not None else 0.0
    attribution = method or XGradientMethod(check=False)
    helper = AttributionPrior(model, mask_prior, weight=weight, attribution=attribution)

    def step(idx: Tensor) -> List[Tensor]:
        parts = helper(x[idx], y[idx], mask[idx])
        return [parts.loss, parts.task_loss, parts.prior_loss]

    line = "    epoch {e}/{epochs}: task {1:.3f}, prior {2:.3g} ({s:.2f} s)"
    return _fit(model, len(x), step, epochs, batch_size, lr, seed, log, line)


def decoy_demo(
    path: Path, seed: int = 0, quick: bool = True, log: Optional[Log] = None
) -> Dict[str, object]:
    """Decoy study: a bias-free CNN trained plainly vs with the X-Gradient mask prior.

    Both are scored by :func:`evaluate_decoy`; ``path`` gets their X-Gradient maps.

    Parameters
    ----------
    path : pathlib.Path
        The PNG to write.
    seed : int, default 0
        Seed of the data, the initial weights and the batch order.
    quick : bool, default True
        4 epochs (a few seconds on a CPU) instead of 12.
    log : callable, optional
        Receives progress lines.

    Returns
    -------
    dict
        ``{"plain": {...}, "xgrad_prior": {...}, "heatmap": Path}``, inner dicts as from
        :func:`evaluate_decoy` plus ``seconds_per_epoch``.

    Raises
    ------
    ImportError
        If scikit-learn or matplotlib is missing (``pip install 'captum-xgrad[demo]'``).

    Examples
    --------
    >>> from pathlib import Path
    >>> from captum_xgrad.demo import decoy_demo
    >>> res = decoy_demo(Path("xgrad_demo_decoy.png"), log=print)  # doctest: +SKIP
    >>> res["xgrad_prior"]["accuracy"] > res["plain"]["accuracy"]  # doctest: +SKIP
    True
    """
    log = log or (lambda msg: None)
    epochs = 4 if quick else 12
    data = make_decoy_digits(seed=seed)
    x, y = data.x_test[:5], data.y_test[:5]
    results: Dict[str, object] = {}
    columns = {}
    for key, label, title, weight in (
        ("plain", "(a) plain bias-free CNN", "plain", 0.0),
        ("xgrad_prior", "(b) bias-free CNN + X-Gradient mask prior", "X-Grad. prior", 10.0),
    ):
        model = digits_xcnn(image_size=16, generator=torch.Generator().manual_seed(seed))
        log(f"  {label}: {epochs} epochs")
        method = XGradientMethod(check=False) if weight else None
        times = train_with_prior(model, data.x_train, data.y_train, data.mask_train,
                                 method=method, weight=weight, epochs=epochs, seed=seed)
        res = evaluate_decoy(model, data, homogeneous=True)
        res["seconds_per_epoch"] = sum(times) / len(times)
        log(
            f"    test accuracy {100 * res['accuracy']:.1f}% with a random decoy, "
            f"{100 * res['clean_accuracy']:.1f}% without a patch; decoy attribution share "
            f"{100 * res['decoy_share']:.1f}%, {res['seconds_per_epoch']:.2f} s/epoch"
        )
        results[key] = res
        columns[title] = ig_attributions(model.eval(), x, y, homogeneous=True)
    results["heatmap"] = plot_attributions(x, columns, path, [f"label {int(t)}" for t in y])
    log(f"  heat maps: {results['heatmap']}")
    return results


def plot_attributions(
    images: Tensor, columns: Dict[str, Tensor], path: Path, titles: Optional[List[str]] = None
) -> Path:
    """Save a grid, one row per image: the image, then one Captum heat map per method.

    Parameters
    ----------
    images : Tensor
        ``(N, C, H, W)`` images in ``[0, 1]``.
    columns : dict of str to Tensor
        Column title -> attributions of the shape of ``images``.
    path : pathlib.Path
        Output PNG (its folder is created if needed).
    titles : list of str, optional
        Row labels (e.g. ``"label 3"``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    IndexError
        If ``titles`` is given with fewer entries than images.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from captum_xgrad.demo import plot_attributions
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = plot_attributions(torch.rand(2, 1, 8, 8), {"XG": torch.randn(2, 1, 8, 8)},
    ...                             pathlib.Path(tmp) / "grid.png")
    ...     out.stat().st_size > 0
    True
    """
    from captum.attr import visualization as viz
    from matplotlib import cm, colors
    from matplotlib.figure import Figure

    n, ncols = images.shape[0], 1 + len(columns)
    height = 2.2 * n + 0.9  # inches: the rows, then the colour bar
    fig = Figure(figsize=(2.2 * ncols, height))
    axes = fig.subplots(n, ncols, squeeze=False)
    for r in range(n):
        img = images[r].permute(1, 2, 0).detach().cpu().numpy()
        _show_image(axes[r][0], img, titles[r] if titles else "input")
        for c, (name, attr) in enumerate(columns.items(), start=1):
            viz.visualize_image_attr(
                attr[r].permute(1, 2, 0).detach().cpu().numpy(), img, method="heat_map",
                sign="all", plt_fig_axis=(fig, axes[r][c]), use_pyplot=False, title=name,
                outlier_perc=1,
            )
            axes[r][c].title.set_fontsize(9)
    # Captum's sign="all" maps [-1, 1] (scaled by the 99th percentile) to red-white-green
    fig.tight_layout(rect=(0, 0.9 / height, 1, 1))
    cmap = colors.LinearSegmentedColormap.from_list("RdWhGn", ["red", "white", "green"])
    bar = fig.colorbar(
        cm.ScalarMappable(norm=colors.Normalize(-1, 1), cmap=cmap), ticks=[-1, 0, 1],
        cax=fig.add_axes((0.25, 0.35 / height, 0.5, 0.18 / height)), orientation="horizontal",
    )
    bar.ax.set_xticklabels(["negative", "0", "positive"], fontsize=7)
    bar.set_label("attribution / its 99th percentile of |attribution|: green raises the "
                  "class score, red lowers it", fontsize=7)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_all_classes(
    model: nn.Module, image: Tensor, path: Path, label: Optional[int] = None
) -> Path:
    """Save the X-Gradient maps of every class of one image (one ``attribute_targets`` call).

    Drawn by :func:`~captum_xgrad.visualization.visualize_targets`, titled with probabilities.

    Parameters
    ----------
    model : torch.nn.Module
        A homogeneous classifier in eval mode.
    image : Tensor
        One image, ``(C, H, W)``, values in ``[0, 1]``.
    path : pathlib.Path
        Output PNG.
    label : int, optional
        The true class, shown in the figure title.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from captum_xgrad.demo import digits_xcnn, plot_all_classes
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = pathlib.Path(tmp) / "all.png"
    ...     out = plot_all_classes(digits_xcnn().eval(), torch.rand(1, 8, 8), out)
    ...     out.stat().st_size > 0
    True
    """
    x = image.unsqueeze(0)
    maps = XGradient(model).attribute_targets(x)[0]  # (num_classes, C, H, W)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)[0]
    names = [f"class {c}: p={float(p):.2f}" for c, p in enumerate(probs)]
    title = f"X-Gradient of every class (predicted {int(probs.argmax())}"
    title += f", label {label})" if label is not None else ")"
    fig, _ = visualize_targets(maps, image, class_names=names, ncols=6, title=title)
    return _save(fig, path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo`` options ``--out``, ``--epochs``, ``--batch``, ``--seed``, ``--no-decoy``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The (sub-)parser to extend.

    Raises
    ------
    argparse.ArgumentError
        If ``parser`` already defines one of these options.

    Examples
    --------
    >>> import argparse
    >>> from captum_xgrad.demo import add_arguments
    >>> p = argparse.ArgumentParser()
    >>> add_arguments(p)
    >>> p.parse_args(["--batch", "8", "--no-decoy"]).batch
    8
    """
    parser.add_argument("--out", type=Path, default=Path("xgrad_demo.png"),
                        help="PNG to write the heat maps to; the decoy study's heat maps go "
                             "next to it as <stem>_decoy.png (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default: 8)")
    parser.add_argument("--batch", type=int, default=64,
                        help="test images to attribute (default: 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--no-decoy", action="store_true",
                        help="skip the short spurious-correlation (decoy) study")


def run(args: argparse.Namespace, log: Log = _print) -> int:
    """Run the demo: train, attribute, compare with IG, plot, then the decoy study.

    Parameters
    ----------
    args : argparse.Namespace
        Options from :func:`add_arguments`; ``out`` also names ``<stem>_all_classes.png``
        and ``<stem>_decoy.png``.
    log : callable, default print
        Receives the progress lines.

    Returns
    -------
    int
        0 when XGradient agrees with IG to 1e-4 and completeness holds, else 1.

    Raises
    ------
    ImportError
        If scikit-learn or matplotlib is missing (``pip install 'captum-xgrad[demo]'``).

    Examples
    --------
    >>> import argparse, pathlib, tempfile
    >>> from captum_xgrad.demo import run
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     args = argparse.Namespace(out=pathlib.Path(tmp) / "demo.png", epochs=1, batch=4,
    ...                               seed=0, no_decoy=True)
    ...     run(args, log=lambda line: None)
    0
    """
    t_start = time.perf_counter()
    out = Path(args.out)
    log("captum-xgrad demo: X-Gradient (1 backward pass) vs Integrated Gradients (n_steps=50)")
    log(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    log("[1/4] loading scikit-learn's digits (1797 8x8 images, shipped with scikit-learn)")
    x_train, y_train, x_test, y_test = load_digits_tensors(seed=args.seed)
    log(f"[2/4] training a bias-free CNN (an X-DNN) for {args.epochs} epochs")
    model = digits_xcnn(generator=torch.Generator().manual_seed(args.seed))
    model = train_classifier(model, x_train, y_train, epochs=args.epochs, seed=args.seed, log=log)
    log(f"  test accuracy: {100 * _accuracy(model, x_test, y_test):.1f}%")
    log(f"[3/4] attributing {args.batch} test images to their predicted class")
    x = x_test[: args.batch]
    with torch.no_grad():
        pred = model(x).argmax(1)
    res = compare_with_ig(model, x, pred)
    ok = res["max_rel_error"] <= 1e-4 and res["completeness_error"] <= 1e-4
    log(f"  max |XGradient - IG| / max |IG|        : {res['max_rel_error']:.2e}")
    log(f"  completeness |sum(attr) - f(x)| / |f(x)|: {res['completeness_error']:.2e}")
    log(f"  X-Gradient convergence delta (max abs)  : {float(res['delta'].abs().max()):.2e}")
    log(f"  time: XGradient {1e3 * res['t_xgrad']:.2f} ms, IG(n_steps=50) "
        f"{1e3 * res['t_ig']:.2f} ms -> {res['speedup']:.1f}x faster (mean of 5 calls)")
    log(f"[4/4] writing heat maps to {args.out}")
    k = min(6, len(x))
    plot_attributions(
        x[:k], {"X-Gradient": res["xgrad"][:k], "IG (n=50)": res["ig"][:k]}, args.out,
        titles=[f"label {int(y_test[i])}, pred {int(pred[i])}" for i in range(k)],
    )
    all_classes = out.with_name(out.stem + "_all_classes.png")
    log(f"[+] all ten classes of one test image (one attribute_targets call): {all_classes}")
    plot_all_classes(model, x[0], all_classes, label=int(y_test[0]))
    if not args.no_decoy:
        log("[+] short decoy study: a patch that encodes the label in training only")
        decoy_demo(out.with_name(f"{out.stem}_decoy.png"), seed=args.seed, quick=True, log=log)
    log(f"done in {time.perf_counter() - t_start:.1f} s: "
        + ("XGradient equals Integrated Gradients." if ok else "MISMATCH, see above."))
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
