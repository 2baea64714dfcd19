"""Stage ``experts``: fine-tune the probe's feature extractor on a task or a task group.

The generic expert is the probe itself (no unit, no checkpoint). A group pools the classes of its
multi-class tasks (each (source, category) is one class), so an iNat-wide expert learns every species
of the selected iNat tasks. Weights go to ``<run>/checkpoints/<expert key>.pt`` (deterministic key:
a retry overwrites it), the metrics to the ``experts`` table.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import ConcatDataset, Dataset

from experts.training import train_expert
from orchestrator.schemas import EXPERTS_SCHEMA, versioned
from orchestrator.units import WorkUnit


def generic_expert_id(probe: str) -> str:
    return f"generic/{probe}"


def is_generic(expert_id: str) -> bool:
    return expert_id.startswith("generic/")


def expert_id_for(entry: str) -> str:
    return f"expert/{entry}"


def checkpoint_key(run_id: str, expert_id: str) -> str:
    return f"{run_id}/checkpoints/{hashlib.sha256(expert_id.encode()).hexdigest()[:20]}.pt"


def classifier_key(run_id: str, expert_id: str) -> str:
    """The expert's own linear classifier (``weight``, ``bias``), next to its feature extractor."""
    return checkpoint_key(run_id, expert_id).removesuffix(".pt") + ".classifier.pt"


class _Relabelled(Dataset):
    """A task's dataset with its local labels mapped into a group's label space."""

    def __init__(self, base: Dataset, mapping: np.ndarray) -> None:
        self.base, self.mapping = base, mapping

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return x, int(self.mapping[y])


@dataclass(frozen=True)
class TrainExpert(WorkUnit):
    stage: ClassVar[str] = "experts"
    expert_id: str
    task_ids: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.expert_id

    def run(self, ctx) -> dict[str, pa.Table]:
        start = time.perf_counter()
        train_set, test_set, n_classes = self._datasets(ctx)
        config = ctx.train_config(ctx.config.experts, ctx.config.experts.seed)
        probe = ctx.probe
        result = train_expert(probe.body, probe.info.feature_dim, n_classes, train_set, config=config,
                              device=ctx.device, val_set=test_set if len(test_set) else None)
        buffer = io.BytesIO()
        torch.save(result.feature_extractor_state, buffer)
        key = checkpoint_key(ctx.run_id, self.expert_id)
        ctx.store.write_bytes(key, buffer.getvalue())
        head = io.BytesIO()
        torch.save(result.classifier_state, head)
        ctx.store.write_bytes(classifier_key(ctx.run_id, self.expert_id), head.getvalue())
        row = {
            "run_id": ctx.run_id, "expert_id": self.expert_id, "kind": "finetuned", "probe": probe.info.name,
            "pretrained": probe.info.pretrained, "task_ids": list(self.task_ids), "n_classes": n_classes,
            "n_train": len(train_set), "train_error": result.train_error, "test_error": result.val_error,
            "checkpoint": key, "seconds": time.perf_counter() - start, "warnings": ctx.probe_warnings(),
            "precision": result.precision,
        }
        return {"experts": pa.Table.from_pylist([row], schema=versioned(EXPERTS_SCHEMA, "experts"))}

    def _datasets(self, ctx) -> tuple[Dataset, Dataset, int]:
        tasks = [ctx.library.task(t) for t in self.task_ids]
        if len(tasks) == 1:
            t = tasks[0]
            return ctx.dataset(t, "train"), ctx.dataset(t, "test"), t.n_classes
        classes: dict[tuple[str, int], int] = {}
        for t in tasks:
            for c in t.class_ids:
                classes.setdefault((t.source, c), len(classes))
        splits = []
        for split in ("train", "test"):
            parts = [_Relabelled(ctx.dataset(t, split), np.array([classes[(t.source, c)] for c in t.class_ids]))
                     for t in tasks]
            splits.append(ConcatDataset(parts))
        return splits[0], splits[1], len(classes)


@dataclass(frozen=True)
class RegisterGeneric(WorkUnit):
    """The generic expert (the probe itself): nothing to train, one ``experts`` row."""

    stage: ClassVar[str] = "experts"
    expert_id: str

    @property
    def label(self) -> str:
        return self.expert_id

    def run(self, ctx) -> dict[str, pa.Table]:
        info = ctx.probe.info
        row = {
            "run_id": ctx.run_id, "expert_id": self.expert_id, "kind": "generic", "probe": info.name,
            "pretrained": info.pretrained, "task_ids": [], "n_classes": 0, "n_train": 0, "train_error": None,
            "test_error": None, "checkpoint": "", "seconds": 0.0, "warnings": ctx.probe_warnings(), "precision": None,
        }
        return {"experts": pa.Table.from_pylist([row], schema=versioned(EXPERTS_SCHEMA, "experts"))}
