"""Work units: frozen values with a content key, and what a unit produces.

A unit's ``key`` is a hash of its fields, the results-schema version and the config parts it depends
on (``config_digest``); it names the unit's output part files (``<table>/<key>.parquet``) and its
completion marker (``_done/<key>``). Same inputs, same key: a re-run or a retry rewrites the same
objects and never duplicates a row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import pyarrow as pa

from orchestrator.schemas import RESULTS_SCHEMA_VERSION


class UnitContext(Protocol):
    """What a unit may use while it runs (a worker's loaded library, probe, expert cache, store)."""


@dataclass(frozen=True)
class WorkUnit:
    """Base of all units. Subclasses are frozen dataclasses that set ``stage`` and implement ``run``."""

    stage: ClassVar[str] = "unit"
    config_digest: str

    @property
    def key(self) -> str:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        blob = json.dumps([self.stage, RESULTS_SCHEMA_VERSION, fields], sort_keys=True, default=str)
        return f"{self.stage}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"

    @property
    def label(self) -> str:
        """A short human description for progress and failure rows."""
        return self.key

    def run(self, ctx: Any) -> dict[str, pa.Table]:
        """Compute and return the unit's outputs: table name → Arrow table (and name → ``commit.Blob`` for
        raw objects such as weights). No side effects on the store: the commit path writes them."""
        raise NotImplementedError


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-able value (a config section, a list of ids)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
