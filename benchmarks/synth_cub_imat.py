"""Full-size CUB-200-2011 and iMaterialist 2018 manifests (no images), for the library benchmark.

CUB: the 200 real classes (names from the shipped taxonomy, CUB's own spellings), 11,788 images,
5,994 train / 5,794 test, in the five-list format. iMaterialist: ``n_train`` images (default 1,014,544,
the count one team found in train.json) and 9,897 validation images, each with 1-8 label ids drawn
from all 228 labels, in the camelCase-string JSON of the real files.
"""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import numpy as np

CUB_SPELLINGS = {"Arctic_Tern": "Artic_Tern", "Green_Violet_ear": "Green_Violetear"}  # taxonomy's -> CUB's


def write_cub_manifests(root: Path, *, seed: int = 0, n_images: int = 11_788) -> None:
    """``root/CUB_200_2011/{images,classes,image_class_labels,train_test_split}.txt``, real class list.

    ``n_images`` below the real count keeps every class (two images at least)."""
    rng = np.random.default_rng(seed)
    text = resources.files("tasks").joinpath("data/cub200_taxonomy.tsv").read_text(encoding="utf-8")
    species = [(int(r["class_id"]), r["species"]) for r in csv.DictReader(text.splitlines(), delimiter="\t")]
    n_images = max(n_images, 2 * len(species))
    per_class = np.full(len(species), n_images // len(species))
    per_class[: n_images - per_class.sum()] += 1
    cub = Path(root) / "CUB_200_2011"
    cub.mkdir(parents=True, exist_ok=True)
    images, labels, split, classes = [], [], [], []
    image_id = 0
    for (class_id, name), n in zip(species, per_class):
        name = CUB_SPELLINGS.get(name, name)
        folder = f"{class_id:03d}.{name}"
        classes.append(f"{class_id} {folder}")
        n_train = n // 2 + int(rng.integers(0, 2))
        for k in range(n):
            image_id += 1
            images.append(f"{image_id} {folder}/{name}_{k:04d}_{image_id}.jpg")
            labels.append(f"{image_id} {class_id}")
            split.append(f"{image_id} {int(k < n_train)}")
    for fname, lines in (("images.txt", images), ("classes.txt", classes),
                         ("image_class_labels.txt", labels), ("train_test_split.txt", split)):
        (cub / fname).write_text("\n".join(lines) + "\n")


def write_imat_manifests(root: Path, *, n_train: int = 1_014_544, n_val: int = 9_897, seed: int = 0) -> None:
    """``root/train.json`` and ``root/validation.json`` with labels over all 228 ids.

    Every label is on at least one training image (the first 228 label draws of ``train.json`` are each
    id once), so all 228 binary tasks exist at any ``n_train`` of 228 or more: popularity is long-tailed
    (Dirichlet 0.5), and by chance alone a few rare labels would have no positive image."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    popularity = rng.dirichlet(np.full(228, 0.5))
    for fname, n, first in (("train.json", n_train, 1), ("validation.json", n_val, 1)):
        counts = rng.integers(1, 9, size=n)
        flat = rng.choice(228, size=int(counts.sum()), p=popularity) + 1
        if fname == "train.json":
            flat[:228] = rng.permutation(228) + 1
        bounds = np.concatenate([[0], np.cumsum(counts)])
        ids = [str(first + i) for i in range(n)]
        doc = {
            "images": [{"url": f"https://contestimg.wish.com/api/webimage/{i}-large", "imageId": i} for i in ids],
            "annotations": [
                {"labelId": [str(v) for v in sorted(set(flat[bounds[i]:bounds[i + 1]].tolist()))], "imageId": ids[i]}
                for i in range(n)
            ],
        }
        (root / fname).write_text(json.dumps(doc))
