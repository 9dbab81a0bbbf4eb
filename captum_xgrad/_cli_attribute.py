"""``captum-xgrad attribute MODEL DATA --out DIR``: attributions for a whole dataset.

MODEL is a spec as in ``captum-xgrad check`` (``torchvision:NAME``,
``captum_xgrad:NAME``, ``path/to/file.py:FACTORY``, ``package.module:FACTORY``);
``--weights`` loads a ``state_dict`` into it. DATA is

- ``imagefolder:PATH``: torchvision's ``ImageFolder`` at PATH, each image resized to
  ``--resize`` (default 256), center-cropped to ``--crop`` (default 224), made a
  tensor in [0, 1] and, with ``--normalize imagenet``, normalised with the ImageNet
  mean and standard deviation;
- ``digits``: scikit-learn's 1,797 handwritten digits as float tensors (1, 8, 8) in
  [0, 1] with their labels; ``--resize S`` upsamples them (bilinear) to (1, S, S) and
  ``--channels C`` repeats the channel C times.

The model is put in eval mode and run with :func:`~captum_xgrad.attribute_dataset`
(``--method xgradient``, the default, or Captum's ``ig`` with ``--n-steps``). Under
``torchrun --nproc-per-node=N -m captum_xgrad attribute ...`` every process takes its
shard of the batches. Exit status: 0 on success, 2 on a usage error (bad MODEL, DATA,
``--target``, an existing store written for something else).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Union

import torch
from torch.utils.data import Dataset, TensorDataset

from ._cli_check import UsageError, exit_code_of, load_model

__all__ = ["add_arguments", "run", "load_data", "parse_target"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``attribute`` sub-command's arguments to ``parser``."""
    parser.add_argument("model", metavar="MODEL", help="a model spec as in `captum-xgrad check`")
    parser.add_argument("data", metavar="DATA",
                        help="imagefolder:PATH (torchvision's ImageFolder) or digits "
                        "(scikit-learn's)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the store's directory")
    parser.add_argument("--target", default="label", metavar="label|pred|INT", help="what to "
                        "explain: the label (default), the model's prediction, or a class index")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="examples per batch (default: 64)")
    parser.add_argument("--method", choices=("xgradient", "ig"), default="xgradient",
                        help="XGradient (default) or Captum's IntegratedGradients, for comparison")
    parser.add_argument("--n-steps", type=int, default=50,
                        help="IG steps (--method ig; default 50)")
    parser.add_argument("--degree", type=float, default=1.0, help="XGradient's degree (default 1)")
    parser.add_argument("--weights", metavar="PATH", help="a state_dict file to load into MODEL")
    parser.add_argument("--resize", type=int, help="resize to this size (imagefolder: default 256)")
    parser.add_argument("--crop", type=int, help="center crop (imagefolder only; default 224)")
    parser.add_argument("--channels", type=int, default=1,
                        help="digits: repeat the channel this many times (default 1)")
    parser.add_argument("--normalize", choices=("none", "imagenet"), default="none",
                        help="imagefolder: normalise with the ImageNet mean/std (default none)")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                        help="stored dtype of the attributions (default float16)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default 0)")
    parser.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: the model's; "
                        "cuda:LOCAL_RANK under torchrun with GPUs)")
    parser.add_argument("--no-resume", action="store_true",
                        help="fail if DIR already holds a store (default: complete it)")
    parser.add_argument("--overwrite", action="store_true", help="replace a store at DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_target(text: str) -> Union[str, int]:
    """Parse ``--target``: ``"label"``, ``"pred"`` or a class index (else :class:`UsageError`)."""
    if text in ("label", "pred"):
        return text
    if text.isdigit():
        return int(text)
    raise UsageError(f"--target must be label, pred or a class index >= 0, got {text!r}.")


def _digits(resize: Any, channels: int) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UsageError(
            "DATA 'digits' needs scikit-learn: pip install 'captum-xgrad[demo]'.") from exc
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if resize:
        x = torch.nn.functional.interpolate(x, size=(resize, resize), mode="bilinear",
                                            align_corners=False)
    if channels > 1:
        x = x.repeat(1, channels, 1, 1)
    return TensorDataset(x, torch.tensor(digits.target, dtype=torch.long))


def load_data(spec: str, resize: Any = None, crop: Any = None, channels: int = 1,
              normalize: str = "none") -> Dataset:
    """The dataset of a DATA spec (see the module docstring), yielding ``(input, label)``."""
    for name, value in (("--resize", resize), ("--crop", crop), ("--channels", channels)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value}.")
    if spec == "digits":
        if crop is not None or normalize != "none":
            raise UsageError("--crop and --normalize apply to imagefolder: DATA only.")
        return _digits(resize, channels)
    kind, sep, path = spec.partition(":")
    if kind != "imagefolder" or not sep or not path:
        raise UsageError(f"DATA must be imagefolder:PATH or digits, got {spec!r}.")
    if channels != 1:
        raise UsageError("--channels applies to DATA digits only (images are RGB).")
    if not os.path.isdir(path):
        raise UsageError(f"imagefolder: {path!r} is not a directory.")
    from torchvision import datasets, transforms

    steps = [transforms.Resize(resize or 256), transforms.CenterCrop(crop or 224),
             transforms.ToTensor()]
    if normalize == "imagenet":
        steps.append(transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
    try:
        return datasets.ImageFolder(path, transform=transforms.Compose(steps))
    except (FileNotFoundError, OSError) as exc:
        raise UsageError(f"imagefolder: {path!r}: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    """Run ``captum-xgrad attribute``: exit 0 (store complete), 1 (model failed) or 2 (usage)."""
    return exit_code_of("captum-xgrad attribute", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from .dataset import attribute_dataset

    try:
        target = parse_target(args.target)
        if args.batch_size < 1:
            raise UsageError(f"--batch-size must be a positive integer, got {args.batch_size}.")
        if args.n_steps < 1:
            raise UsageError(f"--n-steps must be a positive integer, got {args.n_steps}.")
        data = load_data(args.data, args.resize, args.crop, args.channels, args.normalize)
        model = load_model(args.model)
        if args.weights:
            try:
                state = torch.load(args.weights, map_location="cpu", weights_only=True)
                model.load_state_dict(state)
            except Exception as exc:
                raise UsageError(
                    f"--weights {args.weights!r}: {type(exc).__name__}: {exc}") from exc
        model.eval()
        if args.method == "ig":
            from captum.attr import IntegratedGradients

            method: Any = IntegratedGradients(model)
            kwargs = {"n_steps": args.n_steps}
        else:
            from .xgradient import XGradient

            method = XGradient(model, degree=args.degree)
            kwargs = {}
        start = time.perf_counter()
        store = attribute_dataset(
            method, data, args.out, target=target, batch_size=args.batch_size,
            dtype=getattr(torch, args.dtype), num_workers=args.num_workers,
            device=args.device, resume=not args.no_resume, overwrite=args.overwrite,
            progress=not args.no_progress, attribute_kwargs=kwargs,
        )
    except ValueError as exc:  # e.g. a store at --out that cannot be resumed
        raise UsageError(str(exc)) from exc
    seconds = time.perf_counter() - start
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{store}\n{len(store)} examples in {seconds:.1f} s "
              f"({len(store) / max(seconds, 1e-9):.1f} images/s, including resumed rows); "
              f"read it with captum_xgrad.AttributionStore({str(store.path)!r})")
    return 0
