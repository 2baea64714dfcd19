"""A run's results as numpy arrays for the report: read once from the Parquet tables."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from orchestrator.config import MetaTaskConfig, SweepConfig
from orchestrator.commit import RunRecorder
from orchestrator.library_io import load_library_tasks
from orchestrator.meta_tasks import MetaTask, resolve
from orchestrator.plan import select_tasks
from orchestrator.store import ResultStore
from orchestrator.stages.distances import distance_matrices
from orchestrator.transfer_report import TransferSummary, summarise_transfer
from tasks.errors import TaskSweepInputError

SCORES = ("logme", "leep", "nce", "hscore")


@dataclass(frozen=True)
class RunData:
    config: SweepConfig
    tasks: list[str]  # every task with heads, sorted
    source: dict[str, str]  # task id -> source
    group: dict[str, str]  # task id -> its group for plots: taxonomic class (iNat/CUB), else attribute kind
    experts: list[str]
    generic: str | None
    expert_tasks: dict[str, list[str]]
    errors: np.ndarray  # (T, E) head test error
    scores: dict[str, np.ndarray]  # name -> (T, E), NaN when null
    d_sym: np.ndarray  # (T, T) over ``tasks``, [a, b]
    d_asym: np.ndarray  # (T, T), a -> b
    d_tax: np.ndarray  # (T, T), NaN outside iNat/CUB
    embeddings: dict[str, np.ndarray]  # task -> Fisher embedding of the report's method
    transfer: TransferSummary | None = None  # D_ft pairs joined with distances (None: no transfer stage)
    meta_tasks: dict[str, MetaTask] = field(default_factory=dict)  # report.meta_tasks resolved as the plan did

    def index(self, task: str) -> int:
        return self.tasks.index(task)

    def expert_distance(self, kind: str) -> np.ndarray:
        """(T, E): mean d(expert's training task -> t); NaN for the generic expert or unknown tasks."""
        d = self.d_asym if kind == "asymmetric" else self.d_sym
        pos = {t: i for i, t in enumerate(self.tasks)}
        out = np.full(self.errors.shape, np.nan)
        for e, expert in enumerate(self.experts):
            rows = [pos[t] for t in self.expert_tasks[expert] if t in pos]
            if expert != self.generic and rows:
                out[:, e] = d[rows].mean(0)
        return out

    def allowed(self, meta: MetaTaskConfig) -> tuple[np.ndarray, np.ndarray]:
        """Rows (tasks) of the meta-task and its (T_m, E) error matrix, excluded pairs as NaN."""
        resolved = self.meta_tasks[meta.name]
        chosen, candidates = set(resolved.tasks), set(resolved.experts)
        rows = np.array([i for i, t in enumerate(self.tasks) if t in chosen], dtype=int)
        if len(rows) == 0:
            raise TaskSweepInputError(f"meta-task {meta.name!r}: no task of {meta.task_sources} has heads in this run")
        cols = np.array([e in candidates for e in self.experts])
        errors = self.errors[rows].copy()
        errors[:, ~cols] = np.nan
        for r, i in enumerate(rows):  # an expert fine-tuned on exactly this task is not a candidate for it
            for e, expert in enumerate(self.experts):
                if self.expert_tasks[expert] == [self.tasks[i]]:
                    errors[r, e] = np.nan
        return rows, errors


def task_group(task_id: str, taxonomy: list[str] | None) -> str:
    """The taxonomic class (``Aves``, ``Insecta``, …) of an iNat/CUB task, else the kind in its id
    (``deepfashion/texture/…`` → ``texture``)."""
    if taxonomy and len(taxonomy) > 2:
        return taxonomy[2]
    parts = task_id.split("/")
    return parts[1] if len(parts) > 2 else parts[0]


def load_run(store: ResultStore, run_id: str, config: SweepConfig | None = None) -> RunData:
    if not store.exists(f"{run_id}/run.json"):
        raise TaskSweepInputError(f"no run.json under {store.uri}/{run_id}: check --results and --run-id")
    config = config or SweepConfig.model_validate(store.read_json(f"{run_id}/run.json")["config"])
    recorder = RunRecorder(store, run_id)

    def table(name: str) -> pa.Table:
        """Committed rows only (through the ``_done`` markers: stray or partial parts are never read)."""
        if name == "tasks":  # the library's table, written once by the driver
            return store.read_dataset(f"{run_id}/tasks").to_table()
        rows = recorder.read_committed(name, stage=name)
        if rows is None:
            raise TaskSweepInputError(f"run {run_id} has no committed {name} rows yet: finish it with "
                                      f"orchestrate launch --resume {run_id}")
        return rows

    heads, experts = table("heads").to_pylist(), table("experts").to_pylist()
    tasks = sorted({h["task_id"] for h in heads})
    names = sorted(e["expert_id"] for e in experts)
    generic = next((e["expert_id"] for e in experts if e["kind"] == "generic"), None)
    t_pos, e_pos = {t: i for i, t in enumerate(tasks)}, {e: i for i, e in enumerate(names)}
    errors = np.full((len(tasks), len(names)), np.nan)
    scores = {s: errors.copy() for s in SCORES}
    for h in heads:
        i, j = t_pos[h["task_id"]], e_pos[h["expert_id"]]
        errors[i, j] = np.nan if h["test_error"] is None else h["test_error"]
        for s in SCORES:
            scores[s][i, j] = np.nan if h.get(s) is None else h[s]
    method = config.report.method
    d = distance_matrices(table("distances"), tasks, method)
    embeddings = {r["task_id"]: np.asarray(r["embedding"], dtype=np.float64) for r in table("embeddings").to_pylist()
                  if r["method"] == method and r["task_id"] in t_pos}
    tasks_table = table("tasks")
    ids = tasks_table["task_id"].to_pylist()
    source = dict(zip(ids, tasks_table["source"].to_pylist()))
    group = {t: task_group(t, path) for t, path in zip(ids, tasks_table["taxonomy"].to_pylist())}
    transfer = recorder.read_committed("transfer", stage="transfer")
    expert_tasks = {e["expert_id"]: list(e["task_ids"]) for e in experts}
    return RunData(config, tasks, source, group, names, generic, expert_tasks,
                   errors, scores, d["d_sym"], d["d_asym"], d["d_tax"], embeddings,
                   None if transfer is None else summarise_transfer(transfer, tasks, d["d_sym"], d["d_asym"]),
                   resolve_meta_tasks(store, run_id, config, expert_tasks, generic))


def resolve_meta_tasks(store: ResultStore, run_id: str, config: SweepConfig, expert_tasks: dict[str, list[str]],
                       generic: str | None) -> dict[str, MetaTask]:
    """The report's meta-tasks resolved exactly as the plan resolved them: on the run's selected tasks, in
    the library's order (seeded picks and ``tasks.sample`` then choose the same tasks)."""
    selected = select_tasks(config, load_library_tasks(store, run_id))
    trainings = {e: members for e, members in expert_tasks.items() if e != generic}
    return {m.name: resolve(m, selected, trainings, generic) for m in config.report.meta_tasks}
