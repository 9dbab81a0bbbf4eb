"""Time to certify each zoo model and converted torchvision classifier, vs one forward pass.

Run: ``python benchmarks/certify_speed.py`` (or ``python -m benchmarks.certify_speed``).
Writes ``benchmarks/results/cpu/certify_speed.{json,md}``. Timing uses
:mod:`torch.utils.benchmark` (median of blocked runs); the forward pass is one image
at 224x224 with no gradient.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import warnings
from pathlib import Path

import torch
import torch.utils.benchmark as tb
import torchvision

from captum_xgrad import certify_homogeneity, make_x_dnn
from captum_xgrad import models as zoo

ZOO = ["xalexnet", "xvgg16", "xfixup_resnet18", "xfixup_resnet50"]
TORCHVISION = ["resnet18", "resnet50", "vgg11_bn", "alexnet", "densenet121", "mobilenet_v2", "squeezenet1_0"]


def _time(stmt, min_run_time: float) -> float:
    return tb.Timer(stmt="f()", globals={"f": stmt}).blocked_autorange(min_run_time=min_run_time).median


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "cpu"))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--small", action="store_true", help="two models, 64x64, short timing")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    size = 64 if args.small else args.size
    x = torch.rand(1, 3, size, size)
    rows = []
    names = [("zoo", n) for n in (ZOO[:1] if args.small else ZOO)] + [
        ("torchvision", n) for n in (TORCHVISION[:1] if args.small else TORCHVISION)
    ]
    for kind, name in names:
        if kind == "zoo":
            model = getattr(zoo, name)().eval()
            label = name
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = make_x_dnn(getattr(torchvision.models, name)().eval(), replace_activations=True)
            label = f"make_x_dnn({name})"
        cert = certify_homogeneity(model, x)
        t_cert = _time(lambda: certify_homogeneity(model, x), 0.2 if args.small else 1.0)
        with torch.no_grad():
            t_fwd = _time(lambda: model(x), 0.2 if args.small else 1.0)
        rows.append({"model": label, "status": cert.status, "degree": cert.degree,
                     "certify_s": t_cert, "forward_s": t_fwd, "ratio": t_cert / t_fwd})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__)] + list(argv if argv is not None else sys.argv[1:]))
    meta = {"command": command, "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "input": [1, 3, size, size],
            "load_average": os.getloadavg()}
    (out / "certify_speed.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Time to certify vs one forward pass (CPU, input {1}x3x{size}x{size})", "",
             f"Command: `{command}`; {meta['cpus']} CPUs, {meta['threads']} torch threads, torch {meta['torch']}, "
             f"load average {meta['load_average'][0]:.1f} (a shared machine). Median of `torch.utils.benchmark` blocked runs.", "",
             "| model | verdict | degree | certify (ms) | forward (ms) | certify / forward |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['status']} | {r['degree']} | {1e3 * r['certify_s']:.1f} | {1e3 * r['forward_s']:.1f} | {r['ratio']:.2f} |")
    (out / "certify_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
