"""The fast defaults' pieces (stratified draws, deterministic head), the reference preset, and each
embedding's own noise estimate with the distances' noise floor."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from experts.backbones import create_backbone
from experts.distances import above_noise_floor, noise_floor
from experts.fisher import split_noise
from experts.task2vec import REFERENCE, Task2VecConfig, embed_task, fit_head
from experts.task2vec_data import stratified_draws

SMALL = Task2VecConfig(batch_size=8, fisher_samples=48, head_epochs=2, head_samples_per_epoch=64, max_samples=64,
                       variational_epochs=1)


def test_reference_preset_is_the_reference_and_defaults_differ_only_where_documented() -> None:
    assert (REFERENCE.head_solver, REFERENCE.fisher_samples, REFERENCE.fisher_sampling) == ("sampled", 10_000, "replacement")
    assert (REFERENCE.batch_size, REFERENCE.head_epochs, REFERENCE.head_samples_per_epoch, REFERENCE.bn_mode) == (
        64, 10, 10_000, "train")
    fields = {f.name for f in dataclasses.fields(Task2VecConfig)}
    differ = {f for f in fields if getattr(REFERENCE, f) != getattr(Task2VecConfig(), f)}
    assert differ == {"head_solver", "fisher_samples", "fisher_sampling", "augmentation", "head_batches",
                      "independent_halves"}
    assert REFERENCE.augmentation == "random_resized_crop" and not REFERENCE.independent_halves
    assert REFERENCE.head_batches == "dataset_order"
    with pytest.raises(ValueError, match="head_solver"):
        Task2VecConfig(head_solver="lbfgs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fisher_sampling"):
        Task2VecConfig(fisher_sampling="sobol")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="head_batches"):
        Task2VecConfig(head_batches="random")  # type: ignore[arg-type]


def test_stratified_draws_balance_classes_and_images_and_ignore_label_names() -> None:
    labels = np.array([0] * 5 + [1] * 3 + [2] * 7)
    draws = stratified_draws(labels, 40, torch.Generator().manual_seed(0))
    per_class = np.bincount(labels[draws])
    assert len(draws) == 40 and per_class.max() - per_class.min() <= 1
    for c in range(3):  # every image of a class drawn equally often, up to one
        counts = np.bincount(draws[labels[draws] == c], minlength=len(labels))[labels == c]
        assert counts.max() - counts.min() <= 1
    relabelled = np.array([2, 0, 1])[labels]
    assert np.array_equal(stratified_draws(relabelled, 40, torch.Generator().manual_seed(0)), draws)
    assert not np.array_equal(stratified_draws(labels, 40, torch.Generator().manual_seed(1)), draws)


def test_full_batch_head_is_deterministic_and_sampled_is_not() -> None:
    g = torch.Generator().manual_seed(0)
    feats, labels = torch.randn(40, 6, generator=g), torch.arange(40) % 3
    heads = {}
    for solver in ("full_batch", "sampled"):
        config = Task2VecConfig(batch_size=8, head_epochs=2, head_samples_per_epoch=64, head_solver=solver)
        for seed in (0, 1):
            head = nn.Linear(6, 3)
            nn.init.zeros_(head.weight), nn.init.zeros_(head.bias)
            fit_head(head, feats, labels, config=config, generator=torch.Generator().manual_seed(seed))
            heads[solver, seed] = head.weight.detach().clone()
    assert torch.equal(heads["full_batch", 0], heads["full_batch", 1])
    assert not torch.equal(heads["sampled", 0], heads["sampled", 1])
    assert heads["full_batch", 0].abs().sum() > 0  # it moved


def _fit(feats: torch.Tensor, labels: torch.Tensor, config: Task2VecConfig, seed: int = 0) -> torch.Tensor:
    head = nn.Linear(feats.shape[1], int(labels.max()) + 1)
    nn.init.zeros_(head.weight), nn.init.zeros_(head.bias)
    fit_head(head, feats, labels, config=config, generator=torch.Generator().manual_seed(seed))
    return torch.cat([head.weight.detach(), head.bias.detach()[:, None]], 1)


def test_expected_head_takes_the_sampled_steps_in_expectation() -> None:
    """``expected`` is Adam fed the full-batch gradient and, in its second moment, the draws' variance: with no
    variance (huge batches) it is ``full_batch``; at batch 64 it ends where the sampled heads end on
    average, not at the longer-stepping full-batch head."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(300) % 3
    feats = torch.randn(300, 32, generator=g)
    feats[:, :3] += 0.3 * F.one_hot(labels, 3)  # a weak signal: the sampled steps are noise-dominated
    config = Task2VecConfig(head_epochs=3)
    huge = 10**9
    no_variance = dataclasses.replace(config, head_solver="expected", batch_size=huge, fisher_samples=huge,
                                      head_samples_per_epoch=config.head_samples_per_epoch // 64 * huge)
    full = _fit(feats, labels, dataclasses.replace(config, head_solver="full_batch"))
    assert (_fit(feats, labels, no_variance) - full).norm() < 0.01 * full.norm()
    expected = _fit(feats, labels, dataclasses.replace(config, head_solver="expected"))
    assert torch.equal(expected, _fit(feats, labels, dataclasses.replace(config, head_solver="expected"), seed=1))
    sampled = torch.stack([_fit(feats, labels, dataclasses.replace(config, head_solver="sampled"), seed=s)
                           for s in range(4)])
    sampled_norm = sampled.norm(dim=(1, 2)).mean()
    assert abs(expected.norm() - sampled_norm) < 0.3 * abs(full.norm() - sampled_norm), (
        expected.norm(), full.norm(), sampled_norm)
    assert (expected - sampled.mean(0)).norm() < (full - sampled.mean(0)).norm()


def _task(n: int = 48, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    x = torch.randn(3, 3, 1, 1, generator=g)[labels] + torch.randn(n, 3, 16, 16, generator=g)
    return TensorDataset(x, labels)


@pytest.mark.parametrize("method", ["montecarlo", "montecarlo_exact"])
def test_every_fisher_embedding_carries_a_deterministic_noise_estimate(method: str) -> None:
    probe = create_backbone("tiny_resnet", weights="random", seed=0)
    a, b = (embed_task(_task(), probe, method=method, config=SMALL, seed=0) for _ in range(2))
    assert a.noise is not None and 0 < a.noise < 1 and a.noise == b.noise
    more = embed_task(_task(), probe, method=method, config=dataclasses.replace(SMALL, fisher_samples=192), seed=0)
    assert more.noise < a.noise  # four times the draws: less noise (expected ~4x less)


def test_independent_halves_are_two_half_runs_with_their_own_features_heads_and_draws() -> None:
    """Each half has its own augmentation draws (a small task: every image twice), its own head, and its own
    Fisher batches; the embedding is their mean. Without halves (REFERENCE) one head sees one pass."""
    probe = create_backbone("tiny_resnet", weights="random", seed=0)
    seen: list[int] = []

    def augmenting(n: int = 24) -> TensorDataset:
        """24 < max_samples: each half sees every image; the augmentation (global RNG) shows in the inputs."""
        class Noisy(TensorDataset):
            def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
                x, y = super().__getitem__(i)
                seen.append(i)
                return x + 0.1 * torch.randn(x.shape), y
        base = _task(n)
        return Noisy(*base.tensors)

    split = SMALL  # the default
    halves = embed_task(augmenting(), probe, config=split, seed=0)
    assert sorted(seen[:48]) == sorted(list(range(24)) * 2)  # the feature pass: every image, twice
    assert halves.meta["independent_halves"] and halves.meta["n_head_samples"] == 24
    seen.clear()
    one = embed_task(augmenting(), probe, config=dataclasses.replace(SMALL, independent_halves=False), seed=0)
    assert sorted(seen[:24]) == list(range(24)) and not one.meta["independent_halves"]
    assert halves.noise is not None and one.noise is not None
    assert not np.allclose(halves.hessian, one.hessian)
    variational = embed_task(augmenting(), probe, method="variational", config=split, seed=0)
    assert not variational.meta["independent_halves"]  # one head; no noise estimate


def test_fisher_draws_of_each_half_come_from_its_own_rows() -> None:
    from experts.task2vec_data import FisherData

    labels = np.arange(40) % 2
    halves = (np.arange(0, 20), np.arange(20, 40))
    used: list[int] = []
    data = FisherData(lambda chunks: (torch.as_tensor(c) for c in chunks), labels, 0, 4, 36,
                      torch.Generator().manual_seed(0), True, None, halves, used.append)
    batches = [x for x, _ in data.epoch()]
    assert len(batches) == 9 and used == [0, 1] * 4 + [0]
    for i, b in enumerate(batches):
        assert set(b.tolist()) <= set(halves[i % 2].tolist())


def test_variational_has_no_noise_estimate_and_progress_reports_every_phase() -> None:
    probe = create_backbone("tiny_resnet", weights="random", seed=0)
    calls: list[tuple[str, int, int]] = []
    emb = embed_task(_task(), probe, method="variational", config=SMALL, progress=lambda *c: calls.append(c))
    assert emb.noise is None
    phases = [c[0] for c in calls]
    assert phases.index("features") < phases.index("head") < phases.index("fisher")
    for phase in ("features", "head"):
        last = [c for c in calls if c[0] == phase][-1]
        assert last[1] == last[2] > 0  # each phase ends with done == total


def test_split_noise_and_noise_floor() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(100)
    assert split_noise(a, a) == 0.0 and split_noise(a, 3 * a) == pytest.approx(0.0, abs=1e-12)
    b = a * (1 + 0.1 * rng.standard_normal(100))
    assert split_noise(a, b) > 0 and split_noise(a, b) == pytest.approx(split_noise(5 * a, 5 * b))  # common scale
    nan = np.full(100, np.nan)
    assert split_noise(nan, nan) is None
    floor = noise_floor(np.array([0.02, 0.04, np.nan]))
    assert floor.shape == (3, 3) and floor[0, 1] == floor[1, 0] == pytest.approx(0.03) and np.isnan(floor[2]).all()
    d = np.array([[0.0, 0.07, 0.5], [0.07, 0.0, 0.5], [0.5, 0.5, 0.0]])
    above = above_noise_floor(d, floor)
    assert above.dtype == bool and above[0, 1] and not above[0, 0] and not above[0, 2]  # NaN floor: no claim
    assert not above_noise_floor(d, floor, factor=3.0)[0, 1]


@pytest.mark.parametrize("mode", ["class_sorted", "dataset_order", "shuffled"])
def test_head_feature_batches(mode: str) -> None:
    """class_sorted: a random subset grouped by class whatever the dataset's order (nearly single-class batches
    in train-mode batch-norm, as the reference gives a class-sorted folder); dataset_order: the first images;
    shuffled: mixed batches."""
    from experts.task2vec_data import cache_features, head_feature_batches

    probe = create_backbone("tiny_resnet", weights="random", seed=0)
    labels = np.arange(40) % 4  # interleaved classes: dataset order is not class order
    data = TensorDataset(torch.randn(40, 3, 16, 16), torch.as_tensor(labels))
    config = dataclasses.replace(SMALL, head_batches=mode, max_samples=24)
    _, got, _, _ = cache_features(probe, data, labels, config, torch.device("cpu"), torch.Generator().manual_seed(0))
    again = cache_features(probe, data, labels, config, torch.device("cpu"), torch.Generator().manual_seed(1))[1]
    assert len(got) == 24
    if mode == "class_sorted":
        assert np.count_nonzero(np.diff(got)) == 3 and len(set(got)) == 4  # four runs, one per class
    elif mode == "dataset_order":
        assert np.array_equal(got, labels[:24]) and np.array_equal(again, got)
    else:
        assert np.any(np.diff(got) < 0)
    for n, sizes in ((27, [8, 8, 11]), (28, [8, 8, 8, 4]), (40, [8] * 5)):  # a last batch under 4 joins the one before
        _, batches = head_feature_batches(labels, dataclasses.replace(config, max_samples=n, batch_size=8),
                                          torch.Generator().manual_seed(0))
        expected = sizes if mode != "shuffled" else [len(b) for b in np.array_split(np.arange(n), -(-n // 8))]
        assert [len(b) for b in batches] == expected
