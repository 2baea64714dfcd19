"""One forward pass of a frozen network over a dataset, features returned as one tensor.

This is the expensive step of the heads stage: it runs once per (expert, image group) and every
linear head of every task on those images trains on its output (experts/heads.py). Nothing is
cached on the module and the module is left as it was found (same device, same train/eval mode).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.utils.data import Dataset

from experts.loader import LoaderSettings, make_loader

from experts.precision import autocast

#: ``progress(done_images, total_images)``, called after every batch.
Progress = Callable[[int, int], None]


def extract_features(
    model: nn.Module,
    dataset: Dataset,
    *,
    device: str | torch.device,
    batch_size: int = 256,
    num_workers: int = 0,
    precision: str = "fp32",
    channels_last: bool = False,
    progress: Progress | None = None,
) -> torch.Tensor:
    """The model's output for every image of ``dataset``, in dataset order, flattened per image.

    Args:
        model: any module mapping ``(B, C, H, W)`` images to ``(B, ...)`` features (a backbone without
            its classifier). It must already be on ``device``; it runs in eval mode (batch norm uses
            its running statistics) under ``torch.inference_mode`` and its mode is restored after.
        dataset: items are images or ``(image, label, ...)`` tuples; labels are ignored.
        device: where the forward pass runs.
        batch_size, num_workers: of the DataLoader (no shuffling).
        precision: ``fp32``, ``bf16`` or ``fp16`` autocast of the forward pass (``experts.precision``),
            on whatever device it runs; features come back as float32 either way.
        channels_last: feed NHWC inputs (faster convolutions on tensor cores); the module's own
            parameters are not converted (convert them with ``model.to(memory_format=...)``).
        progress: optional callback.

    Returns:
        ``(N, D)`` float32 on the CPU.
    """
    device = torch.device(device)
    _check_on_device(model, device)
    cuda = device.type == "cuda"
    loader = make_loader(dataset, LoaderSettings(workers=num_workers, pin_memory=cuda), batch_size=batch_size,
                         shuffle=False, collate_fn=_images_only)
    total = len(dataset)  # type: ignore[arg-type]
    out: torch.Tensor | None = None
    done = 0
    with _eval_mode(model), torch.inference_mode():
        for images in loader:
            images = images.to(device, non_blocking=True)
            if channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                feats = model(images).flatten(1).float()
            if out is None:  # (N, D) allocated once the width is known
                out = torch.empty(total, feats.shape[1], dtype=torch.float32)
            out[done:done + len(feats)] = feats.cpu()
            done += len(feats)
            if progress is not None:
                progress(done, total)
    if out is None:
        raise ValueError("extract_features got an empty dataset")
    return out


def _images_only(items: list) -> torch.Tensor:
    first = items[0]
    if isinstance(first, (tuple, list)):
        return torch.stack([item[0] for item in items])
    return torch.stack(items)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.train(training)


def _check_on_device(model: nn.Module, device: torch.device) -> None:
    for p in model.parameters():
        if p.device.type != device.type or (device.index is not None and p.device.index != device.index):
            raise ValueError(f"the model's parameters are on {p.device}, not {device}: move it with model.to(device) first")
        return
