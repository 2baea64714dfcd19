"""``orchestrate launch``: plan and run the sweep (or resume it, or only print the plan)."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.commands._common import results_options, setup_logging, user_errors
from orchestrator.config import load_config
from orchestrator.presets import load_preset, preset_names
from orchestrator.store import open_store

# The --mini preset: every stage on the mini datasets in a few minutes on a 2-core CPU.
MINI_PRESET = {
    "datasets": {"mini": True},
    "experts": {"train_on": ["source:inat2018", "source:cub200"], "epochs": 2, "batch_size": 32},
    "heads": {"epochs": 100},
    "embeddings": {"probe": "resnet18", "max_samples": 96, "fisher_samples": 96, "head_epochs": 2,
                   "batch_size": 32},
    "runtime": {"image_size": 64},
}


@click.command("launch")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Sweep config (YAML); see docs/sweep.md. Defaults cover everything else.")
@click.option("--mini", is_flag=True, help="The quick preset on generated mini datasets (CPU, a few minutes).")
@click.option("--preset", default=None, type=click.Choice(preset_names()),
              help="A study design shipped with the package (docs/sweep.md); --config and flags override it.")
@results_options
@click.option("--run-id", default=None, help="Id of a new run (default: run-<UTC time>).")
@click.option("--resume", "resume_id", default=None, metavar="RUN_ID", help="Finish an interrupted run.")
@click.option("--address", default=None, help="Ray address: local (a private Ray on this machine) or auto (a cluster).")
@click.option("--runner", type=click.Choice(["ray", "inline"]), default=None, help="inline: one process, for debugging.")
@click.option("--workers", type=int, default=None, help="Worker actors (default: one per GPU, else one per CPU).")
@click.option("--dry-run", is_flag=True, help="Print the units per stage and a compute estimate; run nothing.")
@click.option("--throughput", type=float, default=2000.0, show_default=True,
              help="Images/s of one GPU for the --dry-run estimate.")
@click.option("-v", "--verbose", is_flag=True)
@user_errors
def launch(config_file, mini, preset, results, s3_endpoint, run_id, resume_id, address, runner, workers, dry_run,
           throughput, verbose) -> None:
    """Run the sweep: library → experts → heads → embeddings → distances (→ transfer), as Parquet under RESULTS/RUN_ID/."""
    from orchestrator.cost import describe
    from orchestrator.plan import plan
    from orchestrator.sweep import launch as run_sweep

    setup_logging(verbose)
    overrides: dict = dict(MINI_PRESET) if mini else {}
    runtime = {k: v for k, v in (("address", address), ("runner", runner), ("workers", workers)) if v is not None}
    if runtime:
        overrides["runtime"] = {**overrides.get("runtime", {}), **runtime}
    config = load_config(config_file, overrides, preset=load_preset(preset) if preset else None)
    if dry_run:
        from orchestrator.sweep import dataset_roots
        from tasks.library import build_library  # the library is built in memory only

        library = build_library(dataset_roots(config), config.library)
        click.echo(describe(plan(config, library.tasks), config, throughput))
        return
    store = open_store(results, s3_endpoint=s3_endpoint)
    info = run_sweep(config, store, run_id=resume_id or run_id, resume=resume_id is not None)
    click.echo(f"\nrun {info['run_id']} → {store.uri}/{info['run_id']}")
    for stage, r in info["stages"].items():
        click.echo(f"  {stage:<13} {r['planned']:>5} planned  {r['skipped'] + r['committed']:>5} committed  "
                   f"{len(r['failed']):>3} failed")
    if not info["complete"]:
        raise click.ClickException(
            f"the sweep finished with failed units (see {store.uri}/{info['run_id']}/failures/); "
            f"fix the cause and run: orchestrate launch --resume {info['run_id']} (same config)")
