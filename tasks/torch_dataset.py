"""A torch ``Dataset`` over one task's split: (image tensor, local label) pairs read from disk."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from tasks.errors import TaskSweepInputError
from tasks.library import Library


class ImageReadError(TaskSweepInputError):
    """An image file listed in the library cannot be opened or decoded."""


class ImageFiles(Protocol):
    """Reads a dataset's files by path relative to its root: how images are read when the root is not a
    local folder (the orchestrator passes one over an ``s3://`` root). Must pickle (DataLoader workers)."""

    def read_bytes(self, relpath: str) -> bytes: ...


def load_rgb(root: str | Path, relpath: str, files: ImageFiles | None = None) -> Image.Image:
    """One image of a dataset as a PIL RGB image, from the local ``root`` or through ``files``.

    Raises:
        ImageReadError: naming the file, when it cannot be read or decoded.
    """
    where = f"{str(root).rstrip('/')}/{relpath}"
    try:
        source = io.BytesIO(files.read_bytes(relpath)) if files is not None else Path(root) / relpath
        with Image.open(source) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as exc:
        raise ImageReadError(
            f"{where}: cannot read image ({type(exc).__name__}: {exc}); "
            "re-download it or rebuild the library with verify_images='decode' to skip it"
        ) from exc


class TaskImageDataset(Dataset):
    """Images of one task split, with their local labels.

    Args:
        root: the dataset root the paths are relative to.
        paths: image paths relative to ``root``.
        targets: local labels, one per path.
        transform: maps a PIL RGB image to a tensor; the default converts to a float tensor in [0, 1].
        files: reads the images when ``root`` is not a local folder (e.g. ``s3://...``); None: local files.
    """

    def __init__(
        self,
        root: str | Path,
        paths: list[str],
        targets: np.ndarray,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        files: ImageFiles | None = None,
    ) -> None:
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} paths but {len(targets)} targets")
        self.root = root if files is not None else Path(root)
        self.files = files
        self.paths = paths
        self.targets = np.asarray(targets, dtype=np.int64)
        self.transform = transform or _to_tensor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(load_rgb(self.root, self.paths[i], self.files)), int(self.targets[i])


def task_dataset(
    library: Library,
    task_id: str,
    split: str,
    transform: Callable[[Image.Image], torch.Tensor] | None = None,
) -> TaskImageDataset:
    """The ``TaskImageDataset`` of one task's split (``train``, ``val`` or ``test``)."""
    task = library.task(task_id)
    paths, targets = library.examples(task_id, split)
    return TaskImageDataset(library.sources[task.source].root, paths, targets, transform)


def _to_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()  # (3, H, W)
