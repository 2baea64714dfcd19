"""The linear head Task2Vec fits on cached probe features before the Fisher (``experts.task2vec``).

Pure computation. ``fit_head`` trains one head in place per ``Task2VecConfig.head_solver``: ``sampled``
(the reference's Adam steps on class-balanced draws), ``full_batch`` (Adam on the expected loss) or
``expected`` (the sampled steps in expectation, ``_fit_head_expected``); ``fit_heads`` fits one head per
independent half-run and puts each on the probe when its half's Fisher batches come.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from experts.task2vec_data import Progress, class_balanced_draws

if TYPE_CHECKING:
    from experts.task2vec import Task2VecConfig

__all__ = ["fit_head", "fit_heads"]


class _one_cpu_thread:
    """On CPU, run the head's 1,560 tiny steps on one thread: each is far below what threads pay for, and
    on a loaded machine a thread barrier per op turned a 1.6 ms step into 62 ms (benchmarks/results/task2vec.md)."""

    def __init__(self, device: torch.device) -> None:
        self.active = device.type == "cpu"

    def __enter__(self) -> None:
        if self.active:
            self.threads = torch.get_num_threads()
            torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        if self.active:
            torch.set_num_threads(self.threads)


class _Heads:
    """The fitted head of each half (or the one head), put on the probe's classifier in place by ``put``."""

    def __init__(self, head: nn.Linear, states: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.head, self.states = head, states

    def put(self, half: int) -> None:
        with torch.no_grad():
            self.head.weight.copy_(self.states[half][0])
            self.head.bias.copy_(self.states[half][1])


def fit_heads(
    head: nn.Linear, features: torch.Tensor, labels: torch.Tensor, halves: tuple[np.ndarray, np.ndarray] | None, *,
    config: Task2VecConfig, generator: torch.Generator, progress: Progress | None = None,
) -> _Heads:
    """``fit_head`` on all ``features`` (``halves`` None: the head is left on ``head``), or one head per half,
    each from the same initial weights; the first half's head is left on ``head``."""
    if halves is None:
        fit_head(head, features, labels, config=config, generator=generator, progress=progress)
        return _Heads(head, [])
    init = [p.detach().clone() for p in (head.weight, head.bias)]
    states = []
    for h, rows in enumerate(halves):
        with torch.no_grad():
            head.weight.copy_(init[0])
            head.bias.copy_(init[1])
        rows_t = torch.as_tensor(rows, device=features.device)
        fit_head(head, features[rows_t], labels[rows_t], config=config, generator=generator,
                 progress=_part(progress, h, len(halves)))
        states.append((head.weight.detach().clone(), head.bias.detach().clone()))
    heads = _Heads(head, states)
    heads.put(0)
    return heads


def _part(progress: Progress | None, index: int, parts: int) -> Progress | None:
    """``progress`` for part ``index`` of ``parts`` equal parts of one phase (one line, one ETA)."""
    if progress is None:
        return None

    def report(phase: str, done: int, total: int) -> None:
        if done or index == 0:  # a later part's start is the previous part's end, already reported
            progress(phase, index * total + done, parts * total)

    return report


def _fit_head_expected(
    head: nn.Linear, features: torch.Tensor, labels: torch.Tensor, *, config: Task2VecConfig,
    progress: Progress | None = None,
) -> None:
    """``head_solver="expected"``: the reference's Adam steps in expectation over its draws, deterministic.

    A step of the sampled solver uses the mean gradient of ``batch_size`` class-balanced draws with
    replacement: its expectation is the class-weighted full-batch gradient G, its variance the
    per-sample gradients' weighted variance over ``batch_size``. Adam's first moment averages the
    gradients (expectation G); its second moment averages their squares, whose expectation is
    G**2 + variance, not G**2: where the signal is weak against the sampling noise the reference's
    steps are short. So the first moment is fed G and the second G**2 + variance / batch_size (both
    exact: a linear head's per-sample gradient is (p - onehot) x [features, 1]); everything else is
    ``torch.optim.Adam``'s (betas 0.9, 0.999, eps 1e-8, bias correction, L2 weight decay added to the
    gradient, whose draws do not vary). ``full_batch`` feeds G**2 instead and takes longer steps than the
    reference would: a more confident head and a larger Fisher."""
    steps = config.head_samples_per_epoch // config.batch_size
    total = steps * config.head_epochs
    np_labels = labels.cpu().numpy()
    w = torch.as_tensor(1.0 / np.bincount(np_labels)[np_labels], dtype=features.dtype, device=features.device)
    w = (w / w.sum())[:, None]
    onehot = F.one_hot(labels, head.out_features).to(features.dtype)
    sq_feats = features.square()
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    params = [head.weight, head.bias]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    if progress:
        progress("head", 0, total)
    with torch.no_grad(), _one_cpu_thread(features.device):
        for t in range(1, total + 1):
            r = torch.softmax(head(features), dim=1) - onehot  # per-sample d loss / d logits
            wr, wr2 = w * r, w * r.square()
            grads = [wr.T @ features, wr.sum(0)]
            second = [wr2.T @ sq_feats, wr2.sum(0)]  # E over draws of per-sample g**2
            for p, g, g2, m_, v_ in zip(params, grads, second, m, v):
                var = (g2 - g.square()).clamp_min(0) / config.batch_size
                g = g + config.head_wd * p
                m_.mul_(beta1).add_(g, alpha=1 - beta1)
                v_.mul_(beta2).add_(g.square() + var, alpha=1 - beta2)
                denom = (v_ / (1 - beta2 ** t)).sqrt().add_(eps)
                p.addcdiv_(m_, denom, value=-config.head_lr / (1 - beta1 ** t))
            if progress and t % steps == 0:
                progress("head", t, total)


def fit_head(
    head: nn.Linear, features: torch.Tensor, labels: torch.Tensor, *, config: Task2VecConfig,
    generator: torch.Generator, progress: Progress | None = None,
) -> None:
    """Train ``head`` in place on cached features with Adam (lr, weight decay and step count: the reference's).

    ``sampled``: each step on a batch of class-balanced draws with replacement (the reference).
    ``full_batch``: each step on the class-weighted loss over all features, i.e. the expectation of
    the sampled loss: deterministic, so the head adds no seed-to-seed noise to the embedding, but Adam
    then takes longer steps than on the draws. ``expected`` (``_fit_head_expected``): deterministic and
    the sampled steps in expectation.
    """
    if config.head_solver == "expected":
        return _fit_head_expected(head, features, labels, config=config, progress=progress)
    opt = torch.optim.Adam(head.parameters(), lr=config.head_lr, weight_decay=config.head_wd)
    steps = config.head_samples_per_epoch // config.batch_size
    total = steps * config.head_epochs
    np_labels = labels.cpu().numpy()
    weights = torch.as_tensor(1.0 / np.bincount(np_labels)[np_labels], dtype=features.dtype, device=features.device)
    weights = weights / weights.sum()
    if progress:
        progress("head", 0, total)
    with torch.enable_grad(), _one_cpu_thread(features.device):
        for epoch in range(config.head_epochs):
            if config.head_solver == "sampled":
                idx = class_balanced_draws(np_labels, steps * config.batch_size, generator)
                batches = torch.as_tensor(idx, device=features.device).view(steps, config.batch_size)
            for step in range(steps):
                if config.head_solver == "sampled":
                    chunk = batches[step]
                    loss = F.cross_entropy(head(features[chunk]), labels[chunk])
                else:
                    loss = (F.cross_entropy(head(features), labels, reduction="none") * weights).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if progress:
                progress("head", (epoch + 1) * steps, total)
