"""Exactly-once commits of unit outputs to the result store.

Protocol (S3 has no rename): a unit's data objects are written first under deterministic keys
(``<run>/<table>/<unit key>.parquet``); the completion marker ``<run>/_done/<unit key>`` (a small JSON
listing those objects) is written last. A retry rewrites the same keys, so rows are never duplicated.
Readers go through the markers (``read_committed``), so stray or partial files are never read.
A unit that keeps failing gets a row in ``failures/<unit key>.parquet`` and no marker: a resumed run
tries it again, and drops the failure row once it succeeds.
"""

from __future__ import annotations

import time
import traceback

import pyarrow as pa

from orchestrator.schemas import FAILURES_SCHEMA, versioned
from orchestrator.store import ResultStore
from orchestrator.units import WorkUnit


class RunRecorder:
    """Reads and writes one run's markers and parts."""

    def __init__(self, store: ResultStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def part_key(self, table: str, unit_key: str) -> str:
        return f"{self.run_id}/{table}/{unit_key}.parquet"

    def write_parts(self, unit: WorkUnit, tables: dict[str, pa.Table]) -> list[str]:
        """Write a unit's tables (data first). Returns the keys written, for the marker."""
        keys = []
        for table_name, table in sorted(tables.items()):
            key = self.part_key(table_name, unit.key)
            self.store.write_table(key, table)
            keys.append(key)
        return keys

    def mark_done(self, unit: WorkUnit, part_keys: list[str], *, seconds: float) -> None:
        failure = self.part_key("failures", unit.key)
        if self.store.exists(failure):
            self.store.delete(failure)
        self.store.write_json(
            f"{self.run_id}/_done/{unit.key}",
            {"stage": unit.stage, "label": unit.label, "parts": part_keys, "seconds": round(seconds, 3)},
        )

    def committed(self) -> set[str]:
        """Keys of the units whose marker exists."""
        prefix = f"{self.run_id}/_done/"
        return {k.rsplit("/", 1)[-1] for k in self.store.list(prefix)}

    def record_failure(self, unit: WorkUnit, exc: BaseException, *, attempts: int) -> None:
        row = {
            "run_id": self.run_id,
            "unit_key": unit.key,
            "stage": unit.stage,
            "label": unit.label,
            "error_type": type(exc).__name__,
            "message": str(exc)[:4000],
            "traceback": "".join(traceback.format_exception(exc))[-20000:],
            "attempts": attempts,
            "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        table = pa.Table.from_pylist([row], schema=versioned(FAILURES_SCHEMA, "failures"))
        self.store.write_table(self.part_key("failures", unit.key), table)

    def read_committed(self, table: str, *, stage: str | None = None) -> pa.Table | None:
        """All committed parts of ``table`` (optionally only from units of ``stage``), concatenated."""
        parts = [p for (st, name), keys in self.committed_parts().items() if name == table and stage in (None, st)
                 for p in keys]
        if not parts:
            return None
        return pa.concat_tables([self.store.read_table(p) for p in parts])

    def committed_parts(self) -> dict[tuple[str, str], list[str]]:
        """``(stage, table) -> part keys`` of every committed unit, in marker order: one pass over the markers."""
        out: dict[tuple[str, str], list[str]] = {}
        for key in sorted(self.store.list(f"{self.run_id}/_done/")):
            marker = self.store.read_json(key)
            for p in marker["parts"]:
                out.setdefault((marker["stage"], p.split("/")[-2]), []).append(p)
        return out
