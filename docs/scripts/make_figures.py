#!/usr/bin/env python
"""Make the figures of the captum-xgrad documentation.

    python docs/scripts/make_figures.py   # writes docs/_static/digits_attributions.png
                                          # and docs/_static/quadrature_convergence.png

Trains a small bias-free (hence nonnegatively homogeneous) CNN on scikit-learn's 8x8
digits for a few seconds on the CPU, attributes its predictions on a few test images
with :class:`captum_xgrad.XGradient` (one backward pass) and with Captum's
``IntegratedGradients`` (zero baseline, 50 steps), and draws both with
``captum.attr.visualization.visualize_image_attr``. Nothing is downloaded: the digits
ship with scikit-learn. The numbers printed at the end (test accuracy, largest
difference between the two attributions) are the ones quoted on the quick-start page.

The second figure shows, on the same model, how far Captum's quadrature rules are from
X-Gradient as ``n_steps`` grows (the migration guide's remark on ``riemann_left`` and
``riemann_trapezoid``).

Needs the ``demo`` extra (scikit-learn, matplotlib).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from captum.attr import IntegratedGradients  # noqa: E402
from captum.attr import visualization as viz  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from torch import nn  # noqa: E402

from captum_xgrad import XGradient  # noqa: E402

STATIC = Path(__file__).resolve().parent.parent / "_static"


def bias_free_cnn() -> nn.Sequential:
    """conv-ReLU-conv-ReLU-maxpool-linear-ReLU-linear, every layer without bias."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64, bias=False),
        nn.ReLU(),
        nn.Linear(64, 10, bias=False),
    )


def digits(seed: int):
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    test, train = perm[:300], perm[300:]
    return x[train], y[train], x[test], y[test]


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def attribution_figure(out: Path, epochs: int = 8, seed: int = 0, n_images: int = 4) -> dict:
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = digits(seed)
    start = time.perf_counter()
    model = train(bias_free_cnn(), x_train, y_train, epochs, seed)
    train_s = time.perf_counter() - start
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1) == y_test).float().mean())

    x = x_test[:n_images]
    target = model(x).argmax(1)
    xg = XGradient(model).attribute(x, target=target)
    ig = IntegratedGradients(model).attribute(x, target=target, n_steps=50)
    max_rel = float((xg - ig).abs().max() / ig.abs().max())

    fig, axes = plt.subplots(n_images, 3, figsize=(6.6, 2.2 * n_images))
    for row in range(n_images):
        image = x[row].permute(1, 2, 0).numpy()
        ax = axes[row, 0]
        ax.imshow(image[..., 0], cmap="gray_r")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"input (label {int(y_test[row])}, pred {int(target[row])})", fontsize=8)
        for col, (name, attr) in enumerate((("XGradient", xg), ("IG, 50 steps", ig)), start=1):
            viz.visualize_image_attr(
                attr[row].permute(1, 2, 0).detach().numpy().astype(np.float64),
                original_image=image,
                method="heat_map",
                sign="all",
                plt_fig_axis=(fig, axes[row, col]),
                show_colorbar=True,
                title=name,
                use_pyplot=False,
            )
            axes[row, col].title.set_fontsize(8)
    fig.suptitle(
        f"Bias-free CNN on sklearn digits (test accuracy {accuracy:.1%}); "
        f"max |XG - IG| / max |IG| = {max_rel:.1e}",
        fontsize=8,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return {"accuracy": accuracy, "max_rel_diff": max_rel, "train_seconds": train_s,
            "path": str(out), "model": model, "x": x, "target": target}


def quadrature_figure(model: nn.Module, x: torch.Tensor, target: torch.Tensor, out: Path) -> dict:
    xg = XGradient(model).attribute(x, target=target)
    ig = IntegratedGradients(model)
    steps = [2, 4, 8, 16, 32, 64, 128, 256]
    rules = ["riemann_left", "riemann_trapezoid", "riemann_right", "riemann_middle", "gausslegendre"]
    errors = {}
    for rule in rules:
        errors[rule] = []
        for n in steps:
            a = ig.attribute(x, target=target, method=rule, n_steps=n)
            errors[rule].append(float((a - xg).abs().max() / xg.abs().max()))
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    floor = 1e-9  # exact rules sit at rounding level; keep them visible on a log axis
    for rule, marker in zip(rules, "os^vD"):
        ax.loglog(steps, [max(e, floor) for e in errors[rule]], marker=marker, label=rule)
    ax.loglog(steps, [1 / n for n in steps], "k:", label="1/n")
    ax.loglog(steps, [1.5 / n for n in steps], "k--", label="1.5/n")
    ax.set_xlabel("n_steps")
    ax.set_ylabel("max |IG(n) - XGradient| / max |XGradient|")
    ax.set_title("Captum's IG quadrature rules vs X-Gradient (bias-free CNN, digits)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=STATIC / "digits_attributions.png")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # a script, not library code: deterministic and light
    res = attribution_figure(args.out, epochs=args.epochs, seed=args.seed)
    print(
        f"wrote {res['path']}: test accuracy {res['accuracy']:.3f}, "
        f"max|XG - IG|/max|IG| = {res['max_rel_diff']:.2e}, "
        f"training took {res['train_seconds']:.1f} s"
    )
    quad = args.out.parent / "quadrature_convergence.png"
    errors = quadrature_figure(res["model"], res["x"], res["target"], quad)
    print(f"wrote {quad}:")
    for rule, errs in errors.items():
        print(f"  {rule:18s} " + " ".join(f"{e:.1e}" for e in errs))


if __name__ == "__main__":
    main()
