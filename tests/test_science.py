"""The scientific check on the mini sweep (issue 6): Task2Vec behaves as the paper says, on one seed.

One sweep (benchmarks/science.py: mini datasets at 4x, a probe pretrained on the shape-and-texture
glyph set, 16 per-task experts, all 48 tasks; about 4 min on 2 cores) and three claims. Read the
figures over seeds 0-2 and the random-probe control in BENCHMARKS.md before trusting claim 1: claims 2
and 3 hold on all three seeds, but the taxonomy correlation holds on seed 0 only (+0.19; seeds 1 and 2
give -0.16 and +0.11, the pretraining seed decides), so here it guards seed 0 against regressions and
proves nothing general. A random-init probe fails claims 1 and 2 (rho -0.05 and -0.64).
"""

from __future__ import annotations

import pytest

from benchmarks.science import ScienceFigures, run_science
from orchestrator.store import open_store
from tests.orchestrator.sweep_helpers import read_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def science(tmp_path_factory) -> tuple[ScienceFigures, object]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the figures below were measured with 2 threads
    try:
        return run_science(tmp_path_factory.mktemp("science"), seed=0)
    finally:
        torch.set_num_threads(threads)


def test_the_sweep_used_the_pretrained_probe_on_every_task(science) -> None:
    _, results = science
    rows = read_table(open_store(str(results)), "science", "embeddings").to_pylist()
    assert len({r["task_id"] for r in rows}) == 48 and all(r["pretrained"] for r in rows)


def test_embedding_distance_follows_taxonomic_distance_among_inat_and_cub_tasks(science) -> None:
    f, _ = science
    assert f.n_pairs == 16 * 15 // 2
    assert f.rho_tax > 0 and f.p_tax < 0.1, f


def test_embedding_norm_follows_the_probes_test_error(science) -> None:
    f, _ = science
    assert f.n_tasks == 48
    assert f.rho_norm > 0 and f.p_norm < 0.1, f


def test_asymmetric_task2vec_selects_better_experts_than_chance(science) -> None:
    f, _ = science
    assert f.optimal_error > 0.01, f  # errors left to choose between (a solved meta-task proves nothing)
    assert f.increase["Asym. Task2Vec"] < f.increase["Chance"], f.increase
