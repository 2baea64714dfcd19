"""Exactly-once commits of unit outputs to the result store, and the readers of what was committed.

Protocol (S3 has no rename): every object a unit produces is written first under a deterministic key:
its tables at ``<run>/<table>/<unit key>.parquet``, its raw objects (``Blob``: expert weights) at the
run-relative key the unit names. The completion marker ``<run>/_done/<unit key>`` (a small JSON
listing those objects) is written last, by the driver. A retry rewrites the same keys, so rows are never
duplicated. When every unit of a stage is committed the driver writes ``<run>/_manifest/<stage>.json``
(the stage's units and the objects they committed).

Readers go through the commit records, so stray files of uncommitted attempts are never read: a complete
stage is read from its manifest (one GET, no listing); an incomplete one from one listing of ``_done/``
and one of the table's folder (a part is read when its unit has a marker), never a GET per marker.
A unit that keeps failing gets a row in ``failures/<unit key>.parquet`` and no marker: a resumed run
tries it again, and drops the failure row once it succeeds.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from orchestrator.schemas import FAILURES_SCHEMA, versioned
from orchestrator.store import ResultStore
from orchestrator.units import WorkUnit


READ_THREADS = 8  # parts read at once by read_committed


@dataclass(frozen=True)
class Blob:
    """Raw bytes a unit commits with its tables (e.g. weights), at ``<run>/<key>`` (``key`` deterministic)."""

    key: str
    data: bytes


def unit_stage(unit_key: str) -> str:
    """The stage of a unit from its key (``heads-1a2b…`` → ``heads``; see ``WorkUnit.key``)."""
    return unit_key.rsplit("-", 1)[0]


class RunRecorder:
    """Reads and writes one run's markers, manifests and parts."""

    def __init__(self, store: ResultStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._parts: dict[str, list[str]] = {}  # unit key → parts, for units committed by this recorder
        self._failed: set[str] | None = None  # unit keys with a failure row (listed once, then kept)

    # -- keys -----------------------------------------------------------------------------------
    def part_key(self, table: str, unit_key: str) -> str:
        return f"{self.run_id}/{table}/{unit_key}.parquet"

    def marker_key(self, unit_key: str) -> str:
        return f"{self.run_id}/_done/{unit_key}"

    def manifest_key(self, stage: str) -> str:
        return f"{self.run_id}/_manifest/{stage}.json"

    # -- writing (workers: parts; driver: markers, failures, manifests) ---------------------------
    def write_parts(self, unit: WorkUnit, outputs: dict[str, pa.Table | Blob]) -> list[str]:
        """Write every object of a unit (data first). Returns the keys written, for the marker."""
        keys = []
        for name, value in sorted(outputs.items()):
            if isinstance(value, Blob):
                key = f"{self.run_id}/{value.key}"
                self.store.write_bytes(key, value.data)
            else:
                key = self.part_key(name, unit.key)
                self.store.write_table(key, value)
            keys.append(key)
        return keys

    def mark_done(self, unit: WorkUnit, part_keys: list[str], *, seconds: float) -> None:
        """Commit a unit whose parts are written: drop its failure row (if any), write its marker."""
        if unit.key in self._failure_keys():
            self.store.delete(self.part_key("failures", unit.key))
            self._failed.discard(unit.key)  # type: ignore[union-attr]
        self.store.write_json(
            self.marker_key(unit.key),
            {"stage": unit.stage, "label": unit.label, "parts": part_keys, "seconds": round(seconds, 3)},
        )
        self._parts[unit.key] = list(part_keys)

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
        self._failure_keys().add(unit.key)

    def write_manifest(self, stage: str, units: Iterable[WorkUnit]) -> None:
        """Record a complete stage: its units and every object they committed (read by ``read_committed``).

        Parts come from this recorder's own commits, else the stage's previous manifest, else (units
        committed by an earlier driver of the run) their markers.
        """
        keys = sorted(u.key for u in units)
        parts = dict(self._parts)
        missing = [k for k in keys if k not in parts]
        if missing:
            parts.update(self._manifest_parts(stage) or {})
            for k in (k for k in missing if k not in parts):
                parts[k] = self.store.read_json(self.marker_key(k))["parts"]
        self.store.write_json(self.manifest_key(stage), {"units": keys, "parts": {k: parts[k] for k in keys}})

    def drop_manifest(self, stage: str) -> None:
        """Forget that ``stage`` was complete (its plan changed or some unit failed)."""
        self.store.delete(self.manifest_key(stage))

    # -- reading --------------------------------------------------------------------------------
    def committed(self) -> set[str]:
        """Keys of the units whose marker exists (one listing)."""
        prefix = f"{self.run_id}/_done/"
        return {k.rsplit("/", 1)[-1] for k in self.store.list(prefix)}

    def is_committed(self, unit_key: str) -> bool:
        return self.store.exists(self.marker_key(unit_key))

    def committed_parts(self, table: str, *, stage: str | None = None) -> list[str]:
        """Keys of the committed parts of ``table`` (from ``stage``'s units only, if given)."""
        if stage is not None:
            by_unit = self._manifest_parts(stage)
            if by_unit is not None:
                return sorted(p for parts in by_unit.values() for p in parts if p.split("/")[-2] == table)
        units = {k for k in self.committed() if stage is None or unit_stage(k) == stage}
        folder = f"{self.run_id}/{table}/"
        return [k for k in self.store.list(folder) if k.endswith(".parquet")
                and k[len(folder):].removesuffix(".parquet") in units]

    def read_committed(self, table: str, *, stage: str | None = None) -> pa.Table | None:
        """All committed parts of ``table`` (optionally only from units of ``stage``), concatenated."""
        parts = self.committed_parts(table, stage=stage)
        if not parts:
            return None
        with ThreadPoolExecutor(READ_THREADS) as pool:  # one GET per part: overlap their latencies
            return pa.concat_tables(list(pool.map(self.store.read_table, parts)))

    def _manifest_parts(self, stage: str) -> dict[str, list[str]] | None:
        """Unit key → committed objects, from ``stage``'s manifest; None if the stage is not complete."""
        try:
            manifest = self.store.read_json(self.manifest_key(stage))
        except FileNotFoundError:
            return None
        return manifest.get("parts")  # manifests written before parts were recorded: read the markers

    def _failure_keys(self) -> set[str]:
        if self._failed is None:
            folder = f"{self.run_id}/failures/"
            self._failed = {k[len(folder):].removesuffix(".parquet") for k in self.store.list(folder)}
        return self._failed
