"""A small, fast sweep over the mini datasets for the orchestrator tests (tiny probe, 32 px)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa

from orchestrator.config import SweepConfig
from orchestrator.plan import Plan
from orchestrator.store import ResultStore
from orchestrator.sweep import full_plan
from tasks.library import Library


def small_config(mini_roots: dict[str, Path], mini_library: Library, **runtime) -> SweepConfig:
    by_source: dict[str, list[str]] = {}
    for t in mini_library.tasks:
        by_source.setdefault(t.source, []).append(t.task_id)
    include = by_source["inat2018"][:2] + by_source["cub200"][:2] + by_source["imat2018"][:2] + by_source["deepfashion"][:3]
    return SweepConfig.model_validate({
        "datasets": {k: str(v) for k, v in mini_roots.items()},
        "tasks": {"include": include},
        "experts": {"train_on": [by_source["inat2018"][0]], "epochs": 1, "batch_size": 16},
        "heads": {"epochs": 30},
        "embeddings": {"probe": "tiny_resnet", "max_samples": 32, "fisher_samples": 32, "head_epochs": 1,
                       "batch_size": 16},
        "runtime": {"image_size": 32, "feature_batch_size": 64, **runtime},
    })


def read_table(store: ResultStore, run_id: str, table: str) -> pa.Table:
    """All part files of a table, as a user reads them: pyarrow.dataset over the folder."""
    return store.read_dataset(f"{run_id}/{table}").to_table()


def expected_rows(the_plan: Plan) -> dict[str, int]:
    n_tasks, n_experts = len(the_plan.tasks), len(the_plan.experts)
    n_methods = len(the_plan.stages["distances"])
    return {"experts": n_experts, "heads": n_experts * n_tasks, "embeddings": n_tasks * (n_methods + 1),
            "distances": n_methods * n_tasks**2}


def plan_for(config: SweepConfig, mini_library: Library) -> Plan:
    return full_plan(config, mini_library)


def image_folder(tmp_path: Path, mini_library, n_classes: int = 2) -> Path:
    """An ImageFolder layout built from one mini iNat task's training images."""
    task = next(t for t in mini_library.tasks if t.source == "inat2018")
    paths, labels = mini_library.examples(task.task_id, "train")
    root = Path(mini_library.sources["inat2018"].root)
    out = tmp_path / "my_task"
    for path, label in zip(paths, labels):
        if label < n_classes:
            (out / f"class_{label}").mkdir(parents=True, exist_ok=True)
            shutil.copy(root / path, out / f"class_{label}" / Path(path).name)
    return out
