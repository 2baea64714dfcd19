"""Benchmark: the Task2Vec study at full scale, rehearsed with tiny images (issue 15).

Full-scale manifests in the real formats (the project's generators, ``bench_library.py``), a real
small JPEG for every image they list (hard links to a few hundred distinct 24 px JPEGs), then
``orchestrate launch --preset task2vec-study`` (every task, 156 experts, a head on every (expert,
task) pair, Monte Carlo + variational + domain embeddings, every distance) at tiny budgets
(``tiny_resnet``, 16 px, one epoch, 64 Fisher samples) on a private local Ray with 2 workers, and
``orchestrate report``. The driver is SIGKILLed in the middle of the heads stage and the run is
finished with ``--resume``; the objects committed before the kill must come back untouched.

``--fraction F`` keeps every task (1,458) but only a fraction of each dataset's images:
- iNat: ``F`` of each order's species (``round(n × F)``, at least 2, at most the order's ``n``: every
  order of two or more species stays a candidate task, so the 207 order tasks stay), ``F`` of the
  437,513 training images (one per kept species at least) and ``round(3 × F)`` validation images per
  kept species (at least 1). Below 39,498 training images the orders' ranking is no longer the Task2Vec
  one (ties broken by order name), so which 207 of the 208 candidate orders are tasks may differ.
  At 0.02: 541 species, 8,750 + 541 images.
- CUB: ``F`` of the 11,788 images, two per class at least (400); iMaterialist: ``F`` of the training
  and validation images, 1,000 and 100 at least; DeepFashion: ``F`` of the 289,222 images, 3,000 at least.
``--experts N`` keeps N of the preset's fine-tuned experts (a machine too small for 155).
``--s3`` writes to a SeaweedFS server on 127.0.0.1 (else a local folder); ``--ray-job`` starts a
two-node Ray cluster with ``ray start`` and submits the driver with ``ray job submit``. The last
line printed is one JSON object (``rehearse`` builds it).

Usage: ``python benchmarks/rehearsal.py [--fraction 0.02] [--experts N] [--s3] [--ray-job] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.synth_cub_imat import write_cub_manifests, write_imat_manifests  # noqa: E402
from benchmarks.synth_deepfashion import REAL_IMAGES, write_deepfashion_manifests  # noqa: E402
from benchmarks.synth_inat2018 import N_TRAIN, VAL_PER_SPECIES, write_inat2018_manifests  # noqa: E402

RUN_ID = "rehearsal"
DISTINCT_JPEGS = 300
STAGE_LINE = re.compile(r"stage (\w+): (\d+) planned, (\d+) already committed, (\d+) committed now, "
                        r"(\d+) failed in ([\d.]+) s")
UNITS_LINE = re.compile(r"stage (\w+): (\d+) units, (\d+) to run")
RAY_UP_LINE = re.compile(r"Ray runner: \d+ worker actor")
RAY_STARTUP_TIMEOUT = "timed out during startup"  # ray.init gives a new node 30 s (hard-coded in Ray)
RAY_STARTUP_TRIES = 10

# The study at tiny budgets: what the task2vec-study preset holds, with the compute turned down.
TINY = {
    "experts": {"epochs": 1, "batch_size": 64},
    "heads": {"pairs": "all", "epochs": 5},
    "embeddings": {"probe": "tiny_resnet", "methods": ["montecarlo", "variational"], "domain": True,
                   "max_samples": 64, "fisher_samples": 64, "head_epochs": 1, "batch_size": 64},
    "runtime": {"image_size": 16, "feature_batch_size": 256, "workers": 2, "cpus_per_worker": 1},
    "report": {"bootstrap": 100, "folds": 3},
}


# -- data -----------------------------------------------------------------------------------------
def write_datasets(work: Path, fraction: float) -> dict[str, Path]:
    """Manifests of every dataset at ``fraction`` of its images (generated once per fraction)."""
    writers = {
        "inat2018": lambda r: write_inat2018_manifests(r, n_train=round(N_TRAIN * fraction), species_fraction=fraction,
                                                       val_per_species=max(1, round(VAL_PER_SPECIES * fraction))),
        "cub200": lambda r: write_cub_manifests(r, n_images=round(11_788 * fraction)),
        "imat2018": lambda r: write_imat_manifests(r, n_train=max(1000, round(1_014_544 * fraction)),
                                                   n_val=max(100, round(9_897 * fraction))),
        "deepfashion": lambda r: write_deepfashion_manifests(r, n_images=max(3000, round(REAL_IMAGES * fraction))),
    }
    roots = {}
    for name, write in writers.items():
        root = work / name
        if not (root / ".manifests-done").exists():
            t = time.perf_counter()
            write(root)
            (root / ".manifests-done").write_text("")
            log(f"generated {name} manifests in {time.perf_counter() - t:.1f} s")
        roots[name] = root
    return roots


def listed_images(name: str, root: Path) -> list[str]:
    """Every image path a dataset's manifests list, relative to the root its adapter reads them from."""
    if name == "inat2018":
        return [m for f in ("train2018.json", "val2018.json")
                for m in re.findall(r'"file_name": "([^"]+)"', (root / f).read_text())]
    if name == "cub200":
        lines = (root / "CUB_200_2011" / "images.txt").read_text().split("\n")
        return [f"CUB_200_2011/images/{line.split()[1]}" for line in lines if line.strip()]
    if name == "imat2018":
        return [f"{folder}/{i}.jpg" for f, folder in (("train.json", "train"), ("validation.json", "validation"))
                for i in re.findall(r'"imageId": "(\d+)"', (root / f).read_text().split('"annotations"')[0])]
    lines = (root / "Eval" / "list_eval_partition.txt").read_text().split("\n")[2:]
    return [line.split()[0] for line in lines if line.strip()]


def link_images(roots: dict[str, Path], pool: Path) -> dict[str, int]:
    """Hard-link one of ``DISTINCT_JPEGS`` tiny JPEGs at every listed path; returns images per dataset."""
    from PIL import Image

    pool.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    jpegs = []
    for k in range(DISTINCT_JPEGS):
        path = pool / f"{k:03d}.jpg"
        if not path.exists():
            pixels = (rng.random((24, 24, 3)) * 64 + rng.integers(0, 192, size=3)).astype(np.uint8)
            Image.fromarray(pixels).save(path, quality=85)
        jpegs.append(path)
    counts = {}
    for name, root in roots.items():
        paths = listed_images(name, root)
        counts[name] = len(paths)
        if (root / ".images-done").exists():
            continue
        t = time.perf_counter()
        for i, rel in enumerate(paths):
            target = root / rel
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(jpegs[i % DISTINCT_JPEGS], target)
        (root / ".images-done").write_text("")
        log(f"linked {len(paths):,} {name} images in {time.perf_counter() - t:.1f} s")
    return counts


def disk_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


# -- the study's config ---------------------------------------------------------------------------
def study_config(roots: dict[str, Path], *, experts: int | None) -> dict:
    """The config file over ``--preset task2vec-study``: dataset roots and tiny budgets.

    ``experts``: keep only this many fine-tuned experts (the preset's iNat+CUB rule and meta-task, cut),
    for a machine too small for the study's 155."""
    config = {"datasets": {k: str(v) for k, v in roots.items()}, **json.loads(json.dumps(TINY))}
    if experts is not None:
        config["experts"]["rules"] = [{"by": "task", "sources": ["inat2018", "cub200"], "count": experts, "seed": 0}]
        config["report"]["meta_tasks"] = [{"name": "iNat+CUB", "task_sources": ["inat2018", "cub200"],
                                           "tasks": experts, "seed": 0, "experts": "own"}]
    return config


# -- running --------------------------------------------------------------------------------------
class Driver:
    """``orchestrate launch`` in its own process group, its stderr read live (stage lines, kill point)."""

    def __init__(self, command: list[str], stop=None, *, env: dict[str, str], log_path: Path) -> None:
        self._stop = stop  # how to kill the driver when it is not our child (a Ray job: ray job stop)
        self.lines: list[tuple[float, str]] = []
        self.started = time.monotonic()
        self._log = open(log_path, "a")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip()))
            self._log.write(line)
            self._log.flush()

    def seen(self, pattern: re.Pattern) -> list[tuple[float, re.Match]]:
        return [(t, m) for t, line in list(self.lines) if (m := pattern.search(line))]

    def kill(self) -> float:
        if self._stop is not None:
            self._stop()
        else:
            os.killpg(self.process.pid, signal.SIGKILL)  # the driver and the private Ray it started
        return time.monotonic()

    def wait(self, timeout: float | None = None) -> int:
        code = self.process.wait(timeout)
        self._reader.join(30)
        self._log.close()
        return code


def start_driver(command, extra: list[str], store, *, env: dict[str, str], log_path: Path) -> Driver:
    """A driver whose Ray came up. Ray gives a new local node 30 s to register (hard-coded), which a
    nice-19 driver on a machine whose CPUs other processes hold can miss: such a start is retried, with
    ``--resume`` once the failed try has written the run's ``run.json``."""
    for attempt in range(1, RAY_STARTUP_TRIES + 1):
        if attempt > 1 and store.exists(f"{RUN_ID}/run.json"):
            extra = ["--resume", RUN_ID]
        driver = Driver(*command(extra), env=env, log_path=log_path)
        while driver.process.poll() is None and not driver.seen(RAY_UP_LINE):
            time.sleep(1.0)
        if driver.seen(RAY_UP_LINE) or driver.process.poll() is None:
            return driver
        driver.wait(60)  # ended before its Ray came up: read all of its output
        if attempt == RAY_STARTUP_TRIES or not any(RAY_STARTUP_TIMEOUT in line for _, line in driver.lines):
            return driver
        log(f"the driver's Ray did not start within Ray's 30 s (try {attempt} of {RAY_STARTUP_TRIES}); retrying")
    return driver


class PeakRss:
    """Peak RSS (VmHWM) of the driver and of the worker actors, sampled from /proc every second."""

    def __init__(self, tag: str) -> None:
        self.tag = f"REHEARSAL_TAG={tag}".encode()
        self.peak = {"driver": 0, "worker": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                with contextlib.suppress(OSError):
                    if self.tag not in Path(f"/proc/{pid}/environ").read_bytes():
                        continue
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                    role = "worker" if b"SweepWorker" in cmd else "driver" if b"orchestrator.cli" in cmd else None
                    hwm = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
                    if role and hwm:
                        self.peak[role] = max(self.peak[role], int(hwm.group(1)) * 1024)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {role: round(b / 2**30, 3) for role, b in self.peak.items()}


def committed_snapshot(store, run_id: str) -> dict[str, tuple]:
    """(size, mtime) of every marker and every object a marker lists: what a resume must not touch."""
    import pyarrow.fs as pafs

    keys = store.list(f"{run_id}/_done")
    parts = [p for k in keys for p in store.read_json(k)["parts"]]
    infos = store.filesystem.get_file_info([store.path(k) for k in keys + parts])
    return {k: (i.size, i.mtime_ns) for k, i in zip(keys + parts, infos) if i.type == pafs.FileType.File}


def table_sizes(store, run_id: str) -> dict[str, dict[str, int]]:
    """Objects and bytes per top-level folder of the run (tables, markers, checkpoints, …)."""
    import pyarrow.fs as pafs

    infos = store.filesystem.get_file_info(pafs.FileSelector(store.path(run_id), recursive=True))
    out: dict[str, dict[str, int]] = {}
    cut = len(store.path(run_id)) + 1
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[cut:]
        folder = rel.split("/", 1)[0] if "/" in rel else "(run files)"
        entry = out.setdefault(folder, {"objects": 0, "bytes": 0})
        entry["objects"] += 1
        entry["bytes"] += info.size
    return out


def scheduler_overhead_ms(store, run_id: str, stages: dict, workers: int) -> dict[str, float]:
    """Per stage run whole by the resumed driver: (workers × wall − Σ unit seconds) / units, in ms.

    Everything a worker slot spends outside its units: Ray dispatch, the driver's marker write, waits.
    """
    seconds: dict[str, list[float]] = {}
    for key in store.list(f"{run_id}/_done"):
        marker = store.read_json(key)
        seconds.setdefault(marker["stage"], []).append(marker["seconds"])
    out = {}
    for stage, report in stages.items():
        if report["committed"] >= 2 * workers and report["skipped"] == 0:
            busy = sum(seconds.get(stage, []))
            out[stage] = round(max(0.0, workers * report["seconds"] - busy) / report["committed"] * 1000, 2)
    return out


def log(message: str) -> None:
    print(f"[rehearsal {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=1.0, help="share of each dataset's images (every task kept)")
    parser.add_argument("--s3", action="store_true", help="write to a SeaweedFS server on 127.0.0.1")
    parser.add_argument("--ray-job", action="store_true", help="ray start a 2-node cluster and ray job submit")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/task-sweep-rehearsal"))
    parser.add_argument("--experts", type=int, default=None,
                        help="fine-tuned experts to keep (default: the study's 155); for machines too small")
    parser.add_argument("--kill-at", type=float, default=0.5, help="kill the driver once this share of heads committed")
    args = parser.parse_args()
    if not 0 < args.fraction <= 1:
        parser.error("--fraction must be in (0, 1]")
    work = args.workdir / f"fraction-{args.fraction:g}"
    t0 = time.perf_counter()
    roots = write_datasets(work / "datasets", args.fraction)
    images = link_images(roots, work / "jpeg-pool")
    prepare_s = time.perf_counter() - t0
    config_path = work / "study.yaml"
    config_path.write_text(yaml.safe_dump(study_config(roots, experts=args.experts), sort_keys=False))
    log(f"{sum(images.values()):,} images on disk ({disk_bytes(work) / 2**30:.2f} GiB)")
    tag = uuid.uuid4().hex[:12]
    with contextlib.ExitStack() as stack:
        # RAY_worker_niceness=0: Ray runs workers at nice 15, which on a shared machine hands their CPU
        # to everyone else's processes; 0 is the same share as any other process
        # RAY_worker_register_timeout_seconds: a worker starting on a starved machine may take minutes
        env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0", REHEARSAL_TAG=tag,
                   AWS_EC2_METADATA_DISABLED="true", RAY_worker_niceness="0", RAY_worker_register_timeout_seconds="600")
        results = str(work / "results")
        if args.s3:
            from tests.fixtures.s3_server import running_s3_server

            server = stack.enter_context(running_s3_server(work / "s3"))
            env.update(AWS_ACCESS_KEY_ID=server.access_key, AWS_SECRET_ACCESS_KEY=server.secret_key,
                       AWS_ENDPOINT_URL_S3=server.endpoint, AWS_REGION=server.region)
            results = server.uri(f"rehearsal-{tag}")
            os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                   "AWS_ENDPOINT_URL_S3", "AWS_REGION")})
        elif Path(results).exists():
            import shutil

            shutil.rmtree(results)
        launch = ["launch", "--preset", "task2vec-study", "--config", str(config_path), "--results", results]
        if args.ray_job:
            from tests.fixtures.ray_cluster import LocalRayCluster

            cluster = stack.enter_context(LocalRayCluster(work / "ray", env=env, cpus=(1, 1)))
            env = cluster.env

            def command(extra: list[str]) -> tuple[list[str], object]:
                sid = f"rehearsal-{uuid.uuid4().hex[:8]}"
                return (cluster.submit_command([*launch, "--address", "auto", *extra], submission_id=sid),
                        lambda: cluster.ray("job", "stop", "--address", cluster.dashboard, sid))
        else:
            def command(extra: list[str]) -> tuple[list[str], object]:
                return [sys.executable, "-m", "orchestrator.cli", *launch, "--address", "local", *extra], None
        result = rehearse(command, env, results, work, args.kill_at)
        result.update(fraction=args.fraction, images=images, prepare_s=round(prepare_s, 1),
                      disk_gib=round(disk_bytes(work) / 2**30, 2), s3=args.s3, ray_job=args.ray_job, experts_cap=args.experts)
        report_s = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "orchestrator.cli", "report", "--results", results,
                              "--run-id", RUN_ID, "--out", str(work / "report")], env=env, cwd=ROOT,
                             capture_output=True, text=True)
        result["report_s"] = round(time.perf_counter() - report_s, 1)
        result["report_ok"] = out.returncode == 0
        if out.returncode:
            log(f"report failed:\n{out.stderr[-3000:]}")
    print(json.dumps(result), flush=True)


def rehearse(command, env: dict, results: str, work: Path, kill_at: float) -> dict:
    """Launch, kill the driver mid-heads, resume; stage times, resume check, RSS, sizes."""
    from orchestrator.store import open_store

    store = open_store(results)
    rss = PeakRss(env["REHEARSAL_TAG"])
    log_path = work / "driver.log"
    log_path.write_text("")
    first = start_driver(command, ["--run-id", RUN_ID], store, env=env, log_path=log_path)
    kill_time, heads_start = wait_mid_heads(first, store, kill_at)
    killed_at = first.kill() if kill_time is None else kill_time
    first.wait(60)
    first_stages = {m.group(1): float(m.group(6)) for _, m in first.seen(STAGE_LINE)}
    before = committed_snapshot(store, RUN_ID)
    log(f"driver killed in the heads stage; {sum('/_done/' in k for k in before)} units committed; resuming")
    resume_start = time.monotonic()
    second = start_driver(command, ["--resume", RUN_ID], store, env=env, log_path=log_path)
    code = second.wait()
    resume_wall = time.monotonic() - resume_start
    peaks = rss.stop()
    info = store.read_json(f"{RUN_ID}/run.json")
    after = committed_snapshot(store, RUN_ID)
    changed = sorted(k for k in before if after.get(k) != before[k])
    stages = {s: round(first_stages.get(s, 0.0) + r["seconds"], 1) for s, r in info["stages"].items()}
    if heads_start is not None:
        stages["heads"] = round(stages["heads"] + killed_at - heads_start, 1)
    planned = sum(r["planned"] for r in info["stages"].values())
    committed = sum(r["committed"] + r["skipped"] for r in info["stages"].values())
    failed = sum(len(r["failed"]) for r in info["stages"].values())
    workers = info["config"]["runtime"]["workers"]
    return {
        "complete": bool(info.get("complete")) and code == 0, "planned": planned, "committed": committed,
        "failed": failed, "stages": stages, "units": {s: r["planned"] for s, r in info["stages"].items()},
        "scheduler_overhead_ms_per_unit": scheduler_overhead_ms(store, RUN_ID, info["stages"], workers),
        "peak_rss_gib": peaks, "tables": table_sizes(store, RUN_ID),
        "resume": {"committed_before_kill": sum("/_done/" in k for k in before), "objects_checked": len(before),
                   "recomputed": len(changed), "skipped_on_resume": sum(r["skipped"] for r in info["stages"].values()),
                   "wall_s": round(resume_wall, 1)},
        "wall_s": round(time.monotonic() - first.started, 1),
    }


def wait_mid_heads(driver: Driver, store, kill_at: float) -> tuple[float | None, float | None]:
    """Wait until ``kill_at`` of the heads units are committed; (kill time if it ended first, heads start)."""
    while True:
        heads = [(t, m) for t, m in driver.seen(UNITS_LINE) if m.group(1) == "heads"]
        if driver.process.poll() is not None:
            log("the driver ended before the kill point: no resume measurement")
            return time.monotonic(), heads[0][0] if heads else None
        if heads:
            start, match = heads[0]
            target = max(1, int(int(match.group(2)) * kill_at))
            done = sum(1 for k in store.list(f"{RUN_ID}/_done") if k.rsplit("/", 1)[-1].startswith("heads-"))
            if done >= target:
                return None, start
        time.sleep(2.0)


if __name__ == "__main__":
    main()
