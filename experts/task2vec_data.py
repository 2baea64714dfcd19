"""Task2Vec's data plumbing: labels, class-balanced draws, batch-norm modes, cached features.

Kept apart from ``experts.task2vec`` (the algorithm) so that both stay short. Randomness comes
from explicit CPU generators; the dataset's own augmentation draws from torch's global RNG, which
``embed_task`` forks and seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from experts.backbones import Probe

if TYPE_CHECKING:
    from experts.task2vec import Task2VecConfig

__all__ = ["BnMode", "FisherData", "Progress", "cache_features", "class_balanced_draws", "dataset_labels",
           "fisher_data", "norm_mode", "stratified_draws"]

BnMode = Literal["train", "batch_detached", "eval"]
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class FisherData:
    """What an estimator may draw from: class-balanced batches of stage-``start`` inputs.

    With ``halves`` (two index arrays into ``labels``), the run is two independent half-runs: even
    batches are drawn from ``halves[0]`` and odd batches from ``halves[1]`` (each half's draws on their
    own, then interleaved), and ``use_half(h)`` is called before each batch of half ``h`` (it puts that
    half's head on the probe). Estimators that keep even and odd batches apart get two independent
    estimates (``experts.fisher.split_noise``).
    """

    load: Callable[[list[np.ndarray]], Iterator[torch.Tensor]]  # index batches -> input batches on the device
    labels: np.ndarray  # contiguous labels (0..C-1) of the pool the draws index
    start: int  # the stage the inputs enter at
    batch_size: int
    samples: int  # draws per epoch
    generator: torch.Generator  # CPU generator for the draws
    stratified: bool = False  # stratified_draws instead of class_balanced_draws
    progress: Progress | None = None  # called as ("fisher", batches done, batches in the epoch)
    halves: tuple[np.ndarray, np.ndarray] | None = None
    use_half: Callable[[int], None] | None = None

    def epoch(self, n_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``n_batches`` (default ``samples // batch_size``) batches, labels on the input's device."""
        n_batches = self.samples // self.batch_size if n_batches is None else n_batches
        chunks = self._draw(n_batches)
        if self.progress:
            self.progress("fisher", 0, n_batches)
        for done, (chunk, x) in enumerate(zip(chunks, self.load(chunks)), 1):
            if self.use_half is not None:
                self.use_half((done - 1) % 2)
            yield x, torch.as_tensor(self.labels[chunk], device=x.device)
            if self.progress:
                self.progress("fisher", done, n_batches)

    def _draw(self, n_batches: int) -> list[np.ndarray]:
        draw = stratified_draws if self.stratified else class_balanced_draws
        if self.halves is None:
            idx = draw(self.labels, n_batches * self.batch_size, self.generator)
            return list(idx.reshape(n_batches, self.batch_size))
        per_half = []
        for h, rows in enumerate(self.halves):
            count = (n_batches + 1 - h) // 2  # even batches: half 0, odd: half 1
            if count == 0:  # a single batch: the second half has none
                per_half.append([])
                continue
            idx = rows[draw(self.labels[rows], count * self.batch_size, self.generator)]
            per_half.append(list(idx.reshape(count, self.batch_size)))
        return [per_half[i % 2][i // 2] for i in range(n_batches)]


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """Integer labels of every item, read without loading images when the dataset allows."""
    if isinstance(dataset, torch.utils.data.Subset):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices)]
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return dataset.tensors[1].cpu().numpy().astype(np.int64)
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return np.asarray(getattr(dataset, attr), dtype=np.int64)
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)  # type: ignore[arg-type]


def class_balanced_draws(labels: np.ndarray, n: int, generator: torch.Generator) -> np.ndarray:
    """``n`` indices drawn with replacement, each class equally likely (the reference's sampler)."""
    counts = np.bincount(labels)
    weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.float64)
    return torch.multinomial(weights, n, replacement=True, generator=generator).numpy()


def stratified_draws(labels: np.ndarray, n: int, generator: torch.Generator) -> np.ndarray:
    """``n`` indices, each class drawn ``n // C`` times (one more for the ``n % C`` classes met first in a
    random order), each class's images in turn from random permutations (without replacement until
    the class is exhausted), the whole order shuffled.

    Every draw is, marginally, a uniform class and a uniform image of it, as in ``class_balanced_draws``;
    but every image is drawn about equally often and the class counts are exact, which removes the
    sampling noise of the image multiset. Relabelling the classes leaves the draws unchanged.
    """
    _, cls_of, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    per_class = np.full(len(sizes), n // len(sizes))
    _, first_seen = np.unique(cls_of[torch.randperm(len(labels), generator=generator).numpy()], return_index=True)
    per_class[np.argsort(first_seen)[: n % len(sizes)]] += 1
    passes = int((-(-per_class // sizes)).max())
    order = np.concatenate([torch.randperm(len(labels), generator=generator).numpy() for _ in range(passes)])
    cls = cls_of[order]
    by_class = np.argsort(cls, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(cls, minlength=len(sizes)))[:-1]])
    rank = np.empty(len(cls), dtype=np.int64)
    rank[by_class] = np.arange(len(cls)) - starts[cls[by_class]]  # occurrence number within its class
    idx = np.sort(order[rank < per_class[cls]])
    return idx[torch.randperm(n, generator=generator).numpy()]


class norm_mode:
    """Context manager: everything in eval mode (dropout off) except batch-norm, which follows ``mode``.

    ``train``: batch statistics, gradients flow through them (the reference); ``batch_detached``:
    batch statistics used as constants (written into the running buffers before each forward, so
    per-sample gradients are well defined); ``eval``: running statistics.
    """

    def __init__(self, module: nn.Module, mode: BnMode) -> None:
        self.module, self.mode = module, mode
        self.was_training = {m: m.training for m in module.modules()}
        self.hooks: list[Any] = []

    def __enter__(self) -> nn.Module:
        self.module.eval()
        for m in self.module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if self.mode == "train":
                    m.train()
                elif self.mode == "batch_detached":
                    self.hooks.append(m.register_forward_pre_hook(_write_batch_stats))
        return self.module

    def __exit__(self, *exc: object) -> None:
        for h in self.hooks:
            h.remove()
        for m, training in self.was_training.items():
            m.train(training)


def _write_batch_stats(bn: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    x = inputs[0]
    with torch.no_grad():  # native_batch_norm's statistics pass is faster on CPU than var_mean
        _, mean, invstd = torch.native_batch_norm(x, None, None, None, None, True, 0.0, bn.eps)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(invstd.pow(-2) - bn.eps)  # the biased variance train mode normalises with


def _loader(dataset: Dataset, batches: list[np.ndarray], config: Task2VecConfig, gen: torch.Generator) -> DataLoader:
    seed_gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
    return DataLoader(dataset, batch_sampler=[b.tolist() for b in batches], num_workers=config.num_workers,
                      generator=seed_gen)


def _to_input(x: torch.Tensor, device: torch.device, config: Task2VecConfig) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if config.channels_last and x.dim() == 4 else x


def cache_features(
    net: Probe, dataset: Dataset, labels: np.ndarray, config: Task2VecConfig, device: torch.device,
    gen: torch.Generator, progress: Progress | None = None, split: bool = False,
) -> tuple[torch.Tensor, np.ndarray, torch.Tensor | None, tuple[np.ndarray, np.ndarray] | None]:
    """Penultimate features of up to ``max_samples`` images; stage-``skip_layers`` inputs too if asked.

    ``config.head_batches``: ``class_sorted``, a seeded random subset of ``max_samples`` images grouped by
    class (classes in order of first appearance) in consecutive batches, whatever the dataset's order
    (what the reference does to a class-sorted dataset such as an image folder: train-mode batch-norm
    normalises nearly single-class batches);
    ``dataset_order``, the first ``max_samples`` images in consecutive batches (the reference's exactly);
    ``shuffled``, a seeded random subset in shuffled, nearly equal batches.

    Returns (features, their labels, the stage inputs or None, the halves or None). With ``split``,
    two independent sets of rows, each a seeded random subset of up to ``max_samples`` images with its
    own augmentation draws, in batches of its own (every image of a task under ``max_samples`` appears
    in both, augmented twice): the halves are the row ranges of each set.
    """
    sets, batches = head_feature_batches(labels, config, gen, 2 if split else 1)
    feats, pool = [], []
    with torch.no_grad(), norm_mode(net, config.bn_mode):
        for done, (x, _) in enumerate(_loader(dataset, batches, config, gen), 1):
            if progress:
                progress("features", done - 1, len(batches))
            x = _to_input(x, device, config)
            for stage in net.stages[: config.skip_layers]:
                x = stage(x)
            if config.skip_layers:
                pool.append(x.cpu())
            feats.append(net.features(x, start=config.skip_layers))
    if progress:
        progress("features", len(batches), len(batches))
    halves = (np.arange(len(sets[0])), np.arange(len(sets[0]), len(sets[0]) + len(sets[1]))) if split else None
    return torch.cat(feats), labels[np.concatenate(sets)], (torch.cat(pool) if pool else None), halves


def head_feature_batches(
    labels: np.ndarray, config: Task2VecConfig, gen: torch.Generator, n_sets: int = 1,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The head's feature pass per ``config.head_batches``: ``n_sets`` index sets and their batches, in order.

    Consecutive batches (``class_sorted``, ``dataset_order``): a last batch under half a batch joins the
    one before (the reference would normalise it alone in train-mode batch-norm, and a batch of one
    fails there); ``shuffled``: nearly equal batch sizes.
    """
    if config.head_batches == "shuffled":
        sets = [torch.randperm(len(labels), generator=gen)[:config.max_samples].numpy() for _ in range(n_sets)]
        return sets, [b for order in sets for b in np.array_split(order, -(-len(order) // config.batch_size))]
    if config.head_batches == "dataset_order":  # the reference's: the first images
        sets = [np.arange(min(len(labels), config.max_samples)) for _ in range(n_sets)]
    else:  # a seeded random subset grouped by class, classes in order of first appearance in it, images in
        # random order within a class: relabelling the classes leaves the batches unchanged
        subsets = [torch.randperm(len(labels), generator=gen)[:config.max_samples].numpy() for _ in range(n_sets)]
        sets = [s[np.argsort(_first_seen_rank(labels[s]), kind="stable")] for s in subsets]
    batches = []
    for order in sets:
        runs = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        if len(runs) > 1 and len(runs[-1]) < config.batch_size / 2:
            runs[-2:] = [np.concatenate(runs[-2:])]
        batches += runs
    return sets, batches


def _first_seen_rank(cls: np.ndarray) -> np.ndarray:
    """For each entry, the rank of its class by first appearance in ``cls``."""
    uniq, first = np.unique(cls, return_index=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(uniq))
    return rank[np.searchsorted(uniq, cls)]


def fisher_data(
    dataset: Dataset, labels: np.ndarray, pool: torch.Tensor | None, pool_labels: np.ndarray,
    config: Task2VecConfig, device: torch.device, gen: torch.Generator, progress: Progress | None = None,
    halves: tuple[np.ndarray, np.ndarray] | None = None, use_half: Callable[[int], None] | None = None,
) -> FisherData:
    """The Fisher's draws: from the dataset (each half from every image), or with ``skip_layers`` from
    the cached stage inputs (each half from its own rows of ``pool``)."""
    stratified = config.fisher_sampling == "stratified"
    if pool is not None:  # skip_layers: draw from the cached stage inputs (one augmentation per image)
        def load_pool(chunks: list[np.ndarray]) -> Iterator[torch.Tensor]:
            return (_to_input(pool[torch.as_tensor(c)], device, config) for c in chunks)

        return FisherData(load_pool, pool_labels, config.skip_layers, config.batch_size, config.fisher_samples, gen,
                          stratified, progress, halves, use_half)

    def load(chunks: list[np.ndarray]) -> Iterator[torch.Tensor]:
        return (_to_input(x, device, config) for x, _ in _loader(dataset, chunks, config, gen))

    every = np.arange(len(labels))
    return FisherData(load, labels, 0, config.batch_size, config.fisher_samples, gen, stratified, progress,
                      None if halves is None else (every, every), use_half)
