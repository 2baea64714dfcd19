"""The values the library is made of: a task, a recorded skip, one dataset's share of the library."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

# Kinds of task. Multiclass kinds label an image by its category; binary kinds by a label's presence.
MULTICLASS_KINDS = ("species_in_order", "species_in_family")
BINARY_KINDS = ("binary_label", "binary_attribute")


@dataclass(frozen=True)
class TaskSpec:
    """One classification task of the library.

    Attributes:
        task_id: stable, human-readable id, e.g. ``inat2018/order/Rodentia``.
        source: the dataset adapter that produced it (``inat2018``, ``cub200``, ``imat2018``, ``deepfashion``).
        kind: one of MULTICLASS_KINDS or BINARY_KINDS.
        name: short human name (order, family, label or attribute name).
        class_names: names of the local labels 0..K-1 (binary tasks: ``("not <name>", "<name>")``).
        class_ids: multiclass: the source's category ids in local-label order; binary: ``(label_id,)``.
        n_train: training images of the task. n_test: evaluation images (the source's test split).
        rule: the rule that produced this task, in words, with the thresholds used.
        taxonomy: path from the root to the task's node (iNat/CUB), e.g. ``("Animalia", ..., "Rodentia")``.
        image_group: the set of images the task draws on; tasks with the same group share images.
    """

    task_id: str
    source: str
    kind: str
    name: str
    class_names: tuple[str, ...]
    class_ids: tuple[int, ...]
    n_train: int
    n_test: int
    rule: str
    image_group: str
    taxonomy: tuple[str, ...] = ()

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_binary(self) -> bool:
        return self.kind in BINARY_KINDS


@dataclass(frozen=True)
class Skip:
    """Something left out of the library on purpose, with the reason (never a silent drop)."""

    source: str
    item: str
    reason: str
    file: str = ""
    line: int | None = None


@dataclass
class SourceLibrary:
    """One dataset's share of the library: its image table, label matrix, tasks and skips.

    ``images`` follows ``tasks.tables.IMAGES_SCHEMA``; ``labels`` follows ``tasks.tables.LABELS_SCHEMA``
    (multi-label sources only, else None). ``root`` is the dataset root the image paths are relative to.
    """

    source: str
    root: str
    images: pa.Table
    labels: pa.Table | None
    tasks: list[TaskSpec]
    skips: list[Skip] = field(default_factory=list)
