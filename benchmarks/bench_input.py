"""Images/s delivered to the model at 224 px: today's path (open each JPEG, decode, resize, crop) against
the image cache (decoded once at a 256 px short side, crop + flip + normalise on the uint8 tensor).

Realistic inputs: 800x600 JPEGs at quality 90 (most iNaturalist images), generated as smooth colour
fields with texture and grain. Both paths run through the sweep's own pieces (``SweepContext``'s
transforms, ``TaskImageDataset`` / ``CachedImageDataset``, ``experts.loader.make_loader``) with 1 and 2
DataLoader processes (persistent across epochs, as in the sweep; a first warm-up epoch is not counted),
epochs interleaved round by round; medians are reported. The cache is built once first (its build rate
and bytes per image are reported too).

    python benchmarks/bench_input.py            # 512 images, 5 rounds, jpeg and raw cache encodings
    python benchmarks/bench_input.py --quick    # < 2 minutes; prints "cache/raw speed ratio: X" last

Two figures per row: images/s (wall clock) and images per CPU-second of all the processes involved
(the loader processes and the consumer, from /proc): on a shared machine the second is what one core
delivers. The ratio printed last is the default cache encoding's images per CPU-second over today's.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from experts.loader import LoaderSettings, make_loader
from orchestrator.config import SweepConfig
from orchestrator.context import SweepContext
from tasks.image_cache import (
    CachedImageDataset,
    ImageCacheIndex,
    ImageCacheReader,
    shard_table,
    write_shard,
)
from tasks.torch_dataset import TaskImageDataset, load_rgb
from tasks.transforms import decode, decoded_side

IMAGE_SIZE = 224
BATCH = 32


def make_jpegs(folder: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` 800x600 photo-like JPEGs (quality 90, ~150-200 KB each)."""
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        base = Image.fromarray(rng.integers(0, 255, (600 // 16, 800 // 16, 3), dtype=np.uint8)).resize((800, 600), Image.BICUBIC)
        grain = rng.normal(0, 14, (600, 800, 3))
        image = Image.fromarray(np.clip(np.asarray(base, dtype=np.float32) + grain, 0, 255).astype(np.uint8))
        image.filter(ImageFilter.GaussianBlur(0.6)).save(folder / f"{i:05d}.jpg", quality=90)
        names.append(f"{i:05d}.jpg")
    return names


def build_cache(root: Path, paths: list[str], out: Path, encoding: str, shard_images: int = 256) -> tuple[ImageCacheIndex, float, float]:
    """Shards of ``paths`` as the ``image_cache`` stage writes them; (index, images/s, bytes per image)."""
    start = time.perf_counter()
    names, rows = [], []
    for s, lo in enumerate(range(0, len(paths), shard_images)):
        chunk = list(range(lo, min(lo + shard_images, len(paths))))
        images = [decode(load_rgb(root, paths[i]), IMAGE_SIZE) for i in chunk]
        write_shard(shard_table(np.array(chunk), images, encoding), str(out / f"{encoding}-{s}.parquet"))
        names += [f"{encoding}-{s}.parquet"] * len(chunk)
        rows += list(range(len(chunk)))
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in out.glob(f"{encoding}-*.parquet"))
    index = ImageCacheIndex.from_rows(encoding, np.arange(len(paths)), names, np.array(rows))
    return index, len(paths) / seconds, size / len(paths)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its child processes (the loader processes) so far.

    Read from /proc: on a machine shared with other work, images per CPU-second is what one core
    delivers, whatever share of the cores the other work leaves us."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == me:  # ppid; utime and stime are fields 14 and 15 of stat
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def epoch_rate(loader) -> tuple[float, float]:
    """(images/s, images per CPU-second) of one pass (epoch) of ``loader``: shuffled batches, as a training
    loop takes them."""
    start, cpu = time.perf_counter(), cpu_seconds()
    n = 0
    for images, _ in loader:
        assert images.shape[1:] == (3, IMAGE_SIZE, IMAGE_SIZE)
        n += len(images)
    return n / (time.perf_counter() - start), n / max(cpu_seconds() - cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images and rounds, jpeg cache only (< 2 min)")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    n_images = args.images or (96 if args.quick else 512)
    rounds = args.rounds or (2 if args.quick else 5)
    encodings = ["jpeg", "raw"]
    torch.set_num_threads(1)
    ctx = SweepContext(store=None, run_id="bench", config=SweepConfig.model_validate(  # type: ignore[arg-type]
        {"datasets": {"mini": True}, "runtime": {"image_size": IMAGE_SIZE}}))
    print(f"machine: {os.cpu_count()} CPUs (shared with other sessions); torch {torch.__version__}; "
          f"{n_images} images 800x600 q90, batches of {BATCH}, {rounds} interleaved rounds, medians")
    with tempfile.TemporaryDirectory() as tmp:
        root, shards = Path(tmp) / "jpegs", Path(tmp) / "shards"
        root.mkdir()
        shards.mkdir()
        paths = make_jpegs(root, n_images)
        jpeg_kb = sum((root / p).stat().st_size for p in paths) / len(paths) / 1e3
        print(f"original JPEGs: {jpeg_kb:.0f} KB per image")
        targets = np.zeros(n_images, dtype=np.int64)
        datasets = {"raw": TaskImageDataset(root, paths, targets, ctx.transform(True))}
        for enc in encodings:
            index, build_rate, per_image = build_cache(root, paths, shards, enc)
            print(f"cache build ({enc}): {build_rate:.0f} images/s on one core, {per_image / 1e3:.0f} KB per image "
                  f"at a {decoded_side(IMAGE_SIZE)} px short side")
            reader = ImageCacheReader(index, functools.partial(os.path.join, str(shards)))
            datasets[f"cache-{enc}"] = CachedImageDataset(reader, np.arange(n_images), targets, ctx.transform(True))
        # Persistent loader processes (as the sweep uses them across epochs); epoch 0 warms them up and
        # is not counted, so start-up (fork, first batches) does not weigh on the faster path.
        loaders = {(name, w): make_loader(ds, LoaderSettings(workers=w), batch_size=BATCH, shuffle=True,
                                          generator=torch.Generator().manual_seed(0))
                   for w in (1, 2) for name, ds in datasets.items()}
        walls: dict[tuple[str, int], list[float]] = {k: [] for k in loaders}
        cpus: dict[tuple[str, int], list[float]] = {k: [] for k in loaders}
        for r in range(rounds + 1):
            for key, loader in loaders.items():
                wall, per_cpu = epoch_rate(loader)
                if r:
                    walls[key].append(wall)
                    cpus[key].append(per_cpu)
        del loaders
    wall = {k: statistics.median(v) for k, v in walls.items()}
    core = {k: statistics.median(v) for k, v in cpus.items()}
    print(f"\n{'path':<12} {'loader procs':>12} {'images/s':>9} {'vs raw':>7} {'images/CPU-s':>13} {'vs raw':>7}")
    for name, workers in sorted(wall, key=lambda k: (k[1], k[0] != "raw", k[0])):
        key, raw = (name, workers), ("raw", workers)
        print(f"{name:<12} {workers:>12} {wall[key]:>9.0f} {wall[key] / wall[raw]:>6.1f}x {core[key]:>13.0f} "
              f"{core[key] / core[raw]:>6.1f}x")
    default = f"cache-{SweepConfig.model_fields['input'].default.cache_encoding}"
    assumed_gpu = 3000.0
    print(f"\none GPU at an assumed {assumed_gpu:.0f} images/s (H100, mixed precision; not measured here) needs "
          + ", ".join(f"{assumed_gpu / core[(name, 2)]:.1f} cores on the {name} path"
                      for name in sorted({n for n, _ in core})))
    ratios = [core[(default, w)] / core[("raw", w)] for w in (1, 2)]
    print(f"(ratio: images per CPU-second of the default {default} path over today's, mean over 1 and 2 processes)")
    print(f"cache/raw speed ratio: {statistics.mean(ratios):.1f}")


if __name__ == "__main__":
    main()
