"""Small synthetic copies of the four source datasets, in their exact on-disk formats.

`generate_mini_datasets(out_dir, seed=...)` writes iNat2018, CUB-200-2011, iMaterialist 2018 and
DeepFashion manifests (docs: /work/shared/datasets.md) with about 1,200 real 64x64 JPEGs in total. The
test suite, ``orchestrate mini-data`` and the README's quick start use it. This package is not an
adapter: it only writes files and imports nothing from `tasks.datasets`.

Output is a pure function of the seed: the manifests are byte-identical and the images have the same
pixels. Each dataset draws from its own stream, ``np.random.default_rng([seed, k])``.

Visual grammar (class identity is visible in the pixels, and taxonomic neighbours look alike):

- iNat2018 (22 species, 8 orders, 3 classes). class -> background (Aves: smooth blue sky;
  Insecta: green foliage noise; Magnoliopsida: grainy brown soil); order -> shape (circle, ellipse,
  square | bowtie, cross, hexagon | star, pentagon); family -> texture (first family of an order
  plain, then stripes, then dots); genus -> a hue sector (the genera of an order are spread round the
  colour wheel); species -> a 0.1-turn hue step inside its genus. So sister species differ only by a
  small hue step, cousins by hue sector (and texture when the family differs), orders by shape and
  classes by background too.
- CUB (30 real classes). order -> shape; family -> texture; species -> hue spread (0.75 turn) within
  the family. The background (sky or reeds) is per-image noise shared by all birds.
- iMaterialist (12 real labels). category -> silhouette; color label -> dominant colour; pattern
  label -> print (stripes, polka dots, checks), sometimes in a second labelled colour.
- DeepFashion (20 attributes). texture -> print, fabric -> colour and weave, shape -> hem length,
  flare and pleats, part -> sleeves, neckline and pockets, style -> sequins or a sunny backdrop.

Per-image jitter keeps the tasks from being trivial: position, size, rotation, hue, saturation,
value, a white-balance cast, background noise, sensor noise, and for iNat/CUB a random-hue distractor
blob in one image of four. The module docstrings of the writers list the expected tasks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from tasks.mini import cub200, deepfashion, imat2018, inat2018

__all__ = ["DATASETS", "generate_mini_datasets"]

# name -> writer(root, rng); the position is the dataset's stream index under the seed.
DATASETS = {"inat2018": inat2018.write, "cub200": cub200.write, "imat2018": imat2018.write,
            "deepfashion": deepfashion.write}
MARKER = "mini_datasets.json"  # written last; marks out_dir as ours, so a rerun may replace it


def generate_mini_datasets(out_dir: Path, *, seed: int = 0, scale: int = 1) -> dict[str, Path]:
    """Write the four mini datasets under ``out_dir`` (one folder each).

    Args:
        out_dir: parent folder; created if missing. A previous output of this function there (found
            by its ``mini_datasets.json``) is replaced.
        seed: every file is a deterministic function of it.
        scale: multiplies the number of images of every class, item and split (1: about 1,200 images;
            the scientific check uses 4). The classes, tasks and their ranking are the same at every scale.

    Returns:
        ``{"inat2018": out/inat2018, "cub200": out/cub200, "imat2018": out/imat2018,
        "deepfashion": out/deepfashion}``; the CUB root holds ``CUB_200_2011/``.

    Raises:
        FileExistsError: a dataset folder exists in ``out_dir`` but was not written by this function.
    """
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, not {scale}")
    out_dir = Path(out_dir)
    roots = {name: out_dir / name for name in DATASETS}
    _clear_previous(out_dir, roots)
    for k, (name, writer) in enumerate(DATASETS.items()):
        writer(roots[name], np.random.default_rng([seed, k]), scale=scale)
    marker = {"generator": "tasks.mini", "seed": seed, "scale": scale, "datasets": sorted(DATASETS)}
    (out_dir / MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
    return roots


def _clear_previous(out_dir: Path, roots: dict[str, Path]) -> None:
    """Remove an earlier mini output (so no stale images stay behind); refuse to touch anything else."""
    present = [r for r in roots.values() if r.exists()]
    if not present:
        return
    if not (out_dir / MARKER).is_file():
        raise FileExistsError(
            f"{', '.join(str(p) for p in present)} already exist and were not written by generate_mini_datasets "
            f"(no {out_dir / MARKER}); choose an empty folder or remove them")
    (out_dir / MARKER).unlink()
    for root in present:
        shutil.rmtree(root)
