"""The demo behind ``captum-xgrad demo`` and its building blocks."""

from __future__ import annotations

import argparse

import torch

from captum_xgrad import demo


def test_digits_xcnn_is_homogeneous():
    torch.manual_seed(0)
    model = demo.digits_xcnn().eval()
    x = torch.rand(5, 1, 8, 8)
    for a in (0.3, 2.0, 7.5):
        assert torch.allclose(model(a * x), a * model(x), rtol=1e-4, atol=1e-6)


def test_load_digits_tensors():
    x_train, y_train, x_test, y_test = demo.load_digits_tensors()
    assert x_train.shape[1:] == (1, 8, 8) and x_train.dtype == torch.float32
    assert len(x_train) + len(x_test) == 1797
    assert 0.0 <= float(x_train.min()) and float(x_train.max()) == 1.0
    assert set(y_test.tolist()) == set(range(10))


def test_compare_with_ig_reports_agreement():
    torch.manual_seed(0)
    model = demo.digits_xcnn().eval()
    x = torch.rand(6, 1, 8, 8)
    res = demo.compare_with_ig(model, x, torch.arange(6), repeats=1)
    assert res["max_rel_error"] <= 1e-4
    assert res["completeness_error"] <= 1e-4
    assert res["xgrad"].shape == x.shape and res["t_xgrad"] > 0


def test_compare_with_ig_detects_a_biased_model():
    # the agreement number is not vacuous: on a model with biases it is large
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)
    ).eval()
    x = torch.rand(6, 1, 8, 8)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = demo.compare_with_ig(model, x, torch.arange(6), repeats=1)
    assert res["completeness_error"] > 1e-3


def test_digits_xcnn_generator_makes_the_init_reproducible_without_the_global_rng():
    before = torch.random.get_rng_state()
    a = demo.digits_xcnn(generator=torch.Generator().manual_seed(3))
    b = demo.digits_xcnn(generator=torch.Generator().manual_seed(3))
    c = demo.digits_xcnn(generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.random.get_rng_state(), before)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb) and not torch.equal(pa, pc)
        bound = 1.0 / pa[0].numel() ** 0.5  # PyTorch's default layer init
        assert float(pa.detach().abs().max()) <= bound


def test_demo_end_to_end(tmp_path):
    lines = []
    args = argparse.Namespace(out=tmp_path / "xgrad_demo.png", epochs=2, batch=16, seed=0,
                              no_decoy=True)
    before = torch.random.get_rng_state()
    code = demo.run(args, log=lines.append)
    assert torch.equal(torch.random.get_rng_state(), before)  # seeds are local
    assert code == 0
    assert (tmp_path / "xgrad_demo.png").stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xgrad_demo.png", "xgrad_demo_all_classes.png"]
    text = "\n".join(lines)
    assert "max |XGradient - IG| / max |IG|" in text and "faster" in text
