"""Synthetic DeepFashion Category-and-Attribute manifests at real scale, in the exact on-disk format.

Writes ``Anno/list_attr_cloth.txt``, ``Anno/list_attr_img.txt`` and ``Eval/list_eval_partition.txt``
(no images) so the ``deepfashion`` adapter can be timed on a 289,222 x 1,000 value matrix (~890 MB of
text). The text is built as numpy byte matrices a block of rows at a time, so the default size is
written in a few seconds.

Format, as in the real files (datasets.md §4): line 1 the row count, line 2 the column names, then rows
whose first column is padded with spaces to a fixed width. Attribute values are written as ``-1`` or
`` 1`` (width 2) separated by single spaces; there are no ``0`` (unknown) values, like the released
coarse file.

Run as a script: ``python benchmarks/synth_deepfashion.py OUT_DIR [N_IMAGES]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REAL_IMAGES = 289_222
REAL_SPLIT = (209_222, 40_000, 40_000)  # train / val / test
TYPE_SHARE = (156, 218, 180, 216, 230)  # attributes per type 1..5 in the real file
PATH_WIDTH = 72  # the value columns start at this byte of a row (paths are generated shorter)
NAME_WIDTH = 29  # width of the name column of list_attr_cloth.txt
MEAN_POSITIVES = 3.3
_ROWS_PER_BLOCK = 8192

_WORDS = (
    "abstract floral striped sheer pleated knit lace denim chiffon cotton leather faux woven printed "
    "embroidered crochet boxy cropped classic dotted geometric graphic longline maxi mini midi oversized "
    "ribbed ruffled slub stretch tiered twist v-neck crew open-knit cutout zip-front button-front"
).split()
_GARMENTS = "Blouse Tee Dress Skirt Shorts Jeans Cardigan Sweater Jacket Romper Tank Top Joggers Kimono Parka".split()


def write_deepfashion_manifests(
    root: Path, *, n_images: int = REAL_IMAGES, n_attributes: int = 1000, seed: int = 0
) -> None:
    """Write the three DeepFashion list files under ``root`` (``Anno/`` and ``Eval/``).

    Args:
        root: dataset root; created if missing.
        n_images: rows of ``list_attr_img.txt``. At the real size the partition is exactly
            209,222 / 40,000 / 40,000; otherwise the same shares, rounded.
        n_attributes: rows of ``list_attr_cloth.txt`` (types in the real proportions).
        seed: seed of the generator; equal arguments give byte-identical files.

    Every image has ~3.3 positive attributes on average (1 + Poisson, long-tailed attribute
    popularity), and every attribute is positive on at least one training image.
    """
    if n_images < 3 or n_attributes < 1:
        raise ValueError("need n_images >= 3 and n_attributes >= 1")
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "Anno").mkdir(parents=True, exist_ok=True)
    (root / "Eval").mkdir(parents=True, exist_ok=True)
    _write_cloth(root / "Anno" / "list_attr_cloth.txt", _attribute_names(n_attributes, rng), rng)
    paths = _image_paths(n_images, rng)
    split = _partition(n_images, rng)
    _write_partition(root / "Eval" / "list_eval_partition.txt", paths, split)
    rows, cols = _positives(split, n_attributes, rng)
    _write_attr_img(root / "Anno" / "list_attr_img.txt", paths, rows, cols, n_attributes)


def _attribute_names(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct, alphabetically sorted names of 1-3 words (some with single spaces)."""
    names: set[str] = set()
    while len(names) < n:
        k = int(rng.integers(1, 4))
        name = " ".join(rng.choice(_WORDS, size=k, replace=False))
        if len(name) < NAME_WIDTH:
            names.add(name)
    return sorted(names)


def _write_cloth(path: Path, names: list[str], rng: np.random.Generator) -> None:
    share = np.array(TYPE_SHARE, dtype=float) / sum(TYPE_SHARE)
    types = rng.choice(np.arange(1, 6), size=len(names), p=share)
    lines = [str(len(names)), "attribute_name  attribute_type"]
    lines += [f"{name.ljust(NAME_WIDTH - 1)} {t}" for name, t in zip(names, types)]
    path.write_text("\n".join(lines) + "\n")


def _image_paths(n: int, rng: np.random.Generator) -> list[str]:
    """``img/<Item_Folder>/img_XXXXXXXX.jpg`` with ~50 images per (unique) item folder."""
    folders: list[str] = []
    seen: set[str] = set()
    while len(folders) * 50 < n:
        words = rng.choice(_WORDS, size=int(rng.integers(1, 4)), replace=False)
        name = "_".join(w.capitalize() for w in words) + "_" + str(rng.choice(_GARMENTS))
        if name not in seen:
            seen.add(name)
            folders.append(name)
    sizes = rng.multinomial(n - len(folders), np.full(len(folders), 1 / len(folders))) + 1
    paths = [f"img/{f}/img_{i:08d}.jpg" for f, size in zip(folders, sizes) for i in range(1, size + 1)]
    assert max(map(len, paths)) < PATH_WIDTH
    return paths


def _partition(n: int, rng: np.random.Generator) -> np.ndarray:
    """Split code per image (0 train, 1 val, 2 test), the real counts at the real size."""
    if n == REAL_IMAGES:
        n_val = n_test = REAL_SPLIT[1]
    else:
        n_val = n_test = max(1, round(n * REAL_SPLIT[1] / REAL_IMAGES))
    split = np.zeros(n, dtype=np.int8)
    order = rng.permutation(n)
    split[order[:n_val]] = 1
    split[order[n_val : n_val + n_test]] = 2
    return split


def _write_partition(path: Path, paths: list[str], split: np.ndarray) -> None:
    status = np.array(["train", "val", "test"])[split]
    lines = [str(len(paths)), "image_name  evaluation_status"]
    lines += [f"{p.ljust(PATH_WIDTH - 1)} {s}" for p, s in zip(paths, status)]
    path.write_text("\n".join(lines) + "\n")


def _positives(split: np.ndarray, n_attr: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every positive value: 1 + Poisson(2.35) per image, long-tailed popularity."""
    n = len(split)
    per_image = np.minimum(1 + rng.poisson(MEAN_POSITIVES - 0.95, size=n), n_attr)
    popularity = 1.0 / (np.arange(n_attr) + 20.0)
    rows = np.repeat(np.arange(n), per_image)
    cols = rng.permutation(n_attr)[rng.choice(n_attr, size=rows.size, p=popularity / popularity.sum())]
    train = np.flatnonzero(split == 0)
    # Every attribute gets at least one training positive.
    rows = np.concatenate([rows, train[np.arange(n_attr) % train.size]])
    cols = np.concatenate([cols, np.arange(n_attr)])
    return rows, cols


def _write_attr_img(path: Path, paths: list[str], rows: np.ndarray, cols: np.ndarray, n_attr: int) -> None:
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], cols[order]
    with open(path, "wb") as f:
        f.write(f"{len(paths)}\nimage_name  attribute_labels\n".encode())
        for lo in range(0, len(paths), _ROWS_PER_BLOCK):
            hi = min(lo + _ROWS_PER_BLOCK, len(paths))
            values = np.empty((hi - lo, n_attr, 3), dtype=np.uint8)
            values[:] = np.frombuffer(b"-1 ", dtype=np.uint8)
            a, b = np.searchsorted(rows, [lo, hi])
            values[rows[a:b] - lo, cols[a:b], 0] = ord(" ")  # "-1" -> " 1"
            values[:, -1, 2] = ord("\n")
            prefix = np.frombuffer("".join(p.ljust(PATH_WIDTH) for p in paths[lo:hi]).encode(), dtype=np.uint8)
            block = np.concatenate([prefix.reshape(hi - lo, PATH_WIDTH), values.reshape(hi - lo, -1)], axis=1)
            f.write(block.tobytes())


if __name__ == "__main__":
    out = Path(sys.argv[1])
    write_deepfashion_manifests(out, n_images=int(sys.argv[2]) if len(sys.argv) > 2 else REAL_IMAGES)
    print(f"wrote DeepFashion manifests under {out}")
