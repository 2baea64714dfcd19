"""Stage ``embeddings``: Task2Vec (one unit per task × method) and the domain baseline.

``EmbedTask`` runs ``experts.task2vec.embed_task`` on a task's training images with the probe (the
probe is copied inside, never modified). ``EmbedDomain`` forwards the training images of a chunk of
tasks of one source once and stores each task's mean probe activation (method ``domain``): tasks on
one shared image set (iMaterialist, DeepFashion) get the same domain embedding, by definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from experts.features import extract_features
from experts.task2vec import embed_task
from orchestrator.schemas import EMBEDDINGS_SCHEMA, versioned
from orchestrator.units import WorkUnit
from tasks.library import task_rows


def embedding_row(ctx, task_id: str, method: str, vector: np.ndarray, scale: np.ndarray, n_samples: int,
                  precision: str, noise: float | None = None) -> dict:
    info = ctx.probe.info
    return {
        "run_id": ctx.run_id, "task_id": task_id, "probe": info.name, "method": method,
        "pretrained": info.pretrained, "n_samples": int(n_samples), "seed": ctx.config.embeddings.seed,
        "dim": len(vector), "embedding": np.asarray(vector, dtype=np.float32), "scale": np.asarray(scale, dtype=np.float32),
        "warnings": ctx.probe_warnings(), "precision": precision, "noise": noise,
    }


def _table(rows: list[dict]) -> pa.Table:
    schema = versioned(EMBEDDINGS_SCHEMA, "embeddings")
    cols = {name: [r[name] for r in rows] for name in schema.names}
    cols["embedding"] = [r.tolist() for r in cols["embedding"]]
    cols["scale"] = [r.tolist() for r in cols["scale"]]
    return pa.table(cols, schema=schema)


@dataclass(frozen=True)
class EmbedTask(WorkUnit):
    stage: ClassVar[str] = "embeddings"
    task_id: str
    method: str

    @property
    def label(self) -> str:
        return f"{self.method} {self.task_id}"

    def run(self, ctx) -> dict[str, pa.Table]:
        cfg = ctx.config.embeddings
        task = ctx.library.task(self.task_id)
        config = ctx.task2vec_config()
        emb = embed_task(ctx.dataset(task, "train", train_transform=True), ctx.probe, method=self.method,
                         config=config, device=ctx.device, seed=cfg.seed)
        row = embedding_row(ctx, self.task_id, self.method, emb.hessian, emb.scale, emb.n_samples, config.precision,
                            emb.noise)
        return {"embeddings": _table([row])}


@dataclass(frozen=True)
class EmbedDomain(WorkUnit):
    stage: ClassVar[str] = "embeddings"
    task_ids: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"domain × {len(self.task_ids)} task(s) of {self.task_ids[0].split('/')[0]}"

    def run(self, ctx) -> dict[str, pa.Table]:
        tasks = [ctx.library.task(t) for t in self.task_ids]
        source = ctx.library.sources[tasks[0].source]
        rows = {t.task_id: task_rows(t, source, "train")[0] for t in tasks}
        union = np.unique(np.concatenate(list(rows.values())))
        probe = ctx.probe.to(ctx.device)
        precision = ctx.precision("features")
        feats = extract_features(probe.body, ctx.images(source.source, union), device=ctx.device,
                                 batch_size=ctx.config.runtime.feature_batch_size, precision=precision,
                                 channels_last=ctx.channels_last, num_workers=ctx.loader.workers).double().numpy()
        out = []
        for t in tasks:
            mean = feats[np.searchsorted(union, rows[t.task_id])].mean(axis=0)
            out.append(embedding_row(ctx, t.task_id, "domain", mean, np.ones_like(mean), len(rows[t.task_id]),
                                     precision))
        return {"embeddings": _table(out)}
