"""The one input pipeline: decode once (a), then crop, flip and normalise decoded tensors (b)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as tv

from tasks.transforms import (
    IMAGENET_MEAN, IMAGENET_STD, EvalTransform, ReferenceTrainTransform, TrainTransform, center_crops, decode,
    decoded_side, normalize, random_crops,
)


def _jpeg(tmp_path: Path, w: int = 80, h: int = 60, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    path = tmp_path / f"{seed}.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return path


def test_decode_resizes_the_short_side_and_keeps_the_aspect_ratio(tmp_path: Path) -> None:
    path = _jpeg(tmp_path, w=80, h=60)
    assert decoded_side(224) == 256 and decoded_side(32) == 37
    x = decode(path, 32)
    assert x.dtype == torch.uint8 and x.shape == (3, 37, 49)  # 80 * 37 / 60 = 49.3
    assert torch.equal(decode(path.read_bytes(), 32), x) and torch.equal(decode(Image.open(path), 32), x)
    # the same pixels as torchvision's Resize on the PIL image
    ref = tv.PILToTensor()(tv.Resize(37)(Image.open(path).convert("RGB")))
    assert torch.equal(ref, x)
    portrait = decode(Image.new("L", (30, 90)), 16)  # greyscale -> RGB
    assert portrait.shape == (3, 54, 18)


def test_raw_and_decoded_inputs_give_the_same_tensors(tmp_path: Path) -> None:
    image = Image.open(_jpeg(tmp_path))
    cached = decode(image, 32)
    for transform in (TrainTransform(32), EvalTransform(32)):
        torch.manual_seed(5)
        raw = transform(image)
        torch.manual_seed(5)
        assert torch.equal(transform(cached), raw) and raw.shape == (3, 32, 32) and raw.dtype == torch.float32


def test_batched_crops_equal_one_at_a_time_for_the_same_generator(tmp_path: Path) -> None:
    images = [decode(Image.open(_jpeg(tmp_path, w=70 + 9 * i, h=60, seed=i)), 32) for i in range(6)]
    batch = random_crops(images, 32, torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(1)
    singles = torch.cat([random_crops([im], 32, gen) for im in images])
    assert torch.equal(batch, singles) and batch.dtype == torch.uint8
    flipped = [not torch.equal(random_crops([images[0]], 32, torch.Generator().manual_seed(s)),
                               random_crops([images[0]], 32, torch.Generator().manual_seed(0))) for s in range(1, 20)]
    assert any(flipped)  # draws differ with the seed
    # a stacked batch of equal-size images crops like the list
    same = torch.stack([images[0]] * 3)
    assert torch.equal(random_crops(same, 32, torch.Generator().manual_seed(2)),
                       random_crops(list(same), 32, torch.Generator().manual_seed(2)))


def test_random_crops_flip_half_the_time_and_cover_the_image() -> None:
    image = torch.arange(40 * 50, dtype=torch.int64).view(1, 40, 50).expand(3, 40, 50)
    crops = random_crops(torch.stack([image] * 400), 32, torch.Generator().manual_seed(0))
    first, last = crops[:, 0, 0, 0], crops[:, 0, 0, -1]
    flips = (first > last).float().mean().item()
    assert 0.4 < flips < 0.6
    lefts = torch.minimum(first, last) % 50
    tops = torch.minimum(first, last) // 50
    assert set(lefts.tolist()) == set(range(19)) and set(tops.tolist()) == set(range(9))


def test_center_crop_and_normalize_match_torchvision(tmp_path: Path) -> None:
    image = Image.open(_jpeg(tmp_path, w=90, h=64)).convert("RGB")
    ours = EvalTransform(32)(image)
    ref = tv.Compose([tv.Resize(37), tv.CenterCrop(32), tv.ToTensor(), tv.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(image)
    assert torch.allclose(ours, ref, atol=1e-6)
    decoded = decode(image, 32)
    assert torch.equal(center_crops(decoded[None], 32), center_crops([decoded], 32))
    white = normalize(torch.full((2, 3, 4, 4), 255, dtype=torch.uint8))
    assert torch.allclose(white[0, :, 0, 0], (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD))


def test_an_image_smaller_than_the_crop_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"20x30 px is smaller than the 32 px crop: decode with image_size=32"):
        random_crops([torch.zeros(3, 20, 30, dtype=torch.uint8)], 32)


def test_transforms_survive_pickling_for_dataloader_workers() -> None:
    import pickle

    t = pickle.loads(pickle.dumps(TrainTransform(24)))
    assert t.image_size == 24 and repr(t) == "TrainTransform(image_size=24)"


def test_reference_transform_is_torchvisions_random_resized_crop_and_refuses_cached_tensors(tmp_path: Path) -> None:
    image = Image.open(_jpeg(tmp_path, w=90, h=70))
    ref = tv.Compose([tv.RandomResizedCrop(32), tv.RandomHorizontalFlip(), tv.ToTensor(),
                      tv.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    torch.manual_seed(3)
    expected = ref(image.convert("RGB"))
    torch.manual_seed(3)
    got = ReferenceTrainTransform(32)(image)
    assert got.shape == (3, 32, 32) and torch.equal(got, expected)
    torch.manual_seed(3)
    assert not torch.equal(TrainTransform(32)(image), got)  # the sweep's crop is another augmentation
    with pytest.raises(TypeError, match="original image"):
        ReferenceTrainTransform(32)(decode(image, 32))
