"""The ``image_cache`` stage: shards built once, exactly-once and resumable; later stages read them; a
sweep over an ``s3://`` dataset root (SeaweedFS) with results on S3, read back."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator.commit import RunRecorder
from orchestrator.config import SweepConfig
from orchestrator.driver import run_stage
from orchestrator.runners import InlineRunner
from orchestrator.stages.image_cache import (
    index_key,
    load_cache_indexes,
    shard_key,
    source_images,
    write_cache_index,
)
from orchestrator.store import open_store
from orchestrator.sweep import ensure_library, full_plan, launch, make_worker_state
from tasks.image_cache import CachedImageDataset
from tasks.torch_dataset import TaskImageDataset


def _config(root: str | Path, task_ids: list[str], **extra) -> SweepConfig:
    return SweepConfig.model_validate({
        "datasets": {"cub200": str(root)},
        "tasks": {"include": task_ids},
        "experts": {"epochs": 1, "batch_size": 16},
        "heads": {"epochs": 10},
        "embeddings": {"probe": "tiny_resnet", "max_samples": 16, "fisher_samples": 16, "head_epochs": 1,
                       "batch_size": 16},
        "runtime": {"image_size": 32, "feature_batch_size": 64, "runner": "inline"},
        **extra,
    })


def _cache_off(config: SweepConfig) -> SweepConfig:
    return config.model_copy(update={"input": config.input.model_copy(update={"cache": False})})


def _cub_tasks(mini_library, n: int = 2) -> list[str]:
    return [t.task_id for t in mini_library.tasks if t.source == "cub200"][:n]


def _stage(store, run_id, config):
    library = ensure_library(store, run_id, config)
    the_plan = full_plan(config, library)
    units = the_plan.stages["image_cache"]
    ctx, recorder = make_worker_state(store, run_id, config)
    return library, the_plan, units, ctx, recorder


def test_cache_stage_is_exactly_once_and_resumes(tmp_path, mini_roots, mini_library) -> None:
    config = _config(mini_roots["cub200"], _cub_tasks(mini_library), input={"shard_images": 16})
    store = open_store(str(tmp_path / "results"))
    library, the_plan, units, ctx, recorder = _stage(store, "r", config)
    wanted = source_images(library.sources["cub200"], the_plan.tasks)
    assert len(units) == -(-len(wanted) // 16) >= 3
    # a first run that stops half-way: some units committed, one crashed after its shard (no marker)
    half = len(units) // 2
    run_stage("image_cache", units[:half], InlineRunner(lambda: ctx, recorder), recorder, show_progress=False)
    crashed = units[half]
    store.write_bytes(shard_key("r", crashed.key), b"partial shard of a crashed attempt")
    committed = sum(len(u.image_indices) for u in units[:half])
    assert len(load_cache_indexes(store, "r")["cub200"].image_index) == committed
    # the resume: committed units are skipped, the crashed one rewritten, every image exactly once
    report = run_stage("image_cache", units, InlineRunner(lambda: ctx, recorder), recorder, show_progress=False)
    assert (report.skipped, report.committed, report.failed) == (half, len(units) - half, [])
    index = load_cache_indexes(store, "r")["cub200"]
    assert np.array_equal(index.image_index, wanted)  # sorted, unique: no image twice, none missing
    assert sorted(store.list("r/image_shards")) == sorted(shard_key("r", u.key) for u in units)
    table = RunRecorder(store, "r").read_committed("image_cache")
    assert table.num_rows == len(wanted) and set(table["encoding"].to_pylist()) == {"raw"}
    write_cache_index(store, "r")  # what the sweep does once the stage is complete: one file for the workers
    assert store.read_table(index_key("r")).equals(table)
    assert np.array_equal(load_cache_indexes(store, "r")["cub200"].image_index, wanted)
    assert store.read_dataset("r/image_cache").count_rows() == len(wanted)  # '_index' is not read as a part
    # a retried unit writes the very same shard bytes
    before = store.read_bytes(shard_key("r", crashed.key))
    crashed.run(ctx)
    assert store.read_bytes(shard_key("r", crashed.key)) == before


@pytest.mark.usefixtures("one_thread")
def test_later_stages_read_the_cache_and_match_the_raw_path(tmp_path, mini_roots, mini_library) -> None:
    config = _config(mini_roots["cub200"], _cub_tasks(mini_library))
    store = open_store(str(tmp_path / "results"))
    library, the_plan, units, ctx, recorder = _stage(store, "r", config)
    run_stage("image_cache", units, InlineRunner(lambda: ctx, recorder), recorder, show_progress=False)
    task = the_plan.tasks[0]
    uncached, _ = make_worker_state(store, "r", _cache_off(config))
    for train in (False, True):
        fast = ctx.dataset(task, "train", train_transform=train)
        slow = uncached.dataset(task, "train", train_transform=train)
        assert isinstance(fast, CachedImageDataset) and isinstance(slow, TaskImageDataset)
        assert len(fast) == len(slow) == task.n_train
        for i in range(0, len(fast), 7):
            torch.manual_seed(i)
            a, ya = fast[i]
            torch.manual_seed(i)
            b, yb = slow[i]
            assert ya == yb and torch.equal(a, b)  # raw encoding: the very same input tensors
    # one reader (and one set of open shard files) per source, whatever the number of task datasets
    other = ctx.dataset(the_plan.tasks[1], "test")
    assert other.reader is ctx.dataset(task, "train").reader is ctx.image_cache("cub200")


@pytest.mark.usefixtures("one_thread")
def test_loader_processes_from_the_cpus_read_the_cache_in_parallel(tmp_path, mini_roots, mini_library) -> None:
    """Two loader processes (cpus_per_worker 3) read the shards and give the features one process gives."""
    from experts.features import extract_features

    config = _config(mini_roots["cub200"], _cub_tasks(mini_library), input={"shard_images": 16})
    config = config.model_copy(update={"runtime": config.runtime.model_copy(update={"cpus_per_worker": 3.0})})
    store = open_store(str(tmp_path / "results"))
    library, the_plan, units, ctx, recorder = _stage(store, "r", config)
    run_stage("image_cache", units, InlineRunner(lambda: ctx, recorder), recorder, show_progress=False)
    assert ctx.loader.workers == 2 and not ctx.loader.pin_memory
    images = ctx.images("cub200", source_images(library.sources["cub200"], the_plan.tasks))
    assert isinstance(images, CachedImageDataset)
    body = ctx.probe.body
    parallel = extract_features(body, images, device="cpu", batch_size=8, num_workers=ctx.loader.workers)
    assert torch.equal(parallel, extract_features(body, images, device="cpu", batch_size=8, num_workers=0))


def _upload(s3_server, root: Path) -> str:
    """The dataset under ``root`` copied to the bucket (once per session); its ``s3://`` URI."""
    prefix = f"datasets/{root.parent.name}/{root.name}"
    client = s3_server.client()
    if client.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix + "/").get("KeyCount", 0) == 0:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{path.relative_to(root).as_posix()}",
                              Body=path.read_bytes())
    return s3_server.uri(prefix)


def test_library_command_reads_an_s3_root(s3_server, mini_roots, mini_library, monkeypatch) -> None:
    from click.testing import CliRunner

    from orchestrator.cli import main

    uri = _upload(s3_server, Path(mini_roots["cub200"]))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    results = s3_server.uri(f"results/library-{uuid.uuid4().hex[:12]}")
    out = CliRunner().invoke(main, ["library", "--cub200", uri, "--results", results, "--s3-endpoint",
                                    s3_server.endpoint, "--run-id", "lib"])
    assert out.exit_code == 0, out.output
    store = open_store(results, **s3_server.store_kwargs())
    tasks = store.read_table("lib/tasks/cub200.parquet")
    assert sorted(tasks["task_id"].to_pylist()) == sorted(t.task_id for t in mini_library.tasks if t.source == "cub200")


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_sweep_over_an_s3_dataset_root_with_the_cache(s3_server, mini_roots, mini_library) -> None:
    """The mini CUB uploaded to a bucket; results on S3 too; the library, the cache and every stage read it."""
    root = Path(mini_roots["cub200"])
    uri = _upload(s3_server, root)
    config = _config(uri, _cub_tasks(mini_library), input={"shard_images": 32})
    store = open_store(s3_server.uri(f"results/{uuid.uuid4().hex[:12]}"), **s3_server.store_kwargs())
    info = launch(config, store, run_id="s3", show_progress=False)
    assert info["complete"], info["stages"]
    summary = store.read_json("s3/library.json")
    assert summary["roots"]["cub200"] == f"{uri}/CUB_200_2011"  # the adapter's subfolder, under the URI
    local_counts = {t.task_id: t.n_train for t in mini_library.tasks if t.source == "cub200"}
    library = ensure_library(store, "s3", config)
    assert {t.task_id: t.n_train for t in library.tasks} == local_counts  # every image found through the listing
    cache = store.read_dataset("s3/image_cache").to_table()
    assert cache.num_rows == len(set(cache["image_index"].to_pylist())) > 0
    assert info["stages"]["image_cache"]["committed"] == info["stages"]["image_cache"]["planned"] > 0
    heads = store.read_dataset("s3/heads").to_table()
    assert heads.num_rows == len(_cub_tasks(mini_library)) and all(0 <= e <= 1 for e in heads["test_error"].to_pylist())
    # a resume recomputes nothing, the cache included
    again = launch(config, store, run_id="s3", resume=True, show_progress=False)
    assert all(s["committed"] == 0 for s in again["stages"].values())
    # with the cache off, units read the images from the bucket itself: the same inputs
    cached, _ = make_worker_state(store, "s3", config)
    direct, _ = make_worker_state(store, "s3", _cache_off(config))
    task = library.tasks[0]
    a, b = cached.dataset(task, "test"), direct.dataset(task, "test")
    assert isinstance(a, CachedImageDataset) and isinstance(b, TaskImageDataset) and b.files is not None
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(0, len(a), 5))
