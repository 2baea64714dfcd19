"""The driver loop: submit a stage's units to a runner, retry failures, commit, show progress.

Keeps at most ``runner.capacity`` units in flight, takes outcomes in completion order, resubmits a unit
whose worker died (without counting it against the unit), retries a unit that raised up to
``max_attempts`` times, then records a failure row and goes on: one bad task never stops a sweep.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

from tqdm import tqdm

from orchestrator.commit import RunRecorder
from orchestrator.runners import Runner
from orchestrator.units import WorkUnit

log = logging.getLogger(__name__)

MAX_WORKER_LOSSES = 20  # per unit: a unit that kills its worker this often is recorded as failed


@dataclass
class StageReport:
    stage: str
    planned: int
    skipped: int = 0  # already committed before this run
    committed: int = 0
    failed: list[str] = field(default_factory=list)
    retries: int = 0
    worker_losses: int = 0
    seconds: float = 0.0  # wall time of this driver's pass over the stage


def run_stage(
    stage: str,
    units: list[WorkUnit],
    runner: Runner,
    recorder: RunRecorder,
    *,
    max_attempts: int = 3,
    show_progress: bool = True,
) -> StageReport:
    """Run every uncommitted unit of one stage to a commit or a failure row."""
    start = time.perf_counter()
    report = StageReport(stage=stage, planned=len(units))
    done = recorder.committed()
    todo = deque(u for u in units if u.key not in done)
    report.skipped = len(units) - len(todo)
    log.info("stage %s: %d units, %d to run", stage, len(units), len(todo))
    attempts: dict[str, int] = {}
    losses: dict[str, int] = {}
    bar = tqdm(total=len(units), initial=report.skipped, desc=f"{stage:>10}", unit="unit",
               disable=not show_progress, mininterval=1.0, dynamic_ncols=True)
    in_flight = 0
    try:
        while todo or in_flight:
            while todo and in_flight < runner.capacity:
                runner.submit(todo.popleft())
                in_flight += 1
            outcome = runner.next_outcome()
            in_flight -= 1
            unit = outcome.unit
            if outcome.part_keys is not None:
                recorder.mark_done(unit, outcome.part_keys, seconds=outcome.seconds)
                report.committed += 1
                bar.update(1)
            elif outcome.lost_worker and losses.get(unit.key, 0) < MAX_WORKER_LOSSES:
                losses[unit.key] = losses.get(unit.key, 0) + 1
                report.worker_losses += 1
                log.warning("%s: worker lost (%s); resubmitting", unit.label, outcome.error)
                todo.append(unit)
            else:
                attempts[unit.key] = attempts.get(unit.key, 0) + 1
                if attempts[unit.key] < max_attempts and not outcome.lost_worker:
                    report.retries += 1
                    log.warning("%s failed (attempt %d/%d): %s: %s", unit.label, attempts[unit.key],
                                max_attempts, type(outcome.error).__name__, outcome.error)
                    todo.append(unit)
                else:
                    assert outcome.error is not None
                    recorder.record_failure(unit, outcome.error, attempts=attempts[unit.key])
                    report.failed.append(unit.key)
                    bar.update(1)
                    log.error("%s failed %d times, recorded in failures: %s", unit.label,
                              attempts[unit.key], outcome.error)
            bar.set_postfix(failed=len(report.failed), refresh=False)
    finally:
        bar.close()
    report.seconds = round(time.perf_counter() - start, 3)
    return report
