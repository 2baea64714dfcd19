"""Shared pieces of the chaos suite: a very small sweep, table comparison, exactly-once checks, /proc lookups."""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from orchestrator.config import SweepConfig
from orchestrator.plan import Plan
from orchestrator.store import ResultStore
from orchestrator.sweep import full_plan, launch
from tasks.library import Library

TABLES = ("experts", "heads", "embeddings", "distances")
ROW_KEYS = {"experts": ("expert_id",), "heads": ("expert_id", "task_id"), "embeddings": ("task_id", "method"),
            "distances": ("method", "task_a", "task_b")}
VOLATILE = {"run_id", "seconds"}  # differ between two runs by design
FLOAT_TOL = 1e-6


def chaos_tasks(mini_library: Library) -> tuple[list[str], str]:
    """(task ids of the chaos sweep, the task the expert trains on): 2 iNat + 2 CUB tasks."""
    by_source: dict[str, list[str]] = {}
    for t in mini_library.tasks:
        by_source.setdefault(t.source, []).append(t.task_id)
    include = by_source["inat2018"][:2] + by_source["cub200"][:2]
    return include, include[0]


def chaos_config_dict(roots: dict[str, Path], mini_library: Library, **runtime: Any) -> dict:
    include, expert_task = chaos_tasks(mini_library)
    return {
        "datasets": {k: str(roots[k]) for k in ("inat2018", "cub200")},
        "tasks": {"include": include},
        "experts": {"train_on": [expert_task], "epochs": 1, "batch_size": 16, "augmentation": False},
        "heads": {"epochs": 10, "task_chunk": 1},
        "embeddings": {"probe": "tiny_resnet", "max_samples": 16, "fisher_samples": 16, "head_epochs": 1,
                       "batch_size": 16, "domain": False},
        "distances": {"kinds": ["symmetric", "asymmetric"]},
        "runtime": {"image_size": 16, "feature_batch_size": 64, "workers": 2, "max_attempts": 2, **runtime},
    }


def chaos_config(roots: dict[str, Path], mini_library: Library, **runtime: Any) -> SweepConfig:
    return SweepConfig.model_validate(chaos_config_dict(roots, mini_library, **runtime))


def plan_of(config: SweepConfig, mini_library: Library) -> Plan:
    return full_plan(config, mini_library)  # image_cache units included


def committed_rows(store: ResultStore, run_id: str) -> dict[str, list[dict]]:
    """Every table's rows as a reader sees them: every Parquet part under the table's folder."""
    out = {}
    for table in TABLES:
        keys = store.list(f"{run_id}/{table}")
        out[table] = [r for k in keys for r in store.read_table(k).to_pylist()]
    return out


def exactly_once(store: ResultStore, run_id: str, the_plan: Plan, *, failed: set[str] = frozenset()) -> dict:
    """Assert one marker per planned (non-failed) unit and no duplicate row keys; returns the counts."""
    planned = {u.key for units in the_plan.stages.values() for u in units}
    markers = store.list(f"{run_id}/_done")
    marker_keys = [k.rsplit("/", 1)[-1] for k in markers]
    assert len(marker_keys) == len(set(marker_keys))
    assert set(marker_keys) == planned - set(failed), (planned - set(marker_keys), set(marker_keys) - planned)
    rows = committed_rows(store, run_id)
    duplicated = 0
    for table, key_cols in ROW_KEYS.items():
        keys = [tuple(r[c] for c in key_cols) for r in rows[table]]
        duplicated += len(keys) - len(set(keys))
    assert duplicated == 0
    return {"planned": len(planned), "committed": len(marker_keys), "duplicated": duplicated,
            "lost": len(planned - set(marker_keys) - set(failed))}


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=FLOAT_TOL, abs_tol=FLOAT_TOL)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


def assert_same_values(got: dict[str, list[dict]], want: dict[str, list[dict]], *, skip: Callable[[str, dict], bool] = lambda t, r: False) -> None:
    """Row by row, sorted by the table's keys, every non-volatile column equal (floats to tolerance)."""
    for table, key_cols in ROW_KEYS.items():
        def by_key(rows: list[dict]) -> dict[tuple, dict]:
            return {tuple(r[c] for c in key_cols): r for r in rows if not skip(table, r)}

        g, w = by_key(got[table]), by_key(want[table])
        assert sorted(g) == sorted(w), table
        for key in sorted(w):
            for col, value in w[key].items():
                if col == "checkpoint" and value:  # a store key under the run's own prefix
                    assert g[key][col].split("/", 1)[1] == value.split("/", 1)[1]
                elif col not in VOLATILE:
                    assert _close(g[key][col], value), (table, key, col, g[key][col], value)


def snapshot(store_root: Path, run_id: str) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime (ns) of every committed part and marker of a local-folder run."""
    out = {}
    for sub in (*TABLES, "_done"):
        for path in sorted((store_root / run_id / sub).glob("*")):
            if not path.name.startswith("."):
                out[str(path.relative_to(store_root))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return out


def processes_running(title: str) -> list[int]:
    """Pids whose command line starts with ``title`` (Ray sets ``ray::SweepWorker.run`` while a unit runs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith(title):
                pids.append(int(entry.name))
    return pids


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def busy_workers(old: set[int]) -> set[int]:
    """New worker pids (not in ``old``) running a unit for at least 0.1 s (not ones about to return)."""
    first = set(processes_running("ray::SweepWorker.run")) - old
    time.sleep(0.1)
    return first & set(processes_running("ray::SweepWorker.run"))


def launch_in_thread(config: SweepConfig, store: ResultStore, run_id: str) -> tuple[threading.Thread, dict]:
    """Start ``launch`` in a daemon thread; ``finish`` joins it and returns run.json (or re-raises)."""
    result: dict = {}

    def target() -> None:
        try:
            result["info"] = launch(config, store, run_id=run_id, show_progress=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised by finish
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def finish(thread: threading.Thread, result: dict, timeout: float = 180) -> dict:
    thread.join(timeout)
    assert not thread.is_alive(), "the sweep did not finish"
    if "error" in result:
        raise result["error"]
    return result["info"]
