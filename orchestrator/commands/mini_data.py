"""``orchestrate mini-data``: write the four mini datasets in their exact on-disk formats."""

from __future__ import annotations

import time
from pathlib import Path

import click

from orchestrator.commands._common import user_errors


@click.command("mini-data")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same files).")
@user_errors
def mini_data(out_dir: Path, seed: int) -> None:
    """Generate small, learnable versions of iNat2018, CUB-200-2011, iMaterialist 2018 and DeepFashion."""
    from tasks.mini import generate_mini_datasets

    start = time.perf_counter()
    roots = generate_mini_datasets(out_dir, seed=seed)
    for name, root in roots.items():
        click.echo(f"{name:12s} {root}")
    click.echo(f"mini datasets written in {time.perf_counter() - start:.1f} s")
