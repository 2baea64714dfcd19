"""Embed a new image folder exactly as a run embedded its tasks, then rank the run's experts.

The probe, its weights and seed, the Task2Vec budget and the image size come from the run's
``run.json``; the run's embeddings and experts are read through the completion markers.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import torch

from experts.recommend import RankedExpert, rank_experts
from experts.task2vec import TaskEmbedding
from orchestrator.commit import RunRecorder
from orchestrator.config import SweepConfig
from orchestrator.context import run_task2vec_config
from orchestrator.store import ResultStore
from orchestrator.stages.distances import embedding_matrix, trivial_embeddings
from tasks.errors import TaskSweepInputError


def embed_folder_as_run(folder: Path, config: SweepConfig, method: str, device: str) -> TaskEmbedding:
    """Task2Vec embedding of an image folder with the run's probe, seed, budget, image size and input pipeline."""
    from experts.embed_folder import embed_image_folder

    emb_cfg = config.embeddings
    return embed_image_folder(
        folder, probe=emb_cfg.probe, probe_weights=emb_cfg.probe_weights, method=method, seed=emb_cfg.seed,
        max_samples=emb_cfg.max_samples, device=device, image_size=config.runtime.image_size,
        config=run_task2vec_config(config, torch.device(device)))


def recommend_for_folder(store: ResultStore, run_id: str, folder: Path, *, method: str | None = None,
                         by: str = "asymmetric", device: str = "cpu") -> tuple[list[RankedExpert], str]:
    if not store.exists(f"{run_id}/run.json"):
        raise TaskSweepInputError(f"no run.json under {store.uri}/{run_id}: check --results and --run-id")
    config = SweepConfig.model_validate(store.read_json(f"{run_id}/run.json")["config"])
    emb_cfg = config.embeddings
    method = method or config.report.method
    if method not in emb_cfg.methods:
        raise TaskSweepInputError(f"run {run_id} computed {emb_cfg.methods} embeddings, not {method!r}: pass --method")
    recorder = RunRecorder(store, run_id)
    embeddings = recorder.read_committed("embeddings", stage="embeddings")
    experts = recorder.read_committed("experts", stage="experts")
    if embeddings is None or experts is None:
        raise TaskSweepInputError(f"run {run_id} has no committed embeddings/experts yet: finish it with --resume")
    rows = embeddings.filter(pc.equal(embeddings["method"], method))
    task_ids = rows["task_id"].to_pylist()
    library = embedding_matrix(rows, task_ids, method)
    pos = {t: i for i, t in enumerate(task_ids)}
    expert_tasks = {e: [pos[t] for t in ts if t in pos]
                    for e, ts in zip(experts["expert_id"].to_pylist(), experts["task_ids"].to_pylist())}
    trivial = trivial_embeddings(rows, task_ids, method, library)
    new = embed_folder_as_run(folder, config, method, device)
    ranking = rank_experts(new.hessian, library, trivial, expert_tasks, alpha=config.distances.alpha, by=by)
    pretrained = "" if new.pretrained else ", probe randomly initialised (as in the run)"
    info = f"{method} embedding with the run's {emb_cfg.probe} probe ({new.n_samples} samples{pretrained})"
    return ranking, info
