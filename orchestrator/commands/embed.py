"""``orchestrate embed``: Task2Vec embedding of one image folder (how a user embeds their own task)."""

from __future__ import annotations

from pathlib import Path

import click
import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.commands._common import device_option, probe_option, setup_logging, user_errors
from orchestrator.schemas import EMBEDDINGS_SCHEMA, versioned


@click.command("embed")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@probe_option("resnet34")
@click.option("--probe-weights", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A torchvision state dict for the probe; without it the probe is randomly initialised.")
@click.option("--method", type=click.Choice(["montecarlo", "montecarlo_exact", "variational", "domain"]),
              default="montecarlo",
              show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--max-samples", default=10_000, show_default=True, type=click.IntRange(min=1), help="At most this many training images.")
@click.option("--fisher-samples", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="Class-balanced draws for the Fisher (the reference's 10,000; fewer is faster and noisier).")
@click.option("--image-size", default=224, show_default=True, type=click.IntRange(16, 1024))
@device_option
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Parquet file to write (one row).")
@click.option("-v", "--verbose", is_flag=True)
@user_errors
def embed(
    dataset_dir: Path,
    probe: str,
    probe_weights: Path | None,
    method: str,
    seed: int,
    max_samples: int,
    fisher_samples: int,
    image_size: int,
    device: str,
    out_file: Path,
    verbose: bool,
) -> None:
    """Embed DATASET_DIR (one sub-folder per class, torchvision ImageFolder layout) with Task2Vec."""
    from experts.embed_folder import embed_image_folder
    from experts.task2vec import Task2VecConfig

    setup_logging(verbose)
    emb = embed_image_folder(
        dataset_dir,
        probe=probe,
        probe_weights=probe_weights,
        method=method,
        seed=seed,
        max_samples=max_samples,
        device=device,
        image_size=image_size,
        config=Task2VecConfig(fisher_samples=fisher_samples, batch_size=min(64, fisher_samples)),
    )
    warnings = [] if emb.pretrained else [f"probe {probe} is randomly initialised (no --probe-weights given)"]
    if warnings:
        click.echo(f"warning: {warnings[0]}", err=True)
    row = {
        "run_id": "",
        "task_id": dataset_dir.resolve().name,
        "probe": emb.probe,
        "method": emb.method,
        "pretrained": emb.pretrained,
        "n_samples": emb.n_samples,
        "seed": emb.seed,
        "dim": len(emb.hessian),
        "embedding": emb.hessian.tolist(),
        "scale": emb.scale.tolist(),
        "warnings": warnings,
        "precision": emb.meta.get("precision", "fp32"),
    }
    table = pa.Table.from_pylist([row], schema=versioned(EMBEDDINGS_SCHEMA, "embeddings"))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out_file)
    click.echo(f"{out_file}: {emb.method} embedding of length {len(emb.hessian)} ({emb.n_samples} samples)")
