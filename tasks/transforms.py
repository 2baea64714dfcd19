"""The one input pipeline: every image the sweep, ``embed``, ``recommend`` and ``pretrain-probe`` feed a network.

Two steps, so that a decoded-image cache can store the output of the first and replay the second:

(a) ``decode``: a PIL image (or a file) -> ``uint8`` tensor ``(3, H, W)`` whose short side is
    ``decoded_side(image_size)`` (256 for 224 px, the ImageNet ratio), bilinear with antialiasing
    (torchvision's ``Resize`` on PIL images). Deterministic: this is what a cache stores.
(b) on decoded ``uint8`` tensors, single or batched, on any device:
    ``random_crops`` (an ``image_size`` square at a random position, flipped horizontally with
    probability 1/2: the Task2Vec input) or ``center_crops`` (the evaluation input: features,
    linear heads, fine-tuning, whose loop adds its own augmentation), then ``normalize`` (float32
    in [0, 1], ImageNet mean and standard deviation).

Random draws come from a ``torch.Generator`` (or torch's global RNG when none is given, as
torchvision's transforms do), three per image in image order: top, left, flip. Cropping one image
at a time or a whole batch at once, from a JPEG or from its cached decode, on the CPU or a GPU,
gives the same tensor for the same draws.

``TrainTransform`` / ``EvalTransform`` chain (a) and (b) per item (a ``Dataset``'s transform):
they take a PIL image (the raw path) or an already decoded ``uint8`` tensor (the cached path).

``ReferenceTrainTransform`` is the one exception, kept for comparisons with the reference Task2Vec
(awslabs/aws-cv-task2vec): its training transform, torchvision's ``RandomResizedCrop`` of the
original image, flip and ImageNet normalisation. It cannot replay from the decoded cache (the crop
box is drawn on the original image), so the sweep never uses it; ``embed`` with ``--reference`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "EvalTransform", "ReferenceTrainTransform", "TrainTransform", "center_crops",
    "decode", "decoded_side", "normalize", "random_crops",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageSource = Image.Image | str | Path | bytes | BinaryIO
Images = Sequence[torch.Tensor] | torch.Tensor  # (3, H, W) uint8 tensors, or one (B, 3, H, W) batch


def decoded_side(image_size: int) -> int:
    """The short side images are decoded to for crops of ``image_size`` (256 for 224: ImageNet's ratio)."""
    return round(image_size * 256 / 224)


def decode(source: ImageSource, image_size: int) -> torch.Tensor:
    """Step (a): RGB ``uint8`` ``(3, H, W)``, short side ``decoded_side(image_size)``, aspect ratio kept."""
    if isinstance(source, Image.Image):
        return _resized(source.convert("RGB"), decoded_side(image_size))
    if isinstance(source, bytes):
        import io

        source = io.BytesIO(source)
    with Image.open(source) as im:
        return _resized(im.convert("RGB"), decoded_side(image_size))


def _resized(image: Image.Image, short: int) -> torch.Tensor:
    w, h = image.size
    if min(w, h) != short:  # the long side as torchvision's Resize(int) computes it
        size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        image = image.resize(size, Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def random_crops(images: Images, image_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Step (b), Task2Vec's input: an ``image_size`` square at a random position, flipped with p = 1/2.

    Returns a ``(B, 3, image_size, image_size)`` tensor of the inputs' dtype and device. Draws
    (top, left, flip per image, in order) come from ``generator`` (a CPU generator) or the global RNG.
    """
    out = []
    for image in images:
        h, w = _check_fits(image, image_size)
        top = int(torch.randint(0, h - image_size + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - image_size + 1, (1,), generator=generator))
        crop = image[:, top:top + image_size, left:left + image_size]
        out.append(crop.flip(-1) if bool(torch.rand(1, generator=generator) < 0.5) else crop)
    return torch.stack(out)


def center_crops(images: Images, image_size: int) -> torch.Tensor:
    """Step (b), the evaluation input: the central ``image_size`` square of each image (no randomness)."""
    out = []
    for image in images:
        h, w = _check_fits(image, image_size)
        top, left = int(round((h - image_size) / 2.0)), int(round((w - image_size) / 2.0))
        out.append(image[:, top:top + image_size, left:left + image_size])
    return torch.stack(out)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` images (any leading shape, channels third from last) -> float32, ImageNet-normalised."""
    shape = (3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(shape)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(shape)
    return images.float().div_(255).sub_(mean).div_(std)


def _check_fits(image: torch.Tensor, image_size: int) -> tuple[int, int]:
    h, w = image.shape[-2:]
    if h < image_size or w < image_size:
        raise ValueError(f"a decoded image of {h}x{w} px is smaller than the {image_size} px crop: decode with "
                         f"image_size={image_size} (short side {decoded_side(image_size)})")
    return h, w


class _PerItem:
    """Per item: (a) if given a PIL image, then the crop and ``normalize`` -> float32 ``(3, s, s)``."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        decoded = image if isinstance(image, torch.Tensor) else decode(image, self.image_size)
        return normalize(self.crop([decoded])[0])

    def crop(self, images: Images) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_size={self.image_size})"


class TrainTransform(_PerItem):
    """Task2Vec's input per item: ``random_crops`` from torch's global RNG (DataLoader workers seed theirs),
    like torchvision's transforms."""

    def crop(self, images: Images) -> torch.Tensor:
        return random_crops(images, self.image_size)


class EvalTransform(_PerItem):
    """The evaluation input per item: ``center_crops``."""

    def crop(self, images: Images) -> torch.Tensor:
        return center_crops(images, self.image_size)


class ReferenceTrainTransform:
    """The reference Task2Vec's training transform per PIL image: ``RandomResizedCrop(image_size)``
    (scale 0.08-1, ratio 3/4-4/3, bilinear), a horizontal flip with p = 1/2, ImageNet normalisation.
    Draws come from torch's global RNG, as in torchvision."""

    def __init__(self, image_size: int) -> None:
        from torchvision import transforms as T

        self.image_size = image_size
        self.transform = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            raise TypeError("ReferenceTrainTransform crops the original image; it cannot take a decoded cache entry")
        return self.transform(image.convert("RGB"))

    def __repr__(self) -> str:
        return f"ReferenceTrainTransform(image_size={self.image_size})"
