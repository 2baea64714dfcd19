"""Writes the mini iMaterialist Fashion 2018 dataset in the real on-disk layout (datasets.md section 3).

Layout under ``root``::

    train.json, validation.json   {"images": [{"url", "imageId"}], "annotations": [{"labelId": [...], "imageId"}]}
                                  camelCase keys, every id a string, imageIds "1".."N" per split
    train/<imageId>.jpg, validation/<imageId>.jpg

12 real label ids of the official 228-label map, each tied to something visible:
- category (exactly one per image) -> silhouette: 62 Dresses, 92 Jeans, 165 Shorts, 170 Skirts, 190 T-Shirts;
- color (dominant colour; 30 % of images have an unlabelled grey, purple, green or brown instead)
  -> fill colour: 17 Black, 19 Blue, 148 Red, 226 Yellow;
- pattern (45 % of images) -> print: 42 Checkered, 135 Polka Dot, 181 Stripes. Half the prints are in
  a second labelled colour, which then also gets its color label (a multi-colour garment).
So an image carries 1-4 labels, and every label has positives and negatives in both splits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tasks.mini.garments import WHITE, Garment, render_garment
from tasks.mini.images import hsv, save_jpeg

SPLITS = {"train": 240, "validation": 60}
CATEGORIES = {"62": "dress", "92": "jeans", "165": "shorts", "170": "skirt", "190": "tee"}
COLORS = {"17": (0.0, 0.0, 0.1), "19": (0.62, 0.75, 0.8), "148": (0.0, 0.8, 0.8), "226": (0.15, 0.8, 0.95)}  # hsv
UNLABELLED_COLORS = ((0.0, 0.0, 0.55), (0.8, 0.55, 0.6), (0.36, 0.6, 0.55), (0.08, 0.6, 0.45))
PATTERNS = {"42": "checks", "135": "dots", "181": "stripes"}
LABEL_NAMES = {"62": "Dresses", "92": "Jeans", "165": "Shorts", "170": "Skirts", "190": "T-Shirts",
               "17": "Black", "19": "Blue", "148": "Red", "226": "Yellow",
               "42": "Checkered", "135": "Polka Dot", "181": "Stripes"}  # names as in the official map


def _color(h_s_v: tuple[float, float, float], rng: np.random.Generator) -> tuple[float, float, float]:
    h, s, v = h_s_v
    return tuple(float(c) for c in hsv(h + rng.normal(0, 0.01), s, v + rng.normal(0, 0.04)))


def sample_item(rng: np.random.Generator, category: str) -> tuple[Garment, list[str]]:
    """A garment of the given category label and its label ids (1-4 of them)."""
    labels = [category]
    if rng.random() < 0.7:
        color_id = str(rng.choice(list(COLORS)))
        labels.append(color_id)
        color = _color(COLORS[color_id], rng)
    else:
        color_id, color = "", _color(UNLABELLED_COLORS[rng.integers(len(UNLABELLED_COLORS))], rng)
    pattern, pattern_color = "plain", WHITE
    if rng.random() < 0.45:
        pattern_id = str(rng.choice(list(PATTERNS)))
        labels.append(pattern_id)
        pattern = PATTERNS[pattern_id]
        second = str(rng.choice([c for c in COLORS if c != color_id]))
        if rng.random() < 0.5:
            labels.append(second)
            pattern_color = _color(COLORS[second], rng)
    kind = CATEGORIES[category]
    garment = Garment(
        kind, color, pattern=pattern, pattern_color=pattern_color,
        length=str(rng.choice(["regular", "mini", "maxi"])) if kind in ("skirt", "dress") else "regular",
        flare=bool(rng.random() < 0.4) and kind in ("skirt", "dress"),
        sleeves=str(rng.choice(["none", "short", "long"])) if kind == "dress" else "short",
        vneck=bool(rng.random() < 0.3), pockets=bool(rng.random() < 0.3),
    )
    return garment, [labels[i] for i in rng.permutation(len(labels))]  # the real lists are unordered


def write(root: Path, rng: np.random.Generator, *, scale: int = 1) -> Path:
    """Write the dataset under ``root`` (created); returns ``root``. ``scale`` multiplies every image count."""
    for split, n in SPLITS.items():
        n *= scale
        categories = np.resize(list(CATEGORIES), n)[rng.permutation(n)]  # balanced categories
        images, annotations = [], []
        for i, category in enumerate(categories, start=1):
            garment, labels = sample_item(rng, str(category))
            pixels, _ = render_garment(rng, garment)
            save_jpeg(pixels, root / split / f"{i}.jpg")
            images.append({"url": f"https://contestimg.wish.com/api/webimage/{rng.bytes(12).hex()}-large",
                           "imageId": str(i)})
            annotations.append({"labelId": labels, "imageId": str(i)})
        _check_balance(split, annotations)
        manifest = {"images": images, "annotations": annotations}
        (root / f"{split}.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def _check_balance(split: str, annotations: list[dict]) -> None:
    counts = {label: sum(label in a["labelId"] for a in annotations) for label in LABEL_NAMES}
    bad = {label: c for label, c in counts.items() if c in (0, len(annotations))}
    if bad:  # cannot happen at these sizes and rates; guards against edits to the rates above
        raise RuntimeError(f"mini iMat {split}: labels without positives or negatives: {bad}")
