"""Benchmark: the Ray runner's scheduler overhead per unit, one vs two units in flight per worker.

Runs ``run_stage`` (the real driver loop, the real ``RunRecorder`` on a local folder: a marker per unit)
on a private local Ray with 2 worker actors over N units that each busy-wait ``--unit-ms`` (the
rehearsal's embeddings units take ~1 s; shorter units show the overhead more). Overhead per unit =
(workers × stage wall − Σ unit seconds) / units, as ``benchmarks/rehearsal.py`` computes it. The two
settings are interleaved (``--reps`` each) and their medians compared.

Usage: ``python benchmarks/bench_scheduler.py [--units 400] [--unit-ms 50] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.units import WorkUnit  # noqa: E402

WORKERS = 2


@dataclass(frozen=True)
class BusyUnit(WorkUnit):
    """A unit that keeps its worker's CPU busy for ``ms`` milliseconds and writes one tiny part."""

    stage: ClassVar[str] = "embeddings"
    index: int
    ms: float

    def run(self, ctx) -> dict[str, pa.Table]:
        end = time.perf_counter() + self.ms / 1000
        while time.perf_counter() < end:
            pass
        return {"embeddings": pa.table({"i": [self.index]})}


def make_state(results: str):
    from orchestrator.commit import RunRecorder
    from orchestrator.store import open_store

    return None, RunRecorder(open_store(results), "bench")


def overhead_ms(units_per_worker: int, n: int, unit_ms: float, results: str) -> float:
    import functools

    from orchestrator.commit import RunRecorder
    from orchestrator.driver import run_stage
    from orchestrator.ray_runner import RayRunner, WorkerSpec
    from orchestrator.store import open_store

    store = open_store(results)
    recorder = RunRecorder(store, "bench")
    units = [BusyUnit(config_digest=f"d{units_per_worker}-{time.time_ns()}", index=i, ms=unit_ms) for i in range(n)]
    runner = RayRunner(WorkerSpec(functools.partial(make_state, results)), WORKERS, units_per_worker=units_per_worker)
    try:
        run_stage("embeddings", units[:WORKERS * 2], runner, recorder, show_progress=False)  # warm the actors
        report = run_stage("embeddings", units[WORKERS * 2:], runner, recorder, show_progress=False)
    finally:
        runner.close()
    busy = sum(store.read_json(recorder.marker_key(u.key))["seconds"] for u in units[WORKERS * 2:])
    return (WORKERS * report.seconds - busy) / report.committed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=400)
    parser.add_argument("--unit-ms", type=float, default=50.0)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    import ray

    ray.init(address="local", num_cpus=WORKERS, include_dashboard=False, log_to_driver=False)
    out: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for depth in (1, 2):
                ms = overhead_ms(depth, args.units, args.unit_ms, str(Path(tmp) / f"r{rep}-{depth}"))
                out[depth].append(ms)
                print(f"rep {rep}, {depth} unit(s) in flight per worker: {ms:.2f} ms/unit", flush=True)
    one, two = statistics.median(out[1]), statistics.median(out[2])
    print(f"median overhead per unit: 1 in flight {one:.2f} ms, 2 in flight {two:.2f} ms ({one / max(two, 1e-9):.1f}x)")


if __name__ == "__main__":
    main()
