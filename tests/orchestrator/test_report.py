"""``orchestrate report`` on one shared mini sweep (per-task experts on iNat/CUB, inline runner)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.config import SweepConfig
from orchestrator.store import open_store
from orchestrator.sweep import launch
from tests.orchestrator.sweep_helpers import image_folder, read_table


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, mini_roots, mini_library) -> tuple[Path, str]:
    by_source: dict[str, list[str]] = {}
    for t in mini_library.tasks:
        by_source.setdefault(t.source, []).append(t.task_id)
    targets = by_source["inat2018"][:3] + by_source["cub200"][:3]
    fine = by_source["inat2018"][:2] + by_source["cub200"][:2]
    config = SweepConfig.model_validate({
        "datasets": {k: str(v) for k, v in mini_roots.items()},
        "tasks": {"include": targets + by_source["imat2018"][:1] + by_source["deepfashion"][:1]},
        "experts": {"train_on": fine, "epochs": 1, "batch_size": 16},
        "heads": {"epochs": 30},
        "embeddings": {"probe": "tiny_resnet", "max_samples": 32, "fisher_samples": 32, "head_epochs": 1, "batch_size": 16},
        "runtime": {"image_size": 32, "feature_batch_size": 64, "runner": "inline"},
        "report": {"bootstrap": 200, "folds": 3},
    })
    root = tmp_path_factory.mktemp("report") / "results"
    launch(config, open_store(str(root)), run_id="rep", show_progress=False)
    return root, "rep"


def test_heads_rows_carry_all_four_transferability_scores(report_run) -> None:
    root, run_id = report_run
    heads = read_table(open_store(str(root)), run_id, "heads").to_pylist()
    assert len(heads) == 5 * 8  # 4 fine-tuned + generic, 8 tasks
    for h in heads:
        assert all(h[s] is not None and np.isfinite(h[s]) for s in ("logme", "leep", "nce", "hscore")), h
        assert h["nce"] <= 1e-12  # −H(Y|Z) is never positive


@pytest.fixture(scope="module")
def report_page(report_run, tmp_path_factory) -> Path:
    root, run_id = report_run
    out = tmp_path_factory.mktemp("report-page")
    result = CliRunner().invoke(main, ["report", "--results", str(root), "--run-id", run_id, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "index.html"


FIGURE_IDS = ("tsne", "similarity", "norm_vs_error", "taxonomy", "errors")  # transfer: no stage in this run


def test_report_writes_the_summary_selection_table_and_figures(report_page) -> None:
    page = report_page.read_text()
    for text in ("iNat+CUB", "Mixed", "Chance", "ImageNet", "Asym. Task2Vec", "Model2Vec", "LogME", "LEEP", "NCE", "H-score"):
        assert text in page, text
    for text in ("Run summary", "tiny_resnet", "randomly initialised", "32 px", "montecarlo", "32 Fisher draws",
                 "No failed units", "is randomly initialised (random:seed=0)", "How to read this", "The Parquet tables"):
        assert text in page, text
    for fig in FIGURE_IDS:
        assert f"<div class='plot' id='{fig}'>" in page, fig
    assert "No transfer stage in this run" in page and "<div class='plot' id='transfer'>" not in page  # transfer off
    assert "src='http" not in page and 'src="http' not in page  # offline: no script from a CDN
    assert page.count("plotly.js v") >= 1 and not list(report_page.parent.glob("*.png"))


def test_report_page_in_a_real_browser(report_page, tmp_path) -> None:
    """Headless Chromium: no console error in the browser's own log, the summary and every figure drawn, and
    a hover label (the real mouse moved onto a point) that names a task."""
    from tests.orchestrator.browser import chromium, console_errors, hover_first_point, open_page, screenshot

    with chromium() as driver:
        open_page(driver, report_page)
        assert console_errors(driver) == []
        assert "randomly initialised" in driver.find_element("id", "summary").text
        drawn = driver.execute_script("return Array.from(document.querySelectorAll('.plot'))"
                                      ".filter(e => e.querySelector('.main-svg')).map(e => e.id)")
        assert sorted(drawn) == sorted(FIGURE_IDS)
        for fig in ("tsne", "norm_vs_error"):
            label = hover_first_point(driver, fig)
            assert any(task in label for task in ("inat2018/", "cub200/", "imat2018/", "deepfashion/")), label
        driver.find_element("id", "similarity-filter").send_keys("cub200")  # the matrix filtered by source
        shown = driver.execute_script("return document.getElementById('similarity')._fullData[0].x")
        assert shown and all(t.startswith("cub200/") for t in shown), shown
        screenshot(driver, tmp_path / "report.png")
        assert (tmp_path / "report.png").stat().st_size > 50_000
        broken = tmp_path / "broken.html"  # the same page with its data block cut: the log must say so
        broken.write_text(report_page.read_text().replace("id='report-data'>{", "id='report-data'>{oops"))
        driver.get(broken.as_uri())
        assert console_errors(driver), "a broken page left no console error"


def test_optimal_error_and_chance_match_a_direct_computation_from_heads(report_run) -> None:
    from orchestrator.report.data import load_run
    from orchestrator.report.html import meta_task_tables

    root, run_id = report_run
    store = open_store(str(root))
    tables = meta_task_tables(load_run(store, run_id))
    heads = read_table(store, run_id, "heads").to_pylist()
    experts = {e["expert_id"]: e["task_ids"] for e in read_table(store, run_id, "experts").to_pylist()}
    best, chance = [], []
    for task in sorted({h["task_id"] for h in heads}):  # Mixed: every task, every expert but its own
        errs = [h["test_error"] for h in heads if h["task_id"] == task and experts[h["expert_id"]] != [task]]
        best.append(min(errs))
        chance.append(np.mean(errs))
    rows = {r.method: r for r in tables["Mixed"]}
    assert rows["Chance"].optimal_error == pytest.approx(np.mean(best))
    assert rows["Chance"].relative_increase == pytest.approx((np.mean(chance) - np.mean(best)) / np.mean(best))
    assert all(r.relative_increase >= 0 and r.ci_low <= r.relative_increase <= r.ci_high for r in rows.values())
    assert tables["iNat+CUB"][0].n_tasks == 6


def test_report_on_a_missing_run_is_a_clear_error(tmp_path) -> None:
    result = CliRunner().invoke(main, ["report", "--results", str(tmp_path), "--run-id", "nope", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "no run.json" in result.output and "Traceback" not in result.output


def test_recommend_ranks_every_expert_by_d_asym_from_the_runs_embeddings(report_run, tmp_path, mini_library) -> None:
    import json

    from experts.embed_folder import embed_image_folder
    from experts.task2vec import Task2VecConfig

    root, run_id = report_run
    folder = image_folder(tmp_path, mini_library)
    result = CliRunner().invoke(main, ["recommend", str(folder), "--results", str(root), "--run-id", run_id, "--json"])
    assert result.exit_code == 0, result.output
    ranking = json.loads(result.output.strip().splitlines()[-1])
    experts = read_table(open_store(str(root)), run_id, "experts").to_pylist()
    assert sorted(r["expert_id"] for r in ranking) == sorted(e["expert_id"] for e in experts)
    assert ranking[-1]["expert_id"].startswith("generic/") and ranking[-1]["d_asym"] is None  # no training task
    ranked = [r["d_asym"] for r in ranking[:-1]]
    assert ranked == sorted(ranked) and all(r["n_tasks"] == 1 for r in ranking[:-1])
    # d_sym by its definition, from the run's stored embedding and the same embedding of the folder
    new = embed_image_folder(folder, probe="tiny_resnet", max_samples=32, image_size=32, seed=0,
                             config=Task2VecConfig(batch_size=16, head_epochs=1, fisher_samples=32)).hessian
    stored = {r["task_id"]: np.array(r["embedding"]) for r in read_table(open_store(str(root)), run_id,
                                                                         "embeddings").to_pylist()
              if r["method"] == "montecarlo"}
    top = next(e for e in experts if e["expert_id"] == ranking[0]["expert_id"])
    a = stored[top["task_ids"][0]]
    total = a + new
    a_n, b_n = (np.divide(v, total, out=np.zeros_like(total), where=total > 0) for v in (a, new))
    d_sym = 1 - a_n @ b_n / (np.linalg.norm(a_n) * np.linalg.norm(b_n))
    assert abs(ranking[0]["d_sym"] - d_sym) < 1e-4


def test_recommend_for_an_unknown_run_is_a_clear_error(report_run, tmp_path, mini_library) -> None:

    root, _ = report_run
    result = CliRunner().invoke(main, ["recommend", str(image_folder(tmp_path, mini_library)), "--results", str(root),
                                       "--run-id", "nope"])
    assert result.exit_code != 0 and "no run.json" in result.output and "Traceback" not in result.output


def test_report_reads_committed_parts_only(report_run, tmp_path) -> None:
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from orchestrator.report.data import load_run

    root, run_id = report_run
    copy = tmp_path / "results"
    shutil.copytree(root, copy)
    part = sorted((copy / run_id / "heads").glob("*.parquet"))[0]
    stray = pq.read_table(part)
    stray = stray.set_column(stray.schema.get_field_index("test_error"), "test_error",
                             pa.array([1.0] * stray.num_rows))
    pq.write_table(stray, copy / run_id / "heads" / "zz-partial-retry.parquet")  # no marker names it
    want, got = load_run(open_store(str(root)), run_id), load_run(open_store(str(copy)), run_id)
    np.testing.assert_array_equal(got.errors, want.errors)


def test_meta_tasks_picked_by_rule_are_the_ones_the_plan_picked(report_run, mini_library) -> None:
    from orchestrator.plan import plan
    from orchestrator.report.data import load_run

    root, run_id = report_run
    store = open_store(str(root))
    cfg = load_run(store, run_id).config.model_dump(mode="json")
    cfg["report"]["meta_tasks"] = [{"name": "picked", "task_sources": ["inat2018", "cub200"], "tasks": 4, "seed": 5,
                                    "experts": [{"by": "task", "sources": ["cub200"]}]}]
    config = SweepConfig.model_validate(cfg)
    data = load_run(store, run_id, config)
    planned = plan(config, mini_library.tasks).meta_tasks[0]  # the plan of this config (more cub experts)
    rows, errors = data.allowed(config.report.meta_tasks[0])
    assert sorted(data.tasks[i] for i in rows) == sorted(planned.tasks) and len(rows) == 4
    candidates = [e for e in planned.experts if e in data.experts]  # the run trained 2 of the 3 cub experts
    assert data.meta_tasks["picked"].experts == tuple(candidates) and len(candidates) == 3
    others = [j for j, e in enumerate(data.experts) if e not in candidates]
    assert others and np.isnan(errors[:, others]).all()


class _CountingStore:
    """Counts the store calls that become S3 requests (GETs, HEADs, listings) while ``load_run`` runs."""

    def __init__(self, store) -> None:
        self.reads: list[str] = []
        self.lists: list[str] = []
        for name, log in (("read_bytes", self.reads), ("exists", self.reads), ("list", self.lists),
                          ("read_dataset", self.lists)):
            setattr(store, name, self._counted(getattr(store, name), log))

    @staticmethod
    def _counted(fn, log):
        def call(key="", *args, **kwargs):
            log.append(key if isinstance(key, str) else f"{len(key)} keys")
            return fn(key, *args, **kwargs)
        return call


def test_load_run_reads_manifests_not_markers(report_run) -> None:
    from orchestrator.report.data import load_run

    root, run_id = report_run
    store = open_store(str(root))
    parts = [k for k in store.list(run_id) if k.endswith(".parquet") and k.split("/")[1] in
             ("heads", "experts", "embeddings", "distances")]
    count = _CountingStore(store)
    data = load_run(store, run_id)
    assert data.errors.shape == (8, 5)
    assert not [k for k in count.reads if "/_done/" in k], "a marker was read one GET at a time"
    # the library's table and the failure rows (one listing, for the summary); committed tables: manifests
    assert count.lists == [f"{run_id}/tasks", f"{run_id}/failures/"]
    assert sorted(k for k in count.reads if k in parts) == sorted(parts)  # each committed part read once
    # besides: run.json (look-up + read), the stages' manifests, the library's tasks
    assert len([k for k in count.reads if k not in parts]) <= 16


def test_an_incomplete_stage_is_read_with_two_listings(report_run, tmp_path) -> None:
    import shutil

    from orchestrator.commit import RunRecorder

    root, run_id = report_run
    copy = tmp_path / "results"
    shutil.copytree(root, copy)
    store = open_store(str(copy))
    recorder = RunRecorder(store, run_id)
    full = recorder.read_committed("heads", stage="heads")
    recorder.drop_manifest("heads")
    stray = f"{run_id}/heads/heads-{'0' * 20}.parquet"  # a part whose unit never committed
    store.write_table(stray, full.slice(0, 1))
    count = _CountingStore(store)
    again = recorder.read_committed("heads", stage="heads")
    assert again.sort_by("task_id").equals(full.sort_by("task_id"))
    assert not [k for k in count.reads if "/_done/" in k]
    assert count.lists == [f"{run_id}/_done/", f"{run_id}/heads/"]


def test_expert_weights_are_committed_parts(report_run) -> None:
    root, run_id = report_run
    store = open_store(str(root))
    markers = [store.read_json(k) for k in store.list(f"{run_id}/_done")]
    experts = [m for m in markers if m["stage"] == "experts" and not m["label"].startswith("generic/")]
    assert len(experts) == 4
    for marker in experts:
        weights = [p for p in marker["parts"] if p.split("/")[1] == "checkpoints"]
        assert len(weights) == 2 and all(store.exists(p) for p in weights), marker


def test_summary_links_failures_and_shows_the_noise_floor_hook(monkeypatch) -> None:
    """No sweep needed: a summary with one failed unit, and a distances table with a noise-floor flag."""
    from collections import Counter

    import pyarrow as pa

    from orchestrator.report import summary

    monkeypatch.setattr(summary, "ABOVE_NOISE_FLOOR_COLUMNS", ("above_noise_floor",))
    info = {"config": {"embeddings": {"probe": "resnet34", "methods": ["montecarlo"], "max_samples": 100},
                       "runtime": {"image_size": 224}},
            "stages": {"heads": {"planned": 3, "skipped": 0, "committed": 2, "failed": ["heads-k"], "retries": 1},
                       "experts": {"planned": 1, "skipped": 1, "committed": 0, "failed": []}}}
    s = summary.RunSummary("r1", info, "resnet34", True, {"heads": 2},
                           {"embeddings": Counter({"few images": 2})},
                           [{"unit_key": "heads-k", "stage": "heads", "label": "heads of t", "error_type": "OSError",
                             "message": "disk full", "attempts": 3}], {"heads-k": "/res/r1/failures/heads-k.parquet"},
                           {}, summary._above_noise_floor(pa.table({"above_noise_floor": [True, False, None, True]})))
    page = summary.summary_html(s, "montecarlo")
    assert page.index("<td>experts</td>") < page.index("<td>heads</td>")  # stages in the sweep's order
    assert "href='#failures-heads'" in page and "id='failures-heads'" in page
    assert "file:///res/r1/failures/heads-k.parquet" in page and "disk full" in page
    assert "2 of 3 distances" in page and "few images" in page and "(2 embeddings rows)" in page
    assert "incomplete" in page and "pretrained" in page and "randomly" not in page
