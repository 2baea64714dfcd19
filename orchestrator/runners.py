"""Runners execute work units and report outcomes in completion order.

``InlineRunner`` runs each unit in this process when asked for the next outcome (pdb works).
``RayRunner`` (``orchestrator/ray_runner.py``, the only module that imports Ray) spreads units over
long-lived worker actors. Both share ``execute_unit``, which is what a worker does with a unit: run it,
write its parts. The driver (``orchestrator/driver.py``) writes the completion markers.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from orchestrator.commit import RunRecorder
from orchestrator.units import WorkUnit


@dataclass
class UnitOutcome:
    """What became of one attempt at a unit."""

    unit: WorkUnit
    part_keys: list[str] | None  # None when the attempt failed
    error: BaseException | None
    seconds: float
    lost_worker: bool = False  # the worker died (not the unit's fault): resubmit without counting an attempt


class Runner(Protocol):
    def submit(self, unit: WorkUnit) -> None: ...

    def next_outcome(self) -> UnitOutcome: ...

    @property
    def pending(self) -> int: ...

    @property
    def capacity(self) -> int: ...

    def close(self) -> None: ...


def execute_unit(unit: WorkUnit, ctx: Any, recorder: RunRecorder) -> tuple[list[str], float]:
    """Run ``unit`` with the worker context and write its parts; returns (part keys, seconds)."""
    start = time.perf_counter()
    tables = unit.run(ctx)
    keys = recorder.write_parts(unit, tables)
    return keys, time.perf_counter() - start


class InlineRunner:
    """Sequential, in-process execution (for debugging and small runs)."""

    def __init__(self, make_context: Callable[[], Any], recorder: RunRecorder) -> None:
        self._make_context = make_context
        self._ctx: Any = None
        self._recorder = recorder
        self._queue: deque[WorkUnit] = deque()

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def capacity(self) -> int:
        return 1

    def submit(self, unit: WorkUnit) -> None:
        self._queue.append(unit)

    def next_outcome(self) -> UnitOutcome:
        unit = self._queue.popleft()
        if self._ctx is None:
            self._ctx = self._make_context()
        start = time.perf_counter()
        try:
            keys, seconds = execute_unit(unit, self._ctx, self._recorder)
        except Exception as exc:  # the driver decides: retry or record a failure row
            return UnitOutcome(unit, None, exc, time.perf_counter() - start)
        return UnitOutcome(unit, keys, None, seconds)

    def close(self) -> None:
        self._ctx = None
