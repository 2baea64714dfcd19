"""End to end: the mini sweep on real local Ray, results in a local folder and on S3, read back with pyarrow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.store import open_store
from orchestrator.sweep import launch
from tests.orchestrator.sweep_helpers import expected_rows, plan_for, read_table, small_config

TABLES = ("experts", "heads", "embeddings", "distances")


@pytest.mark.usefixtures("ray_local")
def test_mini_sweep_commits_every_planned_row_once(store_uri, mini_roots, mini_library) -> None:
    config = small_config(mini_roots, mini_library, workers=2)
    store = open_store(store_uri.uri, **store_uri.kwargs)
    info = launch(config, store, run_id="e2e", show_progress=False)
    assert info["complete"] and store.exists("e2e/_SUCCESS")
    want = expected_rows(plan_for(config, mini_library))
    tables = {name: read_table(store, "e2e", name) for name in TABLES}
    for name in TABLES:
        assert tables[name].num_rows == want[name], name
    heads = tables["heads"]
    pairs = list(zip(heads["expert_id"].to_pylist(), heads["task_id"].to_pylist()))
    assert len(pairs) == len(set(pairs))  # no duplicate (expert, task)
    errors = np.array([e for e in heads["test_error"].to_pylist() if e is not None])
    assert ((0 <= errors) & (errors <= 1)).all()
    emb = tables["embeddings"]
    dims = {m: set(d) for m, d in zip(emb["method"].to_pylist(), [[x] for x in emb["dim"].to_pylist()])}
    assert all(len(d) == 1 for d in dims.values())  # fixed length per (probe, method)
    dist = tables["distances"].to_pylist()
    diag = [r["d_sym"] for r in dist if r["task_a"] == r["task_b"]]
    assert all(d is not None and abs(d) < 1e-9 for d in diag)
    inat = [r for r in dist if r["task_a"].startswith("inat2018") and r["task_b"].startswith("inat2018")]
    assert all(r["d_tax"] is not None and not math.isnan(r["d_tax"]) for r in inat)
    assert all(r["d_tax"] is None for r in dist if r["task_a"].startswith("deepfashion"))
    noise = {t: n for t, n, m in zip(emb["task_id"].to_pylist(), emb["noise"].to_pylist(), emb["method"].to_pylist())
             if m == "montecarlo"}
    assert noise and all(n is not None and 0 <= n < 1 for n in noise.values())
    for r in dist:  # each pair's floor: the mean of its two embeddings' noise estimates
        if r["method"] == "montecarlo" and r["task_a"] in noise and r["task_b"] in noise:
            assert math.isclose(r["noise_floor"], (noise[r["task_a"]] + noise[r["task_b"]]) / 2)
    # every row says the probe was not pretrained (no weights exist offline)
    assert set(emb["pretrained"].to_pylist()) == {False}


@pytest.mark.usefixtures("ray_local")
def test_resume_recomputes_nothing(tmp_path, mini_roots, mini_library) -> None:
    config = small_config(mini_roots, mini_library, workers=1)
    store = open_store(str(tmp_path / "results"))
    launch(config, store, run_id="r1", show_progress=False)
    before = {k: store.read_bytes(k) for k in store.list("r1/heads")}
    info = launch(config, store, run_id="r1", resume=True, show_progress=False)
    assert all(s["committed"] == 0 and s["skipped"] == s["planned"] for s in info["stages"].values())
    assert {k: store.read_bytes(k) for k in store.list("r1/heads")} == before


@pytest.mark.usefixtures("ray_local")
def test_resume_with_a_changed_config_is_refused(tmp_path, mini_roots, mini_library) -> None:
    from tasks.errors import TaskSweepInputError

    config = small_config(mini_roots, mini_library, workers=2)
    store = open_store(str(tmp_path / "results"))
    launch(config, store, run_id="r2", show_progress=False)
    changed = config.model_copy(update={"heads": config.heads.model_copy(update={"epochs": 31})})
    with pytest.raises(TaskSweepInputError, match="heads"):
        launch(changed, store, run_id="r2", resume=True, show_progress=False)
