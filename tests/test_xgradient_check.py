"""XGradient's ``check=`` modes: cost of the default, warn-once, cached verdicts."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from _models import biased_mlp, mlp
from captum_xgrad.errors import NonHomogeneousError, NonHomogeneousWarning
from captum_xgrad.xgradient import XGradient


def _counting(model):
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    return calls


def _attribute(xg, x, target=1):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xg.attribute(x, target=target)
    return [w for w in caught if issubclass(w.category, NonHomogeneousWarning)]


def test_default_static_check_keeps_one_forward_pass():
    torch.manual_seed(0)
    model = mlp().eval()
    calls = _counting(model)
    xg = XGradient(model)
    assert xg.check == "static"
    for _ in range(3):
        assert _attribute(xg, torch.randn(4, 5)) == []
    assert len(calls) == 3  # one forward pass per attribute call


def test_static_warns_once_per_model_and_names_the_module():
    torch.manual_seed(0)
    model = biased_mlp().eval()
    calls = _counting(model)
    xg = XGradient(model)
    first = _attribute(xg, torch.randn(4, 5))
    assert len(first) == 1
    text = str(first[0].message)
    assert "0 (Linear): has a bias" in text and "1 (Tanh)" in text and "make_x_dnn" in text
    assert _attribute(xg, torch.randn(4, 5)) == []
    assert _attribute(xg, torch.randn(7, 5)) == []
    assert len(calls) == 3
    # a new XGradient on the same model warns again (the flag lives on the explainer)
    assert len(_attribute(XGradient(model), torch.randn(2, 5))) == 1


def test_off_checks_nothing():
    model = biased_mlp().eval()
    calls = _counting(model)
    assert _attribute(XGradient(model, check="off"), torch.randn(3, 5)) == []
    assert len(calls) == 1


def test_warn_runs_the_empirical_check_once_per_input_shape():
    torch.manual_seed(0)
    model = biased_mlp().eval()
    calls = _counting(model)
    xg = XGradient(model, check="warn")
    first = _attribute(xg, torch.randn(4, 5))
    assert len(first) == 1 and "NOT homogeneous" in str(first[0].message)
    n_first = len(calls)
    assert n_first > 1  # 1 attribution pass + the check's passes
    second = _attribute(xg, torch.randn(4, 5))
    assert len(second) == 1  # the cached verdict is still reported
    assert len(calls) == n_first + 1  # but not recomputed
    _attribute(xg, torch.randn(6, 5))  # new shape: checked again
    assert len(calls) == n_first + 1 + n_first
    assert len(xg._checked_shapes) == 2


def test_warn_is_silent_and_cheap_after_first_call_on_homogeneous_model():
    torch.manual_seed(0)
    model = mlp().eval()
    calls = _counting(model)
    xg = XGradient(model, check="warn")
    assert _attribute(xg, torch.randn(4, 5)) == []
    n_first = len(calls)
    assert _attribute(xg, torch.randn(4, 5)) == []
    assert len(calls) == n_first + 1


def test_raise_mode():
    torch.manual_seed(0)
    x = torch.randn(4, 5)
    with pytest.raises(NonHomogeneousError, match=r"(?s)NOT homogeneous.*Offending modules"):
        XGradient(biased_mlp().eval(), check="raise").attribute(x, target=0)
    model = mlp().eval()
    out = XGradient(model, check="raise").attribute(x, target=0)
    ref = XGradient(model, check="off").attribute(x, target=0)
    assert torch.equal(out, ref)


def test_raise_mode_caches_the_failure_and_leaves_model_alone():
    torch.manual_seed(0)
    model = biased_mlp().train()
    hooks = len(model[0]._forward_pre_hooks)
    xg = XGradient(model, check="raise")
    for _ in range(2):
        with pytest.raises(NonHomogeneousError):
            xg.attribute(torch.randn(4, 5), target=0)
    assert len(xg._checked_shapes) == 1
    assert model.training and len(model[0]._forward_pre_hooks) == hooks


def test_raise_with_multiple_inputs_and_additional_args():
    class TwoIn(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 2, bias=False)
            self.b = nn.Linear(4, 2, bias=False)

        def forward(self, x1, x2, gate):
            return (self.a(x1) + torch.relu(self.b(x2))) * gate

    torch.manual_seed(0)
    model = TwoIn().eval()
    inputs = (torch.randn(3, 3), torch.randn(3, 4))
    gate = torch.rand(3, 2)
    xg = XGradient(model, check="raise")
    attr = xg.attribute(inputs, target=1, additional_forward_args=(gate,))
    assert len(attr) == 2


def test_invalid_check_mode():
    with pytest.raises(ValueError, match=r"check must be one of \('off', 'static', 'warn', 'raise'\)"):
        XGradient(mlp(), check="always")  # type: ignore[arg-type]
