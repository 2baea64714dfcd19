"""Synthetic iNat2018 manifests at full scale, for the parse benchmark and the slow adapter test.

``write_inat2018_manifests(root)`` writes ``train2018.json``, ``val2018.json`` and ``categories.json``
with the real counts: 8,142 species, 437,513 training images, 24,426 validation images (3 per
species), and species per order as in ``tasks/data/inat2018_orders.tsv``. Training images per order
decrease strictly with the TSV's ``tasks_json_index``, so ranking orders by training images
reproduces the Task2Vec order (the TSV's ``task2vec_inat_task`` column).

What is synthetic: the species names, everything above order (supercategory, kingdom, phylum,
class), the split of an order's images among its species, and the file names. The split files carry
obfuscated categories (as the real ones do) with wrong orders, so a parser that ignores
``categories.json`` gets a different ranking. Images and annotations are shuffled independently, so a
parser that pairs them by position gets wrong labels.
"""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import numpy as np

N_TRAIN = 437_513
VAL_PER_SPECIES = 3
SUPERCATEGORIES = (
    "Plantae", "Insecta", "Aves", "Actinopterygii", "Fungi", "Reptilia", "Mollusca",
    "Mammalia", "Animalia", "Amphibia", "Arachnida", "Chromista", "Protozoa", "Bacteria",
)  # fmt: skip


def read_orders_tsv() -> list[dict[str, str]]:
    """The shipped order table, in ``tasks_json_index`` order."""
    text = resources.files("tasks").joinpath("data/inat2018_orders.tsv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    return sorted(rows, key=lambda r: int(r["tasks_json_index"]))


def train_images_per_order(n_species: np.ndarray, total: int = N_TRAIN) -> np.ndarray:
    """Image counts that fall strictly with the order's index, give each species one or more, and sum to ``total``."""
    weights = 1.0 / np.arange(1, len(n_species) + 1) ** 1.1
    counts = _falling(np.maximum(np.floor(weights / weights.sum() * total * 0.85).astype(np.int64), n_species))
    assert counts.sum() <= total, "the synthetic image budget is too small for the species counts"
    counts[0] += total - counts.sum()
    return counts


def _falling(counts: np.ndarray) -> np.ndarray:
    """Raise ``counts`` (in place) just enough to fall strictly with the index."""
    for i in range(len(counts) - 2, -1, -1):
        counts[i] = max(counts[i], counts[i + 1] + 1)
    return counts


def few_train_images_per_order(n_species: np.ndarray, total: int) -> np.ndarray:
    """Like ``train_images_per_order`` for a small ``total``: each order first gets the fewest images that
    keep one per species and the strict fall with the index (39,498 in all with every species), then the
    rest by weight. When ``total`` is below that floor (fewer species kept, ``species_kept``), the strict
    fall is dropped: each order gets one image per species, then the rest by weight."""
    falling = _falling(n_species.copy())
    counts = falling if falling.sum() <= total else n_species.copy()
    weights = 1.0 / np.arange(1, len(n_species) + 1) ** 1.1
    counts += np.floor(weights / weights.sum() * max(0, total - counts.sum())).astype(np.int64)
    return counts


def species_kept(n_species: np.ndarray, fraction: float) -> np.ndarray:
    """Species per order at ``fraction``: ``round(n * fraction)``, but never fewer than 2 (an order with 2
    or more species stays a candidate task, ``inat_min_species``) and never more than the order has."""
    return np.minimum(n_species, np.maximum(2, np.round(n_species * fraction).astype(np.int64)))


def write_inat2018_manifests(root: Path, *, seed: int = 0, n_train: int = N_TRAIN,
                             val_per_species: int = VAL_PER_SPECIES, species_fraction: float = 1.0) -> None:
    """Write iNat2018-sized ``train2018.json``, ``val2018.json`` and ``categories.json`` under ``root``.

    ``n_train`` below the real count keeps every species and the order ranking
    (``few_train_images_per_order``: 39,498 images at least); ``val_per_species`` likewise.
    ``species_fraction`` below 1 keeps only ``species_kept`` species of each order (every order with two
    or more species keeps two or more, so the same orders qualify as tasks); with so few species the
    training images may go below 39,498 (one per kept species at least), and then the orders' ranking
    is no longer the Task2Vec one (ties, broken by order name).
    """
    rng = np.random.default_rng(seed)
    orders = read_orders_tsv()
    n_species = np.array([int(r["n_species"]) for r in orders])
    if species_fraction < 1:
        n_species = species_kept(n_species, species_fraction)
    per_order = (train_images_per_order(n_species) if n_train >= N_TRAIN
                 else few_train_images_per_order(n_species, n_train))

    categories, obfuscated, supercat, train_per_species = [], [], [], []
    for k, (row, n, n_img) in enumerate(zip(orders, n_species, per_order)):
        sc = SUPERCATEGORIES[k % len(SUPERCATEGORIES)]
        kingdom = "Plantae" if sc == "Plantae" else "Animalia"
        taxa = {"kingdom": kingdom, "phylum": f"Phylum{k % 31}", "class": f"Class{k % 57}"}
        train_per_species.append(rng.multinomial(n_img - n, rng.dirichlet(np.ones(n))) + 1)
        for j in range(n):
            cid = len(categories)
            name = f"{row['order']} species{j:04d}"
            categories.append({"id": cid, "name": name, "supercategory": sc, **taxa, "order": row["order"],
                               "family": f"{row['order']}idae", "genus": row["order"]})  # fmt: skip
            obfuscated.append({**categories[-1], "name": f"{cid:08x}", "order": f"{(cid * 7919) % 97:x}"})
            supercat.append(sc)
    per_species = np.concatenate(train_per_species)
    n_cat = len(categories)

    train_cat = rng.permutation(np.repeat(np.arange(n_cat), per_species))
    val_cat = rng.permutation(np.repeat(np.arange(n_cat), val_per_species))
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _write_split(root / "train2018.json", train_cat, first_id=0, supercat=supercat, cats=obfuscated, rng=rng)
    _write_split(root / "val2018.json", val_cat, first_id=len(train_cat), supercat=supercat, cats=obfuscated, rng=rng)
    (root / "categories.json").write_text(json.dumps(categories), encoding="utf-8")


def _write_split(path: Path, cat: np.ndarray, *, first_id: int, supercat: list[str], cats: list[dict], rng) -> None:
    """One COCO-like split file, written as text directly (no per-image dicts: fast and small in memory)."""
    sc = supercat
    ids = np.arange(first_id, first_id + len(cat))
    hexes = rng.integers(0, 2**63, size=(len(cat), 2))
    images = ",".join(
        f'{{"id": {i}, "width": 800, "height": 600, "file_name": "train_val2018/{sc[c]}/{c}/{a:016x}{b:016x}.jpg", '
        '"license": 1, "rights_holder": "synthetic"}'
        for i, c, (a, b) in zip(ids.tolist(), cat.tolist(), hexes.tolist())
    )
    order = rng.permutation(len(cat))  # annotations in another order than images
    annotations = ",".join(
        f'{{"id": {k}, "image_id": {i}, "category_id": {c}}}'
        for k, (i, c) in enumerate(zip(ids[order].tolist(), cat[order].tolist()))
    )
    info = {"year": 2018, "version": "synthetic", "description": "synthetic iNat2018-sized manifest"}
    licenses = [{"id": 1, "name": "synthetic", "url": ""}]
    with open(path, "w", encoding="utf-8") as f:
        f.write(f'{{"info": {json.dumps(info)}, "images": [{images}], "categories": {json.dumps(cats)}, ')
        f.write(f'"annotations": [{annotations}], "licenses": {json.dumps(licenses)}}}')
