"""The loop of :func:`~captum_xgrad.attribute_dataset`: batches, targets, sharding, resume."""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from contextlib import closing
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

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

#: The index entries a resumed store must share with the run, and what another value means
_SAME = ("length", "batch_size", "input_shape", "target", "method", "attribute_kwargs",
         "model_fingerprint", "dtype")
_OTHER = {"model_fingerprint": "another model (other weights, class, layer or train/eval mode)",
          "length": "a dataset of another length", "input_shape": "inputs of another shape"}


def _target_name(target: TargetSpec) -> str:
    """The target rule as the index stores it; ``ValueError`` for anything else."""
    if isinstance(target, str) and target in ("label", "pred"):
        return target
    if isinstance(target, int) and not isinstance(target, bool):
        if target < 0:
            raise ValueError(f"target class index must be >= 0, got {target}.")
        return f"int:{target}"
    if callable(target):
        module, name = getattr(target, "__module__", "?"), getattr(target, "__qualname__", "?")
        return f"callable:{module}.{name}"
    raise ValueError(
        "target must be 'label', 'pred', an int class index or a callable "
        f"(outputs, labels) -> targets, got {target!r}."
    )


def _unpack_data(
    data: Any, batch_size: Optional[int], num_workers: Optional[int]
) -> Tuple[Dataset, int, int, Optional[Callable], bool]:
    """The dataset, batch size, workers, ``collate_fn`` and ``pin_memory`` to use."""
    collate_fn, pin_memory = None, False
    if isinstance(data, DataLoader):
        if isinstance(data.sampler, RandomSampler):
            warnings.warn("the DataLoader shuffles; attribute_dataset ignores its sampler and "
                          "writes the rows in dataset order.", UserWarning, stacklevel=3)
        collate_fn, pin_memory = data.collate_fn, data.pin_memory
        batch_size = data.batch_size if batch_size is None else batch_size
        num_workers = data.num_workers if num_workers is None else num_workers
        data = data.dataset
    if isinstance(data, IterableDataset) or not hasattr(data, "__getitem__") or not hasattr(
        data, "__len__"
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


def _tensor_input(item: Any, what: str) -> Tensor:
    """The input of an ``(input, label)`` item or batch; ``TypeError`` if it is no tensor."""
    first = item[0] if isinstance(item, (list, tuple)) and len(item) >= 2 else item
    if isinstance(first, Tensor) and first is not item:
        return first
    raise TypeError(
        "each item of the dataset must be an (input, label) pair with a tensor input; "
        f"{what} is {type(item).__name__} (input: {type(first).__name__}). Wrap the dataset "
        "so that it yields (input, label), with a transform that makes tensors (e.g. "
        "torchvision.transforms.ToTensor())."
    )


class _Dist:
    """Rank, world size and a gloo group for the bookkeeping (objects, barriers)."""

    def __init__(self) -> None:
        launched = int(os.environ.get("WORLD_SIZE", "1")) > 1  # e.g. by torchrun
        self.created = dist.is_available() and not dist.is_initialized() and launched
        if self.created:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend=backend)
            _log.info("attribute_dataset initialised torch.distributed (%s)", backend)
        on = dist.is_available() and dist.is_initialized()
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if on else (0, 1)
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        self.group = dist.new_group(backend="gloo") if on and dist.get_backend() != "gloo" else None

    def on_rank0(self, what: str, work: Callable[[], Any]) -> Any:
        """Run ``work`` on rank 0 and hand its result, or its error, to every rank."""
        box: List[Any] = [None]
        try:
            if self.rank == 0:
                box = [("ok", work())]
        except BaseException as exc:
            box = [("error", f"{type(exc).__name__}: {exc}")]
            raise
        finally:
            if self.world > 1:
                dist.broadcast_object_list(box, src=0, group=self.group)
        status, result = box[0]
        if status == "error":
            raise RuntimeError(f"rank 0 could not {what} the attribution store: {result}")
        return result

    def close(self) -> None:
        if self.group is not None:
            dist.destroy_process_group(self.group)
        if self.created:
            dist.destroy_process_group()


def _compute(
    method: Any, batch: Any, target: TargetSpec, device: Optional[torch.device],
    attribute_kwargs: Dict[str, Any], dtype: torch.dtype,
) -> Dict[str, np.ndarray]:
    """The attributions, targets and outputs of one ``(input, label)`` batch, as numpy."""
    inputs = _tensor_input(batch, "a batch").to(device)
    labels = torch.as_tensor(batch[1]).to(device)
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
        targets = torch.as_tensor(target(outputs, labels), device=inputs.device)
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
        "attributions": attr.detach().to("cpu", dtype).numpy(),
        "targets": targets.cpu().numpy().astype(np.int64),
        "outputs": outputs.detach().to("cpu", torch.float32).numpy(),
    }


def _rows(b: int, batch_size: int, n: int) -> List[int]:
    return list(range(b * batch_size, min(n, (b + 1) * batch_size)))


def _setup(
    out: Path, *, resume: bool, overwrite: bool, new_index: Dict[str, Any],
    first_batch: Callable[[], Dict[str, np.ndarray]],
) -> Tuple[Set[int], int, Dict[str, Any]]:
    """Validate or create the store (on rank 0): (completed batches, run id, index)."""
    names = {path.name for path in out.iterdir()} if out.is_dir() else set()
    if (out.exists() and not out.is_dir()) or not (
        names <= set(_store.STORE_FILES) or _store.INDEX in names
    ):
        raise ValueError(
            f"{out} exists and is not an attribution store (nor an empty directory); "
            "refusing to write there. Choose another --out/out directory."
        )
    if names and not overwrite:  # a store, or the files of one without an index (corrupt)
        index = _store.read_index(out)
        if not resume:
            raise ValueError(
                f"{out} already holds an attribution store. Pass resume=True to complete "
                "it, or overwrite=True to replace it."
            )
        stored = {**index, "dtype": index["arrays"]["attributions"]["dtype"]}
        for key in _SAME:
            if stored[key] != new_index[key]:
                raise ValueError(
                    f"{out} holds a store written for {_OTHER.get(key, f'another {key}')}: "
                    f"{key} is {stored[key]!r} there and {new_index[key]!r} now. Write to a "
                    "new directory or pass overwrite=True to replace it."
                )
        _store.open_arrays(out, index)  # the arrays must match the index
        if index["complete"]:
            return set(range(index["num_batches"])), 0, index
        done, run_id = _store.read_progress(out, index["num_batches"])
        return done, run_id, index
    rows = first_batch()  # before anything is written, so that a failing model writes nothing
    _store.clear_store(out)
    out.mkdir(parents=True, exist_ok=True)
    index = {key: value for key, value in new_index.items() if key != "dtype"}
    index["complete"] = False
    index["arrays"] = {
        key: {"file": file, "shape": [new_index["length"], *rows[key].shape[1:]],
              "dtype": str(rows[key].dtype)}
        for key, file in _store._ARRAYS.items()
    }
    for entry in index["arrays"].values():
        np.lib.format.open_memmap(str(out / entry["file"]), mode="w+", shape=tuple(entry["shape"]),
                                  dtype=np.dtype(entry["dtype"]))  # zero-filled, sparse
    _store.write_index(out, index)
    _store_batch(out, _store.open_arrays(out, index), run=0, rank=0, b=0, start=0, rows=rows)
    return {0}, 1, index


_write_rows = _store.write_rows  # looked up per call, so that tests can interrupt a write


def _store_batch(
    out: Path, arrays: Dict[str, np.memmap], run: int, rank: int, b: int, start: int,
    rows: Dict[str, np.ndarray],
) -> None:
    """Check a batch's row shapes, write its rows and log it as complete."""
    for key, value in rows.items():
        if value.shape[1:] != arrays[key].shape[1:]:
            raise ValueError(
                f"the {key} of this run have rows of shape {value.shape[1:]}, the store "
                f"holds rows of shape {arrays[key].shape[1:]}: it was written for another "
                "model, layer or input size. Write to a new directory or pass overwrite=True."
            )
    for key, value in rows.items():
        _write_rows(arrays, key, start, value)
    _store.log_batch(out, run, rank, b)


def _finish(out: Path, index: Dict[str, Any]) -> None:
    """Mark the store complete once every batch is logged, and remove the progress logs."""
    if index["complete"]:
        return
    done, _ = _store.read_progress(out, index["num_batches"])
    missing = sorted(set(range(index["num_batches"])) - done)
    if missing:
        raise RuntimeError(
            f"batches {missing[:10]} of {out} were not written; run attribute_dataset again "
            "with resume=True to complete the store."
        )
    _store.write_index(out, {**index, "complete": True})
    shutil.rmtree(out / _store.PROGRESS, ignore_errors=True)


def attribute_dataset(
    method: Any, data: Any, out: PathLike, *, target: TargetSpec = "label",
    batch_size: Optional[int] = None, dtype: torch.dtype = torch.float16,
    num_workers: Optional[int] = None, device: Union[None, str, torch.device] = None,
    resume: bool = True, overwrite: bool = False, progress: bool = True,
    attribute_kwargs: Optional[Dict[str, Any]] = None,
) -> AttributionStore:
    """Attribute every example of a dataset and store the maps on disk, in dataset order.

    Runs ``method.attribute(x, target=t, **attribute_kwargs)`` over batches of consecutive
    indices into a :mod:`~captum_xgrad.dataset.store` at ``out``. Rerunning an interrupted
    call redoes only the batches not logged as done. Under :mod:`torch.distributed` (e.g.
    ``torchrun``) rank ``r`` of ``W`` runs the batches ``b % W == r``; the store's bytes are
    those of a one-process run. See the how-to "Attribute a whole dataset".

    Parameters
    ----------
    method : Captum-style attribution object
        Anything with ``forward_func`` (run once more for the stored outputs) and
        ``attribute(inputs, target=...)`` returning one tensor, e.g. ``XGradient(model)``.
    data : Dataset or DataLoader
        A map-style dataset of ``(input, label)``, or a DataLoader over one (its sampler
        is ignored; its collate_fn, workers, pin_memory and batch size are used).
    out : str or os.PathLike
        The store's directory (created if missing; an empty directory is a fresh store).
    target : "label", "pred", int or callable, default "label"
        The label, the model's argmax, a fixed class or ``f(outputs, labels) -> targets``.
    batch_size : int, optional
        Examples per batch (default 64, or the DataLoader's).
    dtype : torch.dtype, default torch.float16
        The stored dtype of the attributions (targets are int64, outputs float32).
    num_workers : int, optional
        DataLoader worker processes per rank (default 0, or the DataLoader's).
    device : str or torch.device, optional
        Where to run the model (moved there and back); default ``cuda:LOCAL_RANK`` under
        ``torch.distributed`` with CUDA, else where the model is.
    resume : bool, default True
        Complete a store at ``out`` written with the same model and settings.
    overwrite : bool, default False
        Replace a store at ``out``.
    progress : bool, default True
        Show a tqdm bar in images per second on rank 0.
    attribute_kwargs : dict, optional
        Further keyword arguments of ``method.attribute`` (e.g. ``{"n_steps": 50}``).

    Returns
    -------
    AttributionStore
        The finished store, opened read-only (on every rank, once all are done).

    Raises
    ------
    ValueError
        Bad arguments, or a store at ``out`` that cannot be resumed (another model or
        settings, corrupt, or neither ``resume`` nor ``overwrite``), or other files there.
    TypeError
        If ``data`` does not yield ``(tensor, label)`` pairs or the method returns several tensors.
    RuntimeError
        On ranks other than 0 when rank 0 failed to set up or finish the store. Errors
        of the model or the dataset propagate and leave the store resumable.

    Examples
    --------
    >>> import tempfile, torch
    >>> from torch.utils.data import TensorDataset
    >>> from captum_xgrad import XGradient, attribute_dataset
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8, bias=False), torch.nn.ReLU())
    >>> data = TensorDataset(torch.rand(10, 4), torch.randint(0, 3, (10,)))
    >>> tmp = tempfile.TemporaryDirectory()
    >>> store = attribute_dataset(XGradient(model), data, tmp.name, target="pred",
    ...                           batch_size=4, dtype=torch.float32, progress=False)
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
    input_shape = _tensor_input(dataset[0], "item 0").shape
    out = Path(out)
    num_batches = -(-n // batch_size)
    new_index = {
        "format": _store.FORMAT, "format_version": _store.FORMAT_VERSION,
        "captum_xgrad_version": __version__,
        "length": n, "batch_size": batch_size, "num_batches": num_batches,
        "input_shape": list(input_shape), "target": target_name,
        "method": f"{type(method).__module__}.{type(method).__qualname__}",
        "attribute_kwargs": json.loads(json.dumps(attribute_kwargs, sort_keys=True, default=repr)),
        "model_fingerprint": model_fingerprint(method), "dtype": str(np_dtype),
    }
    model = method.forward_func if isinstance(method.forward_func, nn.Module) else None
    ctx = _Dist()
    tensors = [] if model is None else [*model.parameters(), *model.buffers()]
    model_device = tensors[0].device if tensors else None
    if device is None and ctx.world > 1 and torch.cuda.is_available():
        device = torch.device("cuda", ctx.local_rank)
    run_device = model_device if device is None else torch.device(device)
    moved = model if model_device not in (None, run_device) else None
    pin = pin_memory and run_device is not None and run_device.type == "cuda"

    def load(indices: Sequence[Sequence[int]]) -> DataLoader:
        return DataLoader(dataset, batch_sampler=indices, num_workers=num_workers,
                          collate_fn=collate_fn, pin_memory=pin)

    def compute(batch: Any) -> Dict[str, np.ndarray]:
        return _compute(method, batch, target, run_device, attribute_kwargs, dtype)

    def setup() -> Tuple[Set[int], int, Dict[str, Any]]:
        return _setup(out, resume=resume, overwrite=overwrite, new_index=new_index,
                      first_batch=lambda: compute(next(iter(load([_rows(0, batch_size, n)])))))

    from tqdm.auto import tqdm  # looked up here, so that tests can replace it

    try:
        if moved is not None:
            moved.to(run_device)
        done, run_id, index = ctx.on_rank0("set up", setup)
        todo = [b for b in range(num_batches) if b % ctx.world == ctx.rank and b not in done]
        rows_done = sum(len(_rows(b, batch_size, n)) for b in done)
        bar = tqdm(total=n, initial=rows_done, unit="img", desc="attribute_dataset",
                   disable=None if progress and ctx.rank == 0 else True, dynamic_ncols=True)
        with closing(bar):
            arrays = _store.open_arrays(out, index) if todo else {}
            batches = load([_rows(b, batch_size, n) for b in todo]) if todo else []
            for b, batch in zip(todo, batches):
                rows = compute(batch)
                _store_batch(out, arrays, run_id, ctx.rank, b, b * batch_size, rows)
                # rank 0 counts its rows for all ranks (an estimate)
                bar.update(min(len(rows["targets"]) * ctx.world, n - bar.n))
        if ctx.world > 1:
            dist.barrier(group=ctx.group)
        ctx.on_rank0("finish", lambda: _finish(out, index))
    finally:
        if moved is not None:
            moved.to(model_device)
        ctx.close()
    return AttributionStore(out)
