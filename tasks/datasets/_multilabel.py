"""Helpers shared by the two multi-label adapters (``imat2018``, ``deepfashion``).

- names: ``slugify`` and ``unique_task_ids`` (task ids that stay unique when two names slug alike);
- binary tasks: ``binary_library`` drops unusable images, turns per-label counts into TaskSpecs and
  Skips with one rule for both sources, and builds the images and sparse label tables.

The image check is ``tasks.images.check_images``; the images table and the JSON helpers are in
``_common.py``; the DeepFashion text-matrix parser lives in ``deepfashion.py``.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

from tasks.config import LibraryConfig
from tasks.datasets._common import decode, images_table
from tasks.errors import ManifestError
from tasks.spec import Skip, SourceLibrary, TaskSpec
from tasks.tables import LABELS_SCHEMA, SPLITS

Pairs = tuple[np.ndarray, np.ndarray]  # (image index, label id), sorted by image then label


def slugify(name: str) -> str:
    """``"Hosiery, Stockings, Tights"`` -> ``"hosiery-stockings-tights"`` (ASCII, lower case, '-')."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-") or "unnamed"


def unique_task_ids(bases: Sequence[str], label_ids: Sequence[int]) -> list[str] | None:
    """The ids, with ``-<label id>`` appended to every id shared by several labels; None if still not unique."""
    counts = Counter(bases)
    ids = [base if counts[base] == 1 else f"{base}-{label}" for base, label in zip(bases, label_ids)]
    return ids if len(set(ids)) == len(ids) else None


def labels_table(source: str, n_images: int, *, positive: Pairs, unknown: Pairs) -> pa.Table:
    """A ``LABELS_SCHEMA`` table from ``(image index, label id)`` pairs sorted by image then label."""

    def lists(rows: np.ndarray, ids: np.ndarray) -> pa.Array:
        offsets = np.searchsorted(rows, np.arange(n_images + 1)).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids.astype(np.int16)))

    columns = [
        decode(np.zeros(n_images, np.int8), [source]),
        pa.array(np.arange(n_images, dtype=np.int32)),
        lists(*positive),
        lists(*unknown),
    ]
    return pa.Table.from_arrays(columns, schema=LABELS_SCHEMA)


@dataclass(frozen=True)
class BinaryLabel:
    """One label (iMat label / DeepFashion attribute) that may become a binary task."""

    label_id: int
    name: str
    base_id: str  # the task id before the uniqueness check, e.g. "imat2018/pattern/argyle"
    rule: str  # what the label means, e.g. "positive iff labelId 1 (Argyle, group pattern) is listed"


@dataclass(frozen=True)
class BinaryCounts:
    """Per-label image counts, indexed by label id (arrays of length max id + 1)."""

    pos_train: np.ndarray
    unknown_train: np.ndarray
    pos_test: np.ndarray
    n_train: int
    n_test: int


def binary_counts(
    split: np.ndarray, *, positive: Pairs, unknown: Pairs, max_label: int
) -> BinaryCounts:
    """Per-label train/test counts from ``(image index, label id)`` pairs; ``split`` indexes SPLITS per image."""
    train, test = SPLITS.index("train"), SPLITS.index("test")

    def per_label(pairs: Pairs, code: int) -> np.ndarray:
        rows, ids = pairs
        return np.bincount(ids[split[rows] == code], minlength=max_label + 1)

    return BinaryCounts(
        pos_train=per_label(positive, train),
        unknown_train=per_label(unknown, train),
        pos_test=per_label(positive, test),
        n_train=int(np.count_nonzero(split == train)), n_test=int(np.count_nonzero(split == test)),
    )


def binary_tasks(
    labels: Sequence[BinaryLabel],
    counts: BinaryCounts,
    *,
    source: str,
    kind: str,
    config: LibraryConfig,
    max_tasks: int,
    cap_key: str,
    test_name: str,
) -> tuple[list[TaskSpec], list[Skip]] | None:
    """One binary task per label, in label-id order; the first ``max_tasks`` labels are candidates.

    A candidate becomes a task when train has ``>= max(min_binary_positives, min_train_per_class)``
    positives and ``>= min_train_per_class`` negatives (images neither positive nor unknown), else it
    is a Skip. A task with no positive in the test split is kept and noted by a Skip whose reason
    starts with ``"kept; "``. Labels past the cap are Skips too. Returns None if task ids collide
    even after appending label ids (the caller raises with its file name).
    """
    labels = sorted(labels, key=lambda b: b.label_id)
    ids = unique_task_ids([b.base_id for b in labels], [b.label_id for b in labels])
    if ids is None:
        return None
    min_pos = max(config.min_binary_positives, config.min_train_per_class)
    min_neg = config.min_train_per_class
    tasks: list[TaskSpec] = []
    skips: list[Skip] = []
    for rank, (label, task_id) in enumerate(zip(labels, ids)):
        lid = label.label_id
        pos = int(counts.pos_train[lid])
        neg = counts.n_train - pos - int(counts.unknown_train[lid])
        if rank >= max_tasks:
            skips.append(Skip(source, task_id, f"label {lid} is past the cap {cap_key}={max_tasks} (id order)"))
        elif pos < min_pos or neg < min_neg:
            skips.append(
                Skip(source, task_id, f"{pos} positive and {neg} negative training images; a binary task needs "
                     f">= {min_pos} positives (min_binary_positives) and >= {min_neg} negatives (min_train_per_class)")
            )
        else:
            test_pos = int(counts.pos_test[lid])
            rule = (
                f"binary: {label.rule}; train {pos} positives >= {min_pos}, {neg} negatives >= {min_neg}; "
                f"test ({test_name}) {test_pos} positives of {counts.n_test}; "
                f"labels in id order, cap {cap_key}={max_tasks}"
            )
            tasks.append(
                TaskSpec(
                    task_id=task_id, source=source, kind=kind, name=label.name,
                    class_names=(f"not {label.name}", label.name), class_ids=(lid,),
                    n_train=counts.n_train, n_test=counts.n_test, rule=rule, image_group=source,
                )
            )
            if test_pos == 0:
                skips.append(Skip(source, task_id, f"kept; no positives in {test_name}"))
    return tasks, skips


def keep_images(keep: np.ndarray, rows: np.ndarray, ids: np.ndarray) -> Pairs:
    """``(row, id)`` pairs of kept images, with rows renumbered densely over the kept images."""
    new_index = np.cumsum(keep) - 1
    mask = keep[rows]
    return new_index[rows[mask]], ids[mask]


def binary_library(
    source: str,
    root: Path,
    labels: Sequence[BinaryLabel],
    *,
    image_ids: list[str],
    paths: list[str],
    split: np.ndarray,
    positive: Pairs,
    unknown: Pairs,
    drop: Iterable[int],
    skips: list[Skip],
    kind: str,
    config: LibraryConfig,
    max_tasks: int,
    cap_key: str,
    test_name: str,
    label_file: Path,
    what: str,
) -> SourceLibrary:
    """A multi-label source's library: its images but those in ``drop``, and ``binary_tasks`` over them.

    ``image_ids``, ``paths`` and ``split`` are per image (manifest order); ``positive``/``unknown`` are
    ``(image index, label id)`` pairs over the same images. ``skips`` (the dropped images' own) come
    first in the library's skips. ``what`` names the labels ("label", "attribute") in the error.

    Raises:
        ManifestError: (naming ``label_file``) when task ids clash even with label ids appended.
    """
    keep = np.ones(len(paths), dtype=bool)
    keep[list(drop)] = False
    if not keep.all():
        same = paths is image_ids
        image_ids = [x for x, k in zip(image_ids, keep) if k]
        paths = image_ids if same else [x for x, k in zip(paths, keep) if k]
    split, positive, unknown = split[keep], keep_images(keep, *positive), keep_images(keep, *unknown)
    counts = binary_counts(split, positive=positive, unknown=unknown,
                           max_label=max((b.label_id for b in labels), default=0))
    result = binary_tasks(labels, counts, source=source, kind=kind, config=config, max_tasks=max_tasks,
                          cap_key=cap_key, test_name=test_name)
    if result is None:
        raise ManifestError(label_file, f"{what} names give clashing task ids even with {what} ids appended",
                            fix=f"rename the {what}s whose slugs clash")
    tasks, task_skips = result
    return SourceLibrary(
        source=source,
        root=str(root),
        images=images_table(source, image_ids=image_ids, paths=paths, splits=split),
        labels=labels_table(source, len(paths), positive=positive, unknown=unknown),
        tasks=tasks,
        skips=skips + task_skips,
    )
