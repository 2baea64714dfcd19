"""Writes the mini CUB-200-2011 dataset in the real on-disk layout (docs: datasets.md section 2).

Layout under ``root``::

    CUB_200_2011/images.txt, classes.txt, image_class_labels.txt, train_test_split.txt,
                 bounding_boxes.txt
    CUB_200_2011/images/<NNN.Class_Name>/<Class_Name>_<kkkk>_<n>.jpg

30 of the 200 real classes, with their real ids and names, taken from the shipped taxonomy
(``tasks/data/cub200_taxonomy.tsv``). Class ids are therefore not contiguous; image ids are 1..N.
The subset is chosen so that the task rules find
- 4 order tasks (orders other than Passeriformes with >= 3 species): Procellariiformes (4, two
  families), Charadriiformes (4, two families), Piciformes (3), Anseriformes (3); Pelecaniformes (2)
  and Gaviiformes (1) are too small;
- 5 Passeriformes family tasks (families with >= 2 species): Icteridae (3), Cardinalidae (3),
  Corvidae (2), Parulidae (2), Hirundinidae (2); Sittidae (1) is too small.
Every class has 6 training and 3 test images.
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np

from tasks.mini.images import Backdrop, Glyph, draw_glyph, mask_bbox, save_jpeg, spread_hues

CLASS_IDS = (1, 2, 3, 45, 5, 6, 59, 60, 187, 188, 189, 46, 87, 89, 100, 101, 86,  # non-passerines
             9, 10, 11, 14, 15, 17, 29, 30, 158, 159, 135, 136, 94)  # Passeriformes
N_TRAIN, N_TEST = 6, 3
SHAPE_OF_ORDER = {
    "Passeriformes": "circle", "Procellariiformes": "triangle", "Charadriiformes": "bowtie",
    "Piciformes": "square", "Anseriformes": "ellipse", "Pelecaniformes": "cross", "Gaviiformes": "star",
}
TEXTURE_OF_FAMILY = {
    "Diomedeidae": "plain", "Procellariidae": "stripes", "Alcidae": "plain", "Laridae": "checks",
    "Picidae": "dots", "Anatidae": "plain", "Pelecanidae": "stripes", "Gaviidae": "plain",
    "Icteridae": "plain", "Cardinalidae": "stripes", "Corvidae": "checks", "Parulidae": "dots",
    "Hirundinidae": "rings", "Sittidae": "zigzag",
}
# Birds of every order are seen against sky or reeds; which one is per-image noise, not a class cue.
BACKDROPS = (Backdrop((0.62, 0.74, 0.88), cells=3, amp=0.10), Backdrop((0.55, 0.58, 0.40), cells=10, amp=0.16))


def taxonomy() -> dict[int, tuple[str, str, str]]:
    """class id -> (species, family, order) from the shipped TSV (class_id, species, family, order)."""
    text = resources.files("tasks").joinpath("data/cub200_taxonomy.tsv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    return {int(r["class_id"]): (r["species"], r["family"], r["order"]) for r in rows}


def glyphs(classes: dict[int, tuple[str, str, str]]) -> dict[int, Glyph]:
    """Class id -> glyph: order -> shape, family -> texture, species -> hue spread within the family."""
    out: dict[int, Glyph] = {}
    families = list(dict.fromkeys(fam for _, fam, _ in classes.values()))
    for fi, fam in enumerate(families):
        members = [cid for cid, (_, f, _) in classes.items() if f == fam]
        for cid, hue in zip(members, spread_hues(len(members), start=0.23 * fi, span=0.75)):
            out[cid] = Glyph(SHAPE_OF_ORDER[classes[cid][2]], hue, TEXTURE_OF_FAMILY[fam])
    return out


def _lines(path: Path, rows: list[str]) -> None:
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")


def write(root: Path, rng: np.random.Generator, *, scale: int = 1) -> Path:
    """Write the dataset under ``root`` (it gets ``CUB_200_2011/``); returns ``root``. ``scale`` multiplies
    the images per class."""
    tax = taxonomy()
    classes = {cid: tax[cid] for cid in CLASS_IDS}
    looks = glyphs(classes)
    base = root / "CUB_200_2011"
    images, labels, split, boxes = [], [], [], []
    for cid in sorted(classes):
        species = classes[cid][0]
        is_train = rng.permutation([1] * N_TRAIN * scale + [0] * N_TEST * scale)
        serials = rng.choice(np.arange(1, 200 * scale), size=len(is_train), replace=False)
        for k, train in zip(serials, is_train):
            image_id = len(images) + 1
            rel = f"{cid:03d}.{species}/{species}_{k:04d}_{int(rng.integers(1, 800_000))}.jpg"
            pixels, mask = draw_glyph(rng, BACKDROPS[int(rng.integers(len(BACKDROPS)))], looks[cid])
            save_jpeg(pixels, base / "images" / rel)
            x1, y1, x2, y2 = mask_bbox(mask)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {cid}")
            split.append(f"{image_id} {int(train)}")
            boxes.append(f"{image_id} {x1:.1f} {y1:.1f} {x2 - x1 + 1:.1f} {y2 - y1 + 1:.1f}")
    _lines(base / "images.txt", images)
    _lines(base / "classes.txt", [f"{cid} {cid:03d}.{classes[cid][0]}" for cid in sorted(classes)])
    _lines(base / "image_class_labels.txt", labels)
    _lines(base / "train_test_split.txt", split)
    _lines(base / "bounding_boxes.txt", boxes)
    return root
