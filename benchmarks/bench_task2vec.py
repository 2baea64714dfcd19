"""Benchmark: task-sweep's Task2Vec vs a straightforward implementation of the reference algorithm.

The reference algorithm (awslabs/aws-cv-task2vec, ``Task2Vec.embed`` with ``method="montecarlo"``)
is re-implemented below as plainly as the original: a forward pre-hook on the classifier caches
features (first images in dataset order, batches of 64, at most floor(max_samples/64) - 1
batches), the head is fitted on them (10 x 10,000 class-balanced draws, Adam 4e-4 / 1e-4), then
the Fisher loops over 156 class-balanced batches of 64 with batch-norm in train mode: forward,
``y ~ multinomial(softmax)``, ``loss.backward()`` through the whole network, and every
parameter's ``.grad ** 2`` accumulated; finally ``.reshape(out, -1).mean(1)`` per module with a
weight, except the classifier, in ``named_modules`` order. Differences, all in the reference's
favour on this machine: ``num_workers=0`` (the reference's 6 workers on 2 cores only compete with
the compute), feature caching under ``torch.no_grad``.

Both run on the same synthetic task (5 classes of smooth random textures, random crop + flip
augmentation drawn from torch's global RNG), the same probe weights (random init, seed 0) and the
same sample budget. Reported: cosine similarity of the hessians (ours vs reference, against the
reference-vs-reference noise floor), lengths, and end-to-end wall-clock and CPU time (median of
``--runs`` runs each, interleaved). Usage::

    python benchmarks/bench_task2vec.py --probe resnet18 --size 64 --n 400 --runs 3 \\
        --methods montecarlo montecarlo_exact:fisher_samples=2560 --out benchmarks/results/task2vec.md
"""

from __future__ import annotations

import argparse
import copy
import datetime
import math
import platform
import statistics
import time
from dataclasses import replace
from itertools import combinations, product
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset, WeightedRandomSampler

from experts.backbones import Probe, create_backbone
from experts.task2vec import Task2VecConfig, embed_task


class SyntheticTask(Dataset):
    """``n`` images (3, size, size) of ``classes`` smooth random textures; random crop + flip."""

    def __init__(self, n: int, classes: int, size: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        templates = F.interpolate(torch.randn(classes, 3, 8, 8, generator=g), size=size + 8, mode="bilinear")
        self.targets = torch.randint(0, classes, (n,), generator=g).tolist()
        noise = F.interpolate(torch.randn(n, 3, 16, 16, generator=g), size=size + 8, mode="bilinear")
        self.images = templates[self.targets] + 0.7 * noise
        self.size = size

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        top, left = torch.randint(0, 9, (2,)).tolist()  # global RNG, like torchvision transforms
        img = self.images[i, :, top:top + self.size, left:left + self.size]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        return img, self.targets[i]


# ---- the reference algorithm, written plainly -----------------------------------------------------

def _reference_loader(dataset: Dataset, labels: list[int], num_samples: int = 10_000) -> DataLoader:
    counts = np.bincount(labels)
    weights = 1.0 / counts[labels] / len(counts)
    sampler = WeightedRandomSampler(weights / weights.sum(), num_samples=num_samples)
    return DataLoader(dataset, sampler=sampler, batch_size=64, num_workers=0, drop_last=True)


def reference_embed(dataset: Dataset, probe: Probe, *, seed: int, max_samples: int = 10_000) -> np.ndarray:
    torch.manual_seed(seed)
    model = copy.deepcopy(probe)
    model.classifier = nn.Linear(probe.info.feature_dim, len(set(dataset.targets)))  # torch default init
    model.train()
    # cache the classifier's input features with a forward pre-hook, dataset order, no shuffling
    cached: list[torch.Tensor] = []
    hook = model.classifier.register_forward_pre_hook(lambda m, inp: cached.append(inp[0].detach().clone()))
    loader = DataLoader(dataset, shuffle=False, batch_size=64, num_workers=0)
    n_batches = min(math.floor(max_samples / 64) - 1, len(loader))
    targets = []
    with torch.no_grad():
        for _, (x, y) in zip(range(n_batches), loader):
            targets.append(y)
            model(x)
    hook.remove()
    feats, targets_t = torch.cat(cached), torch.cat(targets)
    # fit the classifier on the cached features
    opt = torch.optim.Adam(model.classifier.parameters(), lr=4e-4, weight_decay=1e-4)
    head_loader = _reference_loader(TensorDataset(feats, targets_t), targets_t.tolist())
    for _ in range(10):
        for f, y in head_loader:
            opt.zero_grad()
            F.cross_entropy(model.classifier(f), y).backward()
            opt.step()
    # Monte-Carlo Fisher: full backward per batch, .grad ** 2 accumulated per parameter
    acc = {p: torch.zeros_like(p) for p in model.parameters()}
    count = {p: 0 for p in model.parameters()}
    for x, _ in _reference_loader(dataset, dataset.targets):
        out = model(x)
        y = torch.multinomial(F.softmax(out, dim=-1), 1).detach().view(-1)
        loss = F.cross_entropy(out, y)
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            if p.grad is not None:
                acc[p] += p.grad.data ** 2
                count[p] += 1
    hess = []
    for _, module in model.named_modules():
        if module is model.classifier or getattr(module, "weight", None) is None:
            continue
        grad2 = (acc[module.weight] / count[module.weight]).numpy()
        hess.append(grad2.reshape(grad2.shape[0], -1).mean(axis=1))
    return np.concatenate(hess)


# ---- harness --------------------------------------------------------------------------------------

def _timed(fn):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _dsym(a: np.ndarray, b: np.ndarray) -> float:
    """Task2Vec's normalised symmetric distance, 1 - cos(a/(a+b), b/(a+b)) (written here, not imported)."""
    s = a + b + 1e-12 * (a + b).max()
    return 1.0 - _cos(a / s, b / s)


def _parse_method(text: str) -> tuple[str, dict[str, int | str]]:
    name, _, opts = text.partition(":")
    pairs = [o.split("=") for o in opts.split(",") if o]
    return name, {k: int(v) if v.lstrip("-").isdigit() else v for k, v in pairs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--probe", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--methods", nargs="+", default=["montecarlo"],
                    help="ours, as name[:config_field=value,...], e.g. montecarlo:targets_per_forward=4")
    ap.add_argument("--out", type=Path, default=None, help="append the Markdown table to this file")
    ap.add_argument("--save", type=Path, default=None, help="save every embedding to this .npz")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task_a = SyntheticTask(args.n, args.classes, args.size, seed=0)
    task_b = SyntheticTask(args.n, args.classes, args.size, seed=1)  # another task: the signal yardstick
    probe = create_backbone(args.probe, weights="random", seed=0)

    def job(label: str, data: SyntheticTask, seed: int):  # type: ignore[no-untyped-def]
        if label == "ref":
            return lambda: reference_embed(data, probe, seed=seed)
        name, opts = _parse_method(label)
        cfg = replace(Task2VecConfig(), **opts)
        return lambda: embed_task(data, probe, method=name, config=cfg, seed=seed).hessian

    labels = ["ref", *args.methods]
    runs: dict[str, list] = {label: [] for label in labels}
    for run in range(args.runs):  # interleaved, alternating who goes first
        for label in (labels if run % 2 == 0 else labels[::-1]):
            runs[label].append(_timed(job(label, task_a, run)))
            print(f"run {run} {label}: {runs[label][-1][1]:.1f} s wall, {runs[label][-1][2]:.1f} s cpu", flush=True)
    other = {label: job(label, task_b, 0)() for label in labels}
    table = _report(args, probe, runs, other)
    print(table)
    if args.save:
        np.savez(args.save, **{f"{k}|A|{i}": r[0] for k, v in runs.items() for i, r in enumerate(v)},
                 **{f"{k}|B|0": v for k, v in other.items()})
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.write(table + "\n")


def _report(args, probe, runs, other) -> str:  # type: ignore[no-untyped-def]
    refs = [r[0] for r in runs["ref"]]
    floor = statistics.mean(_cos(a, b) for a, b in combinations(refs, 2))
    ref_wall = statistics.median(r[1] for r in runs["ref"])
    ref_cpu = statistics.median(r[2] for r in runs["ref"])
    lines = [
        f"### {datetime.date.today()}: {args.probe} (random init), {args.n} images {args.size}x{args.size}, "
        f"{args.classes} classes, 10 x 10,000 head draws, 10,000 Fisher draws unless stated, "
        f"{args.threads} thread(s), {platform.machine()}, torch {torch.__version__}",
        "",
        "| estimator | length | cos vs reference | d_sym vs reference | d_sym seed vs seed (noise) "
        "| d_sym task A vs B (signal) | wall s | speed-up (wall) | CPU s | speed-up (CPU) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, rs in runs.items():
        ours = [r[0] for r in rs]
        pairs = [(a, b) for a, b in product(ours, refs) if a is not b]
        cos = f"{statistics.mean(_cos(a, b) for a, b in pairs):.4f}" if label != "ref" else f"{floor:.4f} (ref vs ref)"
        dref = statistics.mean(_dsym(a, b) for a, b in pairs)
        noise = statistics.mean(_dsym(a, b) for a, b in combinations(ours, 2))
        signal = statistics.mean(_dsym(a, other[label]) for a in ours)
        wall, cpu = statistics.median(r[1] for r in rs), statistics.median(r[2] for r in rs)
        lines.append(f"| {'reference algorithm' if label == 'ref' else label} | {len(ours[0])} | {cos} | {dref:.4f} "
                     f"| {noise:.4f} | {signal:.4f} | {wall:.1f} | {ref_wall / wall:.2f} | {cpu:.1f} | {ref_cpu / cpu:.2f} |")
    lines.append(f"\n{args.runs} runs each (seeds 0..{args.runs - 1}), interleaved; medians; d_sym vs reference and "
                 "cos vs reference average all (ours, reference) pairs.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
