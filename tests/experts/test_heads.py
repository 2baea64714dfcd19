"""Batched linear heads: together equals alone, they learn, chunking changes nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experts.heads import HeadSpec, HeadTrainConfig, train_heads


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny problems: one intra-op thread is faster and immune to a busy shared CPU (OpenMP barriers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

N, D = 400, 24


@pytest.fixture(scope="module")
def problem() -> tuple[torch.Tensor, list[HeadSpec]]:
    """Linear-ish tasks with 2 to 5 classes; some share all images, some use their own subsets."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D)) * rng.uniform(0.5, 20, size=D) + rng.normal(size=D) * 5  # unstandardised
    specs = []
    for t, k in enumerate([2, 2, 3, 5, 2, 4]):
        y = ((X - X.mean(0)) / X.std(0) @ rng.normal(size=(D, k)) + 0.3 * rng.normal(size=(N, k))).argmax(1)
        rows = np.arange(N) if t < 3 else rng.permutation(N)[: rng.integers(150, N)]
        cut = len(rows) * 2 // 3
        targets = np.full(N, -1)
        targets[rows] = y[rows]
        specs.append(HeadSpec(f"task{t}", targets, rows[:cut], rows[cut:]))
    return torch.from_numpy(X.astype(np.float32)), specs


@pytest.mark.parametrize("batch_size", [None, 64])
def test_together_equals_alone(problem, batch_size):
    X, specs = problem
    config = HeadTrainConfig(epochs=40, lr=0.05, batch_size=batch_size)
    together = train_heads(X, specs, config=config)
    for spec, joint in zip(specs, together):
        (alone,) = train_heads(X, [spec], config=config)
        assert joint.task_id == alone.task_id == spec.task_id
        assert (joint.n_train, joint.n_test, joint.n_classes) == (alone.n_train, alone.n_test, alone.n_classes)
        assert joint.train_loss == pytest.approx(alone.train_loss, abs=1e-5)
        assert joint.test_loss == pytest.approx(alone.test_loss, abs=1e-5)
        assert joint.test_error == pytest.approx(alone.test_error, abs=1.5 / joint.n_test)


def test_learns_and_is_deterministic(problem):
    X, specs = problem
    config = HeadTrainConfig(epochs=100)
    first, second = train_heads(X, specs, config=config), train_heads(X, specs, config=config)
    assert first == second
    assert [r.n_classes for r in first] == [2, 2, 3, 5, 2, 4]
    for r in first:
        assert r.train_error < 0.1 and r.test_error < 0.35, r  # chance is 0.5 to 0.8


def test_chunking_over_tasks_and_images_changes_nothing(problem):
    X, specs = problem
    whole = train_heads(X, specs, config=HeadTrainConfig(epochs=20))
    chunked = train_heads(X, specs, config=HeadTrainConfig(epochs=20, max_params_per_chunk=D * 5 * 2,
                                                           max_logits_per_pass=300))
    for a, b in zip(whole, chunked):
        assert a.task_id == b.task_id
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-5)


def test_many_binary_heads_sharing_all_images():
    """DeepFashion-like: 300 attributes over the same images, in one padded tensor."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, D)).astype(np.float32)
    w = rng.normal(size=(D, 300))
    labels = (X @ w > 0).astype(np.int64)
    train, test = np.arange(300), np.arange(300, N)
    specs = [HeadSpec(f"attr{j}", labels[:, j], train, test, n_classes=2) for j in range(300)]
    results = train_heads(torch.from_numpy(X), specs, config=HeadTrainConfig(epochs=60))
    assert [r.task_id for r in results] == [s.task_id for s in specs]
    assert np.mean([r.test_error for r in results]) < 0.12


def test_bad_specs_and_empty_test(problem):
    X, specs = problem
    good = specs[0]
    with pytest.raises(ValueError, match="no training images"):
        train_heads(X, [HeadSpec("t", good.targets, np.array([], dtype=int), good.test_idx)])
    with pytest.raises(ValueError, match="one per image"):
        train_heads(X, [HeadSpec("t", good.targets[:10], good.train_idx, good.test_idx)])
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        train_heads(X, [HeadSpec("t", good.targets * 3, good.train_idx, good.test_idx, n_classes=2)])
    with pytest.raises(ValueError, match="out of range"):
        train_heads(X, [HeadSpec("t", good.targets, good.train_idx + N, good.test_idx)])
    (r,) = train_heads(X, [HeadSpec("t", good.targets, good.train_idx, np.array([], dtype=int))],
                       config=HeadTrainConfig(epochs=2))
    assert r.n_test == 0 and math.isnan(r.test_error) and math.isnan(r.test_loss)


def test_tasks_owning_their_images_train_alone_with_the_same_result():
    """iNat-like groups (each task owns its images) take the per-task path: same heads, no N × T logits."""
    from experts.heads import _alone_is_cheaper, _validated

    rng = np.random.default_rng(3)
    n, dim, per_task = 600, 8, 100
    X = rng.normal(size=(n, dim)).astype(np.float32)
    X = (X - X.mean(0)) / X.std(0)
    specs = []
    for t, k in enumerate([2, 3, 5, 4, 2, 3]):
        rows = np.arange(t * per_task, (t + 1) * per_task)
        targets = np.full(n, -1)
        targets[rows] = (X[rows] @ rng.normal(size=(dim, k))).argmax(1)
        specs.append(HeadSpec(f"task{t}", targets, rows[:70], rows[70:], k))
    assert _alone_is_cheaper([_validated(s, n) for s in specs], n, dim, 2**26)
    config = HeadTrainConfig(epochs=30, standardize=False)
    together = train_heads(torch.from_numpy(X), specs, config=config)
    for spec, result in zip(specs, together):
        rows = np.concatenate([spec.train_idx, spec.test_idx])
        own = HeadSpec(spec.task_id, spec.targets[rows], np.arange(70), np.arange(70, per_task), spec.n_classes)
        (padded,) = train_heads(torch.from_numpy(X[rows]), [own], config=config)  # the chunked path on its rows
        assert (result.n_train, result.n_test) == (70, 30)
        assert result.train_loss == pytest.approx(padded.train_loss, abs=1e-6)
        assert result.test_error == pytest.approx(padded.test_error, abs=1e-9)
