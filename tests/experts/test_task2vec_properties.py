"""End-to-end properties of the Task2Vec embedding on a tiny probe and 16x16 images."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from experts.backbones import Probe, create_backbone
from experts.task2vec import Task2VecConfig, TaskEmbedding, embed_task, list_methods
from tasks.errors import TaskSweepInputError

SMALL = Task2VecConfig(batch_size=8, fisher_samples=48, head_epochs=2, head_samples_per_epoch=64, max_samples=64,
                       variational_epochs=1)



@pytest.fixture(scope="module")
def probe() -> Probe:
    return create_backbone("tiny_resnet", weights="random", seed=0)


def _task(labels: np.ndarray, *, seed: int = 0, signal: float = 1.0) -> TensorDataset:
    """16x16 images whose colour depends on the label (strength ``signal``) plus noise."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.randn(int(labels.max()) + 1, 3, 1, 1, generator=g)
    x = signal * colours[torch.as_tensor(labels)] + torch.randn(len(labels), 3, 16, 16, generator=g)
    return TensorDataset(x, torch.as_tensor(labels))


def _embed(data: TensorDataset, probe: Probe, method: str = "montecarlo", seed: int = 0,
           config: Task2VecConfig = SMALL) -> TaskEmbedding:
    return embed_task(data, probe, method=method, config=config, seed=seed)


def test_methods_are_registered() -> None:
    assert list_methods() == ["domain", "montecarlo", "montecarlo_exact", "variational"]
    with pytest.raises(KeyError, match="known: domain, montecarlo"):
        embed_task(_task(np.arange(8) % 2), create_backbone("tiny_resnet"), method="nope")


@pytest.mark.parametrize("classes", [2, 3, 7])
def test_length_is_fixed_whatever_the_number_of_classes(probe: Probe, classes: int) -> None:
    emb = _embed(_task(np.arange(42) % classes), probe)
    assert emb.hessian.shape == emb.scale.shape == (probe.info.embedding_dim,)
    assert emb.hessian.dtype == np.float32 and np.isfinite(emb.hessian).all() and (emb.hessian >= 0).all()
    assert (emb.method, emb.probe, emb.pretrained, emb.n_samples, emb.seed) == ("montecarlo", "tiny_resnet", False, 42, 0)
    assert emb.meta["num_classes"] == classes and emb.meta["fisher_steps"] == 6


@pytest.mark.parametrize("method", list_methods())
def test_same_seed_gives_bit_identical_embeddings(probe: Probe, method: str) -> None:
    data = _task(np.arange(24) % 3)
    a, b, c = (_embed(data, probe, method, seed) for seed in (0, 0, 1))
    assert np.array_equal(a.hessian, b.hessian) and np.array_equal(a.scale, b.scale)
    if method != "domain":  # the domain embedding of a small, unaugmented dataset does not depend on the seed
        assert not np.array_equal(a.hessian, c.hessian)


@pytest.mark.parametrize("method", ["montecarlo", "montecarlo_exact", "variational"])
def test_label_permutation_leaves_the_embedding_unchanged(probe: Probe, method: str) -> None:
    labels = np.arange(30) % 3
    perm = np.array([2, 0, 1])
    a = _embed(_task(labels), probe, method)
    b = _embed(TensorDataset(_task(labels).tensors[0], torch.as_tensor(perm[labels])), probe, method)
    other_seed = _embed(_task(labels), probe, method, seed=1)
    # Zero-initialised head + class-sorted target sampling: equal up to rounding, far below seed noise.
    np.testing.assert_allclose(b.hessian, a.hessian, rtol=1e-3, atol=1e-6 * a.hessian.max())
    assert np.abs(other_seed.hessian - a.hessian).max() > 100 * np.abs(b.hessian - a.hessian).max()


@pytest.mark.parametrize("method", ["montecarlo", "montecarlo_exact"])
def test_confidently_fitted_task_has_a_smaller_fisher_norm(probe: Probe, method: str) -> None:
    labels = np.arange(48) % 2
    easy = _task(labels, signal=6.0)
    confusable = TensorDataset(easy.tensors[0], torch.as_tensor(np.random.default_rng(0).permutation(labels)))
    # mixed feature batches: in class-sorted ones (the default, as the reference's on a sorted folder) train-mode
    # batch-norm removes a per-class mean shift, this task's whole signal, and no head could be confident
    config = Task2VecConfig(batch_size=8, fisher_samples=64, head_epochs=8, head_samples_per_epoch=256,
                            head_lr=0.05, max_samples=64, head_batches="shuffled")
    easy_norm = np.linalg.norm(_embed(easy, probe, method, config=config).hessian)
    hard_norm = np.linalg.norm(_embed(confusable, probe, method, config=config).hessian)
    assert easy_norm < 0.5 * hard_norm


def test_exact_estimator_is_about_batch_size_times_the_reference_scale(probe: Probe) -> None:
    data = _task(np.arange(48) % 3)
    config = Task2VecConfig(batch_size=8, fisher_samples=256, head_epochs=2, head_samples_per_epoch=64, bn_mode="eval")
    mc, exact = (_embed(data, probe, m, config=config) for m in ("montecarlo", "montecarlo_exact"))
    assert 4 < exact.hessian.sum() / mc.hessian.sum() < 16
    assert exact.meta["bn_mode"] == "eval" and _embed(data, probe, "montecarlo_exact").meta["bn_mode"] == "batch_detached"


def test_the_probe_is_never_modified(probe: Probe) -> None:
    before = {k: v.clone() for k, v in probe.state_dict().items()}
    for method in list_methods():
        _embed(_task(np.arange(16) % 2), probe, method)
    after = probe.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in probe.modules())
    assert all(p.requires_grad for p in probe.parameters()) and probe.classifier.out_features == 1000


def test_skip_layers_keeps_the_length_and_marks_skipped_filters(probe: Probe) -> None:
    config = Task2VecConfig(batch_size=8, fisher_samples=16, head_epochs=1, head_samples_per_epoch=16, skip_layers=2)
    emb = _embed(_task(np.arange(16) % 2), probe, config=config)
    skipped = np.concatenate([np.full(m.weight.shape[0], probe.stage_of(m) < 2) for _, m in probe.fisher_modules()])
    assert len(emb.hessian) == probe.info.embedding_dim
    assert np.isnan(emb.hessian[skipped]).all() and np.isfinite(emb.hessian[~skipped]).all() and skipped.any()


def test_targets_per_forward_spends_the_same_budget(probe: Probe) -> None:
    config = Task2VecConfig(batch_size=8, fisher_samples=40, head_epochs=1, head_samples_per_epoch=16,
                            targets_per_forward=3)
    emb = _embed(_task(np.arange(16) % 2), probe, config=config)
    assert emb.meta["fisher_steps"] == 5 and emb.meta["targets_per_forward"] == 3


def test_variational_embedding(probe: Probe) -> None:
    emb = _embed(_task(np.arange(24) % 3), probe, "variational")
    assert emb.hessian.shape == emb.scale.shape == (probe.info.variational_dim,)
    assert (emb.hessian > 0).all() and np.isfinite(emb.hessian).all()
    first = probe.variational_modules()[0][1].weight.shape[0]
    assert np.unique(emb.scale[:first]).size == 1  # one prior precision per layer


def test_domain_embedding_depends_on_the_images_only(probe: Probe) -> None:
    data = _task(np.arange(24) % 3)
    relabelled = TensorDataset(data.tensors[0], torch.as_tensor(np.arange(24) % 2))
    a, b = _embed(data, probe, "domain"), _embed(relabelled, probe, "domain")
    assert a.hessian.shape == (probe.info.feature_dim,) and a.method == "domain"
    assert np.array_equal(a.hessian, b.hessian)
    assert not np.array_equal(a.hessian, _embed(_task(np.arange(24) % 3, seed=1), probe, "domain").hessian)


def test_bad_inputs_fail_clearly(probe: Probe) -> None:
    with pytest.raises(TaskSweepInputError, match="at least 2 classes"):
        _embed(_task(np.zeros(10, dtype=int)), probe)
    with pytest.raises(ValueError, match="bn_mode"):
        Task2VecConfig(bn_mode="frozen")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fisher_samples"):
        Task2VecConfig(fisher_samples=8, batch_size=64)


@pytest.mark.parametrize("method", ["montecarlo", "montecarlo_exact"])
def test_channels_last_is_only_a_memory_layout(probe: Probe, method: str) -> None:
    data = _task(np.arange(24) % 3)
    a = _embed(data, probe, method, config=SMALL)
    b = _embed(data, probe, method, config=dataclasses.replace(SMALL, channels_last=not SMALL.channels_last))
    np.testing.assert_allclose(a.hessian, b.hessian, rtol=1e-3, atol=1e-6 * a.hessian.max())
