"""The one place DataLoaders are built: worker processes, pinned memory and prefetch from ``LoaderSettings``.

The sweep sizes the settings from the worker's CPUs (``SweepContext.loader``: ``runtime.cpus_per_worker``
- 1 processes unless ``input.loader_workers`` says otherwise); pinned memory when the model is on CUDA.
With processes, the loader keeps them across the epochs of one loader (``persistent_workers``) and each
prepares ``prefetch_batches`` batches ahead. Random transforms inside loader processes draw from the
per-process seeds DataLoader derives from ``generator``, so a run stays reproducible for a fixed
number of processes (a different number gives different, equally valid random crops).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


@dataclass(frozen=True)
class LoaderSettings:
    """How batches are loaded. The default (no processes) loads in the calling process."""

    workers: int = 0
    pin_memory: bool = False
    prefetch_batches: int = 4


def make_loader(dataset: Dataset, settings: LoaderSettings | None = None, *,
                generator: torch.Generator | None = None, **kwargs: Any) -> DataLoader:
    """A ``DataLoader`` over ``dataset``; ``kwargs`` are DataLoader's own (batch_size, shuffle, batch_sampler...)."""
    settings = settings or LoaderSettings()
    extra: dict[str, Any] = {}
    if settings.workers > 0:
        extra = {"persistent_workers": True, "prefetch_factor": settings.prefetch_batches}
    return DataLoader(dataset, num_workers=settings.workers, pin_memory=settings.pin_memory,
                      generator=generator, **extra, **kwargs)
