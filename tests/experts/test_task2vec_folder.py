"""``embed_image_folder``: an ImageFolder tree in, a TaskEmbedding out, clear errors for bad folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from experts.backbones import create_backbone
from experts.embed_folder import ImageFolderTask, embed_image_folder
from experts.task2vec import Task2VecConfig
from tasks.errors import TaskSweepInputError
from tasks.transforms import TrainTransform

SMALL = Task2VecConfig(batch_size=4, fisher_samples=8, head_epochs=1, head_samples_per_epoch=8)



def _folder(root: Path, classes: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_embeds_a_folder(tmp_path: Path) -> None:
    root = _folder(tmp_path / "task", {"cat": 4, "dog": 3, "eel": 3})
    (root / ".hidden").mkdir()
    (root / "cat" / "notes.txt").write_text("not an image")
    emb = embed_image_folder(root, probe="tiny_resnet", image_size=16, config=SMALL, seed=3)
    assert emb.hessian.shape == (create_backbone("tiny_resnet").info.embedding_dim,)
    assert (emb.method, emb.probe, emb.pretrained, emb.n_samples, emb.seed) == ("montecarlo", "tiny_resnet", False, 10, 3)
    assert emb.meta["classes"] == ["cat", "dog", "eel"] and emb.meta["image_size"] == 16
    again = embed_image_folder(root, probe="tiny_resnet", image_size=16, config=SMALL, seed=3)
    assert np.array_equal(emb.hessian, again.hessian)  # augmentation is seeded too


def test_probe_weights_file_marks_the_embedding_pretrained(tmp_path: Path) -> None:
    root = _folder(tmp_path / "task", {"a": 2, "b": 2})
    torch.save(create_backbone("tiny_resnet", seed=9).state_dict(), tmp_path / "w.pt")
    emb = embed_image_folder(root, probe="tiny_resnet", probe_weights=tmp_path / "w.pt", method="domain",
                             image_size=16, config=SMALL)
    assert emb.pretrained and emb.meta["probe_info"]["weights_source"] == f"file:{tmp_path / 'w.pt'}"


def test_folder_images_go_through_the_sweeps_task2vec_input(tmp_path: Path) -> None:
    root = _folder(tmp_path / "task", {"a": 2, "b": 2})
    dataset = ImageFolderTask(root, TrainTransform(16))
    torch.manual_seed(0)
    x, label = dataset[0]
    torch.manual_seed(0)
    assert torch.equal(x, TrainTransform(16)(Image.open(root / "a" / "0.png"))) and label == 0
    assert x.shape == (3, 16, 16)


@pytest.mark.parametrize(("layout", "message"), [
    ({}, "empty"),
    ({"only": 3}, "a single class"),
    ({"a": 2, "b": 0}, "b: class folder holds no images"),
])
def test_bad_layouts_are_explained(tmp_path: Path, layout: dict[str, int], message: str) -> None:
    root = _folder(tmp_path / "task", layout)
    root.mkdir(exist_ok=True)
    with pytest.raises(TaskSweepInputError, match=message):
        embed_image_folder(root, probe="tiny_resnet", config=SMALL)


def test_missing_folder_is_explained(tmp_path: Path) -> None:
    with pytest.raises(TaskSweepInputError, match="not a folder"):
        embed_image_folder(tmp_path / "nowhere", probe="tiny_resnet")


def test_unreadable_images_are_named(tmp_path: Path) -> None:
    root = _folder(tmp_path / "task", {"a": 2, "b": 2})
    (root / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(TaskSweepInputError, match=r"b/broken\.png: not a readable image"):
        embed_image_folder(root, probe="tiny_resnet", config=SMALL)
    (root / "b" / "broken.png").unlink()
    dataset = ImageFolderTask(root, TrainTransform(16))
    dataset.files[0].write_bytes(b"corrupted after the scan")
    with pytest.raises(TaskSweepInputError, match=r"a/0\.png: cannot decode image"):
        dataset[0]
