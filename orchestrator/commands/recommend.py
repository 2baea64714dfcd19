"""``orchestrate recommend``: embed a new image folder with a run's probe and rank the run's experts."""

from __future__ import annotations

import json
from pathlib import Path

import click

from orchestrator.commands._common import device_option, results_options, setup_logging, user_errors


@click.command("recommend")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@results_options
@click.option("--run-id", required=True, help="The run whose probe, embeddings and experts to use.")
@click.option("--method", default=None, help="Fisher method (default: report.method of the run, if it was computed).")
@click.option("--by", type=click.Choice(["asymmetric", "symmetric"]), default="asymmetric", show_default=True,
              help="Rank by d_asym (Asym. Task2Vec, the study's selector) or d_sym (Task2Vec).")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print the ranking as JSON (one object per expert).")
@click.option("-v", "--verbose", is_flag=True)
@user_errors
def recommend(dataset_dir: Path, results: str, s3_endpoint: str | None, run_id: str, method: str | None, by: str,
              device: str, as_json: bool, verbose: bool) -> None:
    """Rank the run's experts for DATASET_DIR (one sub-folder per class), nearest first."""
    from orchestrator.recommend import recommend_for_folder
    from orchestrator.store import open_store

    setup_logging(verbose)
    ranking, info = recommend_for_folder(open_store(results, s3_endpoint=s3_endpoint), run_id, dataset_dir,
                                         method=method, by=by, device=device)
    if as_json:
        click.echo(json.dumps([{k: (None if isinstance(v, float) and v != v else v) for k, v in r.__dict__.items()}
                               for r in ranking]))
        return
    click.echo(f"{dataset_dir}: {info}")
    click.echo(f"{'rank':>4}  {'expert':<40} {'d_asym':>8} {'d_sym':>8}  tasks")
    for i, r in enumerate(ranking, 1):
        click.echo(f"{i:>4}  {r.expert_id:<40} {r.d_asym:>8.4f} {r.d_sym:>8.4f}  {r.n_tasks}")
