"""``orchestrate mini-data``: write the four mini datasets in their exact on-disk formats."""

from __future__ import annotations

import time
from pathlib import Path

import click

from orchestrator.commands._common import user_errors


@click.command("mini-data")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same files).")
@click.option("--scale", default=1, show_default=True, type=click.IntRange(min=1),
              help="Multiply the images of every class (same classes and tasks; the scientific check uses 4).")
@click.option("--pretraining", "pretraining_per_class", default=0, show_default=True, type=click.IntRange(min=0),
              help="Also write OUT_DIR/pretraining, a 63-class glyph set (shape x texture) with this many images per class, "
                   "for `orchestrate pretrain-probe` (0: none).")
@user_errors
def mini_data(out_dir: Path, seed: int, scale: int, pretraining_per_class: int) -> None:
    """Generate small, learnable versions of iNat2018, CUB-200-2011, iMaterialist 2018 and DeepFashion."""
    from tasks.mini import generate_mini_datasets
    from tasks.mini.pretraining import write_pretraining_set

    start = time.perf_counter()
    roots = generate_mini_datasets(out_dir, seed=seed, scale=scale)
    if pretraining_per_class:
        roots["pretraining"] = write_pretraining_set(out_dir / "pretraining", seed=seed,
                                                     per_class=pretraining_per_class)
    for name, root in roots.items():
        click.echo(f"{name:12s} {root}")
    click.echo(f"mini datasets written in {time.perf_counter() - start:.1f} s")
