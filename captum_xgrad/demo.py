r"""``captum-xgrad demo``: X-Gradient vs Integrated Gradients on a real, offline dataset.

Trains a small bias-free CNN (an X-DNN) on scikit-learn's 8x8 handwritten digits
(shipped with scikit-learn, no download) for a few seconds, then, on a batch of test
images, compares :class:`~captum_xgrad.XGradient` with Captum's
:class:`~captum.attr.IntegratedGradients` (``n_steps=50``): agreement, completeness and
wall time, and writes a PNG of images and attribution heat maps drawn with Captum's
visualization utilities. Then it runs a short version of the spurious-correlation
("decoy digits") experiment: the digits padded to 16x16 get a 4x4 patch in a random
corner whose shade encodes the label in training only, :math:`s = 1 - 0.08\,y` (in the
spirit of Ross et al.'s DecoyMNIST, IJCAI 2017), and a mask prior
(:func:`captum_xgrad.priors.mask_prior`) on the X-Gradient removes the shortcut.

Run it with ``captum-xgrad demo`` (``--help`` for options); every file it writes is
named after ``--out`` (default ``xgrad_demo.png`` and ``xgrad_demo_decoy.png``). The
functions here are usable on their own, e.g. :func:`load_digits_tensors`,
:func:`digits_xcnn` and :func:`make_decoy_digits` in examples and in
``benchmarks/decoy_digits.py``. Randomness comes from local generators seeded by
``seed`` arguments; the global RNG is left alone.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .training import AttributionMethod

__all__ = [
    "DecoyDigits",
    "add_arguments",
    "compare_with_ig",
    "decoy_demo",
    "decoy_share",
    "digits_xcnn",
    "evaluate_decoy",
    "ig_attributions",
    "load_digits_tensors",
    "plot_all_classes",
    "make_decoy_digits",
    "plot_attributions",
    "run",
    "train_classifier",
    "train_with_prior",
]

Log = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, flush=True)


def load_digits_tensors(
    test_fraction: float = 0.2, seed: int = 0
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Load scikit-learn's digits as ``(x_train, y_train, x_test, y_test)``.

    Images are ``float32`` tensors of shape ``(N, 1, 8, 8)`` scaled to ``[0, 1]``; labels
    are ``int64``. The split is stratified and reproducible.

    Parameters
    ----------
    test_fraction : float, default 0.2
        Fraction of the 1797 images held out for testing.
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
        raise ImportError(
            "the demo needs scikit-learn: pip install 'captum-xgrad[demo]'"
        ) from exc
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(
        list(range(len(y))), test_size=test_fraction, random_state=seed, stratify=data.target
    )
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


def digits_xcnn(
    num_classes: int = 10,
    width: int = 16,
    *,
    bias: bool = False,
    image_size: int = 8,
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
        Whether the convolutions and linear layers have biases (then it is not
        homogeneous).
    image_size : int, default 8
        Side of the square one-channel input (8 for the digits, 16 for the decoy
        digits); must be even.
    generator : torch.Generator, optional
        Draws the initial weights (PyTorch's default layer init,
        :math:`U(-1/\\sqrt{fan_{in}}, 1/\\sqrt{fan_{in}})`); without it the global RNG is
        used, as by any ``nn.Module``.

    Returns
    -------
    torch.nn.Sequential

    Raises
    ------
    ValueError
        If ``image_size`` is odd or smaller than 2.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.demo import digits_xcnn
    >>> model = digits_xcnn(generator=torch.Generator().manual_seed(0)).eval()
    >>> x = torch.rand(2, 1, 8, 8)
    >>> torch.allclose(model(3 * x), 3 * model(x), atol=1e-5)
    True
    >>> digits_xcnn(image_size=16, bias=True)(torch.rand(2, 1, 16, 16)).shape
    torch.Size([2, 10])
    """
    if image_size < 2 or image_size % 2:
        raise ValueError(f"image_size must be even and >= 2, got {image_size}.")
    side = image_size // 2

    def build() -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=bias),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=bias),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * side * side, 64, bias=bias),
            nn.ReLU(),
            nn.Linear(64, num_classes, bias=bias),
        )

    if generator is None:
        return build()
    with torch.device("meta"):  # no draw from the global RNG
        model = build()
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                bound = 1.0 / math.sqrt(m.weight[0].numel())
                for p in (m.weight, m.bias):
                    if p is not None:
                        p.uniform_(-bound, bound, generator=generator)
    return model


def train_classifier(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    log: Optional[Log] = None,
) -> nn.Module:
    """Train ``model`` with Adam and cross-entropy; returns it in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier to train (modified in place).
    x, y : Tensor
        Training inputs and integer labels.
    epochs, batch_size, lr, seed :
        Optimisation settings.
    log : callable, optional
        Called with one progress line per epoch.

    Returns
    -------
    torch.nn.Module
        The same model, trained and in eval mode.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.demo import digits_xcnn, train_classifier
    >>> x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    >>> model = train_classifier(digits_xcnn(), x, y, epochs=1)
    >>> model.training
    False
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        total, start = 0.0, time.perf_counter()
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if log is not None:
            log(
                f"  epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f} "
                f"({time.perf_counter() - start:.2f} s)"
            )
    return model.eval()


def _mean_time(fn: Callable[[], object], repeats: int) -> float:
    from torch.utils.benchmark import Timer

    fn()  # warm-up
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return float(timer.timeit(repeats).mean)


def compare_with_ig(
    model: nn.Module, x: Tensor, target: Tensor, n_steps: int = 50, repeats: int = 5
) -> Dict[str, object]:
    """Compare XGradient with Captum's IntegratedGradients on one batch.

    Parameters
    ----------
    model : torch.nn.Module
        A homogeneous model in eval mode.
    x : Tensor
        Batch of inputs.
    target : Tensor
        One class index per example.
    n_steps : int, default 50
        Steps of the Integrated Gradients reference (Gauss-Legendre).
    repeats : int, default 5
        Timed calls of each method (after one warm-up, with
        :class:`torch.utils.benchmark.Timer`); their mean is reported.

    Returns
    -------
    dict
        ``xgrad`` and ``ig`` (the attributions), ``max_rel_error``
        (:math:`\\max|XG - IG| / \\max|IG|`), ``completeness_error`` (largest
        :math:`|\\sum_i XG_i - f(x)|` relative to :math:`\\max|f(x)|`), ``delta``
        (X-Gradient's convergence delta), ``t_xgrad``, ``t_ig`` (seconds) and
        ``speedup``.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.demo import compare_with_ig, digits_xcnn
    >>> model = digits_xcnn().eval()
    >>> x = torch.rand(4, 1, 8, 8)
    >>> res = compare_with_ig(model, x, torch.tensor([0, 1, 2, 3]), repeats=1)
    >>> res["max_rel_error"] < 1e-4
    True
    """
    from captum.attr import IntegratedGradients

    from .xgradient import XGradient

    xg = XGradient(model)
    ig = IntegratedGradients(model)
    a_xg, delta = xg.attribute(x, target=target, return_convergence_delta=True)
    a_ig = ig.attribute(x, target=target, n_steps=n_steps)
    with torch.no_grad():
        f_x = model(x).gather(1, target.view(-1, 1)).squeeze(1)
    sums = a_xg.reshape(len(x), -1).sum(1)
    t_xg = _mean_time(lambda: xg.attribute(x, target=target), repeats)
    t_ig = _mean_time(lambda: ig.attribute(x, target=target, n_steps=n_steps), repeats)
    scale = float(a_ig.abs().max())
    return {
        "xgrad": a_xg,
        "ig": a_ig,
        "max_rel_error": float((a_xg - a_ig).abs().max()) / max(scale, 1e-30),
        "completeness_error": float((sums - f_x).abs().max()) / max(float(f_x.abs().max()), 1e-30),
        "delta": delta,
        "t_xgrad": t_xg,
        "t_ig": t_ig,
        "speedup": t_ig / t_xg if t_xg > 0 else math.inf,
    }


# ---------------------------------------------------------------------------- data
@dataclass(frozen=True)
class DecoyDigits:
    """Decoy digits, as returned by :func:`make_decoy_digits`.

    All images are ``float32`` of shape ``(N, 1, 16, 16)`` in ``[0, 1]``; masks have the
    same shape and are 1 on the decoy patch. ``*_clean`` are the same images without a
    patch (masks still mark where it would be).

    Parameters
    ----------
    x_train, y_train, mask_train : Tensor
        Training images (decoy shade encodes the label), labels and decoy masks.
    x_test, y_test, mask_test : Tensor
        Test images (decoy shade random), labels and decoy masks.
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


def _shade(labels: Tensor) -> Tensor:
    return 1.0 - 0.08 * labels.float()


def _add_decoys(
    images: Tensor, shade_labels: Tensor, pad: int, patch: int, gen: torch.Generator
) -> Tuple[Tensor, Tensor, Tensor]:
    n = images.shape[0]
    clean = nn.functional.pad(images, (pad, pad, pad, pad))
    size = clean.shape[-1]
    corners = torch.randint(0, 4, (n,), generator=gen)
    mask = torch.zeros_like(clean)
    for i in range(n):
        c = int(corners[i])
        r0 = 0 if c in (0, 1) else size - patch
        c0 = 0 if c in (0, 2) else size - patch
        mask[i, :, r0 : r0 + patch, c0 : c0 + patch] = 1.0
    shades = _shade(shade_labels).view(-1, 1, 1, 1)
    decoyed = clean * (1 - mask) + mask * shades
    return decoyed, mask, clean


def make_decoy_digits(
    seed: int = 0, test_fraction: float = 0.2, patch: int = 4, pad: int = 4
) -> DecoyDigits:
    r"""Build the decoy-digits data set from :func:`sklearn.datasets.load_digits`.

    The 8x8 digits (scaled to ``[0, 1]``) are zero-padded by ``pad`` pixels on each
    side, and a ``patch`` x ``patch`` square in a random corner (inside the padding, so
    it never hides ink) is set to the shade :math:`s = 1 - 0.08\,c`, where :math:`c` is
    the label in training and a uniformly random digit at test time. Shades are never 0,
    so the patch is visible to zero-baseline attributions.

    Parameters
    ----------
    seed : int, default 0
        Seed of the stratified split, the corners and the test-time shades.
    test_fraction : float, default 0.2
        Fraction of the 1797 images held out for testing.
    patch : int, default 4
        Side of the decoy square; must not exceed ``pad``.
    pad : int, default 4
        Zero padding on each side.

    Returns
    -------
    DecoyDigits

    Raises
    ------
    ValueError
        If ``patch`` is not between 1 and ``pad``.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.demo import make_decoy_digits
    >>> data = make_decoy_digits()
    >>> tuple(data.x_train.shape), int(data.mask_train[0].sum())
    ((1437, 1, 16, 16), 16)
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


# -------------------------------------------------------------------------- metrics
def decoy_share(attributions: Tensor, mask: Tensor) -> Tensor:
    r"""Share of the absolute attribution that falls on the decoy, per example.

    .. math::

        s_n = \frac{\sum_d m_{nd} |a_{nd}|}{\sum_d |a_{nd}|}

    (0 for an example whose attributions are all zero).

    Parameters
    ----------
    attributions : Tensor
        ``(N, ...)``.
    mask : Tensor
        Same shape (or broadcastable), 1 on the decoy.

    Returns
    -------
    Tensor
        Shape ``(N,)``, values in ``[0, 1]``.

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Examples
    --------
    >>> import torch
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
    return torch.where(total > 0, (a * m).sum(dim=1) / total.clamp_min(1e-30), torch.zeros_like(total))


def ig_attributions(
    model: nn.Module, x: Tensor, target: Tensor, homogeneous: bool, n_steps: int = 32
) -> Tensor:
    """Integrated Gradients (zero baseline) of ``target``: exact or with ``n_steps``.

    For a homogeneous (bias-free) model this is :class:`~captum_xgrad.XGradient`, which
    equals IG exactly in one backward pass; otherwise Captum's
    :class:`~captum.attr.IntegratedGradients` with ``n_steps`` Gauss-Legendre steps.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier (in eval mode).
    x : Tensor
        Images ``(N, 1, H, W)``.
    target : Tensor
        One class index per image.
    homogeneous : bool
        Use X-Gradient (``True``) or Captum's IG (``False``).
    n_steps : int, default 32
        IG steps when ``homogeneous`` is ``False``.

    Returns
    -------
    Tensor
        Attributions of the shape of ``x`` (detached).

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.demo import digits_xcnn, ig_attributions
    >>> model, x, t = digits_xcnn().eval(), torch.rand(2, 1, 8, 8), torch.tensor([1, 2])
    >>> exact = ig_attributions(model, x, t, homogeneous=True)
    >>> approx = ig_attributions(model, x, t, homogeneous=False, n_steps=4)
    >>> torch.allclose(exact, approx, atol=1e-5)
    True
    """
    if homogeneous:
        from .xgradient import XGradient

        return XGradient(model, check="off").attribute(x, target=target)
    from captum.attr import IntegratedGradients

    return IntegratedGradients(model).attribute(
        x, target=target, n_steps=n_steps, internal_batch_size=len(x)
    )


def evaluate_decoy(
    model: nn.Module, data: DecoyDigits, homogeneous: bool, n_steps: int = 32
) -> Dict[str, float]:
    """Test accuracy (random decoys and no decoy) and the decoy attribution share.

    The share is that of Integrated Gradients (zero baseline) of the true class on the
    test images: computed exactly by :class:`~captum_xgrad.XGradient` for a homogeneous
    model, by Captum's ``IntegratedGradients`` with ``n_steps`` otherwise. The decoy
    covers 16 of 256 pixels (6.25%).

    Parameters
    ----------
    model : torch.nn.Module
        A trained classifier (put in eval mode for the evaluation, then restored).
    data : DecoyDigits
        The data set.
    homogeneous : bool
        Whether ``model`` is bias-free (use X-Gradient) or not (use IG).
    n_steps : int, default 32
        IG steps for non-homogeneous models.

    Returns
    -------
    dict
        ``accuracy`` (test images with random decoys), ``clean_accuracy`` (test images
        without a patch), ``decoy_share`` (mean over the test images).

    Examples
    --------
    >>> from captum_xgrad.demo import digits_xcnn, evaluate_decoy, make_decoy_digits
    >>> res = evaluate_decoy(digits_xcnn(image_size=16), make_decoy_digits(), homogeneous=True)
    >>> sorted(res)
    ['accuracy', 'clean_accuracy', 'decoy_share']
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            acc = float((model(data.x_test).argmax(1) == data.y_test).float().mean())
            clean = float((model(data.x_test_clean).argmax(1) == data.y_test).float().mean())
        attr = ig_attributions(model, data.x_test, data.y_test, homogeneous, n_steps)
        share = float(decoy_share(attr, data.mask_test).mean())
    finally:
        model.train(was_training)
    return {"accuracy": acc, "clean_accuracy": clean, "decoy_share": share}


# ------------------------------------------------------------------------- training
def train_with_prior(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    mask: Tensor,
    method: Optional[AttributionMethod] = None,
    weight: float = 0.0,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    log: Optional[Log] = None,
) -> List[float]:
    r"""Train ``model`` with Adam on cross-entropy + ``weight`` times the mask prior.

    Uses :class:`~captum_xgrad.training.AttributionPrior` with
    :func:`~captum_xgrad.priors.mask_prior` on ``mask`` (the decoy) and the true-class
    attribution of ``method``; ``weight=0`` (or ``method=None``) trains plainly.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place (left in train mode).
    x, y, mask : Tensor
        Training images, labels and decoy masks.
    method : AttributionMethod, optional
        The attribution inside the prior.
    weight : float, default 0.0
        The prior's :math:`\lambda`.
    epochs, batch_size, lr, seed :
        Optimisation settings (the seed fixes the batch order).
    log : callable, optional
        Receives one line per epoch.

    Returns
    -------
    list of float
        Wall-clock seconds of each epoch.

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.demo import digits_xcnn, train_with_prior
    >>> x, y = torch.rand(16, 1, 16, 16), torch.randint(0, 10, (16,))
    >>> times = train_with_prior(digits_xcnn(image_size=16), x, y, torch.zeros_like(x), epochs=1)
    >>> len(times)
    1
    """
    from .priors import mask_prior
    from .training import AttributionPrior, XGradientMethod

    if method is None:
        weight = 0.0
    helper = AttributionPrior(
        model, mask_prior, weight=weight, attribution=method or XGradientMethod(check=False)
    )
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    times = []
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        start = time.perf_counter()
        task_sum = prior_sum = 0.0
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            parts = helper(x[idx], y[idx], mask[idx])
            parts.loss.backward()
            opt.step()
            task_sum += float(parts.task_loss.detach()) * len(idx)
            prior_sum += float(parts.prior_loss.detach()) * len(idx)
        times.append(time.perf_counter() - start)
        if log is not None:
            log(
            f"    epoch {epoch + 1}/{epochs}: task {task_sum / len(x):.3f}, prior "
            f"{prior_sum / len(x):.3g} ({times[-1]:.2f} s)"
        )
    return times


def decoy_demo(
    path: Path, seed: int = 0, quick: bool = True, log: Optional[Log] = None
) -> Dict[str, object]:
    """A short decoy study: a plain bias-free CNN vs one trained with the X-Gradient mask prior.

    Trains (a) a bias-free CNN plainly and (b) the same architecture with the
    X-Gradient mask prior on the decoy (``weight=10``), evaluates both on test images
    whose decoy shade is random, and writes a PNG of test images with their X-Gradient
    heat maps for both models (:func:`plot_attributions`).

    Parameters
    ----------
    path : pathlib.Path
        The PNG to write (its folder is created if needed).
    seed : int, default 0
        Seed of the data, the initial weights and the batch order (local generators).
    quick : bool, default True
        4 epochs (a few seconds on a CPU) instead of 12.
    log : callable, optional
        Receives progress lines (e.g. ``print``).

    Returns
    -------
    dict
        ``{"plain": {...}, "xgrad_prior": {...}, "heatmap": Path}`` where each inner
        dict has ``accuracy``, ``clean_accuracy``, ``decoy_share`` and
        ``seconds_per_epoch``.

    Raises
    ------
    ImportError
        If scikit-learn or matplotlib is missing (``pip install 'captum-xgrad[demo]'``).

    Examples
    --------
    A run takes several seconds, so this example is not executed by the doctests:

    >>> from pathlib import Path
    >>> from captum_xgrad.demo import decoy_demo
    >>> res = decoy_demo(Path("xgrad_demo_decoy.png"), log=print)  # doctest: +SKIP
    >>> res["xgrad_prior"]["accuracy"] > res["plain"]["accuracy"]  # doctest: +SKIP
    True
    """
    from .training import XGradientMethod

    log = log or (lambda msg: None)
    epochs = 4 if quick else 12
    data = make_decoy_digits(seed=seed)
    results: Dict[str, object] = {}
    models = {}
    for key, label, weight in (
        ("plain", "(a) plain bias-free CNN", 0.0),
        ("xgrad_prior", "(b) bias-free CNN + X-Gradient mask prior", 10.0),
    ):
        model = digits_xcnn(image_size=16, generator=torch.Generator().manual_seed(seed))
        log(f"  {label}: {epochs} epochs")
        times = train_with_prior(
            model, data.x_train, data.y_train, data.mask_train,
            method=XGradientMethod(check=False) if weight else None, weight=weight,
            epochs=epochs, seed=seed,
        )
        res = evaluate_decoy(model, data, homogeneous=True)
        res["seconds_per_epoch"] = sum(times) / len(times)
        log(
            f"    test accuracy {100 * res['accuracy']:.1f}% with a random decoy, "
            f"{100 * res['clean_accuracy']:.1f}% without a patch; decoy attribution share "
            f"{100 * res['decoy_share']:.1f}%, {res['seconds_per_epoch']:.2f} s/epoch"
        )
        results[key] = res
        models[key] = model.eval()
    k = 5
    x, y = data.x_test[:k], data.y_test[:k]
    titles = {"plain": "plain", "xgrad_prior": "X-Grad. prior"}
    columns = {titles[name]: ig_attributions(m, x, y, homogeneous=True) for name, m in models.items()}
    results["heatmap"] = plot_attributions(x, columns, Path(path),
                                           titles=[f"label {int(t)}" for t in y])
    log(f"  heat maps: {results['heatmap']}")
    return results


def plot_attributions(
    images: Tensor,
    columns: Dict[str, Tensor],
    path: Path,
    titles: Optional[List[str]] = None,
) -> Path:
    """Save a grid: one row per image, the image then one heat map per method.

    Drawn with :func:`captum.attr.visualization.visualize_image_attr`.

    Parameters
    ----------
    images : Tensor
        ``(N, C, H, W)`` images in ``[0, 1]``.
    columns : dict of str to Tensor
        Column title -> attributions of the same shape as ``images``.
    path : pathlib.Path
        Output PNG.
    titles : list of str, optional
        Row labels (e.g. ``"label 3"``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    IndexError
        If ``titles`` is given with fewer entries than images.

    Examples
    --------
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from captum_xgrad.demo import plot_attributions
    >>> images = torch.rand(2, 1, 8, 8)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = plot_attributions(images, {"X-Gradient": torch.randn(2, 1, 8, 8)},
    ...                             Path(tmp) / "grid.png")
    ...     out.stat().st_size > 0
    True
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from captum.attr import visualization as viz

    n = images.shape[0]
    ncols = 1 + len(columns)
    fig, axes = plt.subplots(n, ncols, figsize=(2.2 * ncols, 2.2 * n + 0.9), squeeze=False)
    for r in range(n):
        img = images[r].permute(1, 2, 0).detach().cpu().numpy()
        ax = axes[r][0]
        ax.imshow(img[:, :, 0] if img.shape[2] == 1 else img, cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(titles[r] if titles else "input", fontsize=9)
        for c, (name, attr) in enumerate(columns.items(), start=1):
            a = attr[r].permute(1, 2, 0).detach().cpu().numpy()
            viz.visualize_image_attr(
                a, img, method="heat_map", sign="all", plt_fig_axis=(fig, axes[r][c]),
                use_pyplot=False, title=name, outlier_perc=1,
            )
            axes[r][c].title.set_fontsize(9)
    # the colour legend: Captum's sign="all" heat maps map [-1, 1] to red-white-green,
    # each map scaled by its 99th percentile of |attribution| (outlier_perc=1)
    fig.tight_layout(rect=(0, 0.9 / (2.2 * n + 0.9), 1, 1))
    cax = fig.add_axes((0.25, 0.35 / (2.2 * n + 0.9), 0.5, 0.18 / (2.2 * n + 0.9)))
    bar = fig.colorbar(
        matplotlib.cm.ScalarMappable(
            norm=matplotlib.colors.Normalize(-1, 1),
            cmap=matplotlib.colors.LinearSegmentedColormap.from_list(
                "RdWhGn", ["red", "white", "green"]),
        ),
        cax=cax, orientation="horizontal", ticks=[-1, 0, 1],
    )
    bar.ax.set_xticklabels(["negative", "0", "positive"], fontsize=7)
    bar.set_label("attribution / its 99th percentile of |attribution|: green raises the "
                  "class score, red lowers it", fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all_classes(
    model: nn.Module, image: Tensor, path: Path, label: Optional[int] = None
) -> Path:
    """Save the X-Gradient maps of every class for one image, in one grid.

    All ten maps come from one call of
    :meth:`XGradient.attribute_targets <captum_xgrad.XGradient.attribute_targets>`
    (one forward pass, one batched backward pass) and are drawn with
    :func:`captum_xgrad.visualization.visualize_targets`; each panel is titled with
    the class and the model's probability for it.

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
        ``path``.

    Examples
    --------
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from captum_xgrad.demo import digits_xcnn, plot_all_classes
    >>> model = digits_xcnn().eval()
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = plot_all_classes(model, torch.rand(1, 8, 8), Path(tmp) / "all.png")
    ...     out.stat().st_size > 0
    True
    """
    from .visualization import visualize_targets
    from .xgradient import XGradient

    x = image.unsqueeze(0)
    maps = XGradient(model).attribute_targets(x)[0]  # (num_classes, C, H, W)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)[0]
    names = [f"class {c}: p={float(p):.2f}" for c, p in enumerate(probs)]
    title = f"X-Gradient of every class (predicted {int(probs.argmax())}"
    title += f", label {label})" if label is not None else ")"
    fig, _ = visualize_targets(maps, image, class_names=names, ncols=6, title=title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo`` sub-command's options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The (sub-)parser to extend with ``--out``, ``--epochs``, ``--batch``,
        ``--seed`` and ``--no-decoy``.

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
    """Run the demo: train, attribute, compare with IG, plot (and the decoy study).

    Parameters
    ----------
    args : argparse.Namespace
        Options from :func:`add_arguments`: ``out`` (PNG path; the decoy study writes
        ``<stem>_decoy.png`` next to it), ``epochs``, ``batch`` (test images
        attributed), ``seed`` (of the split, the initial weights and the batch
        order; the global RNG is not touched), ``no_decoy``.
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
    >>> import argparse, tempfile
    >>> from pathlib import Path
    >>> from captum_xgrad.demo import run
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     args = argparse.Namespace(out=Path(tmp) / "demo.png", epochs=1, batch=4,
    ...                               seed=0, no_decoy=True)
    ...     run(args, log=lambda line: None)
    0
    """
    t_start = time.perf_counter()
    log("captum-xgrad demo: X-Gradient (1 backward pass) vs Integrated Gradients (n_steps=50)")
    log(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    log("[1/4] loading scikit-learn's digits (1797 8x8 images, shipped with scikit-learn)")
    x_train, y_train, x_test, y_test = load_digits_tensors(seed=args.seed)
    log(f"[2/4] training a bias-free CNN (an X-DNN) for {args.epochs} epochs")
    model = digits_xcnn(generator=torch.Generator().manual_seed(args.seed))
    model = train_classifier(model, x_train, y_train, epochs=args.epochs, seed=args.seed, log=log)
    with torch.no_grad():
        acc = float((model(x_test).argmax(1) == y_test).float().mean())
    log(f"  test accuracy: {100 * acc:.1f}%")

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
    all_classes = Path(args.out).with_name(Path(args.out).stem + "_all_classes.png")
    log(f"[+] all ten classes of one test image (one attribute_targets call): {all_classes}")
    plot_all_classes(model, x[0], all_classes, label=int(y_test[0]))
    if not args.no_decoy:
        _run_decoy(args, log)
    log(f"done in {time.perf_counter() - t_start:.1f} s: "
        + ("XGradient equals Integrated Gradients." if ok else "MISMATCH, see above."))
    return 0 if ok else 1


def _run_decoy(args: argparse.Namespace, log: Log) -> None:
    out = Path(args.out)
    log("[+] short decoy study: a patch that encodes the label in training only")
    decoy_demo(out.with_name(f"{out.stem}_decoy.png"), seed=args.seed, quick=True, log=log)


def main(argv: Optional[List[str]] = None) -> int:  # pragma: no cover - thin wrapper
    """Run the demo as a script."""
    parser = argparse.ArgumentParser(prog="captum-xgrad demo")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
