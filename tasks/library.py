"""The task library: every dataset's tasks, images and labels, and how to get a task's examples.

Pure: reads manifests through the adapters and returns Arrow tables and ``TaskSpec`` values. Writing
them to a result store is the orchestrator's job (``orchestrator/library_io.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.config import LibraryConfig
from tasks.images import listed_files
from tasks.registry import get_adapter, list_adapters
from tasks.spec import Skip, SourceLibrary, TaskSpec
from tasks.tables import SKIPS_SCHEMA, TASKS_SCHEMA

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteRoot:
    """A dataset root that is not a local folder (e.g. ``s3://bucket/inat2018``), as the orchestrator
    staged it: its manifests copied under the local folder ``manifests``, and the relative paths of every
    file under ``uri`` (the image checks use these). The library records ``uri`` as the source's root;
    images are read later through a ``tasks.torch_dataset.ImageFiles``."""

    uri: str
    manifests: Path
    files: frozenset[str]


@dataclass
class Library:
    """All sources' shares of the library, by source name (``inat2018``, ``cub200``, ...)."""

    sources: dict[str, SourceLibrary] = field(default_factory=dict)

    @property
    def tasks(self) -> list[TaskSpec]:
        return [t for lib in self.sources.values() for t in lib.tasks]

    @property
    def skips(self) -> list[Skip]:
        return [s for lib in self.sources.values() for s in lib.skips]

    def task(self, task_id: str) -> TaskSpec:
        for lib in self.sources.values():
            for t in lib.tasks:
                if t.task_id == task_id:
                    return t
        raise KeyError(f"no task {task_id!r} in the library")

    def examples(self, task_id: str, split: str) -> tuple[list[str], np.ndarray]:
        """Image paths (relative to the source root) and int64 local labels of one task's split."""
        task = self.task(task_id)
        return task_examples(task, self.sources[task.source], split)


def build_library(roots: dict[str, Path | RemoteRoot], config: LibraryConfig | None = None) -> Library:
    """Read each named dataset root with its adapter and cut the tasks.

    Args:
        roots: dataset name → dataset root (a folder, or a ``RemoteRoot``); any subset of ``list_adapters()``.
        config: task rules (caps, thresholds, image checks); the study's defaults when None.

    Raises:
        KeyError: an unknown dataset name.
        tasks.errors.ManifestError: a manifest that cannot be read (the message says where and how to fix).
    """
    config = config or LibraryConfig()
    unknown = sorted(set(roots) - set(list_adapters()))
    if unknown:
        raise KeyError(f"unknown dataset(s) {unknown}; known: {', '.join(list_adapters())}")
    library = Library()
    for name in list_adapters():  # fixed order, whatever order the caller used
        if name in roots:
            root = roots[name]
            if isinstance(root, RemoteRoot):
                log.info("reading %s manifests of %s (copied to %s)", name, root.uri, root.manifests)
                with listed_files(root.manifests, root.uri, root.files):
                    source = get_adapter(name)(root.manifests, config)
                # the adapter may have gone into a subfolder (CUB_200_2011): keep it under the URI
                sub = Path(source.root).relative_to(root.manifests).as_posix()
                library.sources[name] = replace(source, root=root.uri if sub == "." else f"{root.uri}/{sub}")
            else:
                log.info("reading %s manifests under %s", name, root)
                library.sources[name] = get_adapter(name)(Path(root), config)
    return library


def task_examples(task: TaskSpec, source: SourceLibrary, split: str) -> tuple[list[str], np.ndarray]:
    """The paths (relative to the source root) and local labels of ``task`` on ``split``."""
    idx, targets = task_rows(task, source, split)
    return source.images["path"].take(pa.array(idx)).to_pylist(), targets


def task_rows(task: TaskSpec, source: SourceLibrary, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``image_index`` values and int64 local labels of ``task`` on ``split``.

    Multi-class tasks take the images whose category is one of the task's classes (label = position in
    ``class_ids``). Binary tasks take every image of the source's split (label 1 where the task's label
    id is among the image's positives; "unknown" values count as negative, as mmfashion does).
    """
    images = source.images
    in_split = pc.equal(images["split"], split).to_numpy(zero_copy_only=False)
    if task.is_binary:
        idx = np.flatnonzero(in_split)
        targets = binary_targets(source, task.class_ids[0])[idx]
    else:
        cats = images["category_id"].fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        class_ids = np.asarray(task.class_ids, dtype=np.int64)
        lookup = np.full(max(int(class_ids.max()), int(cats.max(initial=0))) + 2, -1, dtype=np.int64)
        lookup[class_ids] = np.arange(len(class_ids))
        member = lookup[cats]  # category -1 (null) hits the last slot, which is always -1
        idx = np.flatnonzero((member >= 0) & in_split)
        targets = member[idx]
    return idx, targets.astype(np.int64)


def binary_targets(source: SourceLibrary, label_id: int) -> np.ndarray:
    """0/1 per image of ``source`` (indexed by ``image_index``) for one label id."""
    if source.labels is None:
        raise ValueError(f"source {source.source!r} has no label matrix; it has no binary tasks")
    n = source.images.num_rows
    positive = source.labels["positive"].combine_chunks()
    values = positive.flatten().to_numpy()
    parents = pc.list_parent_indices(positive).to_numpy()
    rows = source.labels["image_index"].to_numpy()
    out = np.zeros(n, dtype=np.int64)
    out[rows[parents[values == label_id]]] = 1
    return out


def tasks_table(tasks: list[TaskSpec]) -> pa.Table:
    """The ``tasks`` table (TASKS_SCHEMA) of a list of tasks."""
    cols = {
        "task_id": [t.task_id for t in tasks],
        "source": [t.source for t in tasks],
        "kind": [t.kind for t in tasks],
        "name": [t.name for t in tasks],
        "n_classes": [t.n_classes for t in tasks],
        "n_train": [t.n_train for t in tasks],
        "n_test": [t.n_test for t in tasks],
        "class_names": [list(t.class_names) for t in tasks],
        "class_ids": [list(t.class_ids) for t in tasks],
        "taxonomy": [list(t.taxonomy) for t in tasks],
        "image_group": [t.image_group for t in tasks],
        "rule": [t.rule for t in tasks],
    }
    return pa.table(cols, schema=TASKS_SCHEMA)


def tasks_from_table(table: pa.Table) -> list[TaskSpec]:
    """Inverse of ``tasks_table``."""
    return [
        TaskSpec(
            task_id=r["task_id"],
            source=r["source"],
            kind=r["kind"],
            name=r["name"],
            class_names=tuple(r["class_names"]),
            class_ids=tuple(r["class_ids"]),
            n_train=r["n_train"],
            n_test=r["n_test"],
            rule=r["rule"],
            image_group=r["image_group"],
            taxonomy=tuple(r["taxonomy"]),
        )
        for r in table.to_pylist()
    ]


def skips_table(skips: list[Skip]) -> pa.Table:
    """The ``skips`` table (SKIPS_SCHEMA): everything left out, with the reason."""
    return pa.table(
        {
            "source": [s.source for s in skips],
            "item": [s.item for s in skips],
            "reason": [s.reason for s in skips],
            "file": [s.file for s in skips],
            "line": [s.line for s in skips],
        },
        schema=SKIPS_SCHEMA,
    )
