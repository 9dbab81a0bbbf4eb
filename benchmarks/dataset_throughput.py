#!/usr/bin/env python
"""Images per second of ``attribute_dataset``: X-Gradient against Captum's IG(n_steps=50).

Two workloads, each through the same loop (data loading, the extra forward pass for
the stored outputs, writing the float16 store):

- ``digits64``: scikit-learn's digits upsampled to 64x64 (1 channel), a small bias-free
  CNN (3 conv layers, 10 classes);
- ``imagefolder224``: a torchvision ``ImageFolder`` of 224x224 JPEGs that this script
  generates with PIL in a temporary directory, and X-AlexNet (``captum_xgrad.models``).

Each is run with 1 process, and with N processes under ``torchrun`` (``--procs``,
default 2 on CPU over gloo; on CUDA, one process per GPU). IG is run on fewer images
(``--ig-images``) and reported in images per second like X-Gradient. Timing is
``torch.utils.benchmark.Timer(...).timeit(1)`` around one full ``attribute_dataset``
call into a fresh store, repeated ``--repeats`` times (median, min and max are kept);
the multi-process runs are timed inside rank 0 from a barrier before the call to the
call's return (which itself waits for all ranks), so process start-up is excluded.

    python benchmarks/dataset_throughput.py                 # CPU, about 5 minutes on 2 cores
    python benchmarks/dataset_throughput.py --small         # a smoke run, seconds
    python benchmarks/dataset_throughput.py --device cuda   # 1 process and one per GPU

Results go to ``OUT/<device>/dataset_throughput.{json,md,png}`` (OUT defaults to
``benchmarks/results``). Imports only captum_xgrad's public API and third-party libraries.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # so that `python benchmarks/dataset_throughput.py` finds the package
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import report  # noqa: E402
from captum_xgrad import XGradient, attribute_dataset  # noqa: E402
from captum_xgrad.models import get_model  # noqa: E402


# ------------------------------------------------------------------ workloads
def digits64(n: int) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    reps = -(-n // len(d.images))
    x = torch.tensor(np.tile(d.images, (reps, 1, 1))[:n], dtype=torch.float32).unsqueeze(1) / 16
    x = nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    y = torch.tensor(np.tile(d.target, reps)[:n], dtype=torch.long)
    return TensorDataset(x, y)


def digits_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
        nn.Flatten(), nn.Linear(64 * 16, 10, bias=False),
    ).eval()


def make_jpegs(root: Path, n: int, classes: int = 4) -> None:
    """n 224x224 JPEGs (smooth random colour fields plus noise) in `classes` folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.uniform(0, 255, (8, 8, 3))
        img = np.kron(coarse, np.ones((28, 28, 1))) + rng.normal(0, 20, (224, 224, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg",
                                                                    quality=90)


def imagefolder(root: Path, n: Optional[int] = None) -> Dataset:
    from torch.utils.data import Subset
    from torchvision import datasets, transforms

    data = datasets.ImageFolder(str(root), transform=transforms.ToTensor())
    return data if n is None or n >= len(data) else Subset(data, range(n))


def build(workload: str, method: str, n: int, jpeg_root: Optional[Path]):
    if workload == "digits64":
        model, data = digits_cnn(), digits64(n)
    else:
        model, data = get_model("xalexnet").eval(), imagefolder(jpeg_root, n)
    if method == "xgradient":
        return XGradient(model), data, {}
    from captum.attr import IntegratedGradients

    return IntegratedGradients(model), data, {"n_steps": 50}


def _loop(method: Any, data: Dataset, kwargs: Dict[str, Any], out: str, args: argparse.Namespace,
          device: str) -> None:
    attribute_dataset(method, data, out, batch_size=args.batch_size, overwrite=True,
                      progress=False, device=device, attribute_kwargs=kwargs,
                      num_workers=args.num_workers)


def time_one_process(workload: str, method: str, n: int, args: argparse.Namespace,
                     jpeg_root: Optional[Path], device: str) -> List[float]:
    from torch.utils.benchmark import Timer

    attr, data, kwargs = build(workload, method, n, jpeg_root)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "store")
        _loop(attr, data, kwargs, out, args, device)  # warm-up (and the first store)
        timer = Timer(
            stmt="_loop(attr, data, kwargs, out, args, device)",
            globals=dict(_loop=_loop, attr=attr, data=data, kwargs=kwargs, out=out, args=args,
                         device=device),
            num_threads=torch.get_num_threads(),
        )
        return [timer.timeit(1).median for _ in range(args.repeats)]


def worker(args: argparse.Namespace) -> None:
    """One rank of a torchrun run: rank 0 writes the timings to --result."""
    import torch.distributed as dist

    backend = "nccl" if args.device == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend)
    torch.set_num_threads(args.threads)
    device = f"cuda:{os.environ['LOCAL_RANK']}" if args.device == "cuda" else "cpu"
    jpeg_root = Path(args.jpeg_root) if args.jpeg_root else None
    attr, data, kwargs = build(args.workload, args.method, args.count, jpeg_root)
    times = []
    for i in range(args.repeats + 1):  # the first is the warm-up
        dist.barrier()
        start = datetime.datetime.now()
        _loop(attr, data, kwargs, args.store, args, device)  # returns after a barrier
        if args.device == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append((datetime.datetime.now() - start).total_seconds())
    if dist.get_rank() == 0:
        Path(args.result).write_text(json.dumps(times))
    dist.destroy_process_group()


def time_processes(workload: str, method: str, n: int, procs: int, args: argparse.Namespace,
                   jpeg_root: Optional[Path], threads: int) -> List[float]:
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "times.json")
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={procs}", str(Path(__file__).resolve()), "--worker",
            "--workload", workload, "--method", method, "--count", str(n),
            "--store", os.path.join(tmp, "store"), "--result", result,
            "--repeats", str(args.repeats), "--threads", str(threads),
            "--batch-size", str(args.batch_size), "--num-workers", str(args.num_workers),
            "--device", args.device,
        ] + (["--jpeg-root", str(jpeg_root)] if jpeg_root else [])
        env = {**os.environ, "OMP_NUM_THREADS": str(threads),
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun failed:\n{proc.stderr[-4000:]}")
        return json.loads(Path(result).read_text())


# ------------------------------------------------------------------ report
def machine() -> Dict[str, Any]:
    """The harness's machine facts and package versions, plus the CUDA devices."""
    info: Dict[str, Any] = {**report.machine_info(), **report.versions()}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda_device_count"] = torch.cuda.device_count()
    return info


def write_report(results: Dict[str, Any], folder: Path, plot: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset_throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    lines = [
        "# attribute_dataset throughput: images per second",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Machine: {m['platform']}, {m['processor']}, {m['cpu_count']} CPU cores"
        + (f", {m['cuda_device']} x{m['cuda_device_count']}" if "cuda_device" in m else "")
        + f"; Python {m['python']}, torch {m['torch']}, captum-xgrad {m['captum_xgrad']}"
        f" (commit {m['git_commit']}), {m['date']}. Load average at start/end: "
        f"{results['load_average'][0]} / {results['load_average'][1]}.",
        "",
        f"Device: {results['device']}. Each time is one `attribute_dataset` call into a fresh "
        f"float16 store (batch size {results['config']['batch_size']}, num_workers "
        f"{results['config']['num_workers']}): data loading, the forward pass for the stored "
        "outputs, the attribution and the writes. Median of "
        f"{results['config']['repeats']} runs after a warm-up; IG is Captum's "
        "IntegratedGradients(n_steps=50).",
        "",
        "| workload | method | processes | threads/process | images | median s | images/s | "
        "speed-up vs IG |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        speedup = r.get("speedup_vs_ig")
        lines.append(
            f"| {r['workload']} | {r['method']} | {r['procs']} | {r['threads']} | {r['images']} "
            f"| {r['median_s']:.3f} | {r['images_per_s']:.3g} | "
            + (f"{speedup:.0f}x" if speedup else "") + " |"
        )
    lines += ["", results["note"]]
    busy = max(results["load_average"])
    if busy > (m["cpu_count"] or 1):
        lines += ["", f"The machine was shared while this ran (1-minute load average up to "
                  f"{busy} on {m['cpu_count']} cores): the numbers are noisy, the ratios "
                  "between methods more reliable than the absolute rates."]
    lines.append("")
    (folder / "dataset_throughput.md").write_text("\n".join(lines))
    if not plot:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    runs = results["runs"]
    labels = [f"{r['workload']}\n{r['method']}, {r['procs']}p" for r in runs]
    fig, ax = plt.subplots(figsize=(max(6, len(runs) * 0.9), 4))
    colors = ["tab:blue" if r["method"] == "xgradient" else "tab:orange" for r in runs]
    ax.bar(range(len(runs)), [r["images_per_s"] for r in runs], color=colors)
    ax.set_xticks(range(len(runs)), labels, fontsize=7, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("images / s (log)")
    ax.set_title(f"attribute_dataset throughput on {results['device']} "
                 "(blue: XGradient, orange: IG n_steps=50)", fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "dataset_throughput.png", dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------ main
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="a smoke run (seconds)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", default=str(HERE / "results"), help="results go to OUT/<device>/")
    p.add_argument("--procs", type=int, default=None,
                   help="processes of the torchrun runs (default: 2 on CPU, GPUs on CUDA); 1 skips")
    p.add_argument("--digits", type=int, default=512, help="digits images (X-Gradient)")
    p.add_argument("--jpegs", type=int, default=64, help="generated JPEGs (X-Gradient)")
    p.add_argument("--ig-images", type=int, default=None,
                   help="images for IG (default: digits 32, JPEGs 4)")
    p.add_argument("--workloads", nargs="+", choices=("digits64", "imagefolder224"),
                   default=["digits64", "imagefolder224"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--no-plot", action="store_true")
    # the torchrun worker
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workload", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--jpeg-root", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return {}
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if args.small:
        args.digits, args.jpegs, args.repeats = min(args.digits, 64), min(args.jpegs, 8), 1
        args.batch_size = min(args.batch_size, 16)
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    procs = args.procs if args.procs is not None else (
        torch.cuda.device_count() if args.device == "cuda" else 2)
    ig_images = {"digits64": args.ig_images or (8 if args.small else 32),
                 "imagefolder224": args.ig_images or (2 if args.small else 4)}
    counts = {"digits64": args.digits, "imagefolder224": args.jpegs}
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    runs: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        jpeg_root = Path(tmp) / "jpegs"
        if "imagefolder224" in args.workloads:
            make_jpegs(jpeg_root, args.jpegs)
        for workload in args.workloads:
            root = jpeg_root if workload == "imagefolder224" else None
            for method in ("xgradient", "ig"):
                n = counts[workload] if method == "xgradient" else ig_images[workload]
                configs = [(1, threads)]
                if procs > 1:
                    # on CPU the cores are shared out between the processes
                    configs.append((procs, max(1, threads // procs) if args.device == "cpu"
                                    else threads))
                for p, t in configs:
                    if p == 1:
                        times = time_one_process(workload, method, n, args, root,
                                                 "cuda" if args.device == "cuda" else "cpu")
                    else:
                        times = time_processes(workload, method, n, p, args, root, t)
                    med = statistics.median(times)
                    runs.append({"workload": workload, "method": method, "procs": p,
                                 "threads": t, "images": n, "times_s": times, "median_s": med,
                                 "min_s": min(times), "max_s": max(times),
                                 "images_per_s": n / med})
                    print(f"{workload:15s} {method:10s} {p} proc x {t} threads: "
                          f"{n / med:8.1f} images/s", flush=True)
    for r in runs:
        if r["method"] == "xgradient":
            ig = [q for q in runs if q["method"] == "ig" and q["workload"] == r["workload"]
                  and q["procs"] == r["procs"]]
            if ig:
                r["speedup_vs_ig"] = r["images_per_s"] / ig[0]["images_per_s"]
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    command = "python " + " ".join(shlex.quote(a) for a in
                                   ([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]
                                    if argv is None else ["benchmarks/dataset_throughput.py", *argv]))
    results = {
        "command": command, "machine": machine(), "device": args.device,
        "load_average": [round(load_start, 2), round(load_end, 2)],
        "config": {"batch_size": args.batch_size, "num_workers": args.num_workers,
                   "repeats": args.repeats, "threads": threads, "small": args.small},
        "runs": runs,
        "note": (
            "CPU numbers only: this session had no GPU. On CUDA run "
            "`python benchmarks/dataset_throughput.py --device cuda` (1 process and one per "
            "GPU under torchrun; use --num-workers 8 so JPEG decoding keeps up)."
            if args.device == "cpu" else "CUDA run: 1 process, and one process per GPU."
        ),
    }
    write_report(results, Path(args.out) / args.device, plot=not args.no_plot)
    return results


if __name__ == "__main__":
    main()
