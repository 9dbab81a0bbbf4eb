"""X-DNN model zoo: torchvision-style builders of the networks of Hesse et al. (2021).

The X-models :func:`xalexnet`, :func:`xvgg11` ... :func:`xvgg19` and :func:`xfixup_resnet18` ...
:func:`xfixup_resnet152` have no biases, are nonnegatively homogeneous of degree 1 in eval mode
and have the ``state_dict`` keys and shapes of the official checkpoints; :func:`fixup_resnet18`
... :func:`fixup_resnet152` are the biased Fixup-ResNet baselines (not homogeneous). Every
builder takes these keyword arguments:

- ``weights`` (str or PathLike, optional): a checkpoint file in the official format
  (``{'state_dict', 'arch', ...}``, keys possibly prefixed ``module.``) or a plain state dict,
  loaded with :func:`load_official_checkpoint`, which raises ``TypeError``, ``ValueError`` or
  ``FileNotFoundError`` for a bad one. Nothing is ever downloaded; for a torchvision VGG state
  dict (with biases) use :func:`xvgg_from_torchvision`.
- ``progress`` (bool, default True): accepted for torchvision compatibility; unused.
- ``num_classes`` (int, default 1000): the number of outputs.
- ``in_channels`` and ``**kwargs``: passed to the model class (``zero_init``, ``dropout``...).

:func:`get_model` and :func:`list_models` give access by name.

Examples
--------
>>> from captum_xgrad.models import get_model, list_models
>>> list_models()[:3]
['fixup_resnet101', 'fixup_resnet152', 'fixup_resnet18']
>>> model = get_model("xalexnet", num_classes=10)
>>> type(model).__name__, model.arch
('XAlexNet', 'xalexnet')
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from torch import nn

from .alexnet import XAlexNet, xalexnet
from .checkpoints import load_official_checkpoint, read_checkpoint, xvgg_from_torchvision
from .fixup_resnet import (
    FixupResNet, XFixupResNet, fixup_resnet18, fixup_resnet34, fixup_resnet50, fixup_resnet101,
    fixup_resnet152, xfixup_resnet18, xfixup_resnet34, xfixup_resnet50, xfixup_resnet101,
    xfixup_resnet152,
)
from .vgg import XVGG, xvgg11, xvgg13, xvgg16, xvgg19

__all__ = [
    "FixupResNet", "XAlexNet", "XFixupResNet", "XVGG",
    "fixup_resnet18", "fixup_resnet34", "fixup_resnet50", "fixup_resnet101", "fixup_resnet152",
    "get_model", "get_model_builder", "list_models", "load_official_checkpoint", "read_checkpoint",
    "xalexnet", "xvgg11", "xvgg13", "xvgg16", "xvgg19", "xvgg_from_torchvision",
    "xfixup_resnet18", "xfixup_resnet34", "xfixup_resnet50", "xfixup_resnet101", "xfixup_resnet152",
]

_BUILDERS: Dict[str, Callable[..., nn.Module]] = {
    fn.__name__: fn
    for fn in (
        xalexnet, xvgg11, xvgg13, xvgg16, xvgg19,
        xfixup_resnet18, xfixup_resnet34, xfixup_resnet50, xfixup_resnet101, xfixup_resnet152,
        fixup_resnet18, fixup_resnet34, fixup_resnet50, fixup_resnet101, fixup_resnet152,
    )
}

#: the models that are nonnegatively homogeneous (in eval mode)
HOMOGENEOUS = tuple(sorted(n for n in _BUILDERS if n.startswith("x")))


def list_models(homogeneous_only: bool = False) -> List[str]:
    """Names of the registered builders, sorted.

    Parameters
    ----------
    homogeneous_only : bool, default False
        Only the X-DNNs (leave out the biased Fixup-ResNet baselines).

    Returns
    -------
    list of str
        Builder names, accepted by :func:`get_model` and :func:`get_model_builder`.

    Examples
    --------
    >>> from captum_xgrad.models import list_models
    >>> list_models(homogeneous_only=True)[:4]
    ['xalexnet', 'xfixup_resnet101', 'xfixup_resnet152', 'xfixup_resnet18']
    >>> len(list_models()), len(list_models(homogeneous_only=True))
    (15, 10)
    """
    return sorted(HOMOGENEOUS if homogeneous_only else _BUILDERS)


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder function registered as ``name``.

    Parameters
    ----------
    name : str
        One of :func:`list_models`, e.g. ``"xvgg16"``.

    Returns
    -------
    callable
        The builder, e.g. :func:`xvgg16`.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).

    Examples
    --------
    >>> from captum_xgrad.models import get_model_builder, xvgg16
    >>> get_model_builder("xvgg16") is xvgg16
    True
    >>> get_model_builder("vgg16")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'vgg16'; captum_xgrad.models has: fixup_resnet101, ...
    """
    try:
        return _BUILDERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown model {name!r}; captum_xgrad.models has: {', '.join(list_models())}."
        ) from None


def get_model(name: str, *, weights: Optional[Any] = None, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` (torchvision's ``get_model`` for this zoo).

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    weights : str or PathLike, optional
        Checkpoint file to load (see :func:`load_official_checkpoint`).
    **kwargs
        Passed to the builder (``num_classes``, ...).

    Returns
    -------
    nn.Module

    Raises
    ------
    ValueError
        For an unknown name.
    TypeError, ValueError, FileNotFoundError
        For a bad ``weights``, from :func:`load_official_checkpoint`.

    Examples
    --------
    >>> from captum_xgrad.models import get_model
    >>> model = get_model("xfixup_resnet18", num_classes=10, zero_init=False).eval()
    >>> type(model).__name__, model.arch, model(torch.rand(1, 3, 32, 32)).shape
    ('XFixupResNet', 'xfixup_resnet18', torch.Size([1, 10]))
    """
    return get_model_builder(name)(weights=weights, **kwargs)
