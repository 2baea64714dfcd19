"""The decoded-image cache: images decoded once (``tasks.transforms.decode``: a fixed short side, uint8),
stored in shards; the crops and normalisation (``tasks.transforms``) run on the decoded tensors.

Pure: encoding and decoding one image, and random access to the images of written shards. Writing the
shards (a stage of work units) and finding them in the result store is the orchestrator's job
(``orchestrator/stages/image_cache.py``); it hands this module a ``ShardOpener``.

A shard is one Parquet file (``SHARD_COLUMNS``): one row per image, ``data`` holding the image either
re-encoded as a JPEG (``encoding="jpeg"``, quality 95, 4:4:4 by default) or as raw ``uint8`` CHW bytes
(``encoding="raw"``, ~4x larger, no decoding at all). Each image is its own row group, so that reading
one image reads (from a memory-mapped local file) that image only; a small LRU per process serves
repeats.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import Dataset

ENCODINGS = ("jpeg", "raw")
# One image per row group: a shuffled pass reads each image alone (with 32 per group, a pass over more
# images than the LRU holds read ~32x the bytes it used: 4.3x today's rate instead of 7x, measured).
ROW_GROUP_ROWS = 1
SHARD_COLUMNS = ("image_index", "height", "width", "data")

# Opens a shard by its name (what ``ImageCacheIndex.shards`` holds): a local path or a seekable binary file.
ShardOpener = Callable[[str], str | BinaryIO | pa.NativeFile]


def encode_image(image: torch.Tensor, encoding: str, *, quality: int = 95) -> bytes:
    """The cache's bytes of one (3, H, W) uint8 image (``tasks.transforms.decode``'s output)."""
    if encoding == "raw":  # CHW as decode made it: reading back is a view, no transposition
        return image.contiguous().numpy().tobytes()
    pixels = np.ascontiguousarray(image.permute(1, 2, 0).numpy(), dtype=np.uint8)  # (H, W, 3)
    if encoding == "jpeg":
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG", quality=quality, subsampling=0 if quality >= 90 else 2)
        return out.getvalue()
    raise ValueError(f"unknown image cache encoding {encoding!r}; use one of {ENCODINGS}")


def decode_image(data: bytes, encoding: str, height: int, width: int) -> torch.Tensor:
    """The (3, H, W) uint8 tensor of one cached image, as ``tasks.transforms.decode`` made it (up to JPEG loss)."""
    if encoding == "raw":
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(3, height, width)
    if encoding == "jpeg":  # PIL (libjpeg-turbo); torchvision.io's decoder is deprecated since 0.29
        with Image.open(io.BytesIO(data)) as im:
            array = np.array(im if im.mode == "RGB" else im.convert("RGB"))
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()
    raise ValueError(f"unknown image cache encoding {encoding!r}; use one of {ENCODINGS}")


def shard_table(image_indices: np.ndarray, images: list[torch.Tensor], encoding: str, *, quality: int = 95) -> pa.Table:
    """One shard's rows (``SHARD_COLUMNS``) from (3, H, W) uint8 images, in ``image_indices`` order."""
    return pa.table({
        "image_index": pa.array(np.asarray(image_indices, dtype=np.int32)),
        "height": pa.array([im.shape[1] for im in images], pa.int16()),
        "width": pa.array([im.shape[2] for im in images], pa.int16()),
        "data": pa.array([encode_image(im, encoding, quality=quality) for im in images], pa.binary()),
    })


def write_shard(table: pa.Table, sink: Any) -> None:
    """Parquet with small, uncompressed row groups (JPEG bytes do not compress; random access reads one group)."""
    pq.write_table(table, sink, row_group_size=ROW_GROUP_ROWS, compression="NONE", use_dictionary=False)


@dataclass
class ImageCacheIndex:
    """Where each cached image of one source is: shard name and row, by ``image_index``."""

    encoding: str
    shards: list[str]  # shard names, as the opener takes them
    image_index: np.ndarray  # (N,) sorted
    shard: np.ndarray  # (N,) position in ``shards``
    row: np.ndarray  # (N,) row in its shard

    @classmethod
    def from_rows(cls, encoding: str, image_index: np.ndarray, shard_names: list[str],
                  rows: np.ndarray) -> "ImageCacheIndex":
        names, shard = np.unique(np.asarray(shard_names, dtype=object), return_inverse=True)
        order = np.argsort(image_index, kind="stable")
        return cls(encoding, [str(n) for n in names], np.asarray(image_index)[order], shard[order],
                   np.asarray(rows)[order])

    def missing(self, image_indices: np.ndarray) -> np.ndarray:
        """The requested indices that no shard holds."""
        return np.setdiff1d(np.asarray(image_indices), self.image_index)

    def locate(self, image_index: int) -> tuple[int, int]:
        pos = int(np.searchsorted(self.image_index, image_index))
        if pos >= len(self.image_index) or self.image_index[pos] != image_index:
            raise KeyError(f"image {image_index} is not in the image cache")
        return int(self.shard[pos]), int(self.row[pos])


@dataclass
class ImageCacheReader:
    """Random access to cached images; safe to pickle into DataLoader workers (handles reopen lazily)."""

    index: ImageCacheIndex
    opener: ShardOpener
    max_groups: int = 8  # row groups (images) kept per process
    _files: dict[int, pq.ParquetFile] = field(default_factory=dict, repr=False)
    _groups: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": {}, "_groups": OrderedDict()}

    def image(self, image_index: int) -> torch.Tensor:
        """The (3, H, W) uint8 tensor of one image."""
        shard, row = self.index.locate(image_index)
        group, offset = divmod(row, ROW_GROUP_ROWS)
        table = self._group(shard, group)
        return decode_image(table["data"][offset].as_py(), self.index.encoding,
                            table["height"][offset].as_py(), table["width"][offset].as_py())

    def _group(self, shard: int, group: int) -> pa.Table:
        key = (shard, group)
        if key in self._groups:
            self._groups.move_to_end(key)
            return self._groups[key]
        if shard not in self._files:
            source = self.opener(self.index.shards[shard])  # a local path is memory-mapped: the page cache serves it
            self._files[shard] = pq.ParquetFile(source, memory_map=isinstance(source, str))
        table = self._files[shard].read_row_group(group, columns=["height", "width", "data"])
        self._groups[key] = table
        while len(self._groups) > self.max_groups:
            self._groups.popitem(last=False)
        return table


class CachedImageDataset(Dataset):
    """Images of one split from the cache, with their labels: (transform(uint8 CHW tensor), label).

    Args:
        reader: the source's ``ImageCacheReader``.
        image_indices: ``image_index`` of each example.
        targets: local labels, one per example.
        transform: maps a (3, H, W) uint8 tensor to the model's input (``tasks.transforms.TrainTransform`` /
            ``EvalTransform``: crop, flip, normalise).
    """

    def __init__(self, reader: ImageCacheReader, image_indices: np.ndarray, targets: np.ndarray,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if len(image_indices) != len(targets):
            raise ValueError(f"{len(image_indices)} images but {len(targets)} targets")
        self.reader = reader
        self.image_indices = np.asarray(image_indices, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.image_indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.reader.image(int(self.image_indices[i]))
        return (self.transform(image) if self.transform else image), int(self.targets[i])
