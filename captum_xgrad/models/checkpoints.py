"""Loading the official Fast Axiomatic Attribution checkpoints, offline.

The official training scripts save dicts ``{'epoch', 'arch', 'state_dict', 'best_acc1',
'optimizer'}``; under ``nn.DataParallel`` the keys are prefixed ``module.`` (for AlexNet/VGG
sometimes only ``features.module.0.weight``). Files are read with ``torch.load(weights_only=True)``
(no code from the file runs) and nothing is ever downloaded: pass the path of a file you have.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
from torch import Tensor, nn

__all__ = ["load_official_checkpoint", "read_checkpoint", "xvgg_from_torchvision"]

PathLike = Union[str, "os.PathLike[str]"]
_MAX_LISTED = 8


def _listing(keys: List[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _MAX_LISTED else "")


def _finish_build(model: nn.Module, arch: str, weights: Optional[PathLike]) -> Any:
    """The builders' common end: name the model ``arch`` and load ``weights`` if given."""
    model.arch = arch
    if weights is not None:
        load_official_checkpoint(model, weights)
    return model


def read_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Read a checkpoint file with ``torch.load(weights_only=True)`` onto the CPU.

    Parameters
    ----------
    path : str or PathLike
        The file.

    Returns
    -------
    dict
        ``{'state_dict': ..., 'arch': ..., ...}`` as stored; a plain state dict comes back as
        ``{'state_dict': <it>}``.

    Raises
    ------
    TypeError
        If ``path`` is not a path (e.g. a torchvision ``Weights`` enum).
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is corrupt, not a PyTorch checkpoint, or holds no state dict.

    Examples
    --------
    >>> import os, tempfile
    >>> from captum_xgrad.models import read_checkpoint
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "plain.pt")
    ...     torch.save(torch.nn.Linear(2, 1, bias=False).state_dict(), path)
    ...     checkpoint = read_checkpoint(path)
    >>> list(checkpoint), list(checkpoint["state_dict"])
    (['state_dict'], ['weight'])
    >>> read_checkpoint("no/such/file.pth.tar")
    Traceback (most recent call last):
    ...
    FileNotFoundError: checkpoint file not found: 'no/such/file.pth.tar'.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"weights must be the path of a checkpoint file, got {type(path).__name__}. "
            "captum-xgrad never downloads weights: download the official checkpoint "
            "(see github.com/visinf/fast-axiomatic-attribution) and pass its path."
        )
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path!r}.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"could not read the checkpoint {path!r} ({type(exc).__name__}: {exc}). The "
            "file is corrupt, truncated, not a PyTorch checkpoint, or holds objects that "
            "torch.load(weights_only=True) refuses to unpickle; re-download or re-save it "
            "with torch.save({'state_dict': model.state_dict(), 'arch': ...}, path)."
        ) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj:
        checkpoint = dict(obj)
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        checkpoint = {"state_dict": obj}
    else:
        what = type(obj).__name__
        keys = f" with keys {_listing([str(k) for k in obj])}" if isinstance(obj, Mapping) else ""
        raise ValueError(
            f"the checkpoint {path!r} holds a {what}{keys}, not a state dict: expected "
            "{'state_dict': ..., 'arch': ..., 'epoch': ...} as saved by the official "
            "training scripts, or a plain state dict."
        )
    state = checkpoint["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"the checkpoint {path!r} has a 'state_dict' entry that is not a mapping of "
            "parameter names to tensors."
        )
    return checkpoint


def _strip_parallel_prefixes(
    state: Mapping[str, Tensor], expected: Mapping[str, Any]
) -> "OrderedDict[str, Tensor]":
    """Map ``module.x`` and ``a.module.x`` (DataParallel) keys onto the model's keys."""
    mapped: "OrderedDict[str, Tensor]" = OrderedDict()
    for key, value in state.items():
        new = key if key in expected else key.removeprefix("module.").replace(".module.", ".")
        if new in mapped:
            raise ValueError(
                f"the checkpoint has two entries for {new!r} once 'module.' prefixes are "
                "removed; it mixes DataParallel and plain keys."
            )
        mapped[new] = value
    return mapped


def _check_state(
    state: Mapping[str, Tensor], model: nn.Module, source: str, arch: Optional[str]
) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    bad_shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or extra or bad_shapes):
        return
    name = getattr(model, "arch", None) or type(model).__name__
    lines = [f"the checkpoint {source} does not fit the model {name}:"]
    found = {"missing keys": missing, "unexpected keys": extra, "shape mismatches": bad_shapes}
    lines += [f"  {what} ({len(keys)}): {_listing(keys)}" for what, keys in found.items() if keys]
    hints = []
    if extra and all(k.endswith(".bias") for k in extra) and not missing:
        hints.append(
            "the extra keys are biases: this looks like a model with biases (e.g. a torchvision "
            "VGG; use captum_xgrad.models.xvgg_from_torchvision, which drops them)"
        )
    if any("running_mean" in k for k in extra):
        hints.append("the checkpoint has BatchNorm statistics, the model has no BatchNorm")
    if bad_shapes and len(bad_shapes) <= 2 and not (missing or extra):
        hints.append("only the classifier differs? build the model with the right num_classes")
    if arch:
        hints.append(f"the checkpoint says arch={arch!r}")
    if hints:
        lines.append("Hint: " + "; ".join(hints) + ".")
    raise ValueError("\n".join(lines))


def load_official_checkpoint(
    model: nn.Module, path: PathLike, *, arch: Optional[str] = None
) -> Dict[str, Any]:
    """Load an official Fast Axiomatic Attribution checkpoint into ``model``.

    Reads ``path`` with :func:`read_checkpoint`, removes DataParallel ``module.`` prefixes,
    checks the ``arch``, that the keys match exactly and every shape fits, then loads the
    weights. On any error the model is left unchanged.

    Parameters
    ----------
    model : nn.Module
        The model to load into, e.g. ``captum_xgrad.models.xvgg16()``.
    path : str or PathLike
        The checkpoint file: ``{'state_dict', 'arch', 'epoch', ...}`` or a plain state dict.
    arch : str, optional
        The architecture the checkpoint must have; defaults to ``model.arch`` (set by the
        builders). Not checked if neither is known or the file has no ``arch``.

    Returns
    -------
    dict
        The checkpoint's ``arch``, ``epoch``, ``best_acc1`` (as a float) where present.

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module`` or ``path`` is not a path.
    FileNotFoundError
        If the file does not exist.
    ValueError
        For a corrupt file, another architecture, missing or unexpected keys, or shape
        mismatches (the message lists them).

    Examples
    --------
    >>> import os, tempfile
    >>> from captum_xgrad.models import xalexnet, load_official_checkpoint
    >>> trained = xalexnet(num_classes=10)
    >>> state = {"module." + k: v for k, v in trained.state_dict().items()}
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "xalexnet_model_best.pth.tar")
    ...     torch.save({"epoch": 90, "arch": "xalexnet", "state_dict": state}, path)
    ...     model = xalexnet(num_classes=10)
    ...     load_official_checkpoint(model, path)
    {'arch': 'xalexnet', 'epoch': 90}
    >>> torch.equal(model.features[0].weight, trained.features[0].weight)
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}.")
    checkpoint = read_checkpoint(path)
    source = repr(os.fspath(path))
    ckpt_arch = checkpoint.get("arch")
    want = arch if arch is not None else getattr(model, "arch", None)
    if isinstance(ckpt_arch, str) and want is not None and ckpt_arch != want:
        raise ValueError(
            f"the checkpoint {source} is for arch={ckpt_arch!r} but the model is {want!r}; "
            f"build the matching model, e.g. captum_xgrad.models.get_model({ckpt_arch!r})."
        )
    state = _strip_parallel_prefixes(checkpoint["state_dict"], model.state_dict())
    _check_state(state, model, source, ckpt_arch if isinstance(ckpt_arch, str) else None)
    model.load_state_dict(state, strict=True)
    meta = {key: checkpoint[key] for key in ("arch", "epoch", "best_acc1") if key in checkpoint}
    return {key: float(v) if isinstance(v, Tensor) else v for key, v in meta.items()}


_VGG_DEPTH_BY_CONVS = {8: 11, 10: 13, 13: 16, 16: 19}


def xvgg_from_torchvision(path: PathLike, *, num_classes: Optional[int] = None) -> nn.Module:
    """Build an X-VGG from a torchvision VGG state-dict file by dropping its biases.

    The depth and the number of classes are read off the file. This is how the official code
    initialises its X-VGG from ImageNet-pretrained VGG weights; the result computes a different
    function (no biases) and needs fine-tuning.

    Parameters
    ----------
    path : str or PathLike
        A torchvision VGG ``state_dict`` file (e.g. ``vgg16-397923af.pth``), or one holding
        ``{'state_dict': ...}``.
    num_classes : int, optional
        Check that the classifier has this many outputs.

    Returns
    -------
    XVGG
        In training mode, like a freshly built model.

    Raises
    ------
    FileNotFoundError, TypeError
        As :func:`read_checkpoint`.
    ValueError
        For a corrupt file, a VGG-BN state dict (X-VGG has no BatchNorm), a state dict that is
        not a VGG, or a ``num_classes`` that does not match.

    Examples
    --------
    >>> import os, tempfile, torchvision
    >>> from captum_xgrad.models import xvgg_from_torchvision
    >>> vgg = torchvision.models.vgg11(weights=None, num_classes=5)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "vgg11.pth")
    ...     torch.save(vgg.state_dict(), path)
    ...     xvgg = xvgg_from_torchvision(path)
    >>> xvgg.arch, xvgg.classifier[6].bias is None
    ('xvgg11', True)
    >>> torch.equal(xvgg.features[0].weight, vgg.features[0].weight)
    True
    """
    from .vgg import _xvgg

    checkpoint = read_checkpoint(path)
    source = repr(os.fspath(path))
    state = _strip_parallel_prefixes(checkpoint["state_dict"], {})
    if any("running_mean" in k for k in state):
        raise ValueError(
            f"{source} is a VGG-BN state dict (it has BatchNorm statistics); X-VGG has no "
            "BatchNorm. Build torchvision's vgg*_bn, load it, and convert it with "
            "captum_xgrad.make_x_dnn instead."
        )
    convs = [k for k in state if re.fullmatch(r"features\.\d+\.weight", k)]
    depth = _VGG_DEPTH_BY_CONVS.get(len(convs))
    if depth is None or "classifier.6.weight" not in state:
        raise ValueError(
            f"{source} does not look like a torchvision VGG state dict: it has {len(convs)} "
            "'features.N.weight' convolutions (VGG-11/13/16/19 have 8/10/13/16) and "
            f"{'a' if 'classifier.6.weight' in state else 'no'} 'classifier.6.weight'."
        )
    classes = int(state["classifier.6.weight"].shape[0])
    if num_classes is not None and num_classes != classes:
        raise ValueError(
            f"{source} has a classifier with {classes} outputs, not num_classes={num_classes}."
        )
    weights = OrderedDict((k, v) for k, v in state.items() if not k.endswith(".bias"))
    model = _xvgg(f"xvgg{depth}", None, classes, int(state[convs[0]].shape[1]), init_weights=False)
    _check_state(weights, model, source, None)
    model.load_state_dict(weights, strict=True)
    return model
