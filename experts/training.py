"""Fine-tune a feature extractor with a fresh linear classifier on one task or a task group.

The caller passes the backbone without its classifier and the width of its output; this module
adds ``Flatten + Linear(feature_dim, num_classes)``, trains the whole network with SGD, and returns
weights and metrics. The input module is copied, never modified. Randomness (classifier init,
shuffling, augmentation) comes from ``config.seed``; modules that draw from torch's global RNG
(dropout) run under a forked, seeded global RNG, so the caller's RNG state is untouched and two
runs with the same seed on the CPU give bit-identical weights.

Not here: building backbones (experts/backbones.py), datasets, checkpoints on disk.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

#: ``progress(epoch, epochs, mean_train_loss)`` after every epoch.
Progress = Callable[[int, int, float], None]


@dataclass(frozen=True)
class ExpertTrainConfig:
    """Fine-tuning settings.

    ``schedule``: ``cosine`` (per step, from ``lr`` to 0), ``step`` (×0.1 after 50 % and 75 % of the
    steps) or ``constant``. ``augmentation``: random translation (zero padding of 1/8 of the side,
    then a crop) and horizontal flip, drawn from ``seed``.
    """

    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    batch_size: int = 64
    augmentation: bool = True
    seed: int = 0
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "step", "constant"):
            raise ValueError(f"schedule must be cosine, step or constant, not {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be ≥ 1 and lr > 0")


@dataclass(frozen=True)
class ExpertTrainResult:
    """What fine-tuning produced.

    ``feature_extractor_state`` loads into the architecture that was passed in
    (``load_state_dict``); ``classifier_state`` into ``nn.Linear(feature_dim, num_classes)``.
    Tensors are on the CPU. Errors are measured after training in eval mode without augmentation.
    """

    feature_extractor_state: dict[str, torch.Tensor]
    classifier_state: dict[str, torch.Tensor]
    train_loss: list[float]  # mean training loss of every epoch (with augmentation, train mode)
    train_error: float
    val_error: float | None
    steps: int


class _Expert(nn.Module):
    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int, generator: torch.Generator):
        super().__init__()
        self.features = features
        self.classifier = nn.Linear(feature_dim, num_classes)
        with torch.no_grad():  # nn.Linear's default init, drawn from our generator
            nn.init.kaiming_uniform_(self.classifier.weight, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(feature_dim)
            self.classifier.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def learning_rate(config: ExpertTrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of optimisation step ``step`` (0-based) of ``total_steps``."""
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
    if config.schedule == "step":
        return config.lr * 0.1 ** ((step >= total_steps // 2) + (step >= (3 * total_steps) // 4))
    return config.lr


def train_expert(
    feature_extractor: nn.Module,
    feature_dim: int,
    num_classes: int,
    train_set: Dataset,
    *,
    config: ExpertTrainConfig,
    device: str | torch.device,
    val_set: Dataset | None = None,
    progress: Progress | None = None,
) -> ExpertTrainResult:
    """Fine-tune ``feature_extractor`` + a new linear classifier on ``train_set`` of ``(image, label)``.

    Args:
        feature_extractor: maps ``(B, C, H, W)`` to ``(B, feature_dim, ...)``; copied, not modified.
        feature_dim: width of its flattened output.
        num_classes: labels are 0..num_classes-1 (a task group uses its own label space).
        train_set, val_set: datasets of ``(image tensor, int label)``.
        config: optimisation settings.
        device: where to train.
        progress: optional per-epoch callback.
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)  # for modules that use the global RNG (dropout)
        model = _Expert(copy.deepcopy(feature_extractor), feature_dim, num_classes, generator).to(device)
        loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, generator=generator,
                            num_workers=config.num_workers, drop_last=False)
        total = config.epochs * len(loader)
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                              weight_decay=config.weight_decay)
        curve: list[float] = []
        step = 0
        for epoch in range(config.epochs):
            model.train()
            loss_sum, seen = 0.0, 0
            for images, labels in loader:
                for group in opt.param_groups:
                    group["lr"] = learning_rate(config, step, total)
                images, labels = images.to(device), labels.to(device)
                if config.augmentation:
                    images = augment(images, generator)
                loss = F.cross_entropy(model(images), labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(labels)
                seen += len(labels)
                step += 1
            curve.append(loss_sum / seen)
            if progress is not None:
                progress(epoch + 1, config.epochs, curve[-1])
        train_error = error_rate(model, train_set, device=device, batch_size=config.batch_size)
        val_error = None if val_set is None else error_rate(model, val_set, device=device,
                                                              batch_size=config.batch_size)
    return ExpertTrainResult(
        feature_extractor_state=_cpu_state(model.features),
        classifier_state=_cpu_state(model.classifier),
        train_loss=curve,
        train_error=train_error,
        val_error=val_error,
        steps=step,
    )


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random translation (zero padding of 1/8 of the side, then a crop back) and horizontal flip.

    Draws come from ``generator`` (a CPU generator), whatever the device of ``images``.
    """
    b, _, h, w = images.shape
    pad = max(1, h // 8)
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    flip = (torch.rand(b, generator=generator) < 0.5).tolist()
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    flip_idx = [i for i in range(b) if flip[i]]
    if flip_idx:
        out[flip_idx] = out[flip_idx].flip(-1)
    return out


def error_rate(model: nn.Module, dataset: Dataset, *, device: torch.device, batch_size: int = 256) -> float:
    """Top-1 error of ``model`` (eval mode, no augmentation; its mode is restored) on ``(image, label)`` items."""
    was_training = model.training
    model.eval()
    wrong = total = 0
    with torch.inference_mode():
        for images, labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            pred = model(images.to(device)).argmax(1).cpu()
            wrong += int((pred != labels).sum())
            total += len(labels)
    model.train(was_training)
    return wrong / total


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

