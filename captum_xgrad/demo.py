"""``captum-xgrad demo``: X-Gradient vs Integrated Gradients on a real, offline dataset.

Trains a small bias-free CNN (an X-DNN) on scikit-learn's 8x8 handwritten digits
(shipped with scikit-learn, no download) for a few seconds, then, on a batch of test
images, compares :class:`~captum_xgrad.XGradient` with Captum's
:class:`~captum.attr.IntegratedGradients` (``n_steps=50``): agreement, completeness and
wall time, and writes a PNG of images and attribution heat maps drawn with Captum's
visualization utilities. With the decoy study available, it also runs a short version
of the spurious-correlation experiment.

Run it with ``captum-xgrad demo`` (``--help`` for options). The functions here are
usable on their own, e.g. :func:`load_digits_tensors` and :func:`digits_xcnn` in tests
and docs.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

__all__ = [
    "add_arguments",
    "compare_with_ig",
    "digits_xcnn",
    "load_digits_tensors",
    "plot_all_classes",
    "plot_attributions",
    "run",
    "train_classifier",
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


def digits_xcnn(num_classes: int = 10, width: int = 16) -> nn.Sequential:
    """A small bias-free CNN for 8x8 images: nonnegatively homogeneous of degree 1.

    ``conv3x3 - ReLU - conv3x3 - ReLU - maxpool2 - linear - ReLU - linear``, every layer
    without bias, so X-Gradient equals Integrated Gradients on it exactly.

    Parameters
    ----------
    num_classes : int, default 10
        Number of outputs.
    width : int, default 16
        Channels of the first convolution (the second has twice as many).

    Returns
    -------
    torch.nn.Sequential

    Examples
    --------
    >>> import torch
    >>> from captum_xgrad.demo import digits_xcnn
    >>> model = digits_xcnn().eval()
    >>> x = torch.rand(2, 1, 8, 8)
    >>> torch.allclose(model(3 * x), 3 * model(x), atol=1e-5)
    True
    """
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * 4 * 4, 64, bias=False),
        nn.ReLU(),
        nn.Linear(64, num_classes, bias=False),
    )


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


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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
        Timed repetitions of each method (after one warm-up); the median is reported.

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
    t_xg = _median_time(lambda: xg.attribute(x, target=target), repeats)
    t_ig = _median_time(lambda: ig.attribute(x, target=target, n_steps=n_steps), repeats)
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
    fig, axes = plt.subplots(n, ncols, figsize=(2.2 * ncols, 2.2 * n), squeeze=False)
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
    fig.tight_layout()
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
                        help="PNG to write the heat maps to (default: %(default)s)")
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
        Options from :func:`add_arguments`: ``out`` (PNG path), ``epochs``, ``batch``
        (test images attributed), ``seed``, ``no_decoy``.
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
    torch.manual_seed(args.seed)
    log("captum-xgrad demo: X-Gradient (1 backward pass) vs Integrated Gradients (n_steps=50)")
    log(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    log("[1/4] loading scikit-learn's digits (1797 8x8 images, shipped with scikit-learn)")
    x_train, y_train, x_test, y_test = load_digits_tensors(seed=args.seed)
    log(f"[2/4] training a bias-free CNN (an X-DNN) for {args.epochs} epochs")
    model = train_classifier(digits_xcnn(), x_train, y_train, epochs=args.epochs,
                             seed=args.seed, log=log)
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
        f"{1e3 * res['t_ig']:.2f} ms -> {res['speedup']:.1f}x faster (median of 5)")

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
    try:
        from .decoy import decoy_demo
    except ImportError:  # the decoy study is optional
        return
    out_dir = Path(args.out).with_suffix("").parent
    log("[+] short decoy study: a patch that encodes the label in training only")
    decoy_demo(out_dir, seed=args.seed, quick=True, log=log)


def main(argv: Optional[List[str]] = None) -> int:  # pragma: no cover - thin wrapper
    """Run the demo as a script."""
    parser = argparse.ArgumentParser(prog="captum-xgrad demo")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
