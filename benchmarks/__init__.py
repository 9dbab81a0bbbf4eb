"""The benchmarks and studies of captum-xgrad: not part of the installed package.

Run from the repository root, e.g. ``python -m benchmarks.attribution_speed --small``.
:mod:`benchmarks.harness` holds what the studies share (timing, memory, the benchmark
models, the report and the plots); each other module is one study with a ``main``.
"""
