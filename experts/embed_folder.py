"""Embed a folder of images (torchvision ``ImageFolder`` layout: one sub-folder per class).

This is how a user embeds their own task. Images go through the sweep's Task2Vec input
(``tasks.transforms.TrainTransform``: short side resized to ``decoded_side(image_size)``, a random
``image_size`` crop, horizontal flip, ImageNet normalisation), so a folder holding a library task's
images embeds exactly as the sweep embedded that task; with ``config.augmentation ==
"random_resized_crop"`` (``REFERENCE``), the reference's transform instead
(``tasks.transforms.ReferenceTrainTransform``). Classes are the sub-folder names in sorted order (as ``ImageFolder``); hidden
entries are ignored. Problems are reported as ``TaskSweepInputError`` naming the folder or file:
a missing or empty folder, fewer than two classes, a class folder without images, a file that is
not a readable image (headers are checked before any compute; a file that fails to decode later
is named too).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from PIL import Image
from torch.utils.data import Dataset

from experts.backbones import create_backbone
from experts.task2vec import Progress, Task2VecConfig, TaskEmbedding, embed_task
from tasks.errors import TaskSweepInputError
from tasks.transforms import ReferenceTrainTransform, TrainTransform

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderTask", "embed_image_folder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolderTask(Dataset):
    """``(image_tensor, class_index)`` items of a class-per-sub-folder tree, validated up front."""

    def __init__(self, root: str | Path, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.root = Path(root)
        self.transform = transform
        self.classes, self.files, self.targets = _scan(self.root)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            with Image.open(self.files[i]) as im:
                image = im.convert("RGB")
        except Exception as exc:  # PIL raises many types for corrupt files
            raise TaskSweepInputError(f"{self.files[i]}: cannot decode image ({type(exc).__name__}: {exc})") from exc
        return self.transform(image), self.targets[i]


def _scan(root: Path) -> tuple[list[str], list[Path], list[int]]:
    if not root.is_dir():
        raise TaskSweepInputError(f"{root}: not a folder (expected one sub-folder of images per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    targets: list[int] = []
    for index, name in enumerate(classes):
        images = sorted(p for p in (root / name).rglob("*")
                        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
        if not images:
            raise TaskSweepInputError(f"{root / name}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        files += images
        targets += [index] * len(images)
    if not classes:
        raise TaskSweepInputError(f"{root}: empty; expected one sub-folder of images per class")
    if len(classes) < 2:
        raise TaskSweepInputError(f"{root}: a single class ({classes[0]!r}); Task2Vec needs at least two class folders")
    for path in files:
        try:
            with Image.open(path) as im:
                im.verify()
        except Exception as exc:
            raise TaskSweepInputError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
    return classes, files, targets


def embed_image_folder(
    path: str | Path,
    *,
    probe: str = "resnet34",
    probe_weights: str | Path | None = None,
    method: str = "montecarlo",
    seed: int = 0,
    max_samples: int = 10_000,
    device: str = "cpu",
    image_size: int = 224,
    config: Task2VecConfig | None = None,
    progress: Progress | None = None,
) -> TaskEmbedding:
    """Task2Vec embedding of the image folder at ``path``.

    Args:
        path: a folder with one sub-folder of images per class (at least two).
        probe: a name from ``experts.backbones.list_backbones()``.
        probe_weights: a torchvision state dict file; ``None`` uses torchvision's ImageNet weights
            if they are already in the torch hub cache, else a random init (``pretrained=False``).
        method: ``montecarlo``, ``montecarlo_exact``, ``variational`` or ``domain``.
        seed: seeds every random draw (augmentation included) and the probe's random init.
        max_samples: at most this many images feed the head (``Task2VecConfig.max_samples``).
        device: ``cpu``, ``cuda``, ``cuda:1``, ...
        image_size: side of the random crop (``tasks.transforms``).
        config: other settings (``Task2VecConfig()``; ``REFERENCE`` for the reference's); ``max_samples``
            overrides its field.
        progress: ``progress(phase, done, total)``, see ``embed_task``.

    Raises:
        TaskSweepInputError: bad folder layout or image, naming the path.
        FileNotFoundError: a missing weights file.
    """
    config = replace(config or Task2VecConfig(), max_samples=max_samples)
    transform = ReferenceTrainTransform if config.augmentation == "random_resized_crop" else TrainTransform
    dataset = ImageFolderTask(path, transform(image_size))
    net = create_backbone(probe, weights=probe_weights, num_classes=len(dataset.classes), seed=seed)
    emb = embed_task(dataset, net, method=method, config=config, device=device, seed=seed, progress=progress)
    emb.meta.update(folder=str(Path(path).resolve()), classes=dataset.classes, image_size=image_size)
    return emb
