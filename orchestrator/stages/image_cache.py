"""Stage ``image_cache``: every image of the run's tasks decoded once, resized, written in shards.

Runs first (before ``experts``) when ``input.cache`` is on. One unit per shard: ``input.shard_images``
images of one source, in ``image_index`` order. A unit reads its images (local folder or ``s3://``
dataset root), decodes each with ``tasks.transforms.decode`` (short side 256 for 224 px), writes the shard to
``<run>/image_shards/<unit key>.parquet`` (data first) and returns its rows of the ``image_cache`` table
(where each image is), which the commit protocol writes before the marker. A retry rewrites the same
shard key; a resumed run skips committed shards. Later stages read the shards through
``load_cache_indexes`` and ``ShardFiles`` (``SweepContext.image_cache``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import torch
import pyarrow.compute as pc

from orchestrator.commit import RunRecorder
from orchestrator.schemas import IMAGE_CACHE_SCHEMA, versioned
from orchestrator.store import ResultStore
from orchestrator.units import WorkUnit, digest
from tasks.image_cache import ImageCacheIndex, shard_table, write_shard
from tasks.library import Library
from tasks.spec import SourceLibrary, TaskSpec
from tasks.torch_dataset import load_rgb
from tasks.transforms import decode

STAGE = "image_cache"


def shard_key(run_id: str, unit_key: str) -> str:
    return f"{run_id}/image_shards/{unit_key}.parquet"


@dataclass(frozen=True)
class BuildImageShard(WorkUnit):
    stage: ClassVar[str] = STAGE
    source: str
    shard: int
    image_indices: tuple[int, ...]

    @property
    def label(self) -> str:
        return f"{self.source} shard {self.shard} ({len(self.image_indices)} images)"

    def run(self, ctx) -> dict[str, pa.Table]:
        cfg = ctx.config.input
        src = ctx.library.sources[self.source]
        paths = src.images["path"].take(pa.array(self.image_indices, pa.int64())).to_pylist()
        files = ctx.dataset_files(self.source)
        size = ctx.config.runtime.image_size

        def load(path: str) -> torch.Tensor:
            return decode(load_rgb(src.root, path, files), size)

        # PIL releases the GIL while decoding and resizing; threads also hide S3 latency
        with ThreadPoolExecutor(max_workers=max(1, int(ctx.config.runtime.cpus_per_worker))) as pool:
            images = list(pool.map(load, paths))
        table = shard_table(np.asarray(self.image_indices), images, cfg.cache_encoding, quality=cfg.cache_quality)
        sink = pa.BufferOutputStream()
        write_shard(table, sink)
        key = shard_key(ctx.run_id, self.key)
        data = sink.getvalue()
        ctx.store.write_bytes(key, data)
        n = table.num_rows
        sha = hashlib.sha256(memoryview(data)).hexdigest()
        index = pa.table({
            "run_id": [ctx.run_id] * n, "source": [self.source] * n, "image_index": table["image_index"],
            "shard": [key] * n, "shard_sha256": [sha] * n, "row": pa.array(np.arange(n, dtype=np.int32)),
            "encoding": [cfg.cache_encoding] * n, "height": table["height"], "width": table["width"],
            "bytes": pc.binary_length(table["data"]),
        }, schema=versioned(IMAGE_CACHE_SCHEMA, STAGE))
        return {STAGE: index}


def plan_image_cache(config, library: Library, tasks: list[TaskSpec]) -> list[WorkUnit]:
    """The shard units of the images the selected ``tasks`` use (every split); none if the cache is off."""
    if not config.input.cache:
        return []
    inp = config.input
    cache_digest = digest([config.runtime.image_size, inp.cache_encoding, inp.cache_quality])
    units: list[WorkUnit] = []
    for name, source in library.sources.items():
        members = [t for t in tasks if t.source == name]
        if not members:
            continue
        idx = source_images(source, members)
        for shard, start in enumerate(range(0, len(idx), inp.shard_images)):
            chunk = tuple(int(i) for i in idx[start : start + inp.shard_images])
            units.append(BuildImageShard(cache_digest, name, shard, chunk))
    return units


def source_images(source: SourceLibrary, tasks: list[TaskSpec]) -> np.ndarray:
    """Sorted ``image_index`` of every image (any split) that one of ``tasks`` of ``source`` uses."""
    n = source.images.num_rows
    if any(t.is_binary for t in tasks):  # a binary task uses every image of its source
        return np.arange(n, dtype=np.int64)
    cats = source.images["category_id"].fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    wanted = np.unique(np.concatenate([np.asarray(t.class_ids, dtype=np.int64) for t in tasks]))
    return np.flatnonzero(np.isin(cats, wanted)).astype(np.int64)


def index_key(run_id: str) -> str:
    """The whole ``image_cache`` table in one file, written once the stage is complete ('_': not a part)."""
    return f"{run_id}/{STAGE}/_index.parquet"


def write_cache_index(store: ResultStore, run_id: str) -> None:
    """After a complete ``image_cache`` stage: its committed parts in one file, so that each worker reads
    one object instead of every marker of the run."""
    if not store.exists(index_key(run_id)):
        table = RunRecorder(store, run_id).read_committed(STAGE, stage=STAGE)
        if table is not None:
            store.write_table(index_key(run_id), table)


def load_cache_indexes(store: ResultStore, run_id: str) -> dict[str, ImageCacheIndex]:
    """Source → index of its committed cached images (empty when no shard is committed)."""
    if store.exists(index_key(run_id)):
        table = store.read_table(index_key(run_id))
    else:  # the stage is not complete (failed units): what is committed
        table = RunRecorder(store, run_id).read_committed(STAGE, stage=STAGE)
    if table is None:
        return {}
    out = {}
    sources = table["source"].to_numpy(zero_copy_only=False)
    for name in np.unique(sources):
        rows = table.filter(pa.array(sources == name))
        encodings = set(rows["encoding"].to_pylist())
        if len(encodings) != 1:
            raise ValueError(f"{store.uri}/{run_id}: the image cache of {name} mixes encodings {sorted(encodings)}")
        names = [f"{key}#{sha}" for key, sha in zip(rows["shard"].to_pylist(), rows["shard_sha256"].to_pylist())]
        out[str(name)] = ImageCacheIndex.from_rows(encodings.pop(), rows["image_index"].to_numpy(), names,
                                                   rows["row"].to_numpy())
    return out


@dataclass(frozen=True)
class ShardFiles:
    """Opens cached shards by the names ``load_cache_indexes`` gives them (``<store key>#<sha256>``): in
    place for a local store; from an S3 store, after one download per node to ``local_dir``, named by the
    shard's digest (a copy left by another run or code version under the same key is never used)."""

    store: ResultStore
    local_dir: str | None = None

    def __call__(self, name: str) -> str:
        key, _, sha = name.partition("#")
        if self.store.is_local:
            return self.store.path(key)
        base = Path(self.local_dir or Path(tempfile.gettempdir()) / "task-sweep-shards")
        local = base / hashlib.sha256(self.store.uri.encode()).hexdigest()[:16] / f"{key}.{sha[:32]}"
        if not local.is_file():
            local.parent.mkdir(parents=True, exist_ok=True)
            # one download per node: the loader processes of all workers wait for the first one
            with open(local.with_name(f".{local.name}.lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not local.is_file():
                    tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex[:12]}.tmp")
                    tmp.write_bytes(self.store.read_bytes(key))
                    os.replace(tmp, local)  # atomic: a reader without the lock sees all of it or nothing
        return str(local)
