"""The on-disk attribution store written by :func:`~captum_xgrad.attribute_dataset`.

A store is a directory that numpy alone can read::

    index.json         what the store holds (see below), written by rank 0
    attributions.npy   (N, *attribution_shape), the stored dtype (float16 by default)
    targets.npy        (N,) int64: the class each row explains
    outputs.npy        (N, *output_shape) float32: the model's outputs
    progress/          while a run is under way: one log per process of its
                       completed batches; removed once the store is complete

The three arrays are ordinary ``.npy`` files (``numpy.load(path, mmap_mode="r")``
reads them without loading them into memory); rows are in dataset order. They are
created at their full size and filled in place, batch by batch, so nothing has to fit
in memory. ``index.json`` holds the format name and version, the dataset length, the
batch size, the shape of one input, the three arrays' file names, shapes and dtypes,
the target rule (``"label"``, ``"pred"``, ``"int:3"``, ``"callable:module.name"``),
the attribution method's class, the keyword arguments passed to ``attribute``, the
model fingerprint (:func:`model_fingerprint`) and whether the store is ``complete``.
It holds no time stamps, so a resumed run leaves the same bytes as an uninterrupted one.

.npy rather than zarr: one flat file per array is what numpy, Quantus and every
other tool read without a further dependency, and since rows are written in batches
of consecutive indices at fixed offsets, chunking (zarr's advantage) buys nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence, Set, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["AttributionStore", "model_fingerprint"]

FORMAT = "captum-xgrad-attribution-store"
FORMAT_VERSION = 1
INDEX = "index.json"
ATTRIBUTIONS = "attributions.npy"
TARGETS = "targets.npy"
OUTPUTS = "outputs.npy"
PROGRESS = "progress"
STORE_FILES = (INDEX, ATTRIBUTIONS, TARGETS, OUTPUTS, PROGRESS)
_ARRAYS = {"attributions": ATTRIBUTIONS, "targets": TARGETS, "outputs": OUTPUTS}
_INDEX_KEYS = (
    "format", "format_version", "length", "batch_size", "num_batches", "input_shape",
    "arrays", "target", "method", "attribute_kwargs", "model_fingerprint", "complete",
)

PathLike = Union[str, "os.PathLike[str]"]


# ------------------------------------------------------------------ fingerprint
def _tensor_bytes(t: Tensor) -> bytes:
    t = t.detach().cpu().contiguous().reshape(-1)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.view(torch.uint8).numpy().tobytes()


def model_fingerprint(method: Any) -> str:
    """A SHA-256 fingerprint of an attribution method and the model behind it.

    It covers the method's class (module and name), its ``degree`` and
    ``multiplies_by_inputs`` where it has them, the names of the layers it attributes
    to (``method.layer``, for layer methods), the model's class and train/eval flag,
    and every entry of the model's ``state_dict`` (name, shape, dtype and the bytes of
    the values). The same architecture with other weights gets another fingerprint;
    the device the model sits on does not matter. When ``method.forward_func`` is a
    plain function rather than an ``nn.Module``, only its module and name are covered.

    Parameters
    ----------
    method : Captum-style attribution object
        Anything with a ``forward_func`` attribute (``XGradient``, ``LayerXGradient``,
        Captum's ``IntegratedGradients``...).

    Returns
    -------
    str
        ``"sha256:"`` followed by 64 hex digits.

    Raises
    ------
    TypeError
        If ``method`` has no ``forward_func``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_xgrad import XGradient
    >>> from captum_xgrad.dataset import model_fingerprint
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> a, b = nn.Linear(4, 2, bias=False), nn.Linear(4, 2, bias=False)
    >>> model_fingerprint(XGradient(a)) == model_fingerprint(XGradient(a))
    True
    >>> model_fingerprint(XGradient(a)) == model_fingerprint(XGradient(b))  # other weights
    False
    """
    forward_func = getattr(method, "forward_func", None)
    if forward_func is None:
        raise TypeError(
            f"{type(method).__name__} has no forward_func: pass a Captum-style attribution "
            "object such as XGradient(model) or IntegratedGradients(model)."
        )
    h = hashlib.sha256()

    def put(text: str) -> None:
        h.update(text.encode("utf-8") + b"\n")

    cls = type(method)
    put(f"method={cls.__module__}.{cls.__qualname__}")
    for name in ("degree", "multiplies_by_inputs"):
        value = getattr(method, name, None)
        if isinstance(value, (bool, int, float, str)):
            put(f"{name}={value!r}")
    model = forward_func if isinstance(forward_func, nn.Module) else None
    if model is None and isinstance(getattr(forward_func, "__self__", None), nn.Module):
        model = forward_func.__self__
        put(f"bound_method={getattr(forward_func, '__name__', '?')}")
    if model is None:
        put(f"function={getattr(forward_func, '__module__', '?')}."
            f"{getattr(forward_func, '__qualname__', type(forward_func).__qualname__)}")
        return "sha256:" + h.hexdigest()
    put(f"model={type(model).__module__}.{type(model).__qualname__} training={model.training}")
    layer = getattr(method, "layer", None)
    if layer is not None:
        layers = layer if isinstance(layer, (list, tuple)) else [layer]
        names = {id(m): n for n, m in model.named_modules()}
        put("layers=" + ",".join(names.get(id(m), type(m).__qualname__) for m in layers))
    for name, value in model.state_dict().items():
        if isinstance(value, Tensor):
            put(f"{name}|{tuple(value.shape)}|{value.dtype}")
            h.update(_tensor_bytes(value))
        else:  # extra state
            put(f"{name}|{value!r}")
    return "sha256:" + h.hexdigest()


# ------------------------------------------------------------------ dtypes
def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The numpy dtype of a floating torch dtype; ``ValueError`` if numpy has none."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(
            f"dtype must be a floating torch dtype (torch.float16, torch.float32, "
            f"torch.float64), got {dtype!r}."
        )
    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:
        raise ValueError(
            f"dtype {dtype} has no numpy equivalent, so a numpy-readable store cannot hold "
            "it; use torch.float16 (half the bytes) or torch.float32."
        ) from None


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a numpy dtype name (``"float16"`` -> ``torch.float16``)."""
    return torch.from_numpy(np.empty(0, dtype=np.dtype(name))).dtype


# ------------------------------------------------------------------ index
def _corrupt(path: Path, why: str) -> ValueError:
    return ValueError(
        f"{path} is not a valid attribution store ({why}). Delete the directory or pass "
        "overwrite=True to write a new store there."
    )


def read_index(directory: PathLike) -> Dict[str, Any]:
    """Read and validate ``index.json`` of a store; ``ValueError`` if corrupt."""
    path = Path(directory) / INDEX
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _corrupt(Path(directory), f"no {INDEX}") from None
    try:
        index = json.loads(text)
    except ValueError as exc:
        raise _corrupt(Path(directory), f"{INDEX} is not valid JSON: {exc}") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise _corrupt(Path(directory), f"{INDEX} does not describe a {FORMAT}")
    missing = [k for k in _INDEX_KEYS if k not in index]
    if missing:
        raise _corrupt(Path(directory), f"{INDEX} lacks {', '.join(missing)}")
    if index["format_version"] != FORMAT_VERSION:
        raise _corrupt(
            Path(directory),
            f"format version {index['format_version']!r}, this captum-xgrad reads "
            f"version {FORMAT_VERSION}",
        )
    arrays = index["arrays"]
    if not isinstance(arrays, dict) or set(arrays) != set(_ARRAYS):
        raise _corrupt(Path(directory), f"{INDEX} has a bad 'arrays' entry")
    n = index["length"]
    for key, entry in arrays.items():
        try:
            ok = (
                entry["file"] == _ARRAYS[key]
                and list(entry["shape"])[:1] == [n]
                and np.dtype(entry["dtype"]) is not None
            )
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise _corrupt(Path(directory), f"{INDEX} has a bad entry for {key!r}")
    return index


def write_index(directory: PathLike, index: Dict[str, Any]) -> None:
    """Write ``index.json`` atomically (a temporary file, then ``os.replace``)."""
    path = Path(directory) / INDEX
    tmp = path.with_name(INDEX + ".tmp")
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def store_state(directory: PathLike) -> str:
    """``"missing"`` (no directory), ``"empty"``, ``"store"`` (has an index), ``"partial"``
    (only store files but no index: a run that died while creating it) or ``"foreign"``."""
    path = Path(directory)
    if not path.exists():
        return "missing"
    if not path.is_dir():
        return "foreign"
    names = {p.name for p in path.iterdir()}
    if not names:
        return "empty"
    if INDEX in names:
        return "store"
    if names <= set(STORE_FILES) | {INDEX + ".tmp"}:
        return "partial"
    return "foreign"


def clear_store(directory: PathLike) -> None:
    """Delete the files of a store (and nothing else) from ``directory``."""
    path = Path(directory)
    for name in STORE_FILES + (INDEX + ".tmp",):
        p = path / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def create_arrays(directory: PathLike, index: Dict[str, Any]) -> None:
    """Create the three ``.npy`` files at full size (zero-filled, sparse where possible)."""
    for entry in index["arrays"].values():
        arr = np.lib.format.open_memmap(
            str(Path(directory) / entry["file"]), mode="w+",
            dtype=np.dtype(entry["dtype"]), shape=tuple(entry["shape"]),
        )
        del arr


def _data_offset(path: Path, shape: Sequence[int], dtype: np.dtype) -> int:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(f)
        else:
            header = np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
    if tuple(header[0]) != tuple(shape) or header[1] or np.dtype(header[2]) != dtype:
        raise _corrupt(path.parent, f"{path.name} does not match {INDEX}")
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if os.path.getsize(path) != expected:
        raise _corrupt(path.parent, f"{path.name} has the wrong size")
    return offset


class RowWriter:
    """Writes rows of the three arrays in place (``os``-level writes at fixed offsets).

    Each process opens its own writer; processes write disjoint rows. Data is written
    with unbuffered writes, so a batch is in the operating system's hands before it is
    logged as complete.
    """

    def __init__(self, directory: PathLike, index: Dict[str, Any]) -> None:
        self._files = {}
        try:
            for key, entry in index["arrays"].items():
                path = Path(directory) / entry["file"]
                dtype = np.dtype(entry["dtype"])
                shape = tuple(entry["shape"])
                offset = _data_offset(path, shape, dtype)
                row = int(np.prod(shape[1:])) * dtype.itemsize
                self._files[key] = (open(path, "r+b", buffering=0), offset, row, dtype, shape)
        except BaseException:
            self.close()
            raise

    def check(self, key: str, rows: np.ndarray) -> None:
        """``ValueError`` if ``rows`` do not have the stored row shape."""
        _, _, _, _, shape = self._files[key]
        if tuple(rows.shape[1:]) != tuple(shape[1:]):
            raise ValueError(
                f"the {key} of this run have rows of shape {tuple(rows.shape[1:])}, the "
                f"store holds rows of shape {tuple(shape[1:])}: it was written for another "
                "model, layer or input size. Write to a new directory or pass overwrite=True."
            )

    def write(self, key: str, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` (already in the stored dtype) at row ``start``."""
        f, offset, row, dtype, _ = self._files[key]
        data = memoryview(np.ascontiguousarray(rows, dtype=dtype)).cast("B")
        f.seek(offset + start * row)
        written = 0
        while written < len(data):
            written += f.write(data[written:])

    def close(self) -> None:
        """Close the files."""
        for f, *_ in self._files.values():
            f.close()
        self._files = {}


# ------------------------------------------------------------------ progress logs
def completed_batches(directory: PathLike, num_batches: int) -> Set[int]:
    """The batches logged as complete in ``progress/`` (a line cut short by a crash is
    ignored; anything else unreadable raises ``ValueError``)."""
    done: Set[int] = set()
    folder = Path(directory) / PROGRESS
    if not folder.is_dir():
        return done
    for log in sorted(folder.glob("*.log")):
        text = log.read_text(encoding="ascii", errors="replace")
        lines = text.split("\n")[:-1]  # the last piece is cut short or empty
        for line in lines:
            if not line.isdigit() or int(line) >= num_batches:
                raise _corrupt(Path(directory), f"{PROGRESS}/{log.name} has a bad line {line!r}")
            done.add(int(line))
    return done


def next_run_id(directory: PathLike) -> int:
    """One more than the highest run number among the progress logs."""
    runs = [-1]
    for log in (Path(directory) / PROGRESS).glob("run*-rank*.log"):
        try:
            runs.append(int(log.name[3:].split("-", 1)[0]))
        except ValueError:
            pass
    return max(runs) + 1


class ProgressLog:
    """This process's log of completed batches: ``progress/runRRR-rankKKKK.log``."""

    def __init__(self, directory: PathLike, run: int, rank: int) -> None:
        self._path = Path(directory) / PROGRESS / f"run{run:03d}-rank{rank:04d}.log"
        self._file: Any = None  # opened at the first mark: a run that fails early writes nothing

    def mark(self, batch: int) -> None:
        """Record ``batch`` as complete (one line, flushed to the operating system)."""
        if self._file is None:
            self._path.parent.mkdir(exist_ok=True)
            self._file = open(self._path, "a", encoding="ascii")
        self._file.write(f"{batch}\n")
        self._file.flush()

    def close(self) -> None:
        """Close the log."""
        if self._file is not None:
            self._file.close()
            self._file = None


# ------------------------------------------------------------------ reading
class AttributionStore:
    """A read-only view of a store written by :func:`~captum_xgrad.attribute_dataset`.

    The arrays are memory-mapped: opening a store reads only its index, and indexing
    reads only the rows asked for.

    Parameters
    ----------
    path : str or os.PathLike
        The store's directory.

    Attributes
    ----------
    path : pathlib.Path
        The store's directory.
    index : dict
        The parsed ``index.json`` (see :mod:`captum_xgrad.dataset.store`).

    Raises
    ------
    ValueError
        If ``path`` holds no store, or its index or arrays are corrupt.

    Warns
    -----
    UserWarning
        If the store is incomplete (a run was interrupted): the rows of the batches not
        yet done read as zeros. Resume it with ``attribute_dataset(..., resume=True)``.

    Examples
    --------
    >>> import tempfile, torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from captum_xgrad import AttributionStore, XGradient, attribute_dataset
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))
    >>> data = TensorDataset(torch.rand(10, 4), torch.randint(0, 3, (10,)))
    >>> tmp = tempfile.TemporaryDirectory()
    >>> out = tmp.name
    >>> _ = attribute_dataset(XGradient(model), data, out, batch_size=4, progress=False)
    >>> store = AttributionStore(out)
    >>> len(store), store[0].shape, store[2:5].shape, store.dtype
    (10, torch.Size([4]), torch.Size([3, 4]), torch.float16)
    >>> torch.equal(store.targets, data.tensors[1])
    True
    >>> q = store.to_quantus()
    >>> q["a_batch"].shape, q["y_batch"].shape
    ((10, 4), (10,))
    >>> tmp.cleanup()
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ValueError(f"{self.path} is not a directory, so it holds no attribution store.")
        self.index: Dict[str, Any] = read_index(self.path)
        self._arrays: Dict[str, np.memmap] = {}
        for key, entry in self.index["arrays"].items():
            file = self.path / entry["file"]
            try:
                arr = np.load(file, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise _corrupt(self.path, f"{entry['file']} cannot be read: {exc}") from exc
            if tuple(arr.shape) != tuple(entry["shape"]) or arr.dtype != np.dtype(entry["dtype"]):
                raise _corrupt(self.path, f"{entry['file']} does not match {INDEX}")
            self._arrays[key] = arr
        if not self.index["complete"]:
            warnings.warn(
                f"the attribution store {self.path} is incomplete (an interrupted run): rows "
                "of batches not yet computed are zeros. Resume it with "
                "attribute_dataset(..., resume=True).",
                UserWarning,
                stacklevel=2,
            )

    # -- metadata
    @property
    def complete(self) -> bool:
        """Whether every batch has been written."""
        return bool(self.index["complete"])

    @property
    def shape(self) -> Tuple[int, ...]:
        """``(len(store), *attribution_shape)``."""
        return tuple(self._arrays["attributions"].shape)

    @property
    def dtype(self) -> torch.dtype:
        """The stored dtype of the attributions."""
        return torch_dtype(self.index["arrays"]["attributions"]["dtype"])

    @property
    def fingerprint(self) -> str:
        """The model fingerprint (:func:`model_fingerprint`) of the run that wrote it."""
        return str(self.index["model_fingerprint"])

    @property
    def targets(self) -> Tensor:
        """The targets, shape ``(N,)``, int64."""
        return torch.from_numpy(np.array(self._arrays["targets"]))

    @property
    def outputs(self) -> Tensor:
        """The model outputs, shape ``(N, *output_shape)``, float32."""
        return torch.from_numpy(np.array(self._arrays["outputs"]))

    # -- rows
    def __len__(self) -> int:
        return int(self.index["length"])

    def __getitem__(self, item: Any) -> Tensor:
        if isinstance(item, Tensor):
            item = item.cpu().numpy()
        return torch.from_numpy(np.array(self._arrays["attributions"][item]))

    def numpy(self) -> np.memmap:
        """The attributions as a read-only memory-mapped numpy array (no copy).

        Returns
        -------
        numpy.memmap
            Shape :attr:`shape`, in the stored dtype.
        """
        return self._arrays["attributions"]

    def to_quantus(
        self, indices: Optional[Iterable[int]] = None, dtype: Any = np.float32
    ) -> Dict[str, np.ndarray]:
        """Arrays in the shapes Quantus metrics take.

        Quantus metrics are called as ``metric(model=..., x_batch=..., y_batch=...,
        a_batch=...)``; the store gives ``a_batch``, shape ``(N, *attribution_shape)``,
        and ``y_batch``, shape ``(N,)``, the targets. ``x_batch`` are the inputs, which the store does
        not hold: stack them from the dataset at the same indices.

        Parameters
        ----------
        indices : iterable of int, optional
            The rows to return (default: all, in dataset order).
        dtype : numpy dtype, default numpy.float32
            The dtype of ``a_batch`` (Quantus computes in float32 or float64).

        Returns
        -------
        dict
            ``{"a_batch": ndarray, "y_batch": ndarray of int64}``.

        Raises
        ------
        IndexError
            If an index is out of range.
        """
        sel: Any = slice(None) if indices is None else np.asarray(list(indices), dtype=np.int64)
        return {
            "a_batch": np.asarray(self._arrays["attributions"][sel], dtype=dtype),
            "y_batch": np.array(self._arrays["targets"][sel]),
        }

    def __repr__(self) -> str:
        state = "" if self.complete else ", incomplete"
        return (
            f"AttributionStore({str(self.path)!r}: {len(self)} rows of shape "
            f"{self.shape[1:]}, {self.dtype}{state})"
        )
