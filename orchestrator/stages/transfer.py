"""Stages ``transfer_init`` and ``transfer``: the fine-tuning distance ``D_ft(a → b)``, measured.

``FineTuneFromInit`` fine-tunes the fixed initialisation (the generic expert: the probe's weights)
on target ``b`` with a fresh head, once per (target, seed), and writes one ``transfer_init`` row;
every pair that targets ``b`` shares it. ``FineTuneFromSource`` runs after that stage's barrier: it
fine-tunes ``expert/<a>``'s feature extractor (its checkpoint) on ``b`` with a fresh head, the same
budget and seed, reads the committed ``transfer_init`` row of (b, seed) and writes one ``transfer``
row with both errors and ``d_ft = (err_from_source − err_from_init) / err_from_init`` (null when
either error is missing or ``err_from_init`` is 0).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from experts.training import ExpertTrainResult, train_expert
from orchestrator.commit import RunRecorder
from orchestrator.schemas import TRANSFER_INIT_SCHEMA, TRANSFER_SCHEMA, versioned
from orchestrator.stages.experts import expert_id_for
from orchestrator.units import WorkUnit


def d_ft(err_from_source: float | None, err_from_init: float | None) -> float | None:
    """``(err_{a→b} − err_b) / err_b``; None when undefined."""
    if err_from_source is None or err_from_init is None or err_from_init == 0:
        return None
    return (err_from_source - err_from_init) / err_from_init


def fine_tune(ctx, expert_id: str, target: str, seed: int) -> tuple[ExpertTrainResult, int, int]:
    """Fine-tune ``expert_id``'s feature extractor with a fresh head on ``target``; (result, n_train, n_test)."""
    task = ctx.library.task(target)
    train_set, test_set = ctx.dataset(task, "train"), ctx.dataset(task, "test")
    config = ctx.train_config(ctx.config.transfer, seed)
    start_from = ctx.expert(expert_id)
    result = train_expert(start_from.body, start_from.info.feature_dim, task.n_classes, train_set, config=config,
                          device=ctx.device, val_set=test_set if len(test_set) else None)
    return result, len(train_set), len(test_set)


@dataclass(frozen=True)
class FineTuneFromInit(WorkUnit):
    stage: ClassVar[str] = "transfer_init"
    init_expert: str  # generic/<probe>
    target_task: str
    seed: int

    @property
    def label(self) -> str:
        return f"init → {self.target_task} (seed {self.seed})"

    def run(self, ctx) -> dict[str, pa.Table]:
        start = time.perf_counter()
        result, n_train, n_test = fine_tune(ctx, self.init_expert, self.target_task, self.seed)
        row = {"run_id": ctx.run_id, "target_task": self.target_task, "seed": self.seed,
               "init_expert": self.init_expert, "pretrained": ctx.probe.info.pretrained, "n_train": n_train,
               "n_test": n_test, "train_error": result.train_error, "test_error": result.val_error,
               "seconds": time.perf_counter() - start, "precision": result.precision}
        return {"transfer_init": pa.Table.from_pylist([row], schema=versioned(TRANSFER_INIT_SCHEMA, "transfer_init"))}


@dataclass(frozen=True)
class FineTuneFromSource(WorkUnit):
    stage: ClassVar[str] = "transfer"
    source_task: str
    target_task: str
    seed: int
    selection: str
    init_key: str  # key of the FineTuneFromInit unit whose row this one joins

    @property
    def label(self) -> str:
        return f"{self.source_task} → {self.target_task} (seed {self.seed})"

    def run(self, ctx) -> dict[str, pa.Table]:
        init = self._init_row(ctx)
        start = time.perf_counter()
        expert_id = expert_id_for(self.source_task)
        result, n_train, n_test = fine_tune(ctx, expert_id, self.target_task, self.seed)
        row = {"run_id": ctx.run_id, "source_task": self.source_task, "source_expert": expert_id,
               "target_task": self.target_task, "seed": self.seed, "selection": self.selection,
               "err_from_source": result.val_error, "err_from_init": init["test_error"],
               "d_ft": d_ft(result.val_error, init["test_error"]), "train_error_from_source": result.train_error,
               "train_error_from_init": init["train_error"], "n_train": n_train, "n_test": n_test,
               "seconds": time.perf_counter() - start, "precision": result.precision}
        return {"transfer": pa.Table.from_pylist([row], schema=versioned(TRANSFER_SCHEMA, "transfer"))}

    def _init_row(self, ctx) -> dict:
        recorder = RunRecorder(ctx.store, ctx.run_id)
        key = recorder.part_key("transfer_init", self.init_key)
        if not ctx.store.exists(f"{ctx.run_id}/_done/{self.init_key}"):
            raise RuntimeError(f"the from-init run of {self.target_task} (seed {self.seed}, unit {self.init_key}) "
                               "is not committed (see failures/); resume the run once it succeeds")
        table = ctx.store.read_table(key)
        rows = table.filter(pc.equal(table["seed"], self.seed)).to_pylist()
        assert len(rows) == 1, f"{key}: expected one row for seed {self.seed}, found {len(rows)}"
        return rows[0]
