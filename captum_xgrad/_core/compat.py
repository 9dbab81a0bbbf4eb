"""The one place where captum-xgrad touches Captum's private helpers.

Captum's input, baseline, target and ``additional_forward_args`` handling lives in
private modules (``captum._utils``, ``captum.attr._utils``).  captum-xgrad reuses it
rather than re-implementing it, so that an XGradient call accepts exactly what an
IntegratedGradients call accepts.  Every such import goes through this module: a
Captum upgrade that moves one of them touches this file only.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from captum._utils.common import (
    _expand_additional_forward_args,
    _expand_target,
    _format_additional_forward_args,
    _format_output,
    _format_tensor_into_tuples,
    _is_tuple,
    _reduce_list,
    _select_targets,
    _sort_key_list,
)
from captum._utils.gradient import (
    _extract_device_ids,
    _forward_layer_distributed_eval,
)
from captum._utils.typing import (
    BaselineType,
    ModuleOrModuleList,
    TargetType,
    TensorOrTupleOfTensorsGeneric,
)
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS, approximation_parameters
from captum.attr._utils.attribution import GradientAttribution, LayerAttribution
from captum.attr._utils.batching import _tuple_splice_range
from captum.attr._utils.common import _format_input_baseline

_F = TypeVar("_F", bound=Callable[..., Any])


def captum_method(func: _F) -> _F:
    """Wrap an ``attribute`` method the way Captum's ``log_usage`` does.

    :class:`captum.attr.NoiseTunnel` calls ``method.attribute.__wrapped__`` to skip
    Captum's usage logging, so every ``attribute`` needs a ``__wrapped__`` attribute.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


__all__ = [
    "captum_method",
    "BaselineType",
    "GradientAttribution",
    "LayerAttribution",
    "ModuleOrModuleList",
    "SUPPORTED_METHODS",
    "approximation_parameters",
    "TargetType",
    "TensorOrTupleOfTensorsGeneric",
    "_expand_additional_forward_args",
    "_expand_target",
    "_extract_device_ids",
    "_format_additional_forward_args",
    "_format_input_baseline",
    "_format_output",
    "_format_tensor_into_tuples",
    "_forward_layer_distributed_eval",
    "_is_tuple",
    "_reduce_list",
    "_select_targets",
    "_sort_key_list",
    "_tuple_splice_range",
]
