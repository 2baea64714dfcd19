"""End to end: a tiny sweep with the transfer stages (nearest mode: planned from the committed distances)
on real local Ray; the tables read back with pyarrow."""

from __future__ import annotations

import math

import pytest

from orchestrator.config import SweepConfig
from orchestrator.store import open_store
from orchestrator.sweep import launch
from orchestrator.transfer_report import transfer_figure, transfer_summary
from tests.orchestrator.sweep_helpers import read_table


def _config(mini_roots, mini_library) -> SweepConfig:
    by_source: dict[str, list[str]] = {}
    for t in mini_library.tasks:
        by_source.setdefault(t.source, []).append(t.task_id)
    include = by_source["inat2018"][:2] + by_source["cub200"][:2]
    return SweepConfig.model_validate({
        "datasets": {k: str(v) for k, v in mini_roots.items()},
        "tasks": {"include": include},
        "experts": {"epochs": 1, "batch_size": 16},
        "heads": {"epochs": 5},
        "embeddings": {"probe": "tiny_resnet", "max_samples": 16, "fisher_samples": 16, "head_epochs": 1,
                       "batch_size": 16, "domain": False},
        "distances": {"kinds": ["symmetric", "asymmetric"]},
        "transfer": {"mode": "nearest", "k": 1, "targets": include[2:], "seeds": [0, 1], "epochs": 1,
                     "batch_size": 16},
        "runtime": {"image_size": 32, "feature_batch_size": 64, "workers": 2},
    })


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory, mini_roots, mini_library, ray_local):
    config = _config(mini_roots, mini_library)
    store = open_store(str(tmp_path_factory.mktemp("transfer") / "results"))
    info = launch(config, store, run_id="t1", show_progress=False)
    return config, store, info


def test_one_row_per_pair_and_seed_with_d_ft_from_its_errors(transfer_run) -> None:
    config, store, info = transfer_run
    assert info["complete"]
    init = read_table(store, "t1", "transfer_init").to_pylist()
    rows = read_table(store, "t1", "transfer").to_pylist()
    targets = config.transfer.targets
    assert sorted((r["target_task"], r["seed"]) for r in init) == sorted((t, s) for t in targets for s in (0, 1))
    keys = [(r["source_task"], r["target_task"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(targets) * 2 * 2  # (1 nearest + 1 random) × 2 seeds per target
    init_err = {(r["target_task"], r["seed"]): r["test_error"] for r in init}
    for r in rows:
        assert r["source_task"] != r["target_task"] and r["source_expert"] == f"expert/{r['source_task']}"
        assert r["err_from_init"] == init_err[r["target_task"], r["seed"]]  # the shared from-init run
        assert 0 <= r["err_from_source"] <= 1
        if r["err_from_init"]:
            assert math.isclose(r["d_ft"], (r["err_from_source"] - r["err_from_init"]) / r["err_from_init"])
    # the nearest source of each target is the one with the smallest committed d_asym
    dist = [d for d in read_table(store, "t1", "distances").to_pylist() if d["task_a"] != d["task_b"]]
    for t in targets:
        best = min((d for d in dist if d["task_b"] == t), key=lambda d: d["d_asym"])["task_a"]
        assert {r["source_task"] for r in rows if r["target_task"] == t and r["selection"] == "nearest"} == {best}


def test_resume_recomputes_nothing(transfer_run) -> None:
    config, store, _ = transfer_run
    before = {k: store.read_bytes(k) for k in store.list("t1/transfer")}
    info = launch(config, store, run_id="t1", resume=True, show_progress=False)
    assert info["stages"]["transfer"]["planned"] == 8
    assert all(s["committed"] == 0 and s["skipped"] == s["planned"] for s in info["stages"].values())
    assert {k: store.read_bytes(k) for k in store.list("t1/transfer")} == before


def test_summary_joins_distances_and_draws_the_scatter(transfer_run, tmp_path) -> None:
    config, store, _ = transfer_run
    summary = transfer_summary(store, "t1", "montecarlo")
    assert summary is not None and len(summary.pairs) == 4 and all(p.n_seeds <= 2 for p in summary.pairs)
    assert not any(math.isnan(x) for x in summary.d_asym)
    assert summary.correlations["d_asym"].n_pairs <= 4
    assert transfer_figure(summary, tmp_path / "t.png").stat().st_size > 1000


def test_report_shows_the_transfer_scatter_and_its_spearman(transfer_run, tmp_path) -> None:
    from orchestrator.report.data import load_run
    from orchestrator.report.html import write_report

    _, store, _ = transfer_run
    data = load_run(store, "t1")
    assert data.transfer is not None and len(data.transfer.pairs) == 4
    write_report(data, "t1", tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert "Spearman ρ(d_asym, D_ft)" in page and "over 4 measured pairs" in page
    assert "<div class='plot' id='transfer'>" in page
    from tests.orchestrator.browser import chromium, console_errors, hover_first_point, open_page

    with chromium() as driver:  # drawn by page.js in a real browser, hover naming the pair
        open_page(driver, tmp_path / "index.html")
        assert console_errors(driver) == []
        assert driver.execute_script("return !!document.querySelector('#transfer .main-svg')")
        assert "→" in hover_first_point(driver, "transfer")
