"""Pretrain a probe from scratch on an image folder, for runs that have no ImageNet weights.

The result is a torchvision-style state dict (the body's keys plus the classifier under its own
name, e.g. ``fc.weight``) that ``create_backbone(name, weights=path)`` and the sweep's
``embeddings.probe_weights`` load. Training is ``experts.training.train_expert`` (SGD, cosine
schedule, translation + flip augmentation) from a seeded random init.

Small folders are decoded once into memory (at most ``cache_bytes``); larger ones are read from
disk every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from experts.backbones import create_backbone, get_backbone
from experts.embed_folder import ImageFolderTask
from experts.training import ExpertTrainConfig, Progress, train_expert
from tasks.transforms import EvalTransform

__all__ = ["PretrainResult", "pretrain_probe", "save_weights"]


@dataclass(frozen=True)
class PretrainResult:
    state_dict: dict[str, torch.Tensor]  # body + classifier, torchvision naming
    classes: list[str]
    n_images: int
    train_error: float
    train_loss: list[float]


def pretrain_probe(
    folder: str | Path,
    *,
    probe: str,
    image_size: int,
    config: ExpertTrainConfig,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    cache_bytes: int = 2 << 30,
) -> PretrainResult:
    """Train ``probe`` (random init, seeded by ``config.seed``) to classify the folder's classes.

    Raises ``TaskSweepInputError`` for a bad folder (experts.embed_folder's checks).
    """
    data = ImageFolderTask(folder, EvalTransform(image_size))  # centre crop; the loop augments
    dataset: Dataset = data
    if len(data) * 3 * image_size * image_size * 4 <= cache_bytes:
        images = torch.stack([data[i][0] for i in range(len(data))])
        dataset = TensorDataset(images, torch.as_tensor(data.targets))
    spec = get_backbone(probe)
    net = create_backbone(probe, weights="random", seed=config.seed)
    result = train_expert(net.body, spec.feature_dim, len(data.classes), dataset, config=config, device=device,
                          progress=progress)
    state = dict(result.feature_extractor_state)
    state.update({f"{spec.classifier}.{k}": v for k, v in result.classifier_state.items()})
    return PretrainResult(state, data.classes, len(data), result.train_error, result.train_loss)


def save_weights(state_dict: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write a state dict atomically (a ``.partial`` file renamed): never a half-written file under ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state_dict, partial)
    partial.replace(path)
    return path
