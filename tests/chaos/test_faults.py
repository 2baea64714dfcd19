"""Faults during a sweep, on real Ray and the real S3 server: each run ends with every planned unit
committed exactly once and the same values as the undisturbed baseline."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from orchestrator.store import open_store
from orchestrator.sweep import ensure_library, launch
from tests.chaos.chaos_helpers import (
    assert_same_values, busy_workers, chaos_config, chaos_config_dict, committed_rows, exactly_once, finish,
    launch_in_thread, pid_alive, processes_running, wait_for,
)
from tests.chaos.conftest import FIGURES


def _busy_worker(old: set[int]) -> int | None:
    still = busy_workers(old)
    return min(still) if still else None


def test_worker_process_killed_mid_unit(baseline, tmp_path, ray_local) -> None:
    config, the_plan, want = baseline
    store = open_store(str(tmp_path / "results"))
    old = set(processes_running("ray::"))  # earlier runs' workers, which Ray may keep around
    t0 = time.monotonic()
    thread, result = launch_in_thread(config, store, "killed-worker")
    killed = []
    for _ in range(2):  # two kills, in different stages if the timing allows
        pid = wait_for(lambda: _busy_worker(old), 120, "a worker running a unit")
        os.kill(pid, signal.SIGKILL)
        killed.append((pid, time.monotonic()))
        wait_for(lambda: not pid_alive(pid), 10, "the killed worker to go")
    info = finish(thread, result)
    seconds = time.monotonic() - t0
    assert info["complete"]
    losses = sum(s["worker_losses"] for s in info["stages"].values())
    assert losses >= 1
    counts = exactly_once(store, "killed-worker", the_plan)
    assert_same_values(committed_rows(store, "killed-worker"), want)
    FIGURES["worker killed"] = {**counts, "kills": len(killed), "worker_losses": losses,
                                "seconds": round(seconds, 1)}


def test_poisoned_task_is_recorded_and_the_sweep_completes(baseline, tmp_path, mini_roots, mini_library,
                                                           ray_local) -> None:
    config, the_plan, want = baseline
    roots = {k: tmp_path / k for k in ("inat2018", "cub200")}
    for name, root in roots.items():
        shutil.copytree(mini_roots[name], root, symlinks=True)
    poisoned_config = chaos_config(roots, mini_library)
    store = open_store(str(tmp_path / "results"))
    library = ensure_library(store, "poisoned", poisoned_config)  # built from good images
    poisoned, files = _disjoint_task(library, poisoned_config.tasks.include)
    for path in files:  # then that task's JPEGs are truncated on disk: every attempt raises
        path.write_bytes(path.read_bytes()[:40])
    info = launch(poisoned_config, store, run_id="poisoned", show_progress=False)
    failed = {k for s in info["stages"].values() for k in s["failed"]}
    assert failed and not info["complete"] and not store.exists("poisoned/_SUCCESS")
    failures = [r for k in store.list("poisoned/failures") for r in store.read_table(k).to_pylist()]
    assert {r["unit_key"] for r in failures} == failed
    assert all(r["attempts"] == config.runtime.max_attempts for r in failures)
    names = {str(f) for f in files}  # each failure names one of the poisoned files (what, where)
    assert all(any(n in r["message"] for n in names) for r in failures if r["stage"] != "distances"), failures
    counts = exactly_once(store, "poisoned", the_plan, failed=failed)
    untouched = lambda table, r: poisoned in (r.get("task_id"), r.get("task_a"), r.get("task_b")) or table == "distances"
    got = committed_rows(store, "poisoned")
    assert_same_values(got, want, skip=untouched)
    FIGURES["poisoned task"] = {**counts, "failed": len(failed), "failure_rows": len(failures)}


def _disjoint_task(library, task_ids):
    """A selected task whose images no other selected task uses, and its image files."""
    images = {}
    for tid in task_ids:
        task = next(t for t in library.tasks if t.task_id == tid)
        root = library.sources[task.source].root
        images[tid] = {Path(root) / p for split in ("train", "test") for p in library.examples(tid, split)[0]}
    for tid in reversed(task_ids[1:]):  # never the expert's task
        if all(not (images[tid] & images[o]) for o in task_ids if o != tid):
            return tid, sorted(images[tid])
    raise AssertionError("no selected task has images of its own; change chaos_tasks")


def test_s3_server_restarted_while_units_write(baseline, s3_server, ray_local, caplog, capfd) -> None:
    config, the_plan, want = baseline
    store = open_store(s3_server.uri("chaos-restart"), **s3_server.store_kwargs())
    caplog.set_level(logging.DEBUG, logger="orchestrator")  # ours; the fixture's own boto3 debug logs sign with the key
    thread, result = launch_in_thread(config, store, "s3-restart")
    wait_for(lambda: len(store.list("s3-restart/_done")) >= 2, 120, "two committed units")
    t0 = time.monotonic()
    s3_server.restart(down_s=3.0)
    down = time.monotonic() - t0
    info = finish(thread, result)
    seconds = time.monotonic() - t0
    assert info["complete"]
    counts = exactly_once(store, "s3-restart", the_plan)
    assert_same_values(committed_rows(store, "s3-restart"), want)
    FIGURES["S3 restarted"] = {**counts, "server_down_s": round(down, 1), "server_start_s": round(s3_server.start_seconds, 1),
                             "seconds_from_restart": round(seconds, 1)}
    # secrets: nothing the sweep printed, logged or wrote carries the key or the secret
    out, err = capfd.readouterr()
    said = out + err + "\n".join(r.getMessage() for r in caplog.records)
    client = s3_server.client()
    objects = client.list_objects_v2(Bucket=s3_server.bucket, Prefix="chaos-restart/")["Contents"]
    blobs = [client.get_object(Bucket=s3_server.bucket, Key=o["Key"])["Body"].read() for o in objects]
    assert len(blobs) > counts["committed"]
    for secret in (s3_server.secret_key, s3_server.access_key):
        assert secret not in said
        assert not [o["Key"] for o, b in zip(objects, blobs) if secret.encode() in b]


def test_driver_killed_then_resumed(baseline, tmp_path, mini_roots, mini_library) -> None:
    config, the_plan, want = baseline
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(yaml.safe_dump(chaos_config_dict(mini_roots, mini_library)))
    results = tmp_path / "results"
    args = [sys.executable, "-m", "orchestrator.cli", "launch", "--config", str(cfg), "--results", str(results)]
    driver = subprocess.Popen([*args, "--run-id", "killed-driver"], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    markers = results / "killed-driver" / "_done"
    wait_for(lambda: markers.is_dir() and len(list(markers.iterdir())) >= 4, 120, "four committed units", 0.05)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the private Ray it started
    driver.wait(10)
    before = _committed_snapshot(results, "killed-driver")
    t0 = time.monotonic()
    resumed = subprocess.run([*args, "--resume", "killed-driver"], capture_output=True, text=True, timeout=240)
    recover = time.monotonic() - t0
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _committed_snapshot(results, "killed-driver")
    assert {k: after[k] for k in before} == before  # bytes and mtimes untouched
    store = open_store(str(results))
    info = store.read_json("killed-driver/run.json")
    markers_before = sum(1 for k in before if "/_done/" in k)
    assert sum(s["skipped"] for s in info["stages"].values()) == markers_before
    counts = exactly_once(store, "killed-driver", the_plan)
    assert_same_values(committed_rows(store, "killed-driver"), want)
    FIGURES["driver killed + --resume"] = {**counts, "committed_before_kill": markers_before,
                                           "resume_s": round(recover, 1)}


def _committed_snapshot(results: Path, run_id: str) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every marker and of every part a marker lists."""
    out = {}
    for marker in sorted((results / run_id / "_done").iterdir()):
        for path in [marker, *(results / p for p in json.loads(marker.read_text())["parts"])]:
            out[str(path)] = (path.read_bytes(), path.stat().st_mtime_ns)
    return out
