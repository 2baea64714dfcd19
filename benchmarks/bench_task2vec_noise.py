"""Benchmark: each embedding's own noise estimate against the measured seed-to-seed noise.

``TaskEmbedding.noise`` predicts, from one run, the d_sym between that run and an independent run of
the same task (another seed): d_sym between the two halves of the Fisher draws (even and odd
batches), halved (``experts.fisher.split_noise``). This embeds one image folder with ``--seeds``
seeds per probe and compares the mean estimate with the mean d_sym over all seed pairs, and the
spread of single pairs (what ``experts.distances.above_noise_floor``'s factor must cover).
Usage (folder and weights from ``benchmarks/task2vec_e2e.py data``)::

    python benchmarks/bench_task2vec_noise.py /tmp/t2v/d64 --probes resnet18 resnet13 --seeds 0 1 2 3 \\
        --image-size 64 [--set fisher_samples=1280 independent_halves=false] [--save DIR] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import numpy as np
import torch

from experts.distances import symmetric_rowwise
from experts.embed_folder import embed_image_folder
from experts.task2vec import Task2VecConfig


def _parse(default: object, text: str) -> object:
    if isinstance(default, bool):
        if text.lower() not in ("true", "false"):
            raise SystemExit(f"expected true or false, got {text!r}")
        return text.lower() == "true"
    return type(default)(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--probes", nargs="+", default=["resnet18", "resnet13"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--method", default="montecarlo")
    ap.add_argument("--set", nargs="*", default=[], help="Task2VecConfig overrides, field=value")
    ap.add_argument("--save", type=Path, default=None, help="write each embedding as DIR/<probe>_<seed>.npy")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = {k: _parse(getattr(Task2VecConfig(), k), v) for k, v in (o.split("=") for o in args.set)}
    config = replace(Task2VecConfig(), **opts)
    print(f"{args.folder}, {args.image_size} px, {args.method}, {config.fisher_samples} Fisher draws, "
          f"head {config.head_solver}, draws {config.fisher_sampling}, independent halves {config.independent_halves}, "
          f"seeds {args.seeds}")
    print("| probe | mean estimate | measured seed-to-seed d_sym (mean of pairs) | ratio | single pairs / mean "
          "| s per embedding |")
    print("|---|---|---|---|---|---|")
    for probe in args.probes:
        weights = Path(f"{args.folder}.weights/{probe}.pt")
        embs, seconds = [], []
        for seed in args.seeds:
            clock = time.perf_counter()
            embs.append(embed_image_folder(args.folder, probe=probe, probe_weights=weights if weights.exists() else None,
                                           method=args.method, seed=seed, image_size=args.image_size, config=config))
            seconds.append(time.perf_counter() - clock)
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                np.save(args.save / f"{probe}_{seed}.npy", embs[-1].hessian)
        pairs = [float(symmetric_rowwise(a.hessian[None], b.hessian[None])[0]) for a, b in combinations(embs, 2)]
        measured = statistics.mean(pairs)
        estimate = statistics.mean(e.noise for e in embs)
        print(f"| {probe} | {estimate:.4f} | {measured:.4f} | {estimate / measured:.2f} "
              f"| {min(pairs) / measured:.2f}-{max(pairs) / measured:.2f} | {statistics.median(seconds):.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
