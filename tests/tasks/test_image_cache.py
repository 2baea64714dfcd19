"""The decoded-image cache's format: encode/decode, shards read back at random, equality with the raw path."""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from tasks.image_cache import (
    ROW_GROUP_ROWS,
    CachedImageDataset,
    ImageCacheIndex,
    ImageCacheReader,
    decode_image,
    encode_image,
    shard_table,
    write_shard,
)
from tasks.torch_dataset import ImageReadError, TaskImageDataset, load_rgb
from tasks.transforms import EvalTransform, TrainTransform, decode


def _photo(rng: np.random.Generator, h: int = 60, w: int = 80) -> np.ndarray:
    """A smooth colour image (JPEG-friendly, like a photo) with some texture, (H, W, 3) uint8."""
    base = Image.fromarray(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    return np.clip(np.asarray(base, dtype=np.int16) + rng.integers(-8, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).contiguous()


def test_raw_encoding_is_lossless_and_jpeg_close() -> None:
    image = _chw(_photo(np.random.default_rng(0)))
    raw = decode_image(encode_image(image, "raw"), "raw", *image.shape[1:])
    assert raw.dtype == torch.uint8 and raw.shape == (3, 60, 80)
    assert torch.equal(raw, image)
    jpeg = decode_image(encode_image(image, "jpeg", quality=95), "jpeg", *image.shape[1:])
    assert jpeg.shape == raw.shape
    assert (jpeg.float() - raw.float()).abs().mean() < 3.0  # quality 95, 4:4:4: a few levels at most
    with pytest.raises(ValueError, match="unknown image cache encoding"):
        encode_image(image, "png")


def _write_shards(tmp_path: Path, images: dict[int, torch.Tensor], per_shard: int, encoding: str) -> ImageCacheIndex:
    indices = sorted(images)
    names, rows, order = [], [], []
    for s, start in enumerate(range(0, len(indices), per_shard)):
        chunk = indices[start : start + per_shard]
        name = f"shard-{s}.parquet"
        write_shard(shard_table(np.array(chunk), [images[i] for i in chunk], encoding), str(tmp_path / name))
        names += [name] * len(chunk)
        rows += list(range(len(chunk)))
        order += chunk
    return ImageCacheIndex.from_rows(encoding, np.array(order), names, np.array(rows))


def test_reader_returns_every_image_at_random_across_shards_and_row_groups(tmp_path) -> None:
    rng = np.random.default_rng(1)
    # sparse image indices (a cache holds only the images the run's tasks use), sizes vary
    n = max(40, 3 * ROW_GROUP_ROWS + 5)
    images = {int(i): _chw(_photo(rng, 40 + int(i) % 7, 50)) for i in rng.choice(1000, size=n, replace=False)}
    index = _write_shards(tmp_path, images, per_shard=max(16, 2 * ROW_GROUP_ROWS), encoding="raw")
    reader = ImageCacheReader(index, lambda name: str(tmp_path / name), max_groups=2)
    for i in rng.permutation(list(images)):
        assert torch.equal(reader.image(int(i)), images[int(i)]), i
    assert len(reader._groups) <= 2
    missing = max(images) + 1
    assert list(index.missing(np.array([missing, *list(images)[:3]]))) == [missing]
    with pytest.raises(KeyError, match=f"image {missing} is not in the image cache"):
        reader.image(missing)


def test_cached_dataset_matches_the_raw_path_and_pickles(tmp_path) -> None:
    """Decode once and crop later (the cache) == decode + crop on each read: the same draws, the same tensors
    (raw encoding: exactly)."""
    import pickle

    rng = np.random.default_rng(2)
    root = tmp_path / "data"
    root.mkdir()
    paths = []
    for i in range(5):
        Image.fromarray(_photo(rng, 90, 120)).save(root / f"{i}.jpg", quality=90)
        paths.append(f"{i}.jpg")
    size = 32
    index = _write_shards(tmp_path, {i: decode(load_rgb(root, p), size) for i, p in enumerate(paths)}, 3, "raw")
    reader = ImageCacheReader(index, functools.partial(os.path.join, str(tmp_path)))
    targets = np.arange(5) % 2
    for transform in (EvalTransform(size), TrainTransform(size)):
        fast = CachedImageDataset(pickle.loads(pickle.dumps(reader)), np.arange(5), targets, transform)
        slow = TaskImageDataset(root, paths, targets, transform)
        for i in range(5):
            torch.manual_seed(i)  # the same random crop and flip on both paths
            a, ya = fast[i]
            torch.manual_seed(i)
            b, yb = slow[i]
            assert ya == yb and a.shape == b.shape == (3, size, size)
            assert torch.equal(a, b), (transform, i)


def test_load_rgb_reads_through_a_files_object_and_names_bad_files(tmp_path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_photo(np.random.default_rng(3))).save(buffer, format="JPEG")

    class Files:
        def read_bytes(self, relpath: str) -> bytes:
            return buffer.getvalue() if relpath == "good.jpg" else b"not an image"

    assert load_rgb("s3://bucket/data", "good.jpg", Files()).size == (80, 60)
    with pytest.raises(ImageReadError, match="s3://bucket/data/bad.jpg: cannot read image"):
        load_rgb("s3://bucket/data", "bad.jpg", Files())
