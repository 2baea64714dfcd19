"""Benchmark: ``orchestrate report`` on a synthetic run of the study's size (1,458 tasks, 156 experts).

Fabricates a run's committed tables through the project's own schemas, store and commit markers (no training):
a tasks table (iNat/CUB tasks with a taxonomy, iMat/DeepFashion attribute tasks), 156 experts (the generic one
and 155 fine-tuned on one task each), one head per (expert, task) with a test error and the four scores
(written as the sweep writes them, one part per expert and chunk of 100 tasks), one ResNet-34-sized Task2Vec
embedding per task (17,024 Fisher-like floats with a group structure, one part per task) and the N² distances
of one method computed by ``experts.distances``. Then times the whole command as a user runs it, states the
page's size, and (when chromium and chromedriver are installed) opens the page in headless Chromium: time until
every figure is drawn, and the time a hover label takes to appear. Usage::

    python benchmarks/bench_report.py [--tasks 1458] [--experts 156] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa

from benchmarks.bench_distances import fisher_like
from experts.distances import symmetric
from orchestrator.commit import RunRecorder
from orchestrator.config import SweepConfig
from orchestrator.plan import STAGES
from orchestrator.schemas import DISTANCES_SCHEMA, EMBEDDINGS_SCHEMA, EXPERTS_SCHEMA, HEADS_SCHEMA, versioned
from orchestrator.store import ResultStore, open_store
from orchestrator.sweep import _open_run
from tasks.tables import TASKS_SCHEMA, with_version

RUN = "bench-1458"
SOURCES = {"inat2018": 0.62, "cub200": 0.14, "imat2018": 0.14, "deepfashion": 0.10}
CLASSES = ("Aves", "Insecta", "Plantae", "Mammalia", "Reptilia", "Fungi", "Actinopterygii", "Amphibia")
KINDS = ("texture", "fabric", "shape", "part", "style", "color", "sleeve", "pattern")


def fabricate(store: ResultStore, n_tasks: int, n_experts: int, dim: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    config = SweepConfig.model_validate({"datasets": {"mini": True},  # never read: the tables are fabricated
                                         "embeddings": {"probe": "resnet34", "fisher_samples": 10_000}})
    info = _open_run(store, RUN, config, resume=False)
    recorder = RunRecorder(store, RUN)
    units: dict[str, list] = {s: [] for s in STAGES}

    def commit(stage: str, key: str, tables: dict[str, pa.Table]) -> None:
        # a unit key is "<stage>-<id>" with no other hyphen (orchestrator.commit.unit_stage)
        unit = SimpleNamespace(stage=stage, key=f"{stage}-{key.replace('-', '_')}", label=f"synthetic {stage} {key}")
        recorder.mark_done(unit, recorder.write_parts(unit, tables), seconds=0.0)
        units[stage].append(unit)

    tasks = []
    for source, share in SOURCES.items():
        for k in range(round(share * n_tasks) if source != "deepfashion" else n_tasks - len(tasks)):
            if source in ("inat2018", "cub200"):
                cls = CLASSES[rng.integers(len(CLASSES))] if source == "inat2018" else "Aves"
                order = f"Order{rng.integers(40)}"
                taxonomy = ["Animalia", "Chordata", cls, order, f"Family{k}"]
                task_id, group = f"{source}/family/{cls}-{order}-Family{k}", cls
            else:
                group = KINDS[rng.integers(len(KINDS))]
                task_id, taxonomy = f"{source}/{group}/attribute-{k}", []
            tasks.append({"task_id": task_id, "source": source, "kind": "synthetic", "name": task_id, "n_classes": 5,
                          "n_train": 500, "n_test": 100, "class_names": [], "class_ids": [], "taxonomy": taxonomy,
                          "image_group": task_id, "rule": "synthetic", "_group": group})
    ids = [t["task_id"] for t in tasks]
    groups = sorted({t["_group"] for t in tasks})
    for source in SOURCES:  # one tasks part per source, as the library step writes them
        store.write_table(f"{RUN}/tasks/{source}.parquet", pa.Table.from_pylist(
            [{k: v for k, v in t.items() if k != "_group"} for t in tasks if t["source"] == source],
            schema=with_version(TASKS_SCHEMA, "tasks")))

    # embeddings: Fisher-like, with a multiplicative pattern per group so the t-SNE has something to show
    X = fisher_like(n_tasks, dim, seed)
    pattern = rng.lognormal(0, 1.0, size=(len(groups), dim)).astype(np.float32)
    X *= pattern[[groups.index(t["_group"]) for t in tasks]]
    for i, t in enumerate(ids):
        commit("embeddings", f"{i}", {"embeddings": pa.Table.from_pylist([{
            "run_id": RUN, "task_id": t, "probe": "resnet34", "method": "montecarlo", "pretrained": True,
            "n_samples": 10_000, "seed": 0, "dim": dim, "embedding": X[i], "scale": X[i][:1], "warnings": [],
            "precision": "bf16", "noise": 0.02}],
            schema=versioned(EMBEDDINGS_SCHEMA, "embeddings"))})

    d_sym = symmetric(X)
    d_asym = d_sym - 0.15 * rng.uniform(0.2, 0.6, size=(1, n_tasks))
    level = np.array([len(t["taxonomy"]) > 0 for t in tasks])
    tax = np.array([hash(tuple(t["taxonomy"][2:4])) for t in tasks])
    d_tax = np.where(tax[:, None] == tax[None, :], 2.0, 6.0)
    d_tax[~(level[:, None] & level[None, :])] = np.nan
    a, b = np.divmod(np.arange(n_tasks * n_tasks), n_tasks)
    names = pa.array(ids, pa.string())
    commit("distances", "montecarlo", {"distances": pa.table({
        "run_id": pa.array([RUN] * len(a)), "probe": pa.array(["resnet34"] * len(a)),
        "method": pa.array(["montecarlo"] * len(a)), "task_a": names.take(a), "task_b": names.take(b),
        "d_sym": d_sym.ravel().astype(np.float64), "d_asym": d_asym.ravel().astype(np.float64),
        "d_tax": pa.array(d_tax.ravel(), from_pandas=True), "d_domain": pa.nulls(len(a), pa.float64()),
        "alpha": np.full(len(a), 0.15), "noise_floor": np.full(len(a), 0.02)},
        schema=versioned(DISTANCES_SCHEMA, "distances"))})

    # experts and heads: an expert is best near its own task (error grows with d_sym), plus noise
    trained = rng.choice(np.flatnonzero(np.array([t["source"] in ("inat2018", "cub200") for t in tasks])),
                         n_experts - 1, replace=False)
    experts = [("generic/resnet34", None)] + [(f"expert/{ids[i]}", i) for i in trained]
    base = rng.uniform(0.05, 0.5, n_tasks)
    for e, (expert, own) in enumerate(experts):
        commit("experts", f"{e}", {"experts": pa.Table.from_pylist([{
            "run_id": RUN, "expert_id": expert, "kind": "generic" if own is None else "finetuned", "probe": "resnet34",
            "pretrained": True, "task_ids": [] if own is None else [ids[own]], "n_classes": 5, "n_train": 500,
            "train_error": 0.1, "test_error": 0.2, "checkpoint": "", "seconds": 1.0, "warnings": []}],
            schema=versioned(EXPERTS_SCHEMA, "experts"))})
        shift = 0.0 if own is None else 0.6 * (d_sym[own] - np.median(d_sym[own]))
        err = np.clip(base + shift + rng.normal(0, 0.03, n_tasks), 0, 1)
        for start in range(0, n_tasks, 100):
            rows = range(start, min(start + 100, n_tasks))
            commit("heads", f"{e}-{start}", {"heads": pa.Table.from_pylist([{
                "run_id": RUN, "expert_id": expert, "task_id": ids[i], "n_classes": 5, "n_train": 500, "n_test": 100,
                "train_error": float(err[i]) * 0.5, "test_error": float(err[i]), "train_loss": 0.3, "test_loss": 0.5,
                "pretrained": True, "logme": float(-err[i] + rng.normal(0, 0.05)), "leep": float(-err[i]),
                "nce": float(-err[i] - 0.1), "hscore": float(1 - err[i]), "precision": "bf16"} for i in rows],
                schema=versioned(HEADS_SCHEMA, "heads"))})
    info.update(finished_at=info["started_at"], complete=True, n_tasks=n_tasks, experts=[e for e, _ in experts],
                stages={s: {"stage": s, "planned": c, "skipped": 0, "committed": c, "failed": [], "retries": 0,
                            "worker_losses": 0} for s, c in ((s, len(u)) for s, u in units.items())})
    for stage, done in units.items():  # complete stages, as the sweep leaves them: readers use the manifests
        if done:
            recorder.write_manifest(stage, done)
    # the library's record (written last by the library step): the report resolves meta-tasks on it
    store.write_json(f"{RUN}/library.json", {"roots": {source: f"/synthetic/{source}" for source in SOURCES}})
    store.write_json(f"{RUN}/run.json", info)


def browser_timings(page: Path) -> dict[str, float]:
    """Seconds until page.js has drawn every figure, and until a hover label shows after a real mouse move."""
    import pytest

    from tests.orchestrator.browser import chromium, console_errors, hover_first_point, open_page

    try:
        with chromium() as driver:
            start = time.perf_counter()
            open_page(driver, page, timeout=300)
            drawn = time.perf_counter() - start
            start = time.perf_counter()
            label = hover_first_point(driver, "tsne")
            hover = time.perf_counter() - start
            start = time.perf_counter()
            driver.find_element("id", "similarity-filter").send_keys("cub200")
            driver.execute_script("return document.getElementById('similarity')._fullData[0].x.length")
            refilter = time.perf_counter() - start
            errors = console_errors(driver)
    except pytest.skip.Exception as exc:
        print(f"browser: skipped ({exc})")
        return {}
    print(f"browser: drawn in {drawn:.1f} s; hover label in {hover:.2f} s ({label[:60]!r}...); "
          f"matrix filtered to one source in {refilter:.2f} s; console errors: {errors or 'none'}")
    return {"drawn_s": drawn, "hover_s": hover, "refilter_s": refilter}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1458)
    parser.add_argument("--experts", type=int, default=156)
    parser.add_argument("--dim", type=int, default=17_024, help="embedding length (ResNet-34: 17,024)")
    parser.add_argument("--keep", type=Path, default=None, help="fabricate here and keep it (default: a temp folder)")
    parser.add_argument("--reuse", action="store_true", help="with --keep: report on the run fabricated there before")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        root = args.keep or Path(tmp)
        results, out = root / "results", root / "report"
        start = time.perf_counter()
        if not args.reuse:
            fabricate(open_store(str(results)), args.tasks, args.experts, args.dim)
        print(f"fabricated {args.tasks} tasks x {args.experts} experts in {time.perf_counter() - start:.1f} s "
              f"under {results}")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "orchestrator.cli", "report", "--results", str(results), "--run-id", RUN,
                        "--out", str(out)], check=True)
        seconds = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        size = (out / "index.html").stat().st_size
        print(f"orchestrate report: {seconds:.1f} s wall, {usage.ru_utime + usage.ru_stime:.1f} CPU-s, peak RSS "
              f"{usage.ru_maxrss / 2**20:.1f} GiB (target < 60 s); index.html {size / 2**20:.1f} MiB; "
              f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        browser_timings(out / "index.html")


if __name__ == "__main__":
    main()
