"""Feature extraction: one eval-mode pass, dataset order, module left as found."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from experts.features import extract_features


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny problems: one intra-op thread is faster and immune to a busy shared CPU (OpenMP barriers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2))


@pytest.fixture
def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(37, 3, 32, 32, generator=g), torch.randint(0, 3, (37,), generator=g))


def test_matches_eval_forward_and_restores_mode(data):
    model = tiny_backbone()
    model.train()
    stats = model[1].running_mean.clone()
    calls = []
    feats = extract_features(model, data, device="cpu", batch_size=8, progress=lambda d, t: calls.append((d, t)))
    assert feats.shape == (37, 16) and feats.dtype == torch.float32
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(model[1].running_mean, stats)  # eval mode: batch norm statistics untouched
    model.eval()
    with torch.no_grad():
        expected = model(data.tensors[0]).flatten(1)
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-6)
    assert calls[-1] == (37, 37) and len(calls) == 5


def test_batch_size_bare_images_and_channels_last(data):
    model = tiny_backbone()
    a = extract_features(model, data, device="cpu", batch_size=5)
    b = extract_features(model, TensorDataset(data.tensors[0]), device="cpu", batch_size=64)
    c = extract_features(model, list(data.tensors[0]), device="cpu", channels_last=True)  # layout only
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)


def test_errors(data):
    with pytest.raises(ValueError, match="empty"):
        extract_features(tiny_backbone(), [], device="cpu")
    with pytest.raises(ValueError, match="model.to"):
        extract_features(tiny_backbone().to("meta"), data, device="cpu")
