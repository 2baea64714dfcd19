"""iNaturalist 2018 adapter: one species-classification task per taxonomic order.

Files under the root: ``train2018.json`` and ``val2018.json`` (COCO-like: ``images``, ``annotations``,
``categories``) and, optionally, ``categories.json``, the bare list with the un-obfuscated names. When
it is there it replaces the ``categories`` of the split files (as the iNat README says); otherwise
``train2018.json``'s categories are used. ``val2018.json``'s categories are never read.

Decisions a reader cannot see in the code:

- Splits: ``train2018`` is "train" and ``val2018`` is "test". iNat's own test set has no public
  labels, so the validation set is the library's evaluation split. Nothing goes to "val".
- Annotations are joined to images on ``image_id``, never by position. Categories are looked up by
  ``id``, never by list index. Each image needs exactly one annotation: an image without one is
  skipped (a Skip with the reason), and two annotations for one image are an error. Image ids must
  be unique across both files, because they become the library's ``image_id``.
- The images table keeps every labelled, usable image of both files, including the images of
  species that are in no task. Unusable images (a path that escapes the root, a missing or corrupt
  file, as ``config.verify_images`` asks) are left out with a Skip each.
- The task rule (Task2Vec's, see docs): a species is usable if it has ``>= min_train_per_class``
  training images. An order becomes a task if it has ``>= inat_min_species`` usable species. Such
  orders are ranked by their training images (descending, ties by order name), and the first
  ``inat_max_tasks`` are kept. Inside a task, local labels follow the species names alphabetically.
  The task's taxonomy (kingdom, phylum, class, order) comes from its first species. Every order and
  species left out gets a Skip.

Speed: the JSON is parsed with ``json`` and then turned into numpy/pyarrow columns in one pass per
field. Nothing loops over images in Python except the checks of image files (``verify_images``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tasks.config import LibraryConfig
from tasks.datasets._common import (
    Group,
    first_duplicate,
    images_table,
    json_column,
    json_list,
    load_json,
    lookup,
    require_file,
    select_groups,
)
from tasks.errors import ManifestError
from tasks.images import check_images
from tasks.registry import register_adapter
from tasks.spec import Skip, SourceLibrary, TaskSpec
from tasks.tables import SPLITS

SOURCE = "inat2018"
TRAIN, TEST = SPLITS.index("train"), SPLITS.index("test")
SPLIT_FILES = (("train2018.json", TRAIN), ("val2018.json", TEST))
TAXON_KEYS = ("kingdom", "phylum", "class", "order")
_EXPECTED = "train2018.json and val2018.json (and optionally categories.json)"


@dataclass(frozen=True)
class Categories:
    """The category records as columns; position ``p`` is one species."""

    file: Path
    ids: np.ndarray  # (C,) int64 category ids
    names: list[str]
    taxa: dict[str, list[str]]  # TAXON_KEYS -> (C,) names


@dataclass(frozen=True)
class SplitImages:
    """One split file's images, with each image's category position (-1: no annotation)."""

    file: Path
    ids: np.ndarray  # (N,) int64
    paths: pa.Array  # (N,) string
    category: np.ndarray  # (N,) int64 position into Categories, -1 if unannotated


@register_adapter(SOURCE)
def load_inat2018(root: Path, config: LibraryConfig) -> SourceLibrary:
    """Read the iNat2018 manifests under ``root`` and cut one task per taxonomic order.

    Args:
        root: folder holding ``train2018.json``, ``val2018.json`` and optionally ``categories.json``;
            image ``file_name``s are relative to it.
        config: caps, thresholds and the image check mode.

    Returns:
        The images table (no label matrix: images are labelled by ``category_id``), tasks and skips.

    Raises:
        ManifestError: a missing file, bad JSON, a missing key, a duplicate or unknown id.
    """
    root = Path(root)
    files = {name: require_file(root, name, dataset="iNat2018", expected=_EXPECTED) for name, _ in SPLIT_FILES}
    train_doc = load_json(files["train2018.json"])
    cats = read_categories(root, train_doc, files["train2018.json"])
    splits = [read_split(files["train2018.json"], train_doc, cats)]
    del train_doc  # free the parsed JSON before the next file is parsed
    splits.append(read_split(files["val2018.json"], load_json(files["val2018.json"]), cats))

    ids = np.concatenate([s.ids for s in splits])
    dup = first_duplicate(ids)
    if dup is not None:
        raise ManifestError(
            files["val2018.json"],
            f"image id {ids[dup[1]]} is also an image id in train2018.json; image ids must be unique in both files",
            record=f"images[{dup[1] - len(splits[0].ids)}]",
        )
    paths = pa.concat_arrays([s.paths for s in splits])
    category = np.concatenate([s.category for s in splits])
    split = np.concatenate([np.full(len(s.ids), code, np.int8) for s, (_, code) in zip(splits, SPLIT_FILES)])
    file_of = np.concatenate([np.full(len(s.ids), k) for k, s in enumerate(splits)])

    keep, skips = usable_images(root, ids=ids, paths=paths, category=category, file_of=file_of, splits=splits,
                                mode=config.verify_images)  # fmt: skip
    kept = np.flatnonzero(keep)
    table = images_table(
        SOURCE,
        image_ids=pa.array(ids[kept]),
        paths=paths.take(pa.array(kept)),
        splits=split[kept],
        category_ids=cats.ids[category[kept]],
    )
    n_cat = len(cats.ids)
    n_train = np.bincount(category[kept][split[kept] == TRAIN], minlength=n_cat)
    n_test = np.bincount(category[kept][split[kept] == TEST], minlength=n_cat)
    tasks, task_skips = define_tasks(cats, n_train=n_train, n_test=n_test, config=config)
    return SourceLibrary(SOURCE, str(root), table, None, tasks, skips + task_skips)


def usable_images(
    root: Path, *, ids: np.ndarray, paths: pa.Array, category: np.ndarray, file_of: np.ndarray,
    splits: list[SplitImages], mode: str,
) -> tuple[np.ndarray, list[Skip]]:
    """Which images have a label and a usable file (a bool mask), and a Skip for each other one."""
    keep = category >= 0
    skips = [_image_skip(ids[i], splits[file_of[i]].file, "image has no annotation, so it has no label")
             for i in np.flatnonzero(~keep)]  # fmt: skip
    labelled = np.flatnonzero(keep)
    for k, reason in check_images(root, paths.take(pa.array(labelled)), mode).items():
        i = labelled[k]
        keep[i] = False
        skips.append(_image_skip(ids[i], splits[file_of[i]].file, reason))
    return keep, skips


def read_categories(root: Path, train_doc: Any, train_file: Path) -> Categories:
    """Categories from ``categories.json`` (a bare list) if present, else from ``train2018.json``."""
    path = root / "categories.json"
    if path.is_file():
        records = load_json(path)
        if not isinstance(records, list):
            raise ManifestError(path, f"expected a bare JSON list of categories, found a {type(records).__name__}")
    else:
        path, records = train_file, json_list(train_doc, "categories", path=train_file)
    ids = _int_column(records, "id", path=path, where="categories")
    _refuse_duplicates(ids, path=path, where="categories", what="category id")
    names = json_column(records, "name", path=path, where="categories", kind=str)
    taxa = {k: json_column(records, k, path=path, where="categories", kind=str) for k in TAXON_KEYS}
    return Categories(path, ids, names, taxa)


def read_split(path: Path, doc: Any, cats: Categories) -> SplitImages:
    """One split file's images joined to their annotation (on ``image_id``) and category (on ``id``)."""
    images = json_list(doc, "images", path=path)
    annotations = json_list(doc, "annotations", path=path)
    ids = _int_column(images, "id", path=path, where="images")
    paths = pa.array(json_column(images, "file_name", path=path, where="images", kind=str), pa.string())
    _refuse_duplicates(ids, path=path, where="images", what="image id")

    ann_image = _int_column(annotations, "image_id", path=path, where="annotations")
    ann_cat = _int_column(annotations, "category_id", path=path, where="annotations")
    image_pos = lookup(ids, ann_image)
    if (image_pos < 0).any():
        k = int(np.argmax(image_pos < 0))
        raise ManifestError(path, f"image_id {ann_image[k]} matches no record in 'images'", record=f"annotations[{k}]")
    cat_pos = lookup(cats.ids, ann_cat)
    if (cat_pos < 0).any():
        k = int(np.argmax(cat_pos < 0))
        problem = f"category_id {ann_cat[k]} is not a category of {cats.file.name}"
        raise ManifestError(path, problem, record=f"annotations[{k}]")
    dup = first_duplicate(image_pos)
    if dup is not None:
        problem = f"image {ann_image[dup[1]]} has two annotations (also annotations[{dup[0]}]); one label per image"
        raise ManifestError(path, problem, record=f"annotations[{dup[1]}]", fix="keep one annotation per image")
    category = np.full(len(ids), -1, dtype=np.int64)
    category[image_pos] = cat_pos
    return SplitImages(path, ids, paths, category)


def define_tasks(
    cats: Categories, *, n_train: np.ndarray, n_test: np.ndarray, config: LibraryConfig
) -> tuple[list[TaskSpec], list[Skip]]:
    """The order tasks (see the module docstring for the rule) and a Skip for everything left out."""
    min_train = config.min_train_per_class
    skips: list[Skip] = []
    members: dict[str, list[int]] = {}
    for p, order in enumerate(cats.taxa["order"]):
        members.setdefault(order, [])
        if n_train[p] >= min_train:
            members[order].append(p)
        else:
            reason = (
                f"species {cats.names[p]!r} (order {order}) has {n_train[p]} training images, fewer than {min_train} "
                "(min_train_per_class); it is in no task"
            )
            skips.append(Skip(SOURCE, f"{SOURCE}/species/{cats.ids[p]}", reason, cats.file.name))
    groups = [
        Group(order, tuple(sorted(ps, key=lambda p: (cats.names[p], cats.ids[p]))), int(n_train[ps].sum()))
        for order, ps in members.items()
    ]
    sel = select_groups(
        groups,
        min_species=config.inat_min_species,
        max_groups=config.inat_max_tasks,
        min_key="inat_min_species",
        max_key="inat_max_tasks",
        min_train=min_train,
    )
    skips += [Skip(SOURCE, f"{SOURCE}/order/{name}", reason, cats.file.name) for name, reason in sel.rejected]
    if len(sel.chosen) < config.inat_max_tasks:
        reason = (
            f"asked for {config.inat_max_tasks} order tasks (inat_max_tasks), but only {sel.n_qualifying} orders have "
            f">= {config.inat_min_species} species with >= {min_train} training image(s)"
        )
        skips.append(Skip(SOURCE, f"{SOURCE}/order/*", reason, cats.file.name))
    rule = (
        "species within order {name}; orders with >= {min_sp} species (each with >= {min_train} training images) "
        "ranked by training images, rank {rank} of {n}, first {cap} kept"
    )
    tasks = []
    for rank, g in enumerate(sel.chosen, start=1):
        first = g.species[0]
        tasks.append(
            TaskSpec(
                task_id=f"{SOURCE}/order/{g.name}",
                source=SOURCE,
                kind="species_in_order",
                name=g.name,
                class_names=tuple(cats.names[p] for p in g.species),
                class_ids=tuple(int(cats.ids[p]) for p in g.species),
                n_train=g.n_train,
                n_test=int(n_test[list(g.species)].sum()),
                rule=rule.format(
                    name=g.name, min_sp=config.inat_min_species, min_train=min_train, rank=rank,
                    n=sel.n_qualifying, cap=config.inat_max_tasks,
                ),
                image_group=f"{SOURCE}/order/{g.name}",
                taxonomy=tuple(cats.taxa[k][first] for k in TAXON_KEYS),
            )
        )
    return tasks, skips


def _int_column(records: list[Any], key: str, *, path: Path, where: str) -> np.ndarray:
    return np.array(json_column(records, key, path=path, where=where, kind=int), dtype=np.int64)


def _refuse_duplicates(ids: np.ndarray, *, path: Path, where: str, what: str) -> None:
    dup = first_duplicate(ids)
    if dup is not None:
        problem = f"{what} {ids[dup[1]]} appears twice (also {where}[{dup[0]}])"
        raise ManifestError(path, problem, record=f"{where}[{dup[1]}]", fix="ids must be unique")


def _image_skip(image_id: int, file: Path, reason: str) -> Skip:
    return Skip(SOURCE, f"{SOURCE}/image/{image_id}", reason, file.name)
