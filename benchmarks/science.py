"""The scientific check on the mini sweep (issue 6): does Task2Vec behave as in the paper?

Three claims, measured on the mini datasets:

1. embedding distance follows taxonomic distance: Spearman ρ(d_tax, d_sym) > 0 over iNat/CUB task pairs;
2. embedding norm follows difficulty: Spearman ρ(‖F‖, test error of the probe's linear head) > 0
   over every task of the sweep;
3. Asym. Task2Vec selects better experts than Chance: smaller relative error increase (iNat+CUB).

The set-up, as a user would run it (all offline):

- ``orchestrate mini-data OUT --scale 4 --pretraining 60``: the mini datasets with 4x the images per
  class, plus a 63-class glyph set, the stand-in for ImageNet (no task's images; labelled by shape x
  texture, not by colour: tasks/mini/pretraining.py says why);
- ``orchestrate pretrain-probe OUT/pretraining``: a ``tiny_resnet`` probe pretrained on it (30 epochs);
- a sweep of all 48 mini tasks at 32 px, one expert per iNat/CUB task (16, 3 epochs), every
  (expert, task) head, 1,024 Fisher draws per embedding.

``tests/test_science.py`` runs one seed. This script runs several and prints the figures::

    python benchmarks/science.py [--seeds 0 1 2] [--work DIR] [--random-probe]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from scipy.stats import spearmanr

from experts.pretrain import pretrain_probe, save_weights
from experts.training import ExpertTrainConfig
from orchestrator.config import SweepConfig
from orchestrator.report.data import RunData, load_run
from orchestrator.report.figures import norm_and_error, taxonomic_pairs
from orchestrator.report.html import meta_task_tables
from orchestrator.store import open_store
from orchestrator.sweep import launch
from tasks.library import build_library
from tasks.mini import generate_mini_datasets
from tasks.mini.pretraining import write_pretraining_set

SCALE, PER_CLASS, PRETRAIN_EPOCHS, FISHER_SAMPLES, EXPERT_EPOCHS = 4, 60, 30, 1024, 3
PROBE, IMAGE_SIZE = "tiny_resnet", 32


@dataclass(frozen=True)
class ScienceFigures:
    rho_tax: float  # Spearman ρ(d_tax, d_sym) over iNat/CUB task pairs
    p_tax: float
    n_pairs: int
    rho_norm: float  # Spearman ρ(embedding norm, the probe's head test error) over every task
    p_norm: float
    n_tasks: int
    increase: dict[str, float]  # iNat+CUB relative error increase by method
    optimal_error: float
    probe_train_error: float | None = None  # of the pretrained probe on its glyph set (None: random init)


def prepare(work: Path, seed: int, *, random_probe: bool = False) -> tuple[dict[str, Path], Path | None, float | None]:
    """Mini datasets at ``SCALE`` and, unless ``random_probe``, a probe pretrained on the glyph set
    (its weights file and train error)."""
    roots = generate_mini_datasets(work / "mini", seed=seed, scale=SCALE)
    if random_probe:
        return roots, None, None
    folder = write_pretraining_set(work / "pretraining", seed=seed, per_class=PER_CLASS)
    result = pretrain_probe(folder, probe=PROBE, image_size=IMAGE_SIZE,
                            config=ExpertTrainConfig(epochs=PRETRAIN_EPOCHS, lr=0.05, batch_size=64,
                                                     weight_decay=5e-4, seed=seed))
    return roots, save_weights(result.state_dict, work / "probe.pt"), result.train_error


def science_config(roots: dict[str, Path], probe_weights: Path | None, seed: int = 0) -> SweepConfig:
    by_source: dict[str, list[str]] = {}
    for task in build_library(roots).tasks:
        by_source.setdefault(task.source, []).append(task.task_id)
    species = by_source["inat2018"] + by_source["cub200"]
    return SweepConfig.model_validate({
        "datasets": {k: str(v) for k, v in roots.items()},
        "tasks": {"include": species + by_source["imat2018"] + by_source["deepfashion"]},
        "experts": {"train_on": species, "epochs": EXPERT_EPOCHS, "batch_size": 16, "seed": seed},
        "heads": {"epochs": 100, "seed": seed},
        "embeddings": {"probe": PROBE, "probe_weights": probe_weights,  # None: random init (tiny_resnet has no ImageNet weights)
                       "max_samples": FISHER_SAMPLES, "fisher_samples": FISHER_SAMPLES, "head_epochs": 3,
                       "batch_size": 32, "seed": seed},
        "runtime": {"image_size": IMAGE_SIZE, "feature_batch_size": 64, "runner": "inline"},
        "report": {"bootstrap": 200, "folds": 4, "seed": seed},
    })


def figures(data: RunData) -> ScienceFigures:
    tax, emb = taxonomic_pairs(data)  # d_tax is NaN outside iNat/CUB: only species-task pairs remain
    rho_tax, p_tax = spearmanr(tax, emb)
    norm, err, _ = norm_and_error(data)  # every task of the sweep, with the probe's own error
    rho_norm, p_norm = spearmanr(norm, err)
    table = {r.method: r for r in meta_task_tables(data)["iNat+CUB"]}
    return ScienceFigures(float(rho_tax), float(p_tax), len(tax), float(rho_norm), float(p_norm), len(norm),
                          {m: r.relative_increase for m, r in table.items()}, table["Chance"].optimal_error)


def run_science(work: Path, seed: int = 0, *, random_probe: bool = False) -> tuple[ScienceFigures, Path]:
    roots, weights, probe_error = prepare(work, seed, random_probe=random_probe)
    results = work / "results"
    launch(science_config(roots, weights, seed), open_store(str(results)), run_id="science", show_progress=False)
    return replace(figures(load_run(open_store(str(results)), "science")), probe_train_error=probe_error), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=None, help="keep the runs here (default: a temp folder)")
    parser.add_argument("--random-probe", action="store_true", help="the same sweep with a random-init probe")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out: list[ScienceFigures] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            start = time.perf_counter()
            f, _ = run_science((args.work or Path(tmp)) / f"seed{seed}", seed, random_probe=args.random_probe)
            out.append(f)
            print(f"seed {seed}: rho(d_tax, d_sym) {f.rho_tax:+.3f} (p {f.p_tax:.2g}, {f.n_pairs} pairs)  "
                  f"rho(norm, error) {f.rho_norm:+.3f} (p {f.p_norm:.2g}, {f.n_tasks} tasks)  "
                  f"Asym {f.increase['Asym. Task2Vec']:+.1%} vs Chance {f.increase['Chance']:+.1%} "
                  f"(optimal error {f.optimal_error:.3f}; probe train error {f.probe_train_error})  "
                  f"[{time.perf_counter() - start:.0f} s]", flush=True)
    print("median rho(d_tax, d_sym)", f"{statistics.median(f.rho_tax for f in out):+.3f}",
          " median rho(norm, error)", f"{statistics.median(f.rho_norm for f in out):+.3f}")
    for method in out[0].increase:
        print(f"  {method:16s} " + "  ".join(f"{f.increase[method]:+8.1%}" for f in out))


if __name__ == "__main__":
    main()
