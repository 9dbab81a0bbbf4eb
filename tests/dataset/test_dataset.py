"""attribute_dataset / AttributionStore: equality with per-batch attribute calls, crash
and resume to identical bytes, clear errors on corrupt or mismatched stores, and two
processes over gloo giving the bytes of one."""

from __future__ import annotations

import json
import os
import socket
import warnings
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from _models import assert_same_snapshot, snapshot_model
from captum_xgrad import AttributionStore, LayerXGradient, XGradient, attribute_dataset
from captum_xgrad.dataset import loop as loop_module
from captum_xgrad.dataset import model_fingerprint

N = 70          # 5 batches of 16, the last one of 6
BATCH = 16


def _digits(n: int = N) -> TensorDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:n], dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target[:n], dtype=torch.long)
    return TensorDataset(x, y)


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 10, bias=False),
    ).eval()


def _files(path: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _per_batch(method, data, targets_of, **kwargs):
    xs, ts, outs = [], [], []
    x_all, y_all = data.tensors
    for start in range(0, len(data), BATCH):
        x, y = x_all[start:start + BATCH], y_all[start:start + BATCH]
        out = method.forward_func(x).detach()
        t = targets_of(out, y)
        xs.append(method.attribute(x, target=t, **kwargs).detach())
        ts.append(t)
        outs.append(out)
    return torch.cat(xs), torch.cat(ts), torch.cat(outs)


# ------------------------------------------------------------------ equality
@pytest.mark.parametrize(
    "target, targets_of",
    [
        ("label", lambda out, y: y),
        ("pred", lambda out, y: out.argmax(1)),
        (3, lambda out, y: torch.full_like(y, 3)),
        (lambda out, y: (y + 1) % 10, lambda out, y: (y + 1) % 10),
    ],
    ids=["label", "pred", "int", "callable"],
)
def test_store_equals_per_batch_attribute(tmp_path, target, targets_of):
    model, data = _cnn(), _digits()
    store = attribute_dataset(XGradient(model), data, tmp_path / "s", target=target,
                              batch_size=BATCH, dtype=torch.float32, progress=False)
    attr, targets, outputs = _per_batch(XGradient(model), data, targets_of)
    assert isinstance(store, AttributionStore) and store.complete
    assert len(store) == N and store.shape == (N, 1, 8, 8) and store.dtype == torch.float32
    assert torch.equal(store[:], attr)
    assert torch.equal(store.targets, targets)
    assert torch.equal(store.outputs, outputs)
    # the files are plain .npy that numpy alone reads
    assert np.array_equal(np.load(tmp_path / "s" / "attributions.npy"), attr.numpy())
    assert not (tmp_path / "s" / "progress").exists()


def test_float16_store_and_closeness_to_captum_ig(tmp_path):
    model, data = _cnn(), _digits(40)
    store = attribute_dataset(XGradient(model), data, tmp_path / "xg", batch_size=BATCH,
                              progress=False)
    attr, _, _ = _per_batch(XGradient(model), data, lambda out, y: y)
    assert store.dtype == torch.float16
    assert torch.equal(store[:], attr.to(torch.float16))
    # Captum's own IG through the same loop: its numbers are the per-batch IG calls, and
    # on this bias-free network they approach X-Gradient's
    ig = attribute_dataset(IntegratedGradients(model), data, tmp_path / "ig", batch_size=BATCH,
                           dtype=torch.float32, progress=False,
                           attribute_kwargs={"n_steps": 64})
    ig_ref, _, _ = _per_batch(IntegratedGradients(model), data, lambda out, y: y, n_steps=64)
    assert torch.equal(ig[:], ig_ref)
    assert ig.index["attribute_kwargs"] == {"n_steps": 64}
    err = (ig[:] - attr).abs().max() / attr.abs().max()
    assert err < 2e-2, err


def test_layer_xgradient_rows_have_the_layer_shape(tmp_path):
    model, data = _cnn(), _digits(40)
    method = LayerXGradient(model, model[2])
    store = attribute_dataset(method, data, tmp_path / "s", batch_size=BATCH,
                              dtype=torch.float32, progress=False)
    ref, _, outputs = _per_batch(method, data, lambda out, y: y)
    assert store.shape == (40, 4, 4, 4)
    assert torch.equal(store[:], ref)
    # completeness per row: the layer attributions sum to the explained output
    explained = outputs.gather(1, data.tensors[1][:, None])[:, 0]
    assert torch.allclose(store[:].flatten(1).sum(1), explained, atol=1e-4)


def test_dataloader_settings_are_used_and_shuffle_warns(tmp_path):
    model, data = _cnn(), _digits(40)
    loader = DataLoader(data, batch_size=8, shuffle=True)
    with pytest.warns(UserWarning, match="shuffles"):
        store = attribute_dataset(XGradient(model), loader, tmp_path / "s",
                                  dtype=torch.float32, progress=False)
    assert store.index["batch_size"] == 8
    x, y = data.tensors
    assert torch.equal(store[8:16], XGradient(model).attribute(x[8:16], target=y[8:16]))


@pytest.mark.parametrize("progress", [True, False])
def test_progress_bar_counts_images(tmp_path, monkeypatch, progress):
    import tqdm.auto

    bars = []

    class Recorder:
        def __init__(self, **kwargs):
            self.kwargs, self.n, self.closed = kwargs, kwargs.get("initial", 0), False
            bars.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            self.closed = True

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    attribute_dataset(XGradient(_cnn()), _digits(), tmp_path / "s", batch_size=BATCH,
                      progress=progress)
    (bar,) = bars
    assert bar.kwargs["unit"] == "img" and bar.kwargs["total"] == N  # shown as img/s
    # on: tqdm decides (off when stderr is not a terminal); off: always off
    assert bar.kwargs["disable"] is (None if progress else True)
    assert bar.n == N and bar.closed


def test_model_is_left_unchanged(tmp_path):
    model, data = _cnn(), _digits(40)
    model[0].weight.grad = torch.ones_like(model[0].weight)
    before = snapshot_model(model)
    attribute_dataset(XGradient(model), data, tmp_path / "s", batch_size=BATCH,
                      device="cpu", progress=False)
    assert_same_snapshot(before, snapshot_model(model))


def test_training_mode_batchnorm_statistics_are_left_unchanged(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 10, bias=False))  # training mode
    before = snapshot_model(model)
    attribute_dataset(XGradient(model, check="off"), _digits(20), tmp_path / "s",
                      target="pred", progress=False)
    assert_same_snapshot(before, snapshot_model(model))


def test_fingerprint_tracks_weights_layer_and_mode():
    a, b = _cnn(0), _cnn(1)
    assert model_fingerprint(XGradient(a)) == model_fingerprint(XGradient(_cnn(0)))
    assert model_fingerprint(XGradient(a)) != model_fingerprint(XGradient(b))
    assert model_fingerprint(XGradient(a)) != model_fingerprint(IntegratedGradients(a))
    assert model_fingerprint(LayerXGradient(a, a[0])) != model_fingerprint(LayerXGradient(a, a[2]))
    assert model_fingerprint(XGradient(a)) != model_fingerprint(XGradient(a, degree=2))
    fp = model_fingerprint(XGradient(a))
    a.train()
    assert model_fingerprint(XGradient(a)) != fp


# ------------------------------------------------------------------ crash and resume
class _Boom(RuntimeError):
    pass


def test_crash_mid_batch_resumes_to_identical_bytes(tmp_path, monkeypatch):
    model, data = _cnn(), _digits()
    ref_dir = tmp_path / "ref"
    attribute_dataset(XGradient(model), data, ref_dir, batch_size=BATCH, progress=False)

    real_write = loop_module._write_rows
    crash_batch = 2

    def write_then_crash(writer, key, start, rows):
        # batch 2's attributions reach the disk, then the process "dies" before the
        # targets/outputs are written and before the batch is logged as complete
        real_write(writer, key, start, rows)
        if start == crash_batch * BATCH and key == "attributions":
            raise _Boom("killed in the middle of batch 2")

    monkeypatch.setattr(loop_module, "_write_rows", write_then_crash)
    out = tmp_path / "s"
    with pytest.raises(_Boom, match="batch 2"):
        attribute_dataset(XGradient(model), data, out, batch_size=BATCH, progress=False)
    monkeypatch.setattr(loop_module, "_write_rows", real_write)

    with pytest.warns(UserWarning, match="incomplete"):
        partial = AttributionStore(out)
    assert not partial.complete
    # batches 0, 1 are done, batch 2 half-written, 3 and 4 untouched (zeros)
    assert torch.equal(partial[:2 * BATCH], AttributionStore(ref_dir)[:2 * BATCH])
    assert not partial[3 * BATCH:].any()

    calls = []
    method = XGradient(model)
    real_attribute = method.attribute
    method.attribute = lambda x, **kw: calls.append(len(x)) or real_attribute(x, **kw)
    store = attribute_dataset(method, data, out, batch_size=BATCH, progress=False)
    assert calls == [BATCH, BATCH, N - 4 * BATCH]  # batches 2 (redone), 3, 4
    assert store.complete
    assert _files(out) == _files(ref_dir)


def test_dataset_error_propagates_and_a_garbled_unlogged_batch_is_redone(tmp_path):
    model, data = _cnn(), _digits()
    ref_dir = tmp_path / "ref"
    attribute_dataset(XGradient(model), data, ref_dir, batch_size=BATCH, progress=False)

    class Failing(Dataset):
        def __len__(self):
            return N

        def __getitem__(self, i):
            if i == 3 * BATCH + 5:
                raise _Boom(f"cannot read item {i}")
            return data[i]

    out = tmp_path / "s"
    with pytest.raises(_Boom, match="cannot read item 53"):
        attribute_dataset(XGradient(model), Failing(), out, batch_size=BATCH, progress=False)
    # garble the rows of the unlogged batch 3 as a torn write would
    arr = np.load(out / "attributions.npy", mmap_mode="r+")
    arr[3 * BATCH:4 * BATCH] = 7.0
    arr.flush()
    del arr
    attribute_dataset(XGradient(model), data, out, batch_size=BATCH, progress=False)
    assert _files(out) == _files(ref_dir)


class _Pooled:
    """A Captum-style method whose row shape is set by an attribute the fingerprint
    does not see: only the stored row shape can tell two of them apart."""

    def __init__(self, model, dims):
        self.forward_func, self.dims = model, dims

    def attribute(self, x, target):
        return XGradient(self.forward_func).attribute(x, target=target).sum(self.dims)


def test_other_attribution_shape_is_refused_before_writing(tmp_path):
    model, data = _cnn(), _digits()

    class Failing(Dataset):
        def __len__(self):
            return N

        def __getitem__(self, i):
            if i == 2 * BATCH:
                raise _Boom("stop")
            return data[i]

    out = tmp_path / "s"
    with pytest.raises(_Boom):
        attribute_dataset(_Pooled(model, (1,)), Failing(), out, batch_size=BATCH, progress=False)
    before = _files(out)
    with pytest.raises(ValueError, match=r"rows of shape \(8,\).*\(8, 8\)"):
        attribute_dataset(_Pooled(model, (1, 2)), data, out, batch_size=BATCH, progress=False)
    assert _files(out) == before


def test_resume_of_a_complete_store_computes_nothing(tmp_path):
    model, data = _cnn(), _digits(40)
    out = tmp_path / "s"
    attribute_dataset(XGradient(model), data, out, batch_size=BATCH, progress=False)
    before = _files(out)
    method = XGradient(model)
    method.attribute = None  # would fail if called
    store = attribute_dataset(method, data, out, batch_size=BATCH, progress=False)
    assert store.complete and _files(out) == before


# ------------------------------------------------------------------ bad stores
@pytest.fixture
def written(tmp_path):
    model, data = _cnn(), _digits(40)
    out = tmp_path / "s"
    attribute_dataset(XGradient(model), data, out, batch_size=BATCH, progress=False)
    return model, data, out


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m, d: (XGradient(_cnn(seed=5)), d, {}), "another model"),
        (lambda m, d: (LayerXGradient(m, m[2]), d, {}), "another"),
        (lambda m, d: (XGradient(m), _digits(41), {}), "another length"),
        (lambda m, d: (XGradient(m), TensorDataset(torch.rand(40, 1, 9, 9), d.tensors[1]), {}),
         "another shape"),
        (lambda m, d: (XGradient(m), d, {"batch_size": 8}), "batch_size"),
        (lambda m, d: (XGradient(m), d, {"target": "pred"}), "target"),
        (lambda m, d: (XGradient(m), d, {"dtype": torch.float32}), "float16"),
    ],
    ids=["weights", "layer", "length", "input-shape", "batch-size", "target", "dtype"],
)
def test_mismatched_store_is_refused_and_left_alone(written, change, match):
    model, data, out = written
    before = _files(out)
    method, data2, kwargs = change(model, data)
    kwargs = {"batch_size": BATCH, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        attribute_dataset(method, data2, out, **kwargs)
    assert _files(out) == before


def test_existing_store_needs_resume_or_overwrite(written):
    model, data, out = written
    before = _files(out)
    with pytest.raises(ValueError, match="resume=True.*overwrite=True"):
        attribute_dataset(XGradient(model), data, out, batch_size=BATCH, resume=False,
                          progress=False)
    assert _files(out) == before
    other = _cnn(seed=3)
    store = attribute_dataset(XGradient(other), data, out, batch_size=BATCH, overwrite=True,
                              dtype=torch.float32, progress=False)
    assert store.fingerprint == model_fingerprint(XGradient(other))
    assert torch.equal(store[:16], XGradient(other).attribute(data.tensors[0][:16],
                                                                target=data.tensors[1][:16]))


@pytest.mark.parametrize("damage", ["index-json", "index-format", "array-size", "progress-log"])
def test_corrupt_store_raises_and_writes_nothing(written, damage):
    model, data, out = written
    if damage == "index-json":
        (out / "index.json").write_text("{not json")
    elif damage == "index-format":
        index = json.loads((out / "index.json").read_text())
        del index["arrays"]
        (out / "index.json").write_text(json.dumps(index))
    elif damage == "array-size":
        with open(out / "targets.npy", "r+b") as f:
            f.truncate(os.path.getsize(out / "targets.npy") - 8)
    else:
        index = json.loads((out / "index.json").read_text())
        index["complete"] = False
        (out / "index.json").write_text(json.dumps(index))
        (out / "progress").mkdir()
        (out / "progress" / "run000-rank0000.log").write_text("0\nbanana\n")
    before = _files(out)
    with pytest.raises(ValueError, match="not a valid attribution store"):
        attribute_dataset(XGradient(model), data, out, batch_size=BATCH, progress=False)
    assert _files(out) == before
    if damage != "progress-log":
        with pytest.raises(ValueError, match="not a valid attribution store"):
            AttributionStore(out)


def test_foreign_directory_is_refused_and_empty_one_is_fresh(tmp_path):
    model, data = _cnn(), _digits(20)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="not an attribution store"):
            attribute_dataset(XGradient(model), data, foreign, overwrite=overwrite,
                              progress=False)
    assert _files(foreign) == {"notes.txt": b"mine"}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(attribute_dataset(XGradient(model), data, empty, progress=False)) == 20


def test_failing_first_batch_writes_nothing(tmp_path):
    class Broken(nn.Module):
        def forward(self, x):
            raise _Boom("model is broken")

    with pytest.raises(_Boom):
        attribute_dataset(XGradient(Broken(), check="off"), _digits(20), tmp_path / "s",
                          progress=False)
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


@pytest.mark.parametrize(
    "kwargs, data, error, match",
    [
        ({"target": "labels"}, None, ValueError, "target must be"),
        ({"target": -1}, None, ValueError, ">= 0"),
        ({"batch_size": 0}, None, ValueError, "batch_size"),
        ({"dtype": torch.bfloat16}, None, ValueError, "numpy"),
        ({"dtype": torch.int32}, None, ValueError, "floating"),
        ({}, TensorDataset(torch.rand(0, 1, 8, 8), torch.zeros(0)), ValueError, "empty"),
        ({}, "iterable", TypeError, "map-style"),
        ({}, TensorDataset(torch.rand(4, 1, 8, 8), torch.rand(4)), ValueError,
         "integer class index"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, data, error, match):
    class Stream(IterableDataset):
        def __iter__(self):
            return iter([])

    data = {None: _digits(20), "iterable": Stream()}.get(data, data) if not isinstance(
        data, Dataset) else data
    with pytest.raises(error, match=match):
        attribute_dataset(XGradient(_cnn()), data, tmp_path / "s", progress=False, **kwargs)


def test_method_must_be_an_attribution_object(tmp_path):
    with pytest.raises(TypeError, match="Captum-style"):
        attribute_dataset(_cnn(), _digits(20), tmp_path / "s")


# ------------------------------------------------------------------ reading
def test_store_reading(written):
    model, data, out = written
    store = AttributionStore(str(out))
    full = store[:]
    assert full.dtype == torch.float16 and full.shape == (40, 1, 8, 8)
    assert torch.equal(store[3], full[3]) and torch.equal(store[-1], full[39])
    assert torch.equal(store[[0, 5, 7]], full[[0, 5, 7]])
    assert torch.equal(store[torch.tensor([2, 1])], full[[2, 1]])
    assert torch.equal(store[10:20:3], full[10:20:3])
    assert store.outputs.shape == (40, 10) and store.outputs.dtype == torch.float32
    assert store.targets.dtype == torch.int64
    q = store.to_quantus()
    assert q["a_batch"].shape == (40, 1, 8, 8) and q["a_batch"].dtype == np.float32
    np.testing.assert_array_equal(q["y_batch"], data.tensors[1].numpy())
    q = store.to_quantus(indices=[4, 2])
    np.testing.assert_array_equal(q["a_batch"], full[[4, 2]].float().numpy())
    assert "40 rows of shape (1, 8, 8)" in repr(store)
    with pytest.raises(IndexError):
        store[40]
    with pytest.raises(ValueError, match="not a directory"):
        AttributionStore(out / "nope")


# ------------------------------------------------------------------ two processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, weights: str, out: str, crash: bool) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = _cnn()
        model.load_state_dict(torch.load(weights, weights_only=True))
        method = XGradient(model)
        calls = []
        real_attribute = method.attribute
        method.attribute = lambda x, **kw: calls.append(len(x)) or real_attribute(x, **kw)
        store = attribute_dataset(method, _digits(), out, batch_size=BATCH, progress=False)
        # every rank gets the finished store back, and ran only its own batches
        assert store.complete and len(store) == N
        Path(f"{out}.rank{rank}.json").write_text(json.dumps(calls))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_the_bytes_of_one(tmp_path):
    import torch.multiprocessing as mp

    model, data = _cnn(), _digits()
    one = tmp_path / "one"
    attribute_dataset(XGradient(model), data, one, batch_size=BATCH, progress=False)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    two = tmp_path / "two"
    mp.spawn(_worker, args=(2, _free_port(), str(weights), str(two), False), nprocs=2,
             join=True)
    assert _files(two) == _files(one)
    # rank 0 ran batches 0, 2, 4 (the last one of 6 rows), rank 1 ran batches 1, 3
    assert json.loads(Path(f"{two}.rank0.json").read_text()) == [BATCH, BATCH, N - 4 * BATCH]
    assert json.loads(Path(f"{two}.rank1.json").read_text()) == [BATCH, BATCH]
