"""A small pretraining set for probes: the mini datasets' stand-in for ImageNet.

The Task2Vec probe is an ImageNet-pretrained network; a random-init probe gives embeddings that do
not follow the taxonomy (measured in BENCHMARKS.md). With no network access and no ImageNet on a
laptop, ``write_pretraining_set`` writes a generic glyph-recognition set from the same drawing
vocabulary as the mini iNat/CUB images, labelled by factors no task uses on its own:

- 63 classes = shape (9) x texture (7) (``hue_bins=1``; with ``hue_bins=k``, x k sectors of the
  colour wheel);
- each image draws its hue (uniformly, inside its sector), and a random backdrop (random colour,
  noise scale and amplitude): not the mini datasets' backdrops, and no image of any task.

Why colour is not a label by default: species of one mini order differ by hue, so a probe trained to
tell hues apart solves nearly every task with its generic features (optimal errors of 0.2 %) and
expert selection has nothing left to choose. Like ImageNet features on fine-grained species, a
shape-and-texture probe leaves room for experts fine-tuned on related tasks (benchmarks/science.py).

Layout (torchvision ``ImageFolder``)::

    <root>/<shape>-<texture>-hue<k>/<n>.jpg      plus <root>/pretraining_set.json (marker, written last)

``orchestrate pretrain-probe`` trains a probe on it (or on any image folder).
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np

from tasks.mini.images import SHAPES, TEXTURES, Backdrop, Glyph, draw_glyph, hsv, save_jpeg

__all__ = ["MARKER", "pretraining_classes", "write_pretraining_set"]

MARKER = "pretraining_set.json"


def pretraining_classes(hue_bins: int = 1) -> list[tuple[str, str, int]]:
    """(shape, texture, hue sector) of every class, in folder-name order."""
    return sorted(itertools.product(SHAPES, TEXTURES, range(hue_bins)))


def write_pretraining_set(root: Path, *, seed: int = 0, per_class: int = 60, hue_bins: int = 1) -> Path:
    """Write ``per_class`` images of each class (63 x ``hue_bins``) under ``root``; returns ``root``.

    A previous output of this function at ``root`` (found by its marker) is replaced; any other
    existing, non-empty folder is refused (FileExistsError). The files are a pure function of
    ``seed`` and ``per_class``.
    """
    if per_class < 1 or hue_bins < 1:
        raise ValueError(f"per_class and hue_bins must be positive integers, not {per_class} and {hue_bins}")
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).is_file():
            raise FileExistsError(f"{root} exists and was not written by write_pretraining_set (no {MARKER}); "
                                  "choose an empty folder or remove it")
        shutil.rmtree(root)
    rng = np.random.default_rng([seed, 99])  # its own stream: never the mini datasets' draws
    for shape, tex, hue_bin in pretraining_classes(hue_bins):
        for n in range(per_class):
            backdrop = Backdrop(tuple(float(c) for c in hsv(rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.9))),
                                cells=int(rng.integers(3, 21)), amp=float(rng.uniform(0.05, 0.2)))
            pixels, _ = draw_glyph(rng, backdrop, Glyph(shape, (hue_bin + rng.random()) / hue_bins, tex))
            save_jpeg(pixels, root / f"{shape}-{tex}-hue{hue_bin}" / f"{n:04d}.jpg")
    marker = {"generator": "tasks.mini.pretraining", "seed": seed, "per_class": per_class, "hue_bins": hue_bins,
              "classes": len(pretraining_classes(hue_bins))}
    (root / MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
    return root
