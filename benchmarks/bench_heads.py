"""Benchmark: 100 linear heads on one shared image group, batched vs one feature pass per head.

The workload of a heads unit on DeepFashion/iMaterialist: every task labels the same images. A
small ResNet-ish backbone (random init, seed 0) maps 2,000 synthetic 32×32 images to features;
100 binary tasks (each the sign of a random projection of the latent that generated the image)
share a 1,500/500 train/test split.

- batched: ``extract_features`` once, then ``train_heads`` on all 100 specs (one padded tensor);
- naive: for every task, ``extract_features`` again, then ``train_heads`` on that task alone.

Same head settings in both (full-batch Adam, ``--epochs``). Reported: median wall time of
``--runs`` runs each (interleaved), the ratio, and the largest difference of test error between
the two ways (they train the same heads). ``--naive-tasks k < 100`` times the naive way on the
first k tasks and scales by 100/k (stated in the output). Usage::

    python benchmarks/bench_heads.py --runs 3 --out benchmarks/results/heads.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from experts.features import extract_features
from experts.heads import HeadSpec, HeadTrainConfig, train_heads


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.skip(x))


def small_resnet(widths: tuple[int, ...] = (16, 32, 64)) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    for i, w in enumerate(widths):
        layers.append(Block(widths[max(0, i - 1)], w, 1 if i == 0 else 2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def image_group(n: int, tasks: int, seed: int = 0) -> tuple[TensorDataset, np.ndarray]:
    """Images decoded from a 16-d latent, and ``tasks`` binary labels (random half-spaces of it)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 16, generator=g)
    decoder = torch.randn(16, 3 * 8 * 8, generator=g)
    images = F.interpolate((z @ decoder).reshape(n, 3, 8, 8), size=32, mode="bilinear")
    images = images / images.std() + 0.3 * torch.randn(n, 3, 32, 32, generator=g)
    labels = (z @ torch.randn(16, tasks, generator=g) > 0).long().numpy()  # (n, tasks)
    return TensorDataset(images, torch.zeros(n, dtype=torch.long)), labels


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--naive-tasks", type=int, default=None, help="time the naive way on this many tasks")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    naive_tasks = args.naive_tasks or args.tasks

    model = small_resnet()
    data, labels = image_group(args.images, args.tasks)
    n_train = args.images * 3 // 4
    train, test = np.arange(n_train), np.arange(n_train, args.images)
    specs = [HeadSpec(f"attr{j}", labels[:, j], train, test, n_classes=2) for j in range(args.tasks)]
    config = HeadTrainConfig(epochs=args.epochs)

    def batched():
        return train_heads(extract_features(model, data, device="cpu"), specs, config=config)

    def naive():
        return [train_heads(extract_features(model, data, device="cpu"), [s], config=config)[0]
                for s in specs[:naive_tasks]]

    _, pass_s = timed(lambda: extract_features(model, data, device="cpu"))  # warm-up + one pass alone
    batched_t, naive_t = [], []
    for run in range(args.runs):
        b_res, b = timed(batched)
        n_res, n = timed(naive)
        batched_t.append(b)
        naive_t.append(n * args.tasks / naive_tasks)
        print(f"run {run}: batched {b:.2f} s, naive {n:.2f} s for {naive_tasks} tasks "
              f"(load average {os.getloadavg()[0]:.2f})")
    diff = max(abs(x.test_error - y.test_error) for x, y in zip(b_res, n_res))
    mean_err = statistics.mean(r.test_error for r in b_res)
    b_med, n_med = statistics.median(batched_t), statistics.median(naive_t)
    scaled = "" if naive_tasks == args.tasks else f" (measured on {naive_tasks} tasks, × {args.tasks / naive_tasks:g})"

    lines = [
        "# Heads benchmark",
        "",
        f"- Date: {datetime.datetime.now().isoformat(timespec='minutes')}",
        f"- Machine: {platform.machine()}, {_cpu_model()}, {len(os.sched_getaffinity(0))} CPUs, no GPU; shared with "
        f"other jobs (load average {os.getloadavg()[0]:.2f} at the end); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        f"- Settings: {args.images} images 3×32×32, small ResNet (widths 16/32/64, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters, 64-d features), {args.tasks} binary tasks "
        f"sharing a {len(train)}/{len(test)} split, heads: full-batch Adam, {args.epochs} epochs, lr {config.lr}, "
        f"weight decay {config.weight_decay}; median of {args.runs} runs",
        f"- One feature pass alone: {pass_s:.2f} s",
        "",
        "| way | median wall (s) | min (s) | all runs (s) |",
        "|---|---|---|---|",
        f"| batched: 1 feature pass + {args.tasks} heads together | {b_med:.2f} | {min(batched_t):.2f} | "
        f"{', '.join(f'{t:.2f}' for t in batched_t)} |",
        f"| naive: 1 feature pass + 1 head, per task{scaled} | {n_med:.2f} | {min(naive_t):.2f} | "
        f"{', '.join(f'{t:.2f}' for t in naive_t)} |",
        "",
        f"**Speed-up: {n_med / b_med:.1f}× (medians)**, {min(naive_t) / min(batched_t):.1f}× (minima); target ≥ 30×.",
        "",
        f"Same heads either way: largest |Δ test error| over the {naive_tasks} tasks = {diff:.4f}; "
        f"mean test error {mean_err:.3f} (chance 0.5).",
    ]
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
