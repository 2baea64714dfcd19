"""Fine-tuning on synthetic images a tiny CNN can learn: it learns, it is deterministic, it is pure."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from experts.training import ExpertTrainConfig, augment, learning_rate, train_expert


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny problems: one intra-op thread is faster and immune to a busy shared CPU (OpenMP barriers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Dropout(0.1), nn.AdaptiveAvgPool2d(1),
    )


COLOURS = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])


def patch_images(n: int, seed: int) -> TensorDataset:
    """4 classes: a 10×10 patch of the class's colour at a random place in a noisy 32×32 image."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = 0.3 * torch.randn(n, 3, 32, 32, generator=g)
    corners = torch.randint(0, 22, (n, 2), generator=g).tolist()
    for i, c in enumerate(labels.tolist()):
        y, x = corners[i]
        images[i, :, y:y + 10, x:x + 10] += 1.5 * COLOURS[c][:, None, None]
    return TensorDataset(images, labels)


CONFIG = ExpertTrainConfig(epochs=8, lr=0.05, batch_size=32, seed=0)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(123)  # only the backbone's initial weights; training draws from config.seed
    backbone = tiny_cnn()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    result = train_expert(backbone, 16, 4, patch_images(256, 0), config=CONFIG, device="cpu",
                          val_set=patch_images(128, 1))
    return backbone, before, result


def test_learns_well_below_chance(trained):
    _, _, result = trained
    assert result.val_error is not None and result.val_error < 0.25  # chance is 0.75
    assert result.train_error < 0.25
    assert len(result.train_loss) == 8 and result.train_loss[-1] < result.train_loss[0]
    assert result.steps == 8 * math.ceil(256 / 32)


def test_input_module_untouched_and_states_load(trained):
    backbone, before, result = trained
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    fresh = tiny_cnn()
    fresh.load_state_dict(result.feature_extractor_state)
    nn.Linear(16, 4).load_state_dict(result.classifier_state)


def test_same_seed_bit_identical_other_seed_differs(trained):
    backbone, before, result = trained
    rng_state = torch.get_rng_state()
    backbone.load_state_dict(before)
    small = ExpertTrainConfig(epochs=1, lr=0.05, batch_size=64, seed=5)
    data = patch_images(128, 0)
    a = train_expert(backbone, 16, 4, data, config=small, device="cpu")
    b = train_expert(backbone, 16, 4, data, config=small, device="cpu")
    c = train_expert(backbone, 16, 4, data, config=ExpertTrainConfig(epochs=1, lr=0.05, batch_size=64, seed=6),
                     device="cpu")
    assert all(torch.equal(a.feature_extractor_state[k], b.feature_extractor_state[k]) for k in a.feature_extractor_state)
    assert a.train_loss == b.train_loss
    assert not torch.equal(a.classifier_state["weight"], c.classifier_state["weight"])
    assert torch.equal(torch.get_rng_state(), rng_state)  # the caller's global RNG is untouched


def test_learning_rate_schedules():
    cos = ExpertTrainConfig(lr=0.1, schedule="cosine")
    assert learning_rate(cos, 0, 100) == pytest.approx(0.1)
    assert learning_rate(cos, 50, 100) == pytest.approx(0.05)
    assert learning_rate(cos, 99, 100) < 1e-3
    step = ExpertTrainConfig(lr=0.1, schedule="step")
    assert [learning_rate(step, s, 100) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert learning_rate(ExpertTrainConfig(lr=0.1, schedule="constant"), 99, 100) == 0.1
    with pytest.raises(ValueError, match="schedule"):
        ExpertTrainConfig(schedule="linear")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ExpertTrainConfig(epochs=0)


def test_augment_is_seeded_and_keeps_shape():
    images = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16)
    a = augment(images, torch.Generator().manual_seed(0))
    b = augment(images, torch.Generator().manual_seed(0))
    assert a.shape == images.shape and torch.equal(a, b)
    assert not torch.equal(a, augment(images, torch.Generator().manual_seed(1)))
