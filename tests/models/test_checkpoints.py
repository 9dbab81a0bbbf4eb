"""Loading official-format checkpoints (written here, never downloaded): DataParallel
prefixes, metadata, and a clear error for every bad file."""

from __future__ import annotations

import pytest
import torch
import torchvision

from captum_xgrad import models
from captum_xgrad.models import load_official_checkpoint, read_checkpoint, xvgg_from_torchvision


def _official_file(path, model, arch, prefix=""):
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save(
        {"epoch": 90, "arch": arch, "state_dict": state, "best_acc1": torch.tensor(56.7),
         "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0]}]}},
        path,
    )
    return path


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_load_official_format_with_and_without_dataparallel_prefix(tmp_path, prefix):
    torch.manual_seed(0)
    trained = models.xfixup_resnet18(num_classes=10, zero_init=False)
    path = _official_file(tmp_path / "xfixup_resnet18_model_best.pth.tar", trained,
                          "xfixup_resnet18", prefix)
    model = models.xfixup_resnet18(num_classes=10)
    meta = load_official_checkpoint(model, path)
    assert meta == {"arch": "xfixup_resnet18", "epoch": 90, "best_acc1": pytest.approx(56.7)}
    assert _same(model, trained)
    # the builder's weights= does the same
    assert _same(models.xfixup_resnet18(num_classes=10, weights=path), trained)


def test_features_module_prefix_of_alexnet_vgg(tmp_path):
    torch.manual_seed(0)
    trained = models.xalexnet(num_classes=10)
    state = {k.replace("features.", "features.module.", 1): v for k, v in trained.state_dict().items()}
    assert "features.module.0.weight" in state
    path = tmp_path / "xalexnet.pth.tar"
    torch.save({"arch": "xalexnet", "epoch": 3, "state_dict": state}, path)
    model = models.get_model("xalexnet", num_classes=10, weights=str(path))
    assert _same(model, trained)


def test_plain_state_dict_file(tmp_path):
    trained = models.xfixup_resnet18(num_classes=4, zero_init=False)
    path = tmp_path / "plain.pt"
    torch.save(trained.state_dict(), path)
    model = models.xfixup_resnet18(num_classes=4)
    assert load_official_checkpoint(model, path) == {}
    assert _same(model, trained)


def test_wrong_architecture(tmp_path):
    path = _official_file(tmp_path / "a.pth.tar", models.xfixup_resnet18(num_classes=3),
                          "xfixup_resnet18")
    model = models.xalexnet(num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"is for arch='xfixup_resnet18' but the model is 'xalexnet'.*get_model\('xfixup_resnet18'\)"):
        load_official_checkpoint(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # without arch information the key check catches it
    with pytest.raises(ValueError, match=r"(?s)does not fit the model.*missing keys \(8\).*unexpected keys \(21\)"):
        load_official_checkpoint(model, path, arch="xfixup_resnet18")


def test_missing_and_extra_keys_and_shapes(tmp_path):
    state = models.xfixup_resnet18(num_classes=3).state_dict()
    del state["fc.weight"]
    state["fc.bias"] = torch.zeros(3)
    path = tmp_path / "broken.pth.tar"
    torch.save({"arch": "xfixup_resnet18", "state_dict": state}, path)
    with pytest.raises(ValueError, match=r"(?s)missing keys \(1\): fc.weight.*unexpected keys \(1\): fc.bias"):
        models.xfixup_resnet18(num_classes=3, weights=path)
    path2 = _official_file(tmp_path / "ten.pth.tar", models.xfixup_resnet18(num_classes=10),
                           "xfixup_resnet18")
    with pytest.raises(ValueError, match=r"(?s)shape mismatches \(1\): fc.weight: checkpoint \(10, 512\) vs model \(3, 512\).*num_classes"):
        models.xfixup_resnet18(num_classes=3, weights=path2)


def test_torchvision_vgg_file(tmp_path):
    """One VGG-11 file (saved in half precision to halve the I/O) for every VGG check."""
    torch.manual_seed(0)
    vgg = torchvision.models.vgg11(weights=None, num_classes=10).half().float()
    path = tmp_path / "vgg11.pth"
    torch.save(vgg.half().state_dict(), path)
    vgg.float()
    with pytest.raises(ValueError, match=r"(?s)unexpected keys \(11\).*xvgg_from_torchvision"):
        models.xvgg11(num_classes=10, weights=path)
    with pytest.raises(ValueError, match="has a classifier with 10 outputs, not num_classes=1000"):
        xvgg_from_torchvision(path, num_classes=1000)
    xvgg = xvgg_from_torchvision(path, num_classes=10)
    assert xvgg.arch == "xvgg11"
    sd, ref = xvgg.state_dict(), vgg.state_dict()
    assert set(sd) == {k for k in ref if not k.endswith(".bias")}
    assert all(torch.equal(sd[k], ref[k]) for k in sd)
    # with zero biases, the X-VGG computes exactly what the VGG computes
    for m in vgg.modules():
        if getattr(m, "bias", None) is not None:
            torch.nn.init.zeros_(m.bias)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(xvgg.eval()(x), vgg.eval()(x), atol=1e-6)


def test_xvgg_from_torchvision_rejects_other_state_dicts(tmp_path):
    bn = tmp_path / "vgg_bn.pth"
    torch.save({"features.0.weight": torch.zeros(2, 3, 3, 3),
                "features.1.running_mean": torch.zeros(2)}, bn)
    with pytest.raises(ValueError, match="VGG-BN state dict.*make_x_dnn"):
        xvgg_from_torchvision(bn)
    other = tmp_path / "alex.pth"
    torch.save(models.xfixup_resnet18(num_classes=2).state_dict(), other)
    with pytest.raises(ValueError, match="does not look like a torchvision VGG state dict: it has 0"):
        xvgg_from_torchvision(other)


def test_corrupt_truncated_and_foreign_files(tmp_path):
    good = _official_file(tmp_path / "good.pth.tar", models.xfixup_resnet18(num_classes=2),
                          "xfixup_resnet18")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pth.tar"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    for path in (truncated, garbage):
        with pytest.raises(ValueError, match=r"(?s)could not read the checkpoint .* corrupt, truncated"):
            load_official_checkpoint(models.xfixup_resnet18(num_classes=2), path)
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        read_checkpoint(tmp_path / "nope.pth")
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        read_checkpoint(listing)
    bad_state = tmp_path / "bad_state.pth"
    torch.save({"state_dict": [1, 2]}, bad_state)
    with pytest.raises(ValueError, match="'state_dict' entry that is not a mapping"):
        read_checkpoint(bad_state)
    with pytest.raises(TypeError, match="model must be an nn.Module, got str"):
        load_official_checkpoint("xfixup_resnet18", good)  # type: ignore[arg-type]


class _Evil:
    def __reduce__(self):
        return (print, ("executed!",))


def test_weights_only_refuses_pickled_code(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "arch": "xalexnet", "payload": _Evil()}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        read_checkpoint(path)
    assert "executed!" not in capsys.readouterr().out
