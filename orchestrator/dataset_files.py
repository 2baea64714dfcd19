"""Dataset roots in S3 (``datasets.inat2018: s3://bucket/inat2018``), read through the store layer.

Building the library (``build_library_from_roots``): ``stage_remote_root`` lists the root once, copies
its manifests (every file that is not an image) to a fresh temporary folder, and returns a
``tasks.library.RemoteRoot``: the adapters read the copies, and judge whether an image exists by the
listing; the copies are removed once the library is built. Reading images later: ``StoreFiles`` (a
``tasks.torch_dataset.ImageFiles``) reads them by relative path, with the same endpoint, credentials
chain and retries as the result store (``ResultStore.sibling``). With the image cache on, each image is
read from S3 once per run, by the ``image_cache`` stage.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from orchestrator.store import ResultStore
from tasks.config import LibraryConfig
from tasks.errors import TaskSweepInputError
from tasks.library import Library, RemoteRoot, build_library

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")


def is_remote(root: object) -> bool:
    return str(root).startswith("s3://")


@dataclass(frozen=True)
class StoreFiles:
    """A dataset's files by relative path, from the store opened at its root (pickles: workers reopen it)."""

    store: ResultStore

    def read_bytes(self, relpath: str) -> bytes:
        return self.store.read_bytes(relpath)


def dataset_files(results: ResultStore, root: str) -> StoreFiles | None:
    """The ``ImageFiles`` of a remote dataset root; None for a local folder (read directly)."""
    return StoreFiles(results.sibling(root)) if is_remote(root) else None


def build_library_from_roots(results: ResultStore, roots: dict[str, Path | str], config: LibraryConfig) -> Library:
    """``tasks.library.build_library`` over folders and ``s3://`` roots (read with ``results``' endpoint and
    credentials); the staged manifests are removed afterwards."""
    staged: dict[str, Path | RemoteRoot] = {}
    try:
        for name, root in roots.items():
            staged[name] = stage_remote_root(results, str(root)) if is_remote(root) else Path(root)
        return build_library(staged, config)
    finally:
        for root in staged.values():
            if isinstance(root, RemoteRoot):
                shutil.rmtree(root.manifests, ignore_errors=True)


def stage_remote_root(results: ResultStore, uri: str) -> RemoteRoot:
    """List ``uri`` and copy its non-image files to a fresh temporary folder (the caller removes it).

    Raises:
        TaskSweepInputError: the root lists no file at all (wrong bucket or prefix).
    """
    store = results.sibling(uri)
    keys = store.list("")
    if not keys:
        raise TaskSweepInputError(f"dataset root {uri}: no files under it; check the bucket and prefix "
                                  "(and the S3 endpoint / credentials)")
    target = Path(tempfile.mkdtemp(prefix="task-sweep-manifests-"))
    manifests = [k for k in keys if not k.lower().endswith(IMAGE_SUFFIXES)]
    log.info("%s: %d files, copying %d manifest file(s) to %s", uri, len(keys), len(manifests), target)
    for key in manifests:
        path = target / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(store.read_bytes(key))
    return RemoteRoot(uri=store.uri, manifests=target, files=frozenset(keys))
