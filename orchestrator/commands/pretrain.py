"""``orchestrate pretrain-probe``: train a probe from scratch on an image folder (no ImageNet weights needed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from orchestrator.commands._common import device_option, probe_option, setup_logging, user_errors


@click.command("pretrain-probe")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="State dict to write (.pt); use it as embeddings.probe_weights or --probe-weights.")
@probe_option("tiny_resnet")
@click.option("--image-size", default=32, show_default=True, type=click.IntRange(16, 1024))
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=0.05, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--weight-decay", default=5e-4, show_default=True, type=click.FloatRange(min=0))
@click.option("--seed", default=0, show_default=True, help="Seeds the random init, shuffling and augmentation.")
@device_option
@click.option("-v", "--verbose", is_flag=True)
@user_errors
def pretrain(dataset_dir: Path, out_file: Path, probe: str, image_size: int, epochs: int, lr: float, batch_size: int,
             weight_decay: float, seed: int, device: str, verbose: bool) -> None:
    """Pretrain PROBE on DATASET_DIR (one sub-folder per class), e.g. the set `orchestrate mini-data --pretraining` writes."""
    from experts.pretrain import pretrain_probe, save_weights
    from experts.training import ExpertTrainConfig

    setup_logging(verbose)
    out_file.parent.mkdir(parents=True, exist_ok=True)  # a bad --out fails now, not after the training
    start = time.perf_counter()

    def progress(epoch: int, total: int, loss: float) -> None:
        click.echo(f"epoch {epoch}/{total}  train loss {loss:.3f}  ({time.perf_counter() - start:.0f} s)", err=True)

    config = ExpertTrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, seed=seed)
    result = pretrain_probe(dataset_dir, probe=probe, image_size=image_size, config=config, device=device,
                            progress=progress)
    save_weights(result.state_dict, out_file)
    info = {"probe": probe, "folder": str(dataset_dir.resolve()), "classes": len(result.classes),
            "images": result.n_images, "image_size": image_size, "epochs": epochs, "seed": seed,
            "train_error": round(result.train_error, 4), "seconds": round(time.perf_counter() - start, 1)}
    out_file.with_name(out_file.name + ".json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    click.echo(f"{probe} trained on {result.n_images} images of {len(result.classes)} classes: "
               f"train error {result.train_error:.3f}; weights → {out_file}")
    click.echo(f"use them with embeddings.probe_weights: {out_file} (and embeddings.probe: {probe})")
