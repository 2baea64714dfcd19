"""``recommend`` embeds a folder exactly as the sweep embedded its tasks (one input pipeline)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from orchestrator.context import SweepContext
from orchestrator.recommend import embed_folder_as_run
from orchestrator.stages.embeddings import EmbedTask
from orchestrator.store import open_store
from tests.orchestrator.sweep_helpers import small_config


def _as_image_folder(mini_library, tmp_path: Path):
    """A multi-class library task's training images as an ImageFolder tree, in the library's order.

    ImageFolder orders items by class folder, then file name; the task is one whose training
    examples are already in label order, so both datasets list the same images in the same order.
    """
    for task in mini_library.tasks:
        paths, labels = mini_library.examples(task.task_id, "train")
        if not task.is_binary and len(set(labels)) >= 2 and np.all(np.diff(labels) >= 0):
            break
    else:
        raise AssertionError("no mini task with label-ordered training examples")
    root = Path(mini_library.sources[task.source].root)
    out = tmp_path / "folder"
    for i, (path, label) in enumerate(zip(paths, labels)):
        (out / f"c{label:03d}").mkdir(parents=True, exist_ok=True)
        shutil.copy(root / path, out / f"c{label:03d}" / f"{i:05d}{Path(path).suffix}")
    return task, out, len(paths)


@pytest.mark.usefixtures("one_thread")
def test_recommend_embeds_a_library_tasks_folder_exactly_as_the_sweep(mini_roots, mini_library, tmp_path) -> None:
    config = small_config(mini_roots, mini_library)
    task, folder, n = _as_image_folder(mini_library, tmp_path)
    ctx = SweepContext(open_store(str(tmp_path / "results")), "run", config, _library=mini_library)
    row = EmbedTask("test", task.task_id, "montecarlo").run(ctx)["embeddings"].to_pylist()[0]
    sweep = np.asarray(row["embedding"])

    folder_emb = embed_folder_as_run(folder, config, "montecarlo", "cpu")

    assert folder_emb.n_samples == row["n_samples"] == n and np.all(np.isfinite(sweep)) and sweep.max() > 0
    assert row["precision"] == folder_emb.meta["precision"] == "fp32"  # the CPU runs float32
    np.testing.assert_allclose(folder_emb.hessian, sweep, rtol=1e-5, atol=0)
