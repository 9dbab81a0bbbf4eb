"""Whole-dataset attributions: :func:`attribute_dataset` fills an :class:`AttributionStore`."""

from .loop import attribute_dataset
from .store import AttributionStore, model_fingerprint

__all__ = ["AttributionStore", "attribute_dataset", "model_fingerprint"]
