"""``orchestrate embed``: Task2Vec embedding of one image folder (how a user embeds their own task)."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
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
@click.option("--fisher-samples", type=click.IntRange(min=1), default=None,
              help="Class-balanced draws for the Fisher [default: 2,048; with --reference 10,000]. "
                   "Fewer is faster and noisier: the row's noise column says how noisy.")
@click.option("--reference", "reference", is_flag=True,
              help="The reference implementation's settings exactly (its RandomResizedCrop input, the head's features "
                   "in dataset order, one head by sampled Adam, 10,000 Fisher draws with replacement; the Fisher alone "
                   "costs ~5x the default's), for "
                   "comparisons with its numbers. Its noise column sees the Fisher draws only (a lower bound).")
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
    fisher_samples: int | None,
    reference: bool,
    image_size: int,
    device: str,
    out_file: Path,
    verbose: bool,
) -> None:
    """Embed DATASET_DIR (one sub-folder per class, torchvision ImageFolder layout) with Task2Vec."""
    from experts.embed_folder import embed_image_folder
    from experts.task2vec import REFERENCE, Task2VecConfig

    setup_logging(verbose)
    config = REFERENCE if reference else Task2VecConfig()
    if fisher_samples is not None:
        config = replace(config, fisher_samples=fisher_samples, batch_size=min(config.batch_size, fisher_samples))
    emb = embed_image_folder(
        dataset_dir,
        probe=probe,
        probe_weights=probe_weights,
        method=method,
        seed=seed,
        max_samples=max_samples,
        device=device,
        image_size=image_size,
        config=config,
        progress=ProgressPrinter(),
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
        "noise": emb.noise,
    }
    table = pa.Table.from_pylist([row], schema=versioned(EMBEDDINGS_SCHEMA, "embeddings"))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out_file)
    noise = "" if emb.noise is None else f", noise d_sym {emb.noise:.4f}"
    click.echo(f"{out_file}: {emb.method} embedding of length {len(emb.hessian)} ({emb.n_samples} samples{noise})")


class ProgressPrinter:
    """``progress(phase, done, total)`` for ``experts``: one line per phase on stderr, rewritten at most
    every ``interval`` seconds, with the phase's rate and its ETA (``\r`` on a terminal, new lines otherwise)."""

    UNITS = {"features": "batches", "head": "steps", "fisher": "batches"}

    def __init__(self, interval: float = 2.0, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.interval, self.clock = interval, clock
        self.phase: str | None = None
        self.start = self.last = 0.0
        self.tty = sys.stderr.isatty()

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = self.clock()
        if phase != self.phase:
            self.phase, self.start, self.last = phase, now, now
            if done == 0:
                return
        if done < total and now - self.last < self.interval:
            return
        self.last = now
        elapsed = now - self.start
        eta = f", ETA {_duration(elapsed / done * (total - done))}" if 0 < done < total else ""
        end = "\n" if done >= total or not self.tty else ""
        line = f"{phase}: {done}/{total} {self.UNITS.get(phase, 'steps')}, {_duration(elapsed)}{eta}"
        click.echo(("\r" if self.tty else "") + line.ljust(60 if self.tty else 0), err=True, nl=bool(end))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"
