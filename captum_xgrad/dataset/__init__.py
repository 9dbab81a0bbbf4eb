"""Attributions for a whole dataset: :func:`attribute_dataset` and :class:`AttributionStore`.

:func:`attribute_dataset` runs an attribution method over every example of a dataset,
on one process or many (``torchrun``), and writes the maps into a store on disk that
numpy alone reads; :class:`AttributionStore` opens it. See
:mod:`captum_xgrad.dataset.store` for the format and :mod:`captum_xgrad.dataset.loop`
for the batching and sharding.
"""

from .loop import attribute_dataset
from .store import AttributionStore, model_fingerprint

__all__ = ["AttributionStore", "attribute_dataset", "model_fingerprint"]
