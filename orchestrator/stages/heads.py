"""Stage ``heads``: one feature pass per (expert, image group), then every linear head on it.

A unit holds one expert and tasks of one source. The union of the tasks' train and test images is
forwarded once through the expert; each task's head trains on its rows of that feature matrix, all
heads together (``experts.heads.train_heads``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from experts.features import extract_features
from experts.heads import HeadSpec, train_heads
from experts.transferability import ScoreBasis, basis_scores, score_basis
from orchestrator.schemas import HEADS_SCHEMA, versioned
from orchestrator.units import WorkUnit
from tasks.library import task_rows


@dataclass(frozen=True)
class FitHeads(WorkUnit):
    stage: ClassVar[str] = "heads"
    expert_id: str
    task_ids: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.expert_id} × {len(self.task_ids)} task(s) of {self.task_ids[0].split('/')[0]}"

    def run(self, ctx) -> dict[str, pa.Table]:
        tasks = [ctx.library.task(t) for t in self.task_ids]
        source = ctx.library.sources[tasks[0].source]
        rows = {t.task_id: {s: task_rows(t, source, s) for s in ("train", "test")} for t in tasks}
        union = np.unique(np.concatenate([idx for r in rows.values() for idx, _ in r.values()]))
        expert = ctx.expert(self.expert_id).to(ctx.device)
        precision = ctx.precision("features")
        features = extract_features(expert.body, ctx.images(source.source, union), device=ctx.device,
                                    batch_size=ctx.config.runtime.feature_batch_size, precision=precision,
                                    channels_last=ctx.channels_last, num_workers=ctx.loader.workers)
        specs = []
        for t in tasks:
            targets = np.full(len(union), -1, dtype=np.int64)
            positions = {}
            for split, (idx, y) in rows[t.task_id].items():
                positions[split] = np.searchsorted(union, idx)
                targets[positions[split]] = y
            specs.append(HeadSpec(t.task_id, targets, positions["train"], positions["test"], t.n_classes))
        results = train_heads(features, specs, config=ctx.config.heads.train_config(), device=ctx.device)
        pretrained = ctx.probe.info.pretrained
        scores = _transferability(features.numpy(), specs, ctx.expert_classifier(self.expert_id))
        out = [
            {"run_id": ctx.run_id, "expert_id": self.expert_id, "task_id": r.task_id, "n_classes": r.n_classes,
             "n_train": r.n_train, "n_test": r.n_test, "train_error": r.train_error,
             "test_error": None if math.isnan(r.test_error) else r.test_error, "train_loss": r.train_loss,
             "test_loss": None if math.isnan(r.test_loss) else r.test_loss, "pretrained": pretrained, **scores[r.task_id],
             "precision": precision}
            for r in results
        ]
        return {"heads": pa.Table.from_pylist(out, schema=versioned(HEADS_SCHEMA, "heads"))}


def _transferability(features: np.ndarray, specs: list[HeadSpec],
                     classifier: tuple[np.ndarray, np.ndarray] | None) -> dict[str, dict[str, float | None]]:
    """LogME, H-score, LEEP, NCE of every task on its training rows of the cached features.

    Consecutive tasks on the same training rows (every binary task of a source) share one ``ScoreBasis``
    (only the last one is kept: a basis holds the source head's probabilities, rows × classes)."""
    features = features.astype(np.float64)
    logits = None if classifier is None else features @ classifier[0].T.astype(np.float64) + classifier[1]
    basis: ScoreBasis | None = None
    rows = np.empty(0, dtype=np.int64)
    out = {}
    for s in specs:
        if basis is None or not np.array_equal(s.train_idx, rows):
            rows = s.train_idx
            basis = score_basis(features[rows], None if logits is None else logits[rows])
        out[s.task_id] = basis_scores(basis, s.targets[rows])
    return out