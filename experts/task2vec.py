"""Task2Vec embeddings: fit a linear head on cached probe features, then estimate the Fisher.

Pure computation: takes a ``torch.utils.data.Dataset`` of ``(image_tensor, int_label)``, a
``Probe`` (``experts.backbones``), a device, a seed and a ``Task2VecConfig``; returns a
``TaskEmbedding``. No I/O, no global state: the probe is deep-copied per call (the reference fails
on a second ``embed()``), every random draw comes from a ``torch.Generator`` derived from
``seed``, and the dataset's own augmentation, which draws from torch's global RNG, runs inside
``torch.random.fork_rng`` seeded from ``seed`` (the caller's RNG state is restored afterwards).
Same seed, same device, same thread count => bit-identical embedding on CPU.

The estimators (``list_methods()``): ``montecarlo`` (the reference's batch-gradient estimator),
``montecarlo_exact`` (exact per-sample diagonal Fisher, about ``batch_size`` x the reference's
scale; never mix the two in one distance matrix) live in ``experts.fisher``; ``variational`` (the
thesis' robust Fisher) in ``experts.variational``. docs/task2vec.md lists every place where this
code differs from the reference implementation; in short:

- the head starts from zeros (reference: PyTorch's random init) and targets are drawn by inverse
  CDF over classes sorted by probability: both make the whole pipeline equivariant to a
  permutation of the labels, so permuted labels give the same embedding up to rounding;
- the head's features come from a seeded random subset of ``max_samples`` images sorted by class, in
  consecutive batches (``head_batches="class_sorted"``; reference: the first images in dataset order,
  which for a class-sorted folder also gives train-mode batch-norm nearly single-class batches, and
  for a task larger than ``max_samples`` drops the last classes); the head is fitted by the
  reference's Adam steps in expectation over its draws (``head_solver="expected"``), deterministic;
- by default (``independent_halves``) a run is two independent half-runs, each with its own feature
  pass (up to ``max_samples`` images, own augmentation draws), its own head and every other Fisher
  batch; the embedding is their mean and their distance is the row's ``noise`` estimate;
- labels are remapped to 0..C-1 (reference: ``max(label) + 1`` classes);
- ``skip_layers > 0`` keeps the embedding length fixed and fills the skipped filters with NaN.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from experts.backbones import Probe
from experts.precision import autocast, autocast_forward, check_precision
from experts.task2vec_data import (
    BnMode, FisherData, Progress, cache_features, dataset_labels, fisher_data, norm_mode,
)
from experts.task2vec_head import fit_head, fit_heads
from tasks.errors import TaskSweepInputError

__all__ = [
    "BnMode", "FisherData", "FisherResult", "HeadSolver", "Progress", "REFERENCE", "TaskEmbedding", "Task2VecConfig",
    "dataset_labels", "embed_task", "feature_rows", "fit_head", "get_estimator", "list_methods", "norm_mode",
    "register_estimator",
]

HeadSolver = Literal["sampled", "full_batch", "expected"]



@dataclass(frozen=True)
class Task2VecConfig:
    """Settings. ``REFERENCE`` (below) is the reference's (awslabs/aws-cv-task2vec) exactly; the defaults
    differ in six fields, chosen by the end-to-end benchmark (docs/task2vec.md, "Defaults"):
    ``head_solver="expected"``, ``head_batches="class_sorted"``, ``independent_halves``,
    ``fisher_sampling="stratified"``, a smaller ``fisher_samples`` and ``augmentation`` (the input
    transform, which the caller's dataset applies)."""

    max_samples: int = 10_000  # images whose features train the head (and, with skip_layers, feed the Fisher)
    batch_size: int = 64
    head_epochs: int = 10
    head_samples_per_epoch: int = 10_000  # class-balanced draws with replacement per head "epoch"
    head_lr: float = 4e-4
    head_wd: float = 1e-4
    # sampled: Adam on class-balanced draws (reference); expected: the sampled steps in expectation (Adam fed the
    # class-weighted full-batch gradient and, in its second moment, the draws' variance: deterministic);
    # full_batch: Adam on the full-batch loss (deterministic, but longer steps than the reference's)
    head_solver: HeadSolver = "expected"
    # the head's feature pass (train-mode batch-norm): class_sorted (a seeded random subset sorted by class, in
    # consecutive batches: nearly single-class batches, as the reference gives an image folder), dataset_order
    # (the reference's: the first max_samples images in consecutive batches) or shuffled (mixed batches)
    head_batches: Literal["class_sorted", "dataset_order", "shuffled"] = "class_sorted"
    fisher_samples: int = 2_048  # class-balanced draws for the Fisher (reference: 10,000 = 156 batches of 64)
    # replacement: independent class-balanced draws (reference); stratified: every class equally
    # often, each class's images in turn (without replacement, reshuffled per pass), batches shuffled
    fisher_sampling: Literal["replacement", "stratified"] = "stratified"
    # two independent half-runs (features with their own augmentation draws, head, half the Fisher draws),
    # averaged; their difference is the row's noise estimate (Monte-Carlo estimators; variational: one head)
    independent_halves: bool = True
    bn_mode: BnMode = "train"  # batch-norm statistics: batch (with gradient) / batch (constant) / running
    skip_layers: int = 0  # stages run once and cached; their filters are NaN in the embedding
    targets_per_forward: int = 1  # montecarlo: target draws (backward passes) per forward; budget counts draws
    # the Task2Vec input, applied by the dataset's builder (experts.embed_folder), not by embed_task: crop (a
    # random crop of the image resized once, tasks.transforms.TrainTransform; the sweep's cache replays only
    # this) or random_resized_crop (the reference's, tasks.transforms.ReferenceTrainTransform)
    augmentation: Literal["crop", "random_resized_crop"] = "crop"
    channels_last: bool = True  # memory layout only (same numbers up to rounding); ~12 % faster on CPU
    precision: str = "fp32"  # autocast of the probe's forward passes (experts.precision); fp32 or bf16
    num_workers: int = 0  # DataLoader workers for image loading
    variational_epochs: int = 2
    variational_beta: float = 1e-7
    variational_lr: float = 1e-2
    variational_head_lr: float = 5e-4

    def __post_init__(self) -> None:
        if check_precision(self.precision) == "fp16":
            raise ValueError("precision fp16 would underflow the Fisher's squared gradients: use bf16 or fp32")
        if self.head_solver not in ("sampled", "full_batch", "expected"):
            raise ValueError(f"head_solver must be sampled, full_batch or expected, not {self.head_solver!r}")
        if self.fisher_sampling not in ("replacement", "stratified"):
            raise ValueError(f"fisher_sampling must be replacement or stratified, not {self.fisher_sampling!r}")
        if self.head_batches not in ("class_sorted", "dataset_order", "shuffled"):
            raise ValueError(f"head_batches must be class_sorted, dataset_order or shuffled, not {self.head_batches!r}")
        if self.augmentation not in ("crop", "random_resized_crop"):
            raise ValueError(f"augmentation must be crop or random_resized_crop, not {self.augmentation!r}")
        if self.bn_mode not in ("train", "batch_detached", "eval"):
            raise ValueError(f"bn_mode must be train, batch_detached or eval, not {self.bn_mode!r}")
        positive = ("max_samples", "batch_size", "fisher_samples", "targets_per_forward", "head_samples_per_epoch")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.fisher_samples < self.batch_size:
            raise ValueError("fisher_samples must be >= batch_size")
        if self.skip_layers < 0:
            raise ValueError("skip_layers must be >= 0")


REFERENCE = Task2VecConfig(head_solver="sampled", fisher_samples=10_000, fisher_sampling="replacement",
                           augmentation="random_resized_crop", head_batches="dataset_order", independent_halves=False)
"""The reference's settings exactly (its ``Task2Vec.embed`` defaults), for those who need its numbers."""


@dataclass
class TaskEmbedding:
    """One task's embedding. ``n_samples`` is the number of images in the task's dataset.

    ``noise``: the estimated d_sym between this embedding and an independent run of the same
    estimator on the same task (another seed). With ``independent_halves`` (the default) the run is
    two independent half-runs (own augmentation draws, head and Fisher draws) and ``noise`` is their
    d_sym / 2 (``experts.fisher.split_noise``), which sees every source of seed-to-seed noise;
    without it (``REFERENCE``) only the Fisher draws are split and it is a lower bound. None where
    the estimator gives none (variational, domain).
    """

    hessian: np.ndarray  # float32, one value per filter, network order
    scale: np.ndarray  # float32, same length (ones for the Monte-Carlo estimators)
    method: str
    probe: str
    pretrained: bool
    n_samples: int
    seed: int
    meta: dict[str, Any] = field(default_factory=dict)
    noise: float | None = None


@dataclass
class FisherResult:
    hessian: np.ndarray
    scale: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    noise: float | None = None


Estimator = Callable[[Probe, FisherData, Task2VecConfig, torch.Generator], FisherResult]
_ESTIMATORS: dict[str, Estimator] = {}
_SPLIT_METHODS = ("montecarlo", "montecarlo_exact")  # estimators that keep even and odd batches apart


def register_estimator(name: str) -> Callable[[Estimator], Estimator]:
    def decorate(fn: Estimator) -> Estimator:
        if name in _ESTIMATORS:
            raise ValueError(f"estimator {name!r} registered twice")
        _ESTIMATORS[name] = fn
        return fn

    return decorate


def list_methods() -> list[str]:
    """Fisher estimators, plus ``domain`` (mean activations, ``experts.domain``)."""
    _load_builtin()
    return sorted([*_ESTIMATORS, "domain"])


def get_estimator(name: str) -> Estimator:
    _load_builtin()
    try:
        return _ESTIMATORS[name]
    except KeyError:
        raise KeyError(f"unknown Task2Vec method {name!r}; known: {', '.join(list_methods())}") from None


def _load_builtin() -> None:
    from experts import fisher, variational  # noqa: F401  (their decorators register the estimators)


def embed_task(
    dataset: Dataset,
    probe: Probe,
    *,
    method: str = "montecarlo",
    config: Task2VecConfig | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: Progress | None = None,
) -> TaskEmbedding:
    """Task2Vec embedding of ``dataset`` (items ``(image_tensor, int_label)``) with ``probe``.

    The probe is not modified. Raises ``TaskSweepInputError`` for fewer than 2 classes or images.
    ``progress(phase, done, total)`` is called as work advances: phase ``features`` (batches),
    ``head`` (optimiser steps), ``fisher`` (batches); ``done == total`` ends a phase.
    """
    config = config or Task2VecConfig()
    if method == "domain":  # no head, no Fisher: the mean penultimate activation
        from experts.domain import domain_embedding

        return domain_embedding(dataset, probe, device=device, seed=seed, max_samples=config.max_samples,
                                batch_size=config.batch_size, num_workers=config.num_workers)
    estimator = get_estimator(method)
    classes, labels = np.unique(dataset_labels(dataset), return_inverse=True)
    if len(classes) < 2 or len(labels) < 2:
        raise TaskSweepInputError(f"a task needs at least 2 classes and 2 images, got {len(classes)} and {len(labels)}")
    device = torch.device(device)
    seeds = np.random.SeedSequence(seed).generate_state(4).tolist()
    data_gen = torch.Generator().manual_seed(seeds[0])
    draw_gen = torch.Generator(device=device).manual_seed(seeds[1])
    seconds: dict[str, float] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds[2])  # the dataset's own augmentation draws from the global RNG
        net = copy.deepcopy(probe).to(device)
        net.reset_classifier(len(classes))
        if config.skip_layers >= len(net.stages):
            raise ValueError(f"skip_layers={config.skip_layers}, but {probe.info.name} has {len(net.stages)} stages")
        if config.channels_last:
            net = net.to(memory_format=torch.channels_last)
        clock = time.perf_counter()
        split = config.independent_halves and method in _SPLIT_METHODS
        with autocast(device, config.precision):
            feats, pool_labels, pool, halves = cache_features(net, dataset, labels, config, device, data_gen, progress,
                                                              split=split)
        if config.precision != "fp32":  # the head and the Fisher's inputs in the probe's dtype
            dtype = net.classifier.weight.dtype
            feats, pool = feats.to(dtype), (None if pool is None else pool.to(dtype))
        seconds["cache"] = time.perf_counter() - clock
        heads = fit_heads(net.classifier, feats, torch.as_tensor(pool_labels, device=device), halves, config=config,
                          generator=data_gen, progress=progress)
        seconds["head"] = time.perf_counter() - clock - seconds["cache"]
        data = fisher_data(dataset, labels, pool, pool_labels, config, device, data_gen, progress, halves,
                           None if halves is None else heads.put)
        with autocast_forward(net, device, config.precision):  # forwards mixed, gradients' squares float32
            result = estimator(net, data, config, draw_gen)
        seconds["fisher"] = time.perf_counter() - clock - seconds["cache"] - seconds["head"]
    meta = {"num_classes": len(classes), "independent_halves": split,
            "n_head_samples": len(pool_labels) if halves is None else len(halves[0]),
            "probe_info": probe.info.as_dict(),
            "config": dataclasses.asdict(config), "device": str(device), "precision": config.precision,
            "seconds": seconds, **result.meta}
    return TaskEmbedding(result.hessian.astype(np.float32), result.scale.astype(np.float32), method,
                         probe.info.name, probe.info.pretrained, len(labels), seed, meta, noise=result.noise)


def feature_rows(n_images: int, config: Task2VecConfig, method: str) -> int:
    """Images the feature pass of ``embed_task`` runs through the probe for a task of ``n_images`` (the cost
    model's count): two sets of up to ``max_samples`` with ``independent_halves``, else one."""
    sets = 2 if config.independent_halves and method in _SPLIT_METHODS else 1
    return sets * min(n_images, config.max_samples)
