#!/usr/bin/env python
"""Exactness: XGradient vs IntegratedGradients(n) on X-models, and IG(n)'s convergence
on the same architectures with biases.

    python benchmarks/attribution_error.py --small --device cpu
    python benchmarks/attribution_error.py --device cuda

Writes error.json, error.md and error_vs_steps.png under ``<--out>/<device>/``
(default ``benchmarks/results``). ``--help`` lists the options; the harness is
:mod:`captum_xgrad.bench` (also ``captum-xgrad bench error``).
"""

import sys

from captum_xgrad.bench import main

if __name__ == "__main__":
    sys.exit(main("error"))
