"""Where the numbers come from, and how they are written: machine, JSON, Markdown, the run.

:func:`machine_info` is the one description of the machine that every study writes into
its JSON file; :func:`run_study` is the one driver of the speed and exactness studies
(parse, validate, run, write JSON + Markdown + PNG, or only re-render an earlier JSON).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from .cases import BenchConfig, add_arguments, config_from_args

__all__ = [
    "Progress",
    "SCHEMA",
    "command_line",
    "device_info",
    "error_markdown",
    "loadavg",
    "machine_info",
    "run_study",
    "sem",
    "speed_markdown",
    "versions",
]

#: identifies the layout of the speed/error JSON files; bump it when keys change.
SCHEMA = "captum-xgrad-bench/1"

Log = Callable[[str], None]

#: environment variables that set the number of threads (written with the command).
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _print(msg: str) -> None:
    print(msg, flush=True)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> Optional[List[float]]:
    """The 1, 5 and 15-minute load averages (``None`` where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info() -> Dict[str, Any]:
    """Where the numbers come from: platform, CPU, Python, torch and its threads, commit, date.

    Returns
    -------
    dict
        ``platform``, ``processor`` (the CPU's model name), ``cpu_count``, ``python``,
        ``torch``, ``torch_threads``, ``git_commit`` (``None`` outside a checkout) and
        ``date`` (local time, ISO format).

    Examples
    --------
    >>> from benchmarks.harness.report import machine_info
    >>> info = machine_info()
    >>> sorted(info)
    ['cpu_count', 'date', 'git_commit', 'platform', 'processor', 'python', 'torch', 'torch_threads']
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=Path(__file__).resolve().parent, check=False,
        ).stdout.strip() or None
    except OSError:
        commit = None
    return {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "git_commit": commit,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def versions() -> Dict[str, Optional[str]]:
    """Versions of captum-xgrad, torch, torchvision, captum and numpy.

    Examples
    --------
    >>> from benchmarks.harness.report import versions
    >>> sorted(versions())
    ['captum', 'captum_xgrad', 'numpy', 'torch', 'torchvision']
    """
    import captum
    import numpy
    import torchvision

    import captum_xgrad

    return {
        "captum_xgrad": captum_xgrad.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "captum": captum.__version__,
        "numpy": numpy.__version__,
    }


def device_info(device: str) -> Dict[str, Any]:
    """The device a study ran on: name, threads, and on CUDA the precision settings.

    Parameters
    ----------
    device : {"cpu", "cuda"}

    Returns
    -------
    dict
        ``type``, ``name``, ``threads``; CPU: ``interop_threads``; CUDA:
        ``total_memory_bytes``, ``cuda``, ``cudnn``, ``cudnn_benchmark``,
        ``tf32_matmul``, ``tf32_cudnn``.

    Raises
    ------
    RuntimeError
        For ``device="cuda"`` when torch finds no usable GPU.

    Examples
    --------
    >>> from benchmarks.harness.report import device_info
    >>> device_info("cpu")["type"]
    'cpu'
    """
    dev: Dict[str, Any] = {"type": device, "threads": torch.get_num_threads()}
    if device == "cuda":
        idx = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        dev.update(
            name=torch.cuda.get_device_name(idx),
            total_memory_bytes=int(props.total_memory),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
            tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
            tf32_cudnn=bool(torch.backends.cudnn.allow_tf32),
        )
    else:
        dev.update(name=_cpu_name(), interop_threads=torch.get_num_interop_threads())
    return dev


def sem(values: Sequence[float]) -> float:
    """Standard error of the mean (NaN for fewer than two values).

    Examples
    --------
    >>> from benchmarks.harness.report import sem
    >>> round(sem([1.0, 2.0, 3.0]), 4)
    0.5774
    """
    if len(values) < 2:
        return float("nan")
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def command_line(prog: str, argv: Sequence[str]) -> str:
    """The command as run, with the thread-setting environment variables in front.

    Examples
    --------
    >>> from benchmarks.harness.report import command_line
    >>> command_line("python -m benchmarks.x", ["--out", "a b"]).endswith("--out 'a b'")
    True
    """
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in _THREAD_ENV if k in os.environ]
    return " ".join(env + [f"{prog} {shlex.join(list(argv))}".strip()])


class Progress:
    """tqdm when available and wanted, otherwise nothing."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self._bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
            except ImportError:  # pragma: no cover
                self._bar = None

    def update(self, label: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(label, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# ============================================================================= output
def _fmt_bytes(n: Optional[int]) -> str:
    return "" if n is None else f"{n / 2**20:.1f}"


def _fmt(v: Optional[float], spec: str = ".2f") -> str:
    return "" if v is None else format(v, spec)


def case_label(r: Dict[str, Any]) -> str:
    label = {
        "bare": "bare forward+backward",
        "xgradient": "XGradient",
        "input_x_gradient": "Captum InputXGradient",
        "ig": "Captum IG",
        "layer_xgradient": "LayerXGradient",
        "layer_ig": "Captum LayerIG",
        "train_plain": "train step, plain",
        "train_xgrad_prior": "train step, X-Gradient prior (AttributionPrior)",
        "train_xgrad_prior_attribute": "train step, X-Gradient prior (XGradient.attribute + task forward)",
        "train_ig_prior": "train step, IG prior",
    }[r["case"]]
    if r["n_steps"]:
        label += f" (n={r['n_steps']}"
        label += f", ibs={r['internal_batch_size']})" if r["internal_batch_size"] else ")"
    return label


def _header_md(doc: Dict[str, Any], title: str) -> List[str]:
    dev = doc["device"]
    ver = doc["versions"]
    lines = [
        f"# {title}: {dev['name']} ({dev['type']})",
        "",
        f"Made by `{doc['command']}` on {doc['created']} (took {doc['elapsed_s']:.0f} s).",
        "",
        f"- machine: {doc['machine']['platform']}, {doc['machine']['cpu_count']} CPUs, "
        f"Python {doc['machine']['python']}",
        f"- device: {dev['name']}, torch threads: {dev['threads']}",
        f"- versions: torch {ver['torch']}, torchvision {ver['torchvision']}, captum "
        f"{ver['captum']}, captum-xgrad {ver['captum_xgrad']}",
        f"- 1-minute load average at start / end: {doc['loadavg']['start']} / "
        f"{doc['loadavg']['end']} (a load above the thread count means other "
        "processes shared the cores and the times are noisy)",
    ]
    for name, m in doc["models"].items():
        src = m.get("source") or m.get("x_source")
        line = f"- {name}: {m['title']}, input {tuple(m['input_shape'])}, from {src}"
        if m.get("examples"):
            line += f"; {m['examples']} example(s)"
        if m.get("biased_source"):
            line += f"; with biases: {m['biased_source']}"
        lines.append(line)
    return lines + [""]


def speed_markdown(doc: Dict[str, Any]) -> str:
    """The Markdown report of a speed run (the ``speed.md`` file)."""
    lines = _header_md(doc, "Attribution speed and memory")
    lines += [
        f"Peak memory: {doc['memory_method']}",
        "",
        "## Targets",
        "",
        "| model | batch | XGradient time / bare (≤ 1.05) | XGradient memory / bare (≤ 1.10) "
        "| IG(50) time / XGradient | IG(50) memory / XGradient "
        "| X-Gradient-prior step / plain step (≤ 2.5) | same via XGradient.attribute "
        "| IG-prior step / plain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in doc["summary"]:
        lines.append(
            f"| {s['model']} | {s['batch_size']} | {_fmt(s['xgradient_time_ratio'], '.3f')} "
            f"| {_fmt(s['xgradient_memory_ratio'], '.3f')} "
            f"| {_fmt(s['ig50_over_xgradient_time'], '.1f')} "
            f"| {_fmt(s['ig50_over_xgradient_memory'], '.1f')} "
            f"| {_fmt(s['train_xgrad_prior_ratio'], '.2f')} "
            f"| {_fmt(s['train_xgrad_prior_attribute_ratio'], '.2f')} "
            f"| {_fmt(s['train_ig_prior_ratio'], '.2f')} |"
        )
    lines += [
        "",
        "## All cases",
        "",
        f"Median of {doc['config']['repeats']} timed calls after warm-up; spread is the "
        "interquartile range [q1, q3]. Ratios are to the bare forward+backward of the same "
        "model and batch (training steps: also to the plain step).",
        "",
        "| model | batch | case | median ms | [q1, q3] ms | time / bare | time / plain step "
        "| peak MiB | memory / bare |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['batch_size']} | {case_label(r)} "
                         f"| {r['status']} | | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {case_label(r)} | {r['median_ms']:.2f} "
            f"| [{r['q1_ms']:.2f}, {r['q3_ms']:.2f}] "
            f"| {_fmt(r.get('time_ratio_to_bare'), '.2f')} "
            f"| {_fmt(r.get('time_ratio_to_plain_step'), '.2f')} "
            f"| {_fmt_bytes(r.get('peak_memory_bytes'))} "
            f"| {_fmt(r.get('memory_ratio_to_bare'), '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def error_markdown(doc: Dict[str, Any]) -> str:
    """The Markdown report of an exactness run (the ``error.md`` file)."""
    lines = _header_md(doc, "Attribution exactness")
    lines += [
        "Random inputs (per model, see above), each attributed to its "
        "predicted class; IG is Captum's IntegratedGradients (Gauss-Legendre, zero "
        "baseline). Errors are relative: max_rel = max over examples of "
        "max|a - r| / max|r|, mean_rel = mean over examples of sum|a - r| / sum|r|; "
        "completeness = |sum(a) - (f(x) - f(0))| / |f(x) - f(0)|. Weights are random "
        "(no downloads); in the models with biases, biases and normalisation statistics "
        "are drawn at random too (see `benchmarks/harness/cases.py`).",
        "",
        "| model | variant | method | n_steps | reference | max_rel | mean_rel "
        "| completeness (max) | completeness (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        lines.append(
            f"| {r['model']} | {'X-model (bias-free)' if r['variant'] == 'x' else 'with biases'} "
            f"| {'XGradient' if r['method'] == 'xgradient' else 'IG'} "
            f"| {r['n_steps'] or ''} | {r['reference']} | {r['max_rel']:.2e} "
            f"| {r['mean_rel']:.2e} | {r['completeness_max_rel']:.2e} "
            f"| {r['completeness_mean_rel']:.2e} |"
        )
    return "\n".join(lines) + "\n"


def _write(kind: str, result: Dict[str, Any], device: str, cfg: BenchConfig, command: str,
           out_root: Path, created: str, load_start: Optional[List[float]],
           elapsed: float) -> Dict[str, Any]:
    doc: Dict[str, Any] = {
        "schema": SCHEMA,
        "kind": kind,
        "command": command,
        "created": created,
        "elapsed_s": elapsed,
        "loadavg": {"start": load_start, "end": loadavg()},
        "machine": machine_info(),
        "versions": versions(),
        "device": device_info(device),
        "config": json.loads(json.dumps(asdict(cfg))),
        **result,
    }
    out_dir = out_root / device
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{kind}.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return doc


def render(doc: Dict[str, Any], out_dir: Path, plots: bool = True) -> List[Path]:
    """Write the Markdown report (and the plots) of a speed or exactness run's JSON document.

    Parameters
    ----------
    doc : dict
        The JSON document (``doc["kind"]`` is ``"speed"`` or ``"error"``).
    out_dir : pathlib.Path
        The folder to write to (created if needed).
    plots : bool, default True
        Also write the PNG plots (needs matplotlib).

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    KeyError
        If ``doc`` lacks a key of the layout :data:`SCHEMA`.
    """
    from . import plots as _plots

    out_dir.mkdir(parents=True, exist_ok=True)
    kind = doc["kind"]
    md_path = out_dir / f"{kind}.md"
    md_path.write_text(speed_markdown(doc) if kind == "speed" else error_markdown(doc),
                       encoding="utf-8")
    paths = [md_path]
    if plots:
        paths += (_plots.plot_speed(doc, out_dir) if kind == "speed"
                  else _plots.plot_error(doc, out_dir))
    return paths


def run_study(
    what: str,
    runner: Callable[[BenchConfig, Log], Dict[str, Dict[str, Any]]],
    argv: Optional[Sequence[str]] = None,
    description: str = "",
    log: Log = _print,
) -> int:
    """Parse ``argv``, run ``runner`` and write JSON, Markdown and PNG files per device.

    The one driver of ``python -m benchmarks.attribution_speed`` and
    ``python -m benchmarks.attribution_error``; ``--from-json`` only re-renders.

    Parameters
    ----------
    what : {"speed", "error"}
        The study (its options, see :func:`benchmarks.harness.cases.add_arguments`).
    runner : callable
        ``runner(cfg, log) -> {device: result}``.
    argv : sequence of str, optional
        Defaults to ``sys.argv[1:]``.
    description : str
        The ``--help`` text.
    log : callable, default print

    Returns
    -------
    int
        0 on success, 2 for an invalid configuration (message on stderr).

    Raises
    ------
    SystemExit
        From :mod:`argparse`, for ``--help`` or an invalid command line.
    OSError
        If the files cannot be written.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = f"python -m benchmarks.attribution_{what}"
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser, what)
    args = parser.parse_args(argv)
    if args.from_json is not None:
        doc = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        for p in render(doc, Path(args.out) / doc["device"]["type"], plots=not args.no_plots):
            log(f"  wrote {p}")
        return 0
    try:
        cfg = config_from_args(args)
        cfg.validate()
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    command = command_line(prog, argv)
    log(f"{command}\n  devices: {', '.join(cfg.devices)}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average {loadavg()}")
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load_start = loadavg()
    t0 = time.perf_counter()
    per_device = runner(cfg, log)
    elapsed = time.perf_counter() - t0
    for device, result in per_device.items():
        doc = _write(what, result, device, cfg, command, Path(args.out), created, load_start,
                     elapsed)
        for p in [Path(args.out) / device / f"{what}.json",
                  *render(doc, Path(args.out) / device, plots=cfg.plots)]:
            log(f"  wrote {p}")
    return 0
