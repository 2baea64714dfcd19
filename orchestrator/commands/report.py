"""``orchestrate report``: the selection table and figures of a run, from its Parquet tables."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.commands._common import results_options, setup_logging, user_errors


@click.command("report")
@results_options
@click.option("--run-id", required=True, help="The run to report on.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for index.html (one self-contained page).")
@click.option("--method", type=click.Choice(["montecarlo", "montecarlo_exact", "variational"]), default=None,
              help="Fisher method whose distances to use (default: report.method of run.json).")
@click.option("--bootstrap", type=click.IntRange(min=10), default=None,
              help="Bootstrap resamples (default: report.bootstrap).")
@user_errors
def report(results: str, s3_endpoint: str | None, run_id: str, out_dir: Path, method: str | None,
           bootstrap: int | None) -> None:
    """Write OUT/index.html: per meta-task selection table, t-SNE, similarity, norm/error, taxonomy."""
    from orchestrator.config import SweepConfig
    from orchestrator.report.data import load_run
    from orchestrator.report.html import write_report
    from orchestrator.store import open_store

    setup_logging()
    out_dir.mkdir(parents=True, exist_ok=True)  # a bad --out fails now, before the run is read
    store = open_store(results, s3_endpoint=s3_endpoint)
    data = load_run(store, run_id)
    overrides = {k: v for k, v in {"method": method, "bootstrap": bootstrap}.items() if v is not None}
    if overrides:
        cfg = data.config.model_dump(mode="json")
        cfg["report"] = {**cfg["report"], **overrides}
        data = load_run(store, run_id, SweepConfig.model_validate(cfg))
    tables = write_report(data, run_id, out_dir)
    for name, rows in tables.items():
        click.echo(f"{name}: " + ", ".join(f"{r.method} {100 * r.relative_increase:+.1f}%" for r in rows))
    click.echo(f"report: {out_dir / 'index.html'}")
