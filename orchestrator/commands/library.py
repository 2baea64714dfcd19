"""``orchestrate library``: read the dataset manifests, cut the tasks, write the library tables."""

from __future__ import annotations

import time
from pathlib import Path

import click

from orchestrator.commands._common import default_run_id, results_options, setup_logging, user_errors
from orchestrator.dataset_files import build_library_from_roots
from orchestrator.library_io import ensure_mini_datasets, write_library
from orchestrator.store import open_store
from tasks.config import LibraryConfig


class _DatasetRoot(click.ParamType):
    """An existing folder, or an ``s3://bucket/prefix`` (read through the store layer)."""

    name = "FOLDER|s3://..."

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, str) and value.startswith("s3://"):
            return value
        return click.Path(exists=True, file_okay=False, path_type=Path).convert(value, param, ctx)


_DIR = _DatasetRoot()


@click.command("library")
@click.option("--inat2018", type=_DIR, help="iNaturalist 2018 root (train2018.json, val2018.json, categories.json).")
@click.option("--cub200", type=_DIR, help="CUB-200-2011 root (the CUB_200_2011 folder or its parent).")
@click.option("--imat2018", type=_DIR, help="iMaterialist Fashion 2018 root (train.json, validation.json).")
@click.option("--deepfashion", type=_DIR, help="DeepFashion Category-and-Attribute root (Anno/ or Anno_coarse/, Eval/).")
@click.option("--mini", is_flag=True, help="Generate the mini datasets under --mini-dir (if absent) and use all four.")
@click.option("--mini-dir", type=click.Path(path_type=Path), default=Path("./mini-data"), show_default=True)
@results_options
@click.option("--run-id", default=None, help="Run id (folder under --results); default: library-<UTC time>.")
@click.option(
    "--verify-images",
    type=click.Choice(["none", "exists", "decode"]),
    default="exists",
    show_default=True,
    help="Check image files while building: not at all, that they exist, or that they decode.",
)
@click.option("--cub-taxonomy", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CUB taxonomy TSV (class_id, species, family, order); default: the shipped one.")
@click.option("--imat-label-map", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="iMaterialist label map CSV (labelId,taskId,labelName,taskName); default: the shipped one.")
@click.option("-v", "--verbose", is_flag=True)
@user_errors
def library(
    inat2018: Path | None,
    cub200: Path | None,
    imat2018: Path | None,
    deepfashion: Path | None,
    mini: bool,
    mini_dir: Path,
    results: str,
    s3_endpoint: str | None,
    run_id: str | None,
    verify_images: str,
    cub_taxonomy: Path | None,
    imat_label_map: Path | None,
    verbose: bool,
) -> None:
    """Build the task library from the datasets' own annotation files and write it as Parquet.

    A dataset root is a folder or s3://bucket/prefix (same endpoint and credentials as --results). Any
    dataset may be left out. Tables land under RESULTS/RUN_ID/{tasks,images,labels,skips}/.
    """
    setup_logging(verbose)
    roots = {k: v for k, v in dict(inat2018=inat2018, cub200=cub200, imat2018=imat2018, deepfashion=deepfashion).items() if v}
    if mini:
        roots = {**ensure_mini_datasets(mini_dir), **roots}
    if not roots:
        raise click.UsageError("name at least one dataset (--inat2018, --cub200, --imat2018, --deepfashion) or --mini")
    config = LibraryConfig(verify_images=verify_images, cub_taxonomy=cub_taxonomy, imat_label_map=imat_label_map)
    store = open_store(results, s3_endpoint=s3_endpoint)
    store.check_writable()
    run_id = run_id or default_run_id("library")
    start = time.perf_counter()
    lib = build_library_from_roots(store, roots, config)
    summary = write_library(store, run_id, lib, config)
    for name, c in summary["counts"].items():
        click.echo(f"{name:12s} {c['tasks']:5d} tasks  {c['images']:8d} images  {c['skips']:5d} skips recorded")
    click.echo(f"{summary['n_tasks']} tasks written to {store.uri}/{run_id} in {time.perf_counter() - start:.1f} s")
