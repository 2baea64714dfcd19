"""``orchestrate pretrain-probe``: a probe trained from scratch on an image folder, loadable as probe weights."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from experts.backbones import create_backbone
from orchestrator.cli import main
from tasks.mini.pretraining import write_pretraining_set


def test_pretrained_weights_load_as_probe_weights_and_differ_from_the_random_init(tmp_path) -> None:
    folder = write_pretraining_set(tmp_path / "pre", per_class=2)
    out = tmp_path / "w" / "probe.pt"
    result = CliRunner().invoke(main, ["pretrain-probe", str(folder), "--out", str(out), "--epochs", "2",
                                       "--image-size", "16"])
    assert result.exit_code == 0, result.output
    assert "126 images of 63 classes" in result.output and "embeddings.probe_weights" in result.output
    state = torch.load(out, weights_only=True)
    assert state["fc.weight"].shape == (63, 64)  # the classifier travels with the body, torchvision-style
    probe = create_backbone("tiny_resnet", weights=out, num_classes=5)
    random = create_backbone("tiny_resnet", weights="random", seed=0, num_classes=5)
    assert probe.info.pretrained and not random.info.pretrained
    name = "conv1.weight"
    assert torch.equal(probe.body.state_dict()[name], state[name])
    assert not torch.equal(probe.body.state_dict()[name], random.body.state_dict()[name])  # it trained
    info = json.loads(out.with_name("probe.pt.json").read_text())
    assert info["classes"] == 63 and info["epochs"] == 2 and 0 <= info["train_error"] <= 1


def test_a_folder_with_one_class_is_a_clear_error(tmp_path) -> None:
    pre = write_pretraining_set(tmp_path / "pre", per_class=1)
    (tmp_path / "one" / "only").mkdir(parents=True)
    next(pre.rglob("*.jpg")).rename(tmp_path / "one" / "only" / "a.jpg")
    result = CliRunner().invoke(main, ["pretrain-probe", str(tmp_path / "one"), "--out", str(tmp_path / "p.pt")])
    assert result.exit_code == 1 and "single class" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p.pt").exists()
