#!/usr/bin/env python
"""Time and peak memory: XGradient vs bare forward+backward vs Captum's attributions.

    python benchmarks/attribution_speed.py --small --device cpu   # CPU size, a few minutes
    python benchmarks/attribution_speed.py --device cuda          # full size, on a GPU

Writes speed.json, speed.md, time_vs_steps.png and memory.png under
``<--out>/<device>/`` (default ``benchmarks/results``). ``--help`` lists the options;
the harness is :mod:`captum_xgrad.bench` (also ``captum-xgrad bench speed``).
"""

import sys

from captum_xgrad.bench import main

if __name__ == "__main__":
    sys.exit(main("speed"))
