"""GPU throughput of the sweep's three kinds of pass, the loader's rate, and how busy the GPU stays.

For one probe (default ``resnet34``) at one image size (default 224 px), on one device:

1. **compute rates**, images/s with inputs already on the device: ``features`` (an eval forward
   under ``inference_mode``, as ``experts.features``), ``finetune`` (a training step: translation +
   flip augmentation, forward, backward, SGD with momentum, as ``experts.training``), ``fisher`` (one
   ``experts.fisher.montecarlo_step`` with batch-norm in train mode, as Task2Vec's default), each in
   ``fp32`` and in mixed precision (``bf16`` where the device supports it, else ``fp16``), with
   channels-last on CUDA;
2. **loader rates**, images/s a ``DataLoader`` with one worker per core delivers: from realistic JPEGs
   (800x600, quality 90: decode, resize, crop, normalise: ``tasks.transforms.TrainTransform``) and
   from decoded ``uint8`` images held in memory (what a decoded-image cache gives: crop + normalise only);
3. **GPU busy fraction** of each kind of pass fed by each loader (mixed precision): the time between
   CUDA events recorded around each step's kernels, over the wall time (target >= 0.85). CUDA only.

Writes ``benchmarks/results/gpu-<device>.json``, the file ``orchestrate launch --dry-run --rates``
reads (``rates.<kind>.<precision>``, images/s). Needs torch, torchvision, Pillow and numpy, and
``PYTHONPATH=.`` (no Ray, no network). On a GPU it runs in about 4 minutes (well under 8). Usage::

    PYTHONPATH=. python benchmarks/gpu.py                          # CUDA, resnet34, 224 px
    PYTHONPATH=. python benchmarks/gpu.py --device cpu --quick --threads 1   # tiny sizes: try it anywhere
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from experts.backbones import create_backbone
from experts.fisher import montecarlo_step
from experts.precision import autocast, autocast_forward, grad_scaler
from experts.task2vec_data import norm_mode
from experts.training import augment
from tasks.transforms import EvalTransform, TrainTransform, decode

Step = Callable[[torch.Tensor], None]
KINDS = ("features", "finetune", "fisher")


# -- inputs -----------------------------------------------------------------------------------------

def _write_jpeg(args: tuple[Path, int, int, int]) -> None:
    path, w, h, seed = args
    rng = np.random.default_rng(seed)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8)).resize((w, h),
                        Image.Resampling.BICUBIC), dtype=np.int16)
    pixels = np.clip(smooth + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)  # texture: realistic JPEG size
    Image.fromarray(pixels).save(path, quality=90)


def make_jpegs(folder: Path, n: int, workers: int) -> list[Path]:
    """``n`` 800x600 JPEGs at quality 90 (most iNaturalist images), written in parallel."""
    paths = [folder / f"{i:05d}.jpg" for i in range(n)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_write_jpeg, [(p, 800, 600, i) for i, p in enumerate(paths)], chunksize=8)
    return paths


class JpegFiles(Dataset):
    """Today's raw path: every item opened, decoded, resized, cropped and normalised in the worker."""

    def __init__(self, paths: list[Path], transform: Callable) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[i]) as im:
            return self.transform(im), 0


class Decoded(Dataset):
    """A decoded-image cache held in memory: ``uint8`` tensors at the decoded size; crop + normalise only."""

    def __init__(self, images: list[torch.Tensor], transform: Callable) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[i]), 0


def _decode_item(args: tuple[Path, int]) -> torch.Tensor:
    return decode(args[0], args[1])


def loader(dataset: Dataset, batch: int, workers: int, cuda: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=cuda, drop_last=True,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers else None)


def loader_rate(data: DataLoader, seconds: float) -> float:
    """Images/s the loader delivers (nothing consumes them), after one warm-up batch."""
    n, start, it = 0, None, iter(data)
    while True:
        try:
            x, _ = next(it)
        except StopIteration:
            it = iter(data)
            continue
        if start is None:
            start = time.perf_counter()
            continue
        n += len(x)
        if time.perf_counter() - start >= seconds:
            return n / (time.perf_counter() - start)


# -- the three kinds of pass ------------------------------------------------------------------------

def make_step(kind: str, probe: str, device: torch.device, precision: str, channels_last: bool) -> Step:
    """One pass of ``kind`` on a batch already on ``device``, built from the sweep's own functions."""
    net = create_backbone(probe, weights="random", num_classes=100, seed=0).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if kind == "features":
        body = net.body.eval()

        def features(x: torch.Tensor) -> None:
            with torch.inference_mode(), autocast(device, precision):
                body(x.contiguous(memory_format=layout)).flatten(1).float()

        return features
    if kind == "finetune":
        model = nn.Sequential(net.body, nn.Flatten(), nn.Linear(net.info.feature_dim, 100)).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        scaler, gen = grad_scaler(device, precision), torch.Generator().manual_seed(0)

        def finetune(x: torch.Tensor) -> None:
            labels = torch.randint(0, 100, (len(x),), generator=gen).to(device)
            x = augment(x, gen).contiguous(memory_format=layout)
            with autocast(device, precision):
                loss = F.cross_entropy(model(x), labels)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        return finetune
    modules = [m for _, m in net.fisher_modules()]
    gen = torch.Generator(device=device).manual_seed(0)

    def fisher(x: torch.Tensor) -> None:
        with norm_mode(net, "train"), autocast_forward(net, device, precision):
            montecarlo_step(net, x.contiguous(memory_format=layout), modules, 1, gen)

    return fisher


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compute_rate(step: Step, batch: int, size: int, device: torch.device, seconds: float, warmup: int) -> float:
    """Images/s of ``step`` on a fixed random batch on the device (no loader)."""
    x = torch.randn(batch, 3, size, size, device=device)
    for _ in range(warmup):
        step(x)
    sync(device)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step(x)
        n += 1
        if device.type == "cuda" and n % 8 == 0:
            sync(device)
    sync(device)
    return n * batch / (time.perf_counter() - start)


def busy_fraction(step: Step, data: DataLoader, device: torch.device, seconds: float, warmup: int) -> dict:
    """GPU time between CUDA events around each step's kernels, over the wall time, loader included."""
    it = iter(data)

    def next_batch() -> torch.Tensor:
        nonlocal it
        try:
            return next(it)[0]
        except StopIteration:
            it = iter(data)
            return next(it)[0]

    for _ in range(warmup):
        step(next_batch().to(device, non_blocking=True))
    sync(device)
    events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x = next_batch().to(device, non_blocking=True)
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        step(x)
        end.record()
        events.append((begin, end))
        n += len(x)
    sync(device)
    wall = time.perf_counter() - start
    busy = sum(b.elapsed_time(e) for b, e in events) / 1000
    return {"busy_fraction": round(busy / wall, 3), "images_per_s": round(n / wall, 1), "steps": len(events)}


# -- the run ----------------------------------------------------------------------------------------

def device_name(device: torch.device) -> tuple[str, str]:
    """(human name, file-name slug)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({platform.processor() or platform.machine()}, {cpu_count()} cores)"
    return name, re.sub(r"[^a-z0-9]+", "-", name.lower().split(" (")[0]).strip("-")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def mixed_precision(device: torch.device) -> str:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "fp16"
    return "bf16"


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    mixed = mixed_precision(device)
    name, slug = device_name(device)
    workers = args.workers or cpu_count()
    clock = time.perf_counter()
    log = print if not args.quiet else (lambda *a, **k: None)
    log(f"{name}: {args.probe} at {args.image_size} px, batch {args.batch}, {workers} loader workers")

    rates: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        rates[kind] = {}
        for precision in ("fp32", mixed):
            step = make_step(kind, args.probe, device, precision, channels_last=cuda)
            rates[kind][precision] = round(compute_rate(step, args.batch, args.image_size, device, args.seconds,
                                                        args.warmup), 1)
            log(f"  {kind:<9} {precision}: {rates[kind][precision]:9.1f} images/s")
            del step
            if cuda:
                torch.cuda.empty_cache()

    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        paths = make_jpegs(Path(tmp), args.images, workers)
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            decoded = pool.map(_decode_item, [(p, args.image_size) for p in paths], chunksize=8)
        inputs = {
            "jpeg": {kind: JpegFiles(paths, (EvalTransform if kind == "features" else TrainTransform)(args.image_size))
                     for kind in KINDS},
            "decoded": {kind: Decoded(decoded, (EvalTransform if kind == "features" else TrainTransform)(args.image_size))
                        for kind in KINDS},
        }
        loaders = {}
        for source in inputs:
            data = loader(inputs[source]["fisher"], args.batch, workers, cuda)
            loaders[source] = {"workers": workers, "images_per_s": round(loader_rate(data, args.seconds), 1)}
            log(f"  loader {source:<7}: {loaders[source]['images_per_s']:9.1f} images/s with {workers} workers")
        busy: dict[str, dict] | None = None
        if cuda:
            busy = {}
            for source in inputs:
                for kind in KINDS:
                    step = make_step(kind, args.probe, device, mixed, channels_last=True)
                    data = loader(inputs[source][kind], args.batch, workers, cuda)
                    busy[f"{kind}/{source}"] = busy_fraction(step, data, device, args.seconds, args.warmup)
                    log(f"  busy {kind}/{source}: {busy[f'{kind}/{source}']}")
                    del step, data
    per_core = {s: loaders[s]["images_per_s"] / workers for s in loaders}
    cores_needed = {f"{kind}/{s}": round(rates[kind][mixed] / per_core[s], 1) for kind in KINDS for s in per_core}
    return {
        "device": name,
        "device_slug": slug,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "probe": args.probe,
        "image_size": args.image_size,
        "batch_size": args.batch,
        "mixed_precision": mixed,
        "channels_last": cuda,
        "cpu_cores": cpu_count(),
        "rates": rates,
        "loader": loaders,
        "gpu_busy": busy,
        "cores_needed": cores_needed,
        "seconds_per_measurement": args.seconds,
        "wall_s": round(time.perf_counter() - clock, 1),
        "notes": ["rates: images/s of one pass kind with inputs on the device; loader: images/s delivered by a "
                  "DataLoader with one worker per core (jpeg: 800x600 q90 decoded per item; decoded: uint8 "
                  "in memory, crop + normalise only); gpu_busy: CUDA-event time of the steps over wall time "
                  "(target >= 0.85); cores_needed: cores one device needs to feed the mixed-precision rate"]
                 + ([] if cuda else ["no GPU: measured on the CPU, for trying the script; not figures to plan with"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--probe", default="resnet34")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="steps before each measurement")
    parser.add_argument("--images", type=int, default=4096, help="JPEGs generated for the loader measurements")
    parser.add_argument("--workers", type=int, default=0, help="loader workers (default: every core)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (default: torch's; 1 on a busy shared CPU avoids OpenMP stalls)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (32 px, batch 8, 1 s, 32 images)")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/gpu-<device>.json")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.image_size, args.batch, args.seconds, args.warmup, args.images = 32, 8, 1.0, 1, 32
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here: pass --device cpu (with --quick to keep it short)")
    result = run(args)
    out = args.out or Path(__file__).parent / "results" / f"gpu-{result['device_slug']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    mixed = result["mixed_precision"]
    print(f"wrote {out} in {result['wall_s']:.0f} s; mixed/fp32 speed-up: "
          + ", ".join(f"{k} {result['rates'][k][mixed] / result['rates'][k]['fp32']:.2f}x" for k in KINDS))
    if result["gpu_busy"]:
        print("GPU busy: " + ", ".join(f"{k} {v['busy_fraction']:.0%}" for k, v in result["gpu_busy"].items()))
    print(f"median cores per device: {statistics.median(result['cores_needed'].values()):.1f}")


if __name__ == "__main__":
    main()
