"""The one importer of Captum's private helpers, so that XGradient accepts what
IntegratedGradients accepts and a Captum upgrade touches this file only."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from captum._utils.common import (
    _expand_additional_forward_args, _expand_target, _format_additional_forward_args,
    _format_output, _format_tensor_into_tuples, _is_tuple, _reduce_list, _select_targets,
    _sort_key_list,
)
from captum._utils.gradient import _extract_device_ids, _forward_layer_distributed_eval
from captum._utils.typing import (
    BaselineType, ModuleOrModuleList, TargetType, TensorOrTupleOfTensorsGeneric,
)
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS, approximation_parameters
from captum.attr._utils.attribution import GradientAttribution, LayerAttribution
from captum.attr._utils.batching import _tuple_splice_range
from captum.attr._utils.common import _format_input_baseline

_F = TypeVar("_F", bound=Callable[..., Any])


def captum_method(func: _F) -> _F:
    """Give ``attribute`` the ``__wrapped__`` that :class:`captum.attr.NoiseTunnel` calls."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


__all__ = [
    "captum_method", "BaselineType", "GradientAttribution", "LayerAttribution",
    "ModuleOrModuleList", "SUPPORTED_METHODS", "approximation_parameters", "TargetType",
    "TensorOrTupleOfTensorsGeneric", "_expand_additional_forward_args", "_expand_target",
    "_extract_device_ids", "_format_additional_forward_args", "_format_input_baseline",
    "_format_output", "_format_tensor_into_tuples", "_forward_layer_distributed_eval",
    "_is_tuple", "_reduce_list", "_select_targets", "_sort_key_list", "_tuple_splice_range",
]
