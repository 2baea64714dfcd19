"""The probe registry: construction, uniform structure, embedding lengths, weights loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from experts.backbones import create_backbone, get_backbone, imagenet_cache_path, list_backbones
from tasks.errors import TaskSweepInputError

CHEAP = {"tiny_resnet", "resnet13", "resnet18"}



@pytest.fixture(autouse=True)
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, so no test depends on what this machine has cached."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_registry_lists_the_paper_probes_and_a_test_probe() -> None:
    assert {"resnet34", "resnet18", "resnet13", "densenet121", "vgg13_bn", "tiny_resnet"} <= set(list_backbones())
    with pytest.raises(KeyError, match="known: .*resnet34"):
        get_backbone("resnet1000")


@pytest.mark.parametrize("name", list_backbones())
def test_probe_structure(name: str) -> None:
    probe = create_backbone(name, weights="random", num_classes=3)
    info = probe.info
    assert (info.name, info.pretrained, info.weights_source) == (name, False, "random:seed=0")
    modules = probe.fisher_modules()
    assert info.embedding_dim == sum(m.weight.shape[0] for _, m in modules)
    assert info.variational_dim == sum(m.weight.shape[0] for _, m in modules if m.weight.dim() > 1)
    assert all(m is not probe.classifier for _, m in modules)
    assert isinstance(probe.classifier, nn.Linear) and probe.classifier.in_features == info.feature_dim
    probe.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        feats = probe.features(x)
        assert feats.shape == (1, info.feature_dim)
        assert probe(x).shape == (1, 3)
        torch.testing.assert_close(feats, probe.body(x))  # the stages are the torchvision forward
        if name in CHEAP:
            mid = probe.stages[0](x)
            torch.testing.assert_close(probe.features(mid, start=1), feats)


@pytest.mark.parametrize(("name", "mc", "var"), [("resnet34", 17_024, 8_512), ("resnet18", 9_600, 4_800)])
def test_reference_embedding_lengths(name: str, mc: int, var: int) -> None:
    info = create_backbone(name, weights="random").info
    assert (info.embedding_dim, info.variational_dim) == (mc, var)


def test_network_order_interleaves_conv_and_batchnorm() -> None:
    names = [n for n, _ in create_backbone("resnet18", weights="random").fisher_modules()]
    assert names[:6] == ["conv1", "bn1", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.conv2", "layer1.0.bn2"]
    assert "layer2.0.downsample.0" in names and names[-1] == "layer4.1.bn2"


def test_random_init_is_seeded() -> None:
    a, b = create_backbone("tiny_resnet", seed=1), create_backbone("tiny_resnet", seed=1)
    c = create_backbone("tiny_resnet", seed=2)
    assert torch.equal(a.body.conv1.weight, b.body.conv1.weight)
    assert not torch.equal(a.body.conv1.weight, c.body.conv1.weight)


def test_weights_file_is_loaded_except_the_classifier(tmp_path: Path) -> None:
    net = tvm.resnet18(num_classes=1000)  # a torchvision state dict, classifier of another size
    path = tmp_path / "r18.pth"
    torch.save(net.state_dict(), path)
    probe = create_backbone("resnet18", weights=path, num_classes=4)
    assert probe.info.pretrained and probe.info.weights_source == f"file:{path}"
    for key, value in net.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(probe.body.state_dict()[key], value), key
    assert probe.classifier.out_features == 4


def test_probe_state_dict_and_wrapped_checkpoints_load(tmp_path: Path) -> None:
    src = create_backbone("tiny_resnet", seed=5)
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "w.pt")
    probe = create_backbone("tiny_resnet", weights=tmp_path / "w.pt")
    assert torch.equal(probe.body.layer4[0].conv2.weight, src.body.layer4[0].conv2.weight)


def test_wrong_weights_files_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        create_backbone("tiny_resnet", weights=tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(TaskSweepInputError, match="junk.pth"):
        create_backbone("tiny_resnet", weights=junk)
    other = tmp_path / "r13.pth"
    torch.save(create_backbone("resnet13").state_dict(), other)
    with pytest.raises(TaskSweepInputError, match="r13.pth: does not match probe tiny_resnet: wrong shape"):
        create_backbone("tiny_resnet", weights=other)


def test_no_weights_means_random_init(empty_hub: Path) -> None:
    assert not create_backbone("tiny_resnet").info.pretrained
    assert not create_backbone("resnet18").info.pretrained  # nothing cached
    with pytest.raises(FileNotFoundError, match="hub cache .*resnet18-"):
        create_backbone("resnet18", weights="imagenet")


def test_imagenet_weights_are_used_only_from_the_hub_cache(empty_hub: Path) -> None:
    spec = get_backbone("resnet18")
    cached = imagenet_cache_path(spec)
    assert cached is not None and cached.parent == empty_hub / "checkpoints"
    cached.parent.mkdir(parents=True)
    net = tvm.resnet18()
    torch.save(net.state_dict(), cached)
    probe = create_backbone("resnet18")
    assert probe.info.pretrained and probe.info.weights_source.startswith("torchvision-cache:ResNet18_Weights")
    assert torch.equal(probe.body.conv1.weight, net.conv1.weight)
    assert not create_backbone("resnet18", weights="random").info.pretrained


def test_densenet_legacy_key_names_are_accepted(tmp_path: Path) -> None:
    state = tvm.densenet121().state_dict()
    legacy = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v for k, v in state.items()
              if not k.endswith("num_batches_tracked")}  # as in torchvision's old DenseNet checkpoints
    assert legacy != state
    torch.save(legacy, tmp_path / "d.pth")
    probe = create_backbone("densenet121", weights=tmp_path / "d.pth")
    assert torch.equal(probe.body.features.denseblock1.denselayer1.norm1.weight,
                       state["features.denseblock1.denselayer1.norm1.weight"])


def test_reset_classifier_starts_from_zero() -> None:
    probe = create_backbone("tiny_resnet")
    probe.reset_classifier(7)
    assert probe.classifier.out_features == 7
    assert not probe.classifier.weight.any() and not probe.classifier.bias.any()


@pytest.mark.parametrize("name", ["tiny_resnet", "resnet13"])
def test_probes_pickle(name: str) -> None:
    """Ray ships probes to workers; plain pickle must work too (no lambdas in the spec)."""
    import pickle

    probe = create_backbone(name, seed=4)
    copy = pickle.loads(pickle.dumps(probe))
    assert copy.info == probe.info and torch.equal(copy.body.conv1.weight, probe.body.conv1.weight)
