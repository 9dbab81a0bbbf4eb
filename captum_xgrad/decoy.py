r"""Decoy digits: a spurious-correlation study for attribution priors.

scikit-learn's 8x8 handwritten digits (shipped with scikit-learn, no download) are
padded to 16x16 and get a 4x4 "decoy" patch in a random corner, in the spirit of Ross et
al.'s DecoyMNIST (IJCAI 2017). In the training set the patch's shade encodes the label,
:math:`s = 1 - 0.08\,y`, so a model can learn the patch instead of the digit; in the
test set the shade encodes a random digit, so such a model fails. The location of the
patch is known, so a *mask prior* (:func:`captum_xgrad.priors.mask_prior`) can forbid
the model to attribute to it. With X-Gradient (:class:`~captum_xgrad.training.XGradientMethod`)
on a bias-free CNN this costs one double backward per step; the baselines use regular
CNNs with Integrated Gradients (``n`` steps) or Expected Gradients priors.

This module holds what the benchmark (``benchmarks/decoy_digits.py``) and the demo
share: :func:`make_decoy_digits`, :func:`decoy_cnn`, :func:`decoy_share`,
:func:`train_with_prior`, :func:`evaluate_decoy` and :func:`decoy_demo`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from .priors import mask_prior
from .training import AttributionMethod, AttributionPrior, XGradientMethod

__all__ = [
    "DecoyDigits",
    "decoy_cnn",
    "decoy_demo",
    "decoy_share",
    "evaluate_decoy",
    "ig_attributions",
    "make_decoy_digits",
    "train_with_prior",
]

Log = Callable[[str], None]


def _no_log(msg: str) -> None:
    return None


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
    >>> from captum_xgrad.decoy import make_decoy_digits
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
) -> tuple:
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
    >>> from captum_xgrad.decoy import make_decoy_digits
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
    from .demo import load_digits_tensors

    x_tr, y_tr, x_te, y_te = load_digits_tensors(test_fraction=test_fraction, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    xd_tr, m_tr, xc_tr = _add_decoys(x_tr, y_tr, pad, patch, gen)
    random_labels = torch.randint(0, 10, (len(y_te),), generator=gen)
    xd_te, m_te, xc_te = _add_decoys(x_te, random_labels, pad, patch, gen)
    return DecoyDigits(xd_tr, y_tr, m_tr, xd_te, y_te, m_te, xc_tr, xc_te)


# --------------------------------------------------------------------------- models
def decoy_cnn(
    bias: bool = False, width: int = 16, num_classes: int = 10, image_size: int = 16
) -> nn.Sequential:
    """A small CNN for the decoy digits, bias-free (homogeneous) or regular.

    ``conv3x3 - ReLU - conv3x3 - ReLU - maxpool2 - linear(64) - ReLU - linear``. With
    ``bias=False`` it is nonnegatively homogeneous of degree 1, so X-Gradient equals
    Integrated Gradients (zero baseline) on it.

    Parameters
    ----------
    bias : bool, default False
        Whether the convolutions and linear layers have biases.
    width : int, default 16
        Channels of the first convolution (the second has twice as many).
    num_classes : int, default 10
        Outputs.
    image_size : int, default 16
        Side of the (square, one-channel) input images; must be even.

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
    >>> from captum_xgrad.decoy import decoy_cnn
    >>> model = decoy_cnn().eval()
    >>> x = torch.rand(2, 1, 16, 16)
    >>> torch.allclose(model(2 * x), 2 * model(x), atol=1e-5)
    True
    """
    if image_size < 2 or image_size % 2:
        raise ValueError(f"image_size must be even and >= 2, got {image_size}.")
    side = image_size // 2
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
    >>> from captum_xgrad.decoy import decoy_share
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
    >>> from captum_xgrad.decoy import decoy_cnn, ig_attributions
    >>> model, x, t = decoy_cnn().eval(), torch.rand(2, 1, 16, 16), torch.tensor([1, 2])
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
    >>> from captum_xgrad.decoy import decoy_cnn, evaluate_decoy, make_decoy_digits
    >>> res = evaluate_decoy(decoy_cnn(), make_decoy_digits(), homogeneous=True)
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
    log: Log = _no_log,
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
    >>> from captum_xgrad.decoy import decoy_cnn, train_with_prior
    >>> x, y = torch.rand(16, 1, 16, 16), torch.randint(0, 10, (16,))
    >>> times = train_with_prior(decoy_cnn(), x, y, torch.zeros_like(x), epochs=1)
    >>> len(times)
    1
    """
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
        log(
            f"    epoch {epoch + 1}/{epochs}: task {task_sum / len(x):.3f}, prior "
            f"{prior_sum / len(x):.3g} ({times[-1]:.2f} s)"
        )
    return times


# ----------------------------------------------------------------------------- demo
def decoy_demo(
    out_dir: Path, seed: int = 0, quick: bool = True, log: Log = _no_log
) -> Dict[str, object]:
    """A short decoy study: a plain bias-free CNN vs one trained with the X-Gradient mask prior.

    Trains (a) a bias-free CNN plainly and (b) the same architecture with the
    X-Gradient mask prior on the decoy (``weight=10``), evaluates both on test images
    whose decoy shade is random, and writes a PNG of test images with their X-Gradient
    heat maps for both models (Captum's :mod:`captum.attr.visualization`).

    Parameters
    ----------
    out_dir : pathlib.Path
        Folder for ``decoy_heatmaps.png`` (created if needed).
    seed : int, default 0
        Seed of the data and the models.
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
    >>> from captum_xgrad.decoy import decoy_demo
    >>> res = decoy_demo(Path("out"), quick=True, log=print)  # doctest: +SKIP
    >>> res["xgrad_prior"]["accuracy"] > res["plain"]["accuracy"]  # doctest: +SKIP
    True
    """
    out_dir = Path(out_dir)
    epochs = 4 if quick else 12
    data = make_decoy_digits(seed=seed)
    results: Dict[str, object] = {}
    models = {}
    for key, label, weight in (
        ("plain", "(a) plain bias-free CNN", 0.0),
        ("xgrad_prior", "(b) bias-free CNN + X-Gradient mask prior", 10.0),
    ):
        torch.manual_seed(seed)
        model = decoy_cnn(bias=False)
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
    results["heatmap"] = _heatmaps(models, data, out_dir / "decoy_heatmaps.png")
    log(f"  heat maps: {results['heatmap']}")
    return results


def _heatmaps(models: Dict[str, nn.Module], data: DecoyDigits, path: Path, k: int = 5) -> Path:
    from .demo import plot_attributions

    titles = {"plain": "plain", "xgrad_prior": "X-Grad. prior"}
    x, y = data.x_test[:k], data.y_test[:k]
    columns = {
        titles.get(name, name): ig_attributions(model, x, y, homogeneous=True)
        for name, model in models.items()
    }
    return plot_attributions(x, columns, path, titles=[f"label {int(t)}" for t in y])
