"""Contrast invariance of X-DNNs (Hesse et al., 2021, Sec. 4.4).

A nonnegatively homogeneous classifier satisfies f(a x) = a f(x) for a > 0, so every
logit is scaled by the same positive factor and the predicted class, argmax f(a x),
does not depend on the contrast a. A model with biases has no such guarantee: at low
contrast its prediction is dominated by the biases (f(a x) -> f(0) as a -> 0).

This script trains two small CNNs on scikit-learn's digits (no download), one with
biases and one bias-free (an X-DNN), and reports, for several contrasts a, the
fraction of test predictions that stay the same as at a = 1.

Run: ``python examples/contrast_invariance.py`` (a few seconds on a CPU).
"""

from __future__ import annotations

import argparse
from typing import Dict, Sequence

import torch
from torch import nn

from captum_xgrad.demo import digits_xcnn, load_digits_tensors, train_classifier

SCALES = (0.01, 0.1, 0.5, 2.0, 10.0)


def unchanged_fraction(model: nn.Module, x: torch.Tensor, scales: Sequence[float] = SCALES) -> Dict[float, float]:
    """For each contrast a, the fraction of examples with argmax f(a x) == argmax f(x)."""
    with torch.no_grad():
        reference = model(x).argmax(1)
        return {a: float((model(a * x).argmax(1) == reference).float().mean()) for a in scales}


def main(epochs: int = 6) -> Dict[str, Dict[float, float]]:
    x_train, y_train, x_test, _ = load_digits_tensors()
    torch.manual_seed(0)
    xdnn = train_classifier(digits_xcnn(), x_train, y_train, epochs=epochs)
    torch.manual_seed(0)
    biased = train_classifier(digits_xcnn(bias=True), x_train, y_train, epochs=epochs)
    results = {
        "X-DNN (bias-free)": unchanged_fraction(xdnn, x_test),
        "CNN with biases": unchanged_fraction(biased, x_test),
    }
    print("fraction of test predictions unchanged when the input is scaled by a")
    print(f"{'model':20s}" + "".join(f"  a={a:<6g}" for a in SCALES))
    for name, fractions in results.items():
        print(f"{name:20s}" + "".join(f"  {fractions[a]:<8.3f}" for a in SCALES))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    main(parser.parse_args().epochs)
