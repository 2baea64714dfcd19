"""End-to-end Task2Vec measurement (issue 16): whole processes on a real image folder.

Sub-commands (each one process, so that ``time``/paired runs measure start-up and image loading too):

- ``data OUT``: a folder of 240 JPEGs (4 classes x 60, 64x64 unless ``--size``): smooth random
  class textures plus per-image noise; and ``OUT.weights/<probe>.pt``, a seeded random-init
  torchvision state dict of the probe without its ``fc`` (what the reference would load).
- ``reference DIR --probe P --weights W --seed S --image-size N --out F.npy``: the reference
  algorithm at its defaults (``benchmarks.bench_task2vec.reference_embed``) on DIR with the
  reference's training transform.
- ``compare --ref F.npy... --eref F.npy... --ours F.parquet|F.npy...``: the judged figures:
  mean d_sym(x, E[ref]) for the reference runs and ours (E[ref] = mean of the ``--eref`` runs; with
  ``--loo`` and no ``--eref``, each reference run against the mean of the others, ours against each
  of those means),
  their ratio, cos(ours, reference) against the reference's seed-to-seed cos, and, when the
  Parquet rows carry it, each row's own noise estimate against the measured seed-to-seed d_sym.

Typical use (64 px ResNet-18; 112 px ResNet-34 with ``--size 112 --probe resnet34``)::

    python benchmarks/task2vec_e2e.py data /tmp/t2v64
    python benchmarks/task2vec_e2e.py reference /tmp/t2v64 --probe resnet18 \\
        --weights /tmp/t2v64.weights/resnet18.pt --seed 1 --image-size 64 --out /tmp/ref64_1.npy
    orchestrate embed /tmp/t2v64 --probe resnet18 --probe-weights /tmp/t2v64.weights/resnet18.pt \\
        --seed 1 --image-size 64 --out /tmp/ours64_1.parquet
    python benchmarks/task2vec_e2e.py compare --ref /tmp/ref64_[0-2].npy --eref /tmp/ref64_1[0-3].npy \\
        --ours /tmp/ours64_*.parquet
"""

from __future__ import annotations

import argparse
import glob
import statistics
from itertools import combinations, product
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def make_data(out: Path, size: int, classes: int = 4, per_class: int = 60, seed: int = 0) -> None:
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    templates = F.interpolate(torch.randn(classes, 3, 6, 6, generator=g), size=size, mode="bilinear")
    for c in range(classes):
        (out / f"class{c}").mkdir(parents=True, exist_ok=True)
        noise = F.interpolate(torch.randn(per_class, 3, 12, 12, generator=g), size=size, mode="bilinear")
        images = (templates[c] + 0.8 * noise).mul(50).add(128).clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        for i, im in enumerate(images):
            Image.fromarray(im).save(out / f"class{c}" / f"{i:03d}.jpg", quality=90)


def make_weights(out: Path, probe: str) -> Path:
    from experts.backbones import create_backbone
    from experts.pretrain import save_weights

    net = create_backbone(probe, weights="random", seed=0)
    state = {k: v for k, v in net.body.state_dict().items() if not k.startswith("fc.")}
    return save_weights(state, out / f"{probe}.pt")


def run_reference(args: argparse.Namespace) -> None:
    from benchmarks.bench_task2vec import reference_embed
    from experts.backbones import create_backbone
    from experts.embed_folder import ImageFolderTask
    from tasks.transforms import ReferenceTrainTransform

    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = ImageFolderTask(args.dir, ReferenceTrainTransform(args.image_size))
    probe = create_backbone(args.probe, weights=args.weights, num_classes=len(dataset.classes), seed=0)
    np.save(args.out, reference_embed(dataset, probe, seed=args.seed))


def load_vectors(paths: list[Path]) -> tuple[list[np.ndarray], list[float | None]]:
    import pyarrow.parquet as pq

    vecs, noise = [], []
    for p in paths:
        if p.suffix == ".npy":
            vecs.append(np.load(p).astype(np.float64))
            noise.append(None)
        else:
            row = pq.read_table(p).to_pylist()[0]
            vecs.append(np.asarray(row["embedding"], dtype=np.float64))
            noise.append(row.get("noise"))
    return vecs, noise


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def dsym(a: np.ndarray, b: np.ndarray) -> float:
    s = a + b + 1e-12 * (a + b).max()
    return 1.0 - cos(a / s, b / s)


def compare(args: argparse.Namespace) -> None:
    refs, _ = load_vectors(args.ref)
    erefs, _ = load_vectors(args.eref) if args.eref else ([], [])
    # E[ref]: the mean of the --eref runs; with --loo, every reference run in turn against the mean of
    # the others (each E[ref] then averages len(--ref) - 1 runs, and ours is compared with each of them)
    if args.loo:
        pairs = [(refs[i], np.mean(refs[:i] + refs[i + 1:], axis=0)) for i in range(len(refs))]
        means, everyone, size = [m for _, m in pairs], refs, len(refs) - 1
    else:
        means, everyone, size = [np.mean(erefs, axis=0)], refs + erefs, len(erefs)
        pairs = [(r, means[0]) for r in refs]
    rows = [("reference", refs, [None] * len(refs))]
    for group in args.ours:
        paths = [Path(p) for p in sorted(glob.glob(group))] or [Path(group)]
        vecs, noise = load_vectors(paths)
        rows.append((group, vecs, noise))
    ref_d = statistics.mean(dsym(r, m) for r, m in pairs)
    ref_cos = statistics.mean(cos(a, b) for a, b in combinations(everyone, 2))
    ref_noise = statistics.mean(dsym(a, b) for a, b in combinations(everyone, 2))
    print(f"reference: seed-to-seed cos {ref_cos:.4f}, seed-to-seed d_sym {ref_noise:.4f} "
          f"({len(everyone)} runs); E[ref] over {size} runs{' (leave one out)' if args.loo else ''}")
    print("| embedding | runs | mean d_sym to E[ref] | ratio to the reference's | mean cos to reference runs "
          "| seed-to-seed d_sym | own noise estimate (mean) |")
    print("|---|---|---|---|---|---|---|")
    for name, vecs, noise in rows:
        d = ref_d if name == "reference" else statistics.mean(dsym(v, m) for v in vecs for m in means)
        c = statistics.mean(cos(a, b) for a, b in product(vecs, everyone) if a is not b)
        s2s = statistics.mean(dsym(a, b) for a, b in combinations(vecs, 2)) if len(vecs) > 1 else float("nan")
        est = [n for n in noise if n is not None]
        est_txt = f"{statistics.mean(est):.4f}" if est else "-"
        print(f"| {name} | {len(vecs)} | {d:.4f} | {d / ref_d:.2f} | {c:.4f} | {s2s:.4f} | {est_txt} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data")
    d.add_argument("out", type=Path)
    d.add_argument("--size", type=int, default=64)
    d.add_argument("--probes", nargs="+", default=["resnet18", "resnet34"])
    r = sub.add_parser("reference")
    r.add_argument("dir", type=Path)
    r.add_argument("--probe", default="resnet18")
    r.add_argument("--weights", type=Path, required=True)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--image-size", type=int, default=64)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    c = sub.add_parser("compare")
    c.add_argument("--ref", type=Path, nargs="+", required=True)
    c.add_argument("--eref", type=Path, nargs="+", default=[], help="the runs E[ref] averages (or --loo)")
    c.add_argument("--loo", action="store_true", help="each --ref run against the mean of the other --ref runs")
    c.add_argument("--ours", nargs="+", default=[], help="files or globs; one table row per argument")
    args = ap.parse_args()
    if args.cmd == "data":
        make_data(args.out, args.size)
        for probe in args.probes:
            make_weights(Path(f"{args.out}.weights"), probe)
    elif args.cmd == "reference":
        run_reference(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
