"""``launch``: the whole sweep, from manifests to distances, resumable.

Order: open and check the store → ``run.json`` (effective config, versions, git revision, times) →
the task library (built once per run; ``s3://`` dataset roots through ``orchestrator.dataset_files``) →
the plan (and the ``image_cache`` shards of the images its tasks use) → for each stage, every uncommitted unit through a
runner (Ray actors or in-process; ``transfer`` units of ``nearest`` mode are planned here, from the
committed distances, when that stage's turn comes) → a stage manifest → ``_SUCCESS`` when every stage committed every
unit. ``resume`` re-enters a run: committed units are skipped, nothing is recomputed; a changed config
is refused.
"""

from __future__ import annotations

import functools
import logging
import platform
import subprocess
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import pyarrow.compute as pc

from orchestrator.commit import RunRecorder
from orchestrator.config import SweepConfig
from orchestrator.context import SweepContext
from orchestrator.dataset_files import build_library_from_roots, is_remote
from orchestrator.driver import StageReport, run_stage
from orchestrator.library_io import ensure_mini_datasets, load_library, write_library
from orchestrator.plan import STAGES, Plan, plan, plan_transfer, transfer_method
from orchestrator.runners import InlineRunner
from orchestrator.stages.image_cache import plan_image_cache, write_cache_index
from orchestrator.store import ResultStore
from orchestrator.units import digest
from tasks.errors import TaskSweepInputError
from tasks.library import Library

log = logging.getLogger(__name__)


RESUME_IGNORED_SECTIONS = ("report",)


def new_run_id() -> str:
    return f"run-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def launch(
    config: SweepConfig,
    store: ResultStore,
    *,
    run_id: str | None = None,
    resume: bool = False,
    show_progress: bool = True,
) -> dict:
    """Run (or resume) a sweep; returns the final ``run.json`` content."""
    store.check_writable()
    run_id = run_id or new_run_id()
    run_info = _open_run(store, run_id, config, resume=resume)
    library = ensure_library(store, run_id, config)
    the_plan = full_plan(config, library)
    recorder = RunRecorder(store, run_id)
    reports = run_plan(the_plan, config, store, run_id, recorder, show_progress=show_progress)
    complete = all(not r.failed and r.committed + r.skipped == r.planned for r in reports)
    run_info.update(
        finished_at=_now(),
        stages={r.stage: asdict(r) for r in reports},
        complete=complete,
        n_tasks=len(the_plan.tasks),
        experts=the_plan.experts,
    )
    store.write_json(f"{run_id}/run.json", run_info)
    if complete:
        store.write_json(f"{run_id}/_SUCCESS", {"finished_at": run_info["finished_at"]})
    return run_info


def full_plan(config: SweepConfig, library: Library) -> Plan:
    """``plan`` plus the ``image_cache`` shards of the images its tasks use (planning needs the library's
    image tables, which ``plan`` does not take)."""
    the_plan = plan(config, library.tasks)
    the_plan.stages["image_cache"] = plan_image_cache(config, library, the_plan.tasks)
    return the_plan


def run_plan(the_plan: Plan, config: SweepConfig, store: ResultStore, run_id: str, recorder: RunRecorder, *,
             show_progress: bool = True) -> list[StageReport]:
    make = functools.partial(make_worker_state, store, run_id, config)
    runner = _runner(config, make)
    reports = []
    try:
        for stage in STAGES:
            if stage == "transfer" and the_plan.transfer_deferred:
                # pairs only from complete distances: a partial table would pick other pairs than the resume
                if distances_failed(reports):
                    log.warning("transfer: not planned, the distances stage has failed units; resume the run")
                    the_plan.stages[stage] = []
                else:
                    the_plan.stages[stage] = plan_transfer(config, the_plan, committed_d_asym(recorder, config))
            units = the_plan.stages.get(stage, [])
            report = run_stage(stage, units, runner, recorder, max_attempts=config.runtime.max_attempts,
                               show_progress=show_progress)
            reports.append(report)
            unplanned = stage == "transfer" and the_plan.transfer_deferred and distances_failed(reports)
            if report.failed or unplanned:
                recorder.drop_manifest(stage)
            else:
                recorder.write_manifest(stage, units)
                if stage == "image_cache":
                    write_cache_index(store, run_id)
            log.info("stage %s: %d planned, %d already committed, %d committed now, %d failed in %.1f s", stage,
                     report.planned, report.skipped, report.committed, len(report.failed), report.seconds)
    finally:
        runner.close()
    return reports


def distances_failed(reports: list[StageReport]) -> bool:
    """Whether the distances stage (which nearest-mode transfer pairs are planned from) has failed units."""
    return any(r.failed for r in reports if r.stage == "distances")


def committed_d_asym(recorder: RunRecorder, config: SweepConfig) -> dict[tuple[str, str], float]:
    """``d_asym[(task_a, task_b)]`` of the transfer ranking method, from the committed distances."""
    table = recorder.read_committed("distances", stage="distances")
    if table is None:
        return {}
    rows = table.filter(pc.equal(table["method"], transfer_method(config)))
    return {(a, b): d for a, b, d in zip(rows["task_a"].to_pylist(), rows["task_b"].to_pylist(),
                                         rows["d_asym"].to_pylist()) if d is not None}


def make_worker_state(store: ResultStore, run_id: str, config: SweepConfig) -> tuple[SweepContext, RunRecorder]:
    """Builds a worker's context (runs inside each Ray actor, or once in-process)."""
    import torch

    if config.runtime.runner == "ray" and not torch.cuda.is_available():
        torch.set_num_threads(max(1, int(config.runtime.cpus_per_worker)))
    return SweepContext(store, run_id, config), RunRecorder(store, run_id)


def _runner(config: SweepConfig, make):
    if config.runtime.runner == "inline":
        ctx, recorder = make()
        return InlineRunner(lambda: ctx, recorder)
    from orchestrator.ray_runner import RayRunner, WorkerSpec, cluster_workers, init_ray

    init_ray(config.runtime.address)
    n_workers, num_gpus = cluster_workers(config.runtime.workers, config.runtime.cpus_per_worker)
    log.info("Ray runner: %d worker actor(s), %s GPU each", n_workers, num_gpus)
    spec = WorkerSpec(make, num_gpus=num_gpus, num_cpus=config.runtime.cpus_per_worker)
    return RayRunner(spec, n_workers)


def ensure_library(store: ResultStore, run_id: str, config: SweepConfig) -> Library:
    """The run's task library: read back if already written, else built from the datasets and written."""
    if store.exists(f"{run_id}/library.json"):
        return load_library(store, run_id)
    library = build_library_from_roots(store, dataset_roots(config), config.library)
    write_library(store, run_id, library, config.library)
    return load_library(store, run_id)  # what workers will see (absolute roots)


def dataset_roots(config: SweepConfig) -> dict[str, Path | str]:
    """Dataset name → root folder (or ``s3://`` URI), generating the mini datasets first when asked."""
    d = config.datasets
    roots = {k: v for k, v in (("inat2018", d.inat2018), ("cub200", d.cub200), ("imat2018", d.imat2018),
                               ("deepfashion", d.deepfashion)) if v is not None}
    if d.mini:
        roots = {**ensure_mini_datasets(Path(d.mini_dir), seed=d.mini_seed), **roots}
    for name, root in roots.items():
        if not is_remote(root) and not Path(root).is_dir():
            raise TaskSweepInputError(f"datasets.{name}: {root} is not a folder; give the dataset's root folder")
    return roots


def _open_run(store: ResultStore, run_id: str, config: SweepConfig, *, resume: bool) -> dict:
    key = f"{run_id}/run.json"
    config_json = config.model_dump(mode="json")
    # The report section shapes only `orchestrate report`, never a unit: it is kept in run.json but left
    # out of the digest, so a resume is not refused for a report setting (nor for runs made before it).
    computed = {k: v for k, v in config_json.items() if k not in RESUME_IGNORED_SECTIONS}
    config_digest = digest(computed)
    if resume:
        if not store.exists(key):
            raise TaskSweepInputError(f"--resume {run_id}: no run.json under {store.uri}/{run_id}; check --results and the run id")
        info = store.read_json(key)
        if info.get("config_digest") != config_digest:
            changed = sorted(k for k in computed if computed[k] != info.get("config", {}).get(k))
            raise TaskSweepInputError(
                f"--resume {run_id}: the configuration differs from the run's (sections: {', '.join(changed) or '?'}); "
                "resume with the same config (see run.json), or start a new run without --resume"
            )
        info.setdefault("resumed_at", []).append(_now())
    else:
        if store.exists(key):
            raise TaskSweepInputError(f"run {run_id} already exists under {store.uri}; use --resume {run_id} or another --run-id")
        info = {"run_id": run_id, "config": config_json, "config_digest": config_digest, "started_at": _now(),
                "versions": _versions(), "git_revision": _git_revision(), "python": platform.python_version(),
                "host": platform.node()}
    store.write_json(key, info)
    return info


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("task-sweep", "torch", "torchvision", "ray", "pyarrow", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
