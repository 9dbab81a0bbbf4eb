"""The store of :func:`~captum_xgrad.attribute_dataset`: a directory that numpy alone reads.

``attributions.npy`` ``(N, *attribution_shape)``, ``targets.npy`` ``(N,)`` int64 and
``outputs.npy`` ``(N, *output_shape)`` float32 are plain ``.npy`` files in dataset order,
filled in place. ``index.json`` holds the format, the run's settings (target rule such as
``"int:3"``, :func:`model_fingerprint`...), the arrays' shapes and dtypes and ``complete``,
but no time, so a resumed run leaves the bytes of an uninterrupted one. ``progress/`` holds
each process's log of completed batches while a run is under way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Set, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["AttributionStore", "model_fingerprint"]

FORMAT = "captum-xgrad-attribution-store"
FORMAT_VERSION = 1
INDEX = "index.json"
PROGRESS = "progress"
_ARRAYS = {"attributions": "attributions.npy", "targets": "targets.npy", "outputs": "outputs.npy"}
STORE_FILES = (INDEX, INDEX + ".tmp", PROGRESS, *_ARRAYS.values())
_INDEX_KEYS = (
    "format", "format_version", "length", "batch_size", "num_batches", "input_shape",
    "arrays", "target", "method", "attribute_kwargs", "model_fingerprint", "complete",
)
PathLike = Union[str, "os.PathLike[str]"]


def model_fingerprint(method: Any) -> str:
    """A SHA-256 fingerprint of an attribution method and the model behind it.

    It covers the method's class, ``degree`` and ``multiplies_by_inputs``, its
    ``layer``'s names, the model's class and train/eval flag and every ``state_dict``
    entry (not the device); for a plain function only its module and name.

    Parameters
    ----------
    method : Captum-style attribution object
        Anything with a ``forward_func`` (``XGradient``, ``IntegratedGradients``...).

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
    >>> from torch import nn
    >>> from captum_xgrad import XGradient
    >>> from captum_xgrad.dataset import model_fingerprint
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

    put(f"method={type(method).__module__}.{type(method).__qualname__}")
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
        names = {id(m): n for n, m in model.named_modules()}
        layers = layer if isinstance(layer, (list, tuple)) else [layer]
        put("layers=" + ",".join(names.get(id(m), type(m).__qualname__) for m in layers))
    for name, value in model.state_dict().items():
        if not isinstance(value, Tensor):  # extra state
            put(f"{name}|{value!r}")
            continue
        put(f"{name}|{tuple(value.shape)}|{value.dtype}")
        h.update(value.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


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


def _corrupt(path: Path, why: str) -> ValueError:
    return ValueError(
        f"{path} is not a valid attribution store ({why}). Delete the directory or pass "
        "overwrite=True to write a new store there."
    )


def read_index(directory: PathLike) -> Dict[str, Any]:
    """Read and check a store's ``index.json``; ``ValueError`` if it is corrupt or missing."""
    directory = Path(directory)
    try:
        index = json.loads((directory / INDEX).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _corrupt(directory, f"no {INDEX}") from None
    except ValueError as exc:
        raise _corrupt(directory, f"{INDEX} is not valid JSON: {exc}") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise _corrupt(directory, f"{INDEX} does not describe a {FORMAT}")
    missing = [key for key in _INDEX_KEYS if key not in index]
    if missing:
        raise _corrupt(directory, f"{INDEX} lacks {', '.join(missing)}")
    if index["format_version"] != FORMAT_VERSION:
        raise _corrupt(directory, f"format version {index['format_version']!r}, this "
                       f"captum-xgrad reads version {FORMAT_VERSION}")
    arrays = index["arrays"]
    if not isinstance(arrays, dict) or set(arrays) != set(_ARRAYS):
        raise _corrupt(directory, f"{INDEX} has a bad 'arrays' entry")
    for key, entry in arrays.items():
        try:
            np.dtype(entry["dtype"])
            ok = entry["file"] == _ARRAYS[key] and list(entry["shape"])[:1] == [index["length"]]
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise _corrupt(directory, f"{INDEX} has a bad entry for {key!r}")
    return index


def write_index(directory: PathLike, index: Dict[str, Any]) -> None:
    """Write ``index.json`` atomically (a temporary file, then ``os.replace``)."""
    tmp = Path(directory) / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, Path(directory) / INDEX)


def clear_store(directory: PathLike) -> None:
    """Delete the files of a store (and nothing else) from ``directory``."""
    for name in STORE_FILES:
        path = Path(directory) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def open_arrays(directory: PathLike, index: Dict[str, Any]) -> Dict[str, np.memmap]:
    """Memory-map the three arrays read-only; ``ValueError`` unless they match the index."""
    arrays = {}
    for key, entry in index["arrays"].items():
        path = Path(directory) / entry["file"]
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise _corrupt(Path(directory), f"{entry['file']} cannot be read: {exc}") from exc
        size = arr.offset + arr.nbytes
        if tuple(arr.shape) != tuple(entry["shape"]) or arr.dtype != np.dtype(entry["dtype"]) or (
            not arr.flags.c_contiguous or os.path.getsize(path) != size
        ):
            raise _corrupt(Path(directory), f"{entry['file']} does not match {INDEX}")
        arrays[key] = arr
    return arrays


def write_rows(arrays: Dict[str, np.memmap], key: str, start: int, rows: np.ndarray) -> None:
    """Write ``rows`` into the file of ``arrays[key]`` from row ``start`` on, in place."""
    arr = arrays[key]
    with open(arr.filename, "r+b") as file:
        file.seek(arr.offset + start * arr.strides[0])
        file.write(np.ascontiguousarray(rows, dtype=arr.dtype).tobytes())


def read_progress(directory: PathLike, num_batches: int) -> Tuple[Set[int], int]:
    """The batches logged in ``progress/`` (a last line cut short by a crash is ignored)
    and the next run number."""
    done: Set[int] = set()
    runs = [-1]
    for log in sorted((Path(directory) / PROGRESS).glob("*.log")):
        for line in log.read_text(encoding="ascii", errors="replace").split("\n")[:-1]:
            if not line.isdigit() or int(line) >= num_batches:
                raise _corrupt(Path(directory), f"{PROGRESS}/{log.name} has a bad line {line!r}")
            done.add(int(line))
        run = log.name[3:].split("-", 1)[0]
        if log.name.startswith("run") and run.isdigit():
            runs.append(int(run))
    return done, max(runs) + 1


def log_batch(directory: PathLike, run: int, rank: int, batch: int) -> None:
    """Append ``batch`` to this process's log of completed batches in ``progress/``."""
    path = Path(directory) / PROGRESS / f"run{run:03d}-rank{rank:04d}.log"
    path.parent.mkdir(exist_ok=True)
    with open(path, "a", encoding="ascii") as log:
        log.write(f"{batch}\n")


class AttributionStore:
    """A read-only view of a store written by :func:`~captum_xgrad.attribute_dataset`.

    The arrays are memory-mapped; indexing reads only the rows asked for, as tensors.
    Attributes: ``path`` (a :class:`pathlib.Path`) and ``index``, the parsed ``index.json``.

    Parameters
    ----------
    path : str or os.PathLike
        The store's directory.

    Raises
    ------
    ValueError
        If ``path`` holds no store, or its index or arrays are corrupt.

    Warns
    -----
    UserWarning
        If the store is incomplete (an interrupted run): rows not yet computed are zeros.

    Examples
    --------
    >>> import tempfile, torch
    >>> from torch.utils.data import TensorDataset
    >>> from captum_xgrad import AttributionStore, XGradient, attribute_dataset
    >>> model = torch.nn.Linear(4, 3, bias=False)
    >>> data = TensorDataset(torch.rand(10, 4), torch.randint(0, 3, (10,)))
    >>> tmp = tempfile.TemporaryDirectory()
    >>> _ = attribute_dataset(XGradient(model), data, tmp.name, batch_size=4, progress=False)
    >>> store = AttributionStore(tmp.name)
    >>> len(store), store[0].shape, store[2:5].shape, store.dtype
    (10, torch.Size([4]), torch.Size([3, 4]), torch.float16)
    >>> torch.equal(store.targets, data.tensors[1]), store.to_quantus()["a_batch"].shape
    (True, (10, 4))
    >>> tmp.cleanup()
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ValueError(f"{self.path} is not a directory, so it holds no attribution store.")
        self.index: Dict[str, Any] = read_index(self.path)
        self._arrays = open_arrays(self.path, self.index)
        if not self.complete:
            warnings.warn(f"the attribution store {self.path} is incomplete (an interrupted "
                          "run): rows of batches not yet computed are zeros. Resume it with "
                          "attribute_dataset(..., resume=True).", UserWarning, stacklevel=2)

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
        return torch.from_numpy(np.empty(0, self._arrays["attributions"].dtype)).dtype

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
        """``a_batch`` and ``y_batch`` for Quantus metrics (``x_batch``: the dataset's inputs).

        Parameters
        ----------
        indices : iterable of int, optional
            The rows to return (default: all, in dataset order).
        dtype : numpy dtype, default numpy.float32
            The dtype of ``a_batch`` (Quantus computes in float32 or float64).

        Returns
        -------
        dict
            ``{"a_batch": (N, *attribution_shape), "y_batch": (N,) int64 targets}``.

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
