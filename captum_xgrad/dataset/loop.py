"""The loop of :func:`~captum_xgrad.attribute_dataset`: batches, targets, sharding, resume.

Rows are computed in batches of ``batch_size`` consecutive dataset indices; batch ``b``
holds indices ``b * batch_size`` to ``(b + 1) * batch_size - 1``. Under
:mod:`torch.distributed` (e.g. ``torchrun --nproc-per-node=8``) rank ``r`` of ``W``
runs the batches ``b`` with ``b % W == r``: every rank runs exactly the batches one
process would, so the store is byte-identical to a one-process run (at the same torch
thread count and on the same kind of device).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler

from .._core.state import preserve_model_state
from .._version import __version__
from . import store as _store
from .store import AttributionStore, PathLike, model_fingerprint

__all__ = ["attribute_dataset", "TargetSpec"]

_log = logging.getLogger(__name__)

#: What to explain: ``"label"`` (the dataset's labels), ``"pred"`` (the model's argmax),
#: an ``int`` class index, or a callable ``(outputs, labels) -> targets``.
TargetSpec = Union[str, int, Callable[[Tensor, Tensor], Tensor]]


# ------------------------------------------------------------------ arguments
def _target_name(target: TargetSpec) -> str:
    if isinstance(target, str):
        if target not in ("label", "pred"):
            raise ValueError(
                f"target must be 'label', 'pred', an int class index or a callable "
                f"(outputs, labels) -> targets, got {target!r}."
            )
        return target
    if isinstance(target, bool) or not (isinstance(target, int) or callable(target)):
        raise ValueError(
            f"target must be 'label', 'pred', an int class index or a callable "
            f"(outputs, labels) -> targets, got {target!r}."
        )
    if isinstance(target, int):
        if target < 0:
            raise ValueError(f"target class index must be >= 0, got {target}.")
        return f"int:{target}"
    return f"callable:{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"


def _unpack_data(
    data: Any, batch_size: Optional[int], num_workers: Optional[int]
) -> Tuple[Dataset, int, int, Optional[Callable], bool]:
    collate_fn = None
    pin_memory = False
    if isinstance(data, DataLoader):
        loader = data
        data = loader.dataset
        collate_fn = loader.collate_fn
        pin_memory = loader.pin_memory
        if batch_size is None:
            batch_size = loader.batch_size
        if num_workers is None:
            num_workers = loader.num_workers
        if isinstance(loader.sampler, RandomSampler):
            import warnings

            warnings.warn(
                "the DataLoader shuffles; attribute_dataset ignores its sampler and writes "
                "the rows in dataset order.",
                UserWarning,
                stacklevel=3,
            )
    if isinstance(data, IterableDataset) or not (
        hasattr(data, "__len__") and hasattr(data, "__getitem__")
    ):
        raise TypeError(
            "data must be a map-style Dataset (with __len__ and __getitem__, yielding "
            f"(input, label)) or a DataLoader over one, got {type(data).__name__}."
        )
    batch_size = 64 if batch_size is None else batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    num_workers = 0 if num_workers is None else num_workers
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}.")
    return data, batch_size, num_workers, collate_fn, pin_memory


def _split(batch: Any) -> Tuple[Tensor, Tensor]:
    if not isinstance(batch, (list, tuple)) or len(batch) < 2 or not isinstance(batch[0], Tensor):
        raise TypeError(
            "each item of the dataset must be an (input, label) pair with a tensor input; "
            f"a batch came as {type(batch).__name__}. Wrap the dataset so that it yields "
            "(input, label)."
        )
    labels = batch[1]
    if not isinstance(labels, Tensor):
        labels = torch.as_tensor(labels)
    return batch[0], labels


def _item_shape(dataset: Dataset) -> List[int]:
    item = dataset[0]
    x = item[0] if isinstance(item, (list, tuple)) and item else item
    if not isinstance(x, Tensor):
        raise TypeError(
            "each item of the dataset must be an (input, label) pair with a tensor input, "
            f"item 0 is {type(item).__name__} (input: {type(x).__name__}). Add a "
            "transform that makes tensors (e.g. torchvision.transforms.ToTensor())."
        )
    return list(x.shape)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


# ------------------------------------------------------------------ distributed
class _Dist:
    """Rank, world size and a gloo group for the bookkeeping (objects, barriers)."""

    def __init__(self) -> None:
        self.created = False
        env_world = int(os.environ.get("WORLD_SIZE", "1"))
        if not dist.is_available() or (not dist.is_initialized() and env_world <= 1):
            self.rank, self.world, self.group, self.local_rank = 0, 1, None, 0
            return
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend=backend)
            self.created = True
            _log.info("attribute_dataset initialised torch.distributed (%s)", backend)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        self.group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")

    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def close(self) -> None:
        if self.world > 1 and self.group is not None:
            dist.destroy_process_group(self.group)
        if self.created:
            dist.destroy_process_group()


def _resolve_device(device: Any, model: Optional[nn.Module], ctx: _Dist) -> Optional[torch.device]:
    if device is not None:
        return torch.device(device)
    if ctx.world > 1 and torch.cuda.is_available():
        return torch.device("cuda", ctx.local_rank)
    if model is not None:
        for t in list(model.parameters()) + list(model.buffers()):
            return t.device
    return None


def _model_device(model: nn.Module) -> Optional[torch.device]:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return None


# ------------------------------------------------------------------ one batch
def _compute(
    method: Any, inputs: Tensor, labels: Tensor, target: TargetSpec,
    device: Optional[torch.device], attribute_kwargs: Dict[str, Any], dtype: np.dtype,
) -> Dict[str, np.ndarray]:
    if device is not None:
        inputs = inputs.to(device)
        labels = labels.to(device)
    with preserve_model_state(method.forward_func), torch.no_grad():
        outputs = method.forward_func(inputs)
    if not isinstance(outputs, Tensor) or outputs.dim() < 1 or outputs.shape[0] != inputs.shape[0]:
        raise TypeError(
            "the model must return one tensor with one row per example, got "
            f"{type(outputs).__name__} {tuple(getattr(outputs, 'shape', ()))}."
        )
    if target == "label":
        targets = labels
    elif target == "pred":
        targets = outputs.reshape(outputs.shape[0], -1).argmax(dim=1)
    elif isinstance(target, int):
        targets = torch.full((inputs.shape[0],), target, dtype=torch.long, device=inputs.device)
    else:
        targets = target(outputs, labels)
        if not isinstance(targets, Tensor):
            targets = torch.as_tensor(targets, device=inputs.device)
    if targets.shape != (inputs.shape[0],) or targets.is_floating_point() or targets.is_complex():
        raise ValueError(
            f"the targets of a batch must be one integer class index per example, shape "
            f"({inputs.shape[0]},), got {targets.dtype} {tuple(targets.shape)}"
            + (" (the dataset's labels)" if target == "label" else "")
            + ". Use target='pred', an int, or a callable (outputs, labels) -> targets."
        )
    targets = targets.to(device=inputs.device, dtype=torch.long)
    attr = method.attribute(inputs, target=targets, **attribute_kwargs)
    if isinstance(attr, tuple):
        if len(attr) != 1:
            raise TypeError(
                f"the method returned {len(attr)} attribution tensors; attribute_dataset "
                "stores one per example (single-input models, or pass a method that returns "
                "one tensor; return_convergence_delta is not supported)."
            )
        attr = attr[0]
    return {
        "attributions": attr.detach().to("cpu", torch.from_numpy(np.empty(0, dtype)).dtype).numpy(),
        "targets": targets.cpu().numpy().astype(np.int64),
        "outputs": outputs.detach().to("cpu", torch.float32).numpy(),
    }


def _rows(b: int, batch_size: int, n: int) -> List[int]:
    return list(range(b * batch_size, min(n, (b + 1) * batch_size)))


# ------------------------------------------------------------------ setup (rank 0)
def _setup(
    out: Path, *, resume: bool, overwrite: bool, new_index: Dict[str, Any],
    first_batch: Callable[[], Dict[str, np.ndarray]],
) -> Tuple[List[int], int, Dict[str, Any]]:
    """Validate or create the store. Returns (completed batches, run id, index)."""
    state = _store.store_state(out)
    if state == "foreign":
        raise ValueError(
            f"{out} exists and is not an attribution store (nor an empty directory); "
            "refusing to write there. Choose another --out/out directory."
        )
    if state == "store" and not overwrite:
        index = _store.read_index(out)
        if not resume:
            raise ValueError(
                f"{out} already holds an attribution store. Pass resume=True to complete "
                "it, or overwrite=True to replace it."
            )
        keys = ("length", "batch_size", "input_shape", "target", "method",
                "attribute_kwargs", "model_fingerprint")
        for key in keys:
            if index[key] != new_index[key]:
                what = {"model_fingerprint": "another model (other weights, class, layer or "
                        "train/eval mode)", "length": "a dataset of another length",
                        "input_shape": "inputs of another shape"}.get(key, f"another {key}")
                raise ValueError(
                    f"{out} holds a store written for {what}: {key} is {index[key]!r} "
                    f"there and {new_index[key]!r} now. Write to a new directory or pass "
                    "overwrite=True to replace it."
                )
        if index["arrays"]["attributions"]["dtype"] != new_index["dtype"]:
            raise ValueError(
                f"{out} holds {index['arrays']['attributions']['dtype']} attributions, this "
                f"run writes {new_index['dtype']}. Pass the same dtype, or overwrite=True."
            )
        # the arrays must exist and match the index before anything is trusted
        _store.RowWriter(out, index).close()
        if index["complete"]:
            return list(range(index["num_batches"])), 0, index
        done = _store.completed_batches(out, index["num_batches"])
        return sorted(done), _store.next_run_id(out), index
    if state == "partial" and not overwrite:
        raise ValueError(
            f"{out} holds the files of an attribution store without its index (a run died "
            "while creating it). Pass overwrite=True to start it again."
        )
    # a fresh store: compute batch 0 first, so that a failing model writes nothing
    rows = first_batch()
    if state in ("store", "partial"):
        _store.clear_store(out)
    out.mkdir(parents=True, exist_ok=True)
    n = new_index["length"]
    index = dict(new_index)
    del index["dtype"]
    index["arrays"] = {
        key: {"file": _store._ARRAYS[key], "shape": [n, *rows[key].shape[1:]],
              "dtype": str(rows[key].dtype)}
        for key in _store._ARRAYS
    }
    index["complete"] = False
    _store.create_arrays(out, index)
    _store.write_index(out, index)
    writer = _store.RowWriter(out, index)
    try:
        for key, value in rows.items():
            writer.write(key, 0, value)
    finally:
        writer.close()
    log = _store.ProgressLog(out, 0, 0)
    log.mark(0)
    log.close()
    return [0], 1, index


# ------------------------------------------------------------------ the loop
def attribute_dataset(
    method: Any,
    data: Any,
    out: PathLike,
    *,
    target: TargetSpec = "label",
    batch_size: Optional[int] = None,
    dtype: torch.dtype = torch.float16,
    num_workers: Optional[int] = None,
    device: Union[None, str, torch.device] = None,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    attribute_kwargs: Optional[Dict[str, Any]] = None,
) -> AttributionStore:
    """Attribute every example of a dataset and store the maps on disk, in dataset order.

    Runs ``method.attribute(x, target=t, **attribute_kwargs)`` over batches of
    ``batch_size`` consecutive dataset indices and writes the attributions, the
    targets and the model outputs into a store at ``out`` (see
    :mod:`captum_xgrad.dataset.store`), in place, so nothing has to fit in memory.
    After every batch the batch is logged as complete; an interrupted run is resumed
    with ``resume=True`` (a batch that was only partly written is redone) and ends with
    the same bytes as an uninterrupted one.

    Under :mod:`torch.distributed` (``torchrun --nproc-per-node=N script.py``, or any
    launcher that sets ``WORLD_SIZE``/``RANK``; the process group is initialised here
    if the script has not done so), rank ``r`` of ``W`` takes the batches ``b`` with
    ``b % W == r``, puts the model on ``cuda:LOCAL_RANK`` when there is a GPU, and
    writes its rows into the same store; rank 0 writes the index and shows the
    progress bar. Every rank returns once all ranks have finished. The result is
    byte-identical to a one-process run.

    Parameters
    ----------
    method : Captum-style attribution object
        ``XGradient(model)``, ``LayerXGradient(model, layer)``, or any Captum method
        (``IntegratedGradients(model)``...): anything with ``forward_func`` and
        ``attribute(inputs, target=...)`` returning one tensor. The model
        (``method.forward_func``) also gives the stored outputs and the ``"pred"``
        targets, with one extra forward pass per batch under ``torch.no_grad``.
    data : Dataset or DataLoader
        A map-style dataset yielding ``(input, label)``, or a DataLoader over one
        (its dataset, ``collate_fn``, ``num_workers``, ``pin_memory`` and
        ``batch_size`` are used; its sampler is not: rows are in dataset order).
    out : str or os.PathLike
        The store's directory: created if missing; an existing empty directory is a
        fresh store.
    target : "label", "pred", int or callable, default "label"
        What each row explains: the dataset's label, the model's argmax, a fixed class,
        or ``f(outputs, labels) -> targets`` (one int per example).
    batch_size : int, optional
        Examples per batch (default 64, or the DataLoader's).
    dtype : torch.dtype, default torch.float16
        The stored dtype of the attributions (float16 halves the disk space; targets
        are stored as int64, outputs as float32).
    num_workers : int, optional
        DataLoader worker processes per rank (default 0, or the DataLoader's).
    device : str or torch.device, optional
        Where to run the model; it is moved there and back afterwards. Default: under
        ``torch.distributed`` with CUDA ``cuda:LOCAL_RANK``, else where the model is.
    resume : bool, default True
        Complete an existing store at ``out`` (it must have been written for the same
        model, data length, input shape, batch size, target rule, dtype and
        ``attribute_kwargs``).
    overwrite : bool, default False
        Replace an existing store at ``out``.
    progress : bool, default True
        Show a tqdm progress bar with images per second (on rank 0; tqdm switches it
        off when the output is not a terminal).
    attribute_kwargs : dict, optional
        Further keyword arguments of ``method.attribute`` (e.g. ``{"n_steps": 50}``
        for ``IntegratedGradients``); stored in the index, so they must be the same
        when resuming.

    Returns
    -------
    AttributionStore
        The finished store, opened read-only.

    Raises
    ------
    ValueError
        Bad arguments; ``out`` holds a store and neither ``resume`` nor ``overwrite``
        is set; the store there was written for another model (fingerprint), dataset
        length, input or attribution shape or settings; a corrupt store; ``out`` is a
        non-empty directory that holds no store. In these cases nothing is written.
    TypeError
        If ``data`` is not a map-style dataset of ``(input, label)`` pairs or the
        method returns several tensors.
    RuntimeError
        Under ``torch.distributed``, on the ranks other than 0 when rank 0 failed to
        set up the store (the message gives rank 0's error).
    Exception
        An error of the model or the dataset propagates unchanged; the store is left
        resumable.

    Examples
    --------
    >>> import tempfile, torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from captum_xgrad import XGradient, attribute_dataset
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))
    >>> data = TensorDataset(torch.rand(10, 4), torch.randint(0, 3, (10,)))
    >>> tmp = tempfile.TemporaryDirectory()
    >>> store = attribute_dataset(XGradient(model), data, tmp.name,
    ...                           target="pred", batch_size=4, dtype=torch.float32,
    ...                           progress=False)
    >>> store  # doctest: +ELLIPSIS
    AttributionStore('...': 10 rows of shape (4,), torch.float32)
    >>> x = data.tensors[0][:4]
    >>> torch.equal(store[:4], XGradient(model).attribute(x, target=model(x).argmax(1)))
    True
    >>> tmp.cleanup()
    """
    if not hasattr(method, "attribute") or not hasattr(method, "forward_func"):
        raise TypeError(
            f"method must be a Captum-style attribution object (with forward_func and "
            f"attribute), got {type(method).__name__}; e.g. XGradient(model)."
        )
    target_name = _target_name(target)
    np_dtype = _store.numpy_dtype(dtype)
    dataset, batch_size, num_workers, collate_fn, pin_memory = _unpack_data(
        data, batch_size, num_workers
    )
    n = len(dataset)
    if n == 0:
        raise ValueError("data is empty: there is nothing to attribute.")
    attribute_kwargs = dict(attribute_kwargs or {})
    if "target" in attribute_kwargs or "inputs" in attribute_kwargs:
        raise ValueError("attribute_kwargs must not hold 'inputs' or 'target'; use target=.")
    out = Path(out)
    num_batches = -(-n // batch_size)
    new_index = {
        "format": _store.FORMAT, "format_version": _store.FORMAT_VERSION,
        "captum_xgrad_version": __version__,
        "length": n, "batch_size": batch_size, "num_batches": num_batches,
        "input_shape": _item_shape(dataset), "target": target_name,
        "method": f"{type(method).__module__}.{type(method).__qualname__}",
        "attribute_kwargs": _jsonable(attribute_kwargs),
        "model_fingerprint": model_fingerprint(method), "dtype": str(np_dtype),
    }
    model = method.forward_func if isinstance(method.forward_func, nn.Module) else None

    ctx = _Dist()
    device_ = _resolve_device(device, model, ctx)
    original_device = _model_device(model) if model is not None else None
    moved = model is not None and device_ is not None and original_device not in (None, device_)
    try:
        if moved:
            assert model is not None
            model.to(device_)

        def load(indices: Sequence[Sequence[int]]) -> DataLoader:
            return DataLoader(
                dataset, batch_sampler=indices, num_workers=num_workers,
                collate_fn=collate_fn, pin_memory=pin_memory and device_ is not None
                and device_.type == "cuda",
            )

        def compute(batch: Any) -> Dict[str, np.ndarray]:
            x, labels = _split(batch)
            return _compute(method, x, labels, target, device_, attribute_kwargs, np_dtype)

        def first_batch() -> Dict[str, np.ndarray]:
            return compute(next(iter(load([_rows(0, batch_size, n)]))))

        setup: Any = None
        if ctx.rank == 0:
            try:
                setup = _setup(out, resume=resume, overwrite=overwrite,
                               new_index=new_index, first_batch=first_batch)
            except BaseException as exc:
                ctx.broadcast(("error", f"{type(exc).__name__}: {exc}"))
                raise
            ctx.broadcast(("ok", setup))
        else:
            status, setup = ctx.broadcast(None)
            if status == "error":
                raise RuntimeError(f"rank 0 could not set up the attribution store: {setup}")
        done, run_id, index = setup

        done_set = set(done)
        todo = [b for b in range(num_batches) if b % ctx.world == ctx.rank and b not in done_set]
        _run_batches(out, index, todo, run_id, ctx, load, compute, batch_size, n,
                     rows_done=sum(len(_rows(b, batch_size, n)) for b in done),
                     progress=progress)

        if ctx.world > 1:
            dist.barrier(group=ctx.group)
        if ctx.rank == 0:
            try:
                if not index["complete"]:
                    _finish(out, index)
            except BaseException as exc:
                ctx.broadcast(("error", f"{type(exc).__name__}: {exc}"))
                raise
            ctx.broadcast(("ok", None))
        else:
            status, message = ctx.broadcast(None)
            if status == "error":
                raise RuntimeError(f"rank 0 could not finish the attribution store: {message}")
    finally:
        if moved:
            assert model is not None
            model.to(original_device)
        ctx.close()
    return AttributionStore(out)


def _run_batches(
    out: Path, index: Dict[str, Any], todo: List[int], run_id: int, ctx: _Dist,
    load: Callable[[Sequence[Sequence[int]]], DataLoader],
    compute: Callable[[Any], Dict[str, np.ndarray]], batch_size: int, n: int,
    rows_done: int, progress: bool,
) -> None:
    bar = None
    if ctx.rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, initial=rows_done, unit="img", desc="attribute_dataset",
                   disable=None if progress else True, dynamic_ncols=True)
    if not todo:
        if bar is not None:
            bar.close()
        return
    writer = _store.RowWriter(out, index)
    log = _store.ProgressLog(out, run_id, ctx.rank)
    try:
        for b, batch in zip(todo, load([_rows(b, batch_size, n) for b in todo])):
            rows = compute(batch)
            for key, value in rows.items():
                writer.check(key, value)
            start = b * batch_size
            for key, value in rows.items():
                _write_rows(writer, key, start, value)
            log.mark(b)
            if bar is not None:  # rank 0 counts its rows for all ranks (an estimate)
                bar.update(min(len(rows["targets"]) * ctx.world, n - bar.n))
    finally:
        writer.close()
        log.close()
        if bar is not None:
            bar.close()


def _write_rows(writer: _store.RowWriter, key: str, start: int, rows: np.ndarray) -> None:
    writer.write(key, start, rows)


def _finish(out: Path, index: Dict[str, Any]) -> None:
    done = _store.completed_batches(out, index["num_batches"])
    missing = sorted(set(range(index["num_batches"])) - done)
    if missing:
        raise RuntimeError(
            f"batches {missing[:10]} of {out} were not written; run attribute_dataset again "
            "with resume=True to complete the store."
        )
    index = dict(index)
    index["complete"] = True
    _store.write_index(out, index)
    import shutil

    shutil.rmtree(out / _store.PROGRESS, ignore_errors=True)
