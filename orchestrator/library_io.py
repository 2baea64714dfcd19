"""Writing the task library to a result store and reading it back.

Layout under ``<results>/<run_id>/``: ``tasks/<source>.parquet``, ``images/<source>.parquet``,
``labels/<source>.parquet`` (multi-label sources), ``skips/<source>.parquet`` and ``library.json``
(dataset roots, the task rules used, counts). Each table is one folder of parts, readable with
``pyarrow.dataset.dataset(<results>/<run_id>/tasks)``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pyarrow as pa

from orchestrator.store import ResultStore
from tasks.config import LibraryConfig
from tasks.library import Library, skips_table, tasks_from_table, tasks_table
from tasks.spec import Skip, SourceLibrary, TaskSpec
from tasks.tables import IMAGES_SCHEMA, LABELS_SCHEMA, SKIPS_SCHEMA, TASKS_SCHEMA, with_version

LIBRARY_TABLES = ("tasks", "images", "labels", "skips")


def write_library(store: ResultStore, run_id: str, library: Library, config: LibraryConfig) -> dict:
    """Write every source's tables, then ``library.json`` last (its presence means the library is complete).

    Returns the summary written to ``library.json``.
    """
    counts: dict[str, dict[str, int]] = {}
    for name, src in library.sources.items():
        store.write_table(f"{run_id}/tasks/{name}.parquet", _cast(tasks_table(src.tasks), TASKS_SCHEMA, "tasks"))
        store.write_table(f"{run_id}/images/{name}.parquet", _cast(src.images, IMAGES_SCHEMA, "images"))
        if src.labels is not None:
            store.write_table(f"{run_id}/labels/{name}.parquet", _cast(src.labels, LABELS_SCHEMA, "labels"))
        store.write_table(f"{run_id}/skips/{name}.parquet", _cast(skips_table(src.skips), SKIPS_SCHEMA, "skips"))
        counts[name] = {"tasks": len(src.tasks), "images": src.images.num_rows, "skips": len(src.skips)}
    summary = {
        "run_id": run_id,
        "roots": {name: str(Path(src.root).resolve()) for name, src in library.sources.items()},
        "config": config.model_dump(mode="json"),
        "counts": counts,
        "n_tasks": sum(c["tasks"] for c in counts.values()),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    store.write_json(f"{run_id}/library.json", summary)
    return summary


def load_library(store: ResultStore, run_id: str) -> Library:
    """Read a library written by ``write_library`` back into memory."""
    key = f"{run_id}/library.json"
    if not store.exists(key):
        raise FileNotFoundError(
            f"{store.uri}/{key} not found: no complete task library for run {run_id!r} "
            "(build it with `orchestrate library ... --run-id RUN`)"
        )
    summary = store.read_json(key)
    library = Library()
    for name, root in summary["roots"].items():
        labels_key = f"{run_id}/labels/{name}.parquet"
        library.sources[name] = SourceLibrary(
            source=name,
            root=root,
            images=store.read_table(f"{run_id}/images/{name}.parquet"),
            labels=store.read_table(labels_key) if store.exists(labels_key) else None,
            tasks=source_tasks(store, run_id, name),
            skips=[Skip(**row) for row in store.read_table(f"{run_id}/skips/{name}.parquet").to_pylist()],
        )
    return library


def source_tasks(store: ResultStore, run_id: str, source: str) -> list[TaskSpec]:
    return tasks_from_table(store.read_table(f"{run_id}/tasks/{source}.parquet"))


def load_library_tasks(store: ResultStore, run_id: str) -> list[TaskSpec]:
    """The run's library tasks in the order the sweep planned them (``Library.tasks``), without the images."""
    roots = store.read_json(f"{run_id}/library.json")["roots"]
    return [t for name in roots for t in source_tasks(store, run_id, name)]


def _cast(table: pa.Table, schema: pa.Schema, name: str) -> pa.Table:
    return table.select(schema.names).cast(with_version(schema, name))


def ensure_mini_datasets(mini_dir: Path, seed: int = 0) -> dict[str, Path]:
    """The mini datasets' roots, generating them first when ``mini_dir`` holds none."""
    import json

    from tasks.mini import DATASETS, MARKER, generate_mini_datasets

    marker = mini_dir / MARKER  # written last by the generator
    if marker.exists() and json.loads(marker.read_text()).get("seed") == seed:
        return {name: mini_dir / name for name in DATASETS}
    logging.getLogger(__name__).info("generating the mini datasets under %s", mini_dir)
    return generate_mini_datasets(mini_dir, seed=seed)
