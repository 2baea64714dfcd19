"""The fast Fisher code against slow, obviously correct loops on a tiny network."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from experts.backbones import create_backbone
from experts.fisher import (
    _Capture, conv_per_sample_sq_norms, exact_step, filter_means, montecarlo_fisher, montecarlo_step, sample_targets,
)
from experts.task2vec import FisherData, Task2VecConfig, norm_mode



def _tiny(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    probe = create_backbone("tiny_resnet", seed=3)
    probe.reset_classifier(num_classes)
    nn.init.normal_(probe.classifier.weight, std=0.5)  # non-uniform predictions
    return probe.double()


def _copy(gen: torch.Generator) -> torch.Generator:
    return torch.Generator().set_state(gen.get_state())


def _hand_filter_sums(grads: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for g in grads:
        out.append(torch.stack([g[o].pow(2).sum() for o in range(g.shape[0])]))
    return out


def test_filter_means_equal_a_hand_loop() -> None:
    conv, bn = nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)
    g2 = [torch.rand(3, 2, 3, 3, dtype=torch.float64), torch.rand(3, dtype=torch.float64)]
    got = filter_means([g.reshape(3, -1).sum(1) for g in g2], [conv, bn], count=4)
    want = [g2[0][o].mean().item() / 4 for o in range(3)] + [g2[1][o].item() / 4 for o in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("draws", [1, 3])
def test_montecarlo_step_equals_squared_batch_gradients(draws: int) -> None:
    probe = _tiny()
    x = torch.randn(8, 3, 16, 16, dtype=torch.float64)
    modules = [m for _, m in probe.fisher_modules()]
    gen = torch.Generator().manual_seed(1)
    with norm_mode(probe, "train"):
        expected = [torch.zeros(m.weight.shape[0], dtype=torch.float64) for m in modules]
        g2 = _copy(gen)
        for _ in range(draws):  # the reference: forward, sample, backward, square every .grad
            out = probe(x)
            y = sample_targets(out.detach().softmax(1), g2)
            probe.zero_grad()
            F.cross_entropy(out, y).backward()
            for e, h in zip(expected, _hand_filter_sums([m.weight.grad for m in modules])):
                e += h
        got = montecarlo_step(probe, x, modules, draws, gen)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-18)


@pytest.mark.parametrize("mode", ["eval", "batch_detached"])
def test_exact_step_equals_a_per_sample_loop(mode: str) -> None:
    probe = _tiny()
    x = torch.randn(6, 3, 16, 16, dtype=torch.float64)
    modules = [m for _, m in probe.fisher_modules()]
    gen = torch.Generator().manual_seed(2)
    with norm_mode(probe, mode):
        out = probe(x)
        y = sample_targets(out.detach().softmax(1), _copy(gen))
        expected = [torch.zeros(m.weight.shape[0], dtype=torch.float64) for m in modules]
        for i in range(len(x)):  # one sample's loss at a time, batch statistics held fixed
            grads = torch.autograd.grad(F.cross_entropy(out[i:i + 1], y[i:i + 1]), [m.weight for m in modules],
                                        retain_graph=True)
            for e, h in zip(expected, _hand_filter_sums(list(grads))):
                e += h
        with _Capture(modules) as cap:
            got = exact_step(probe, x, cap, gen)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-18)


@pytest.mark.parametrize(("size", "stride", "padding", "dilation"), [(9, 1, 1, 1), (4, 2, 0, 1), (7, 1, 2, 2)])
def test_conv_direct_and_ghost_norms_agree_with_autograd(size: int, stride: int, padding: int, dilation: int) -> None:
    conv = nn.Conv2d(3, 5, 3, stride=stride, padding=padding, dilation=dilation).double()
    x = torch.randn(4, 3, size, size, dtype=torch.float64)
    delta = torch.randn_like(conv(x))
    want = []
    for i in range(4):
        (g,) = torch.autograd.grad(conv(x[i:i + 1]), conv.weight, delta[i:i + 1])
        want.append(g.flatten(1).pow(2).sum(1))
    p = delta.shape[2] * delta.shape[3]
    assert (p * (27 + 5) < 5 * 27) == (size == 4)  # the 4x4 case takes the ghost-norm path
    torch.testing.assert_close(conv_per_sample_sq_norms(conv, x, delta), torch.stack(want))
    torch.testing.assert_close(conv_per_sample_sq_norms(conv, x, delta, max_floats=1), torch.stack(want))


def test_montecarlo_estimator_equals_the_reference_loop() -> None:
    probe = _tiny()
    images = torch.randn(20, 3, 16, 16, dtype=torch.float64)
    labels = np.arange(20) % 3
    config = Task2VecConfig(batch_size=4, fisher_samples=12)

    def data(seed: int) -> FisherData:
        return FisherData(lambda chunks: (images[torch.as_tensor(c)] for c in chunks), labels, 0, 4, 12,
                          torch.Generator().manual_seed(seed))

    result = montecarlo_fisher(probe, data(0), config, torch.Generator().manual_seed(9))
    acc = {m: torch.zeros_like(m.weight) for _, m in probe.fisher_modules()}
    gen, steps = torch.Generator().manual_seed(9), 0
    with norm_mode(probe, "train"):
        for x, _ in data(0).epoch():
            out = probe(x)
            probe.zero_grad()
            F.cross_entropy(out, sample_targets(out.detach().softmax(1), gen)).backward()
            for m in acc:
                acc[m] += m.weight.grad ** 2
            steps += 1
    want = np.concatenate([(a / steps).reshape(a.shape[0], -1).mean(1).numpy() for a in acc.values()])
    assert steps == 3 and result.meta["fisher_steps"] == 3
    np.testing.assert_allclose(result.hessian, want, rtol=1e-9)


def test_sample_targets_follows_the_distribution_and_relabels_with_the_classes() -> None:
    probs = torch.tensor([[0.1, 0.6, 0.3]]).repeat(20_000, 1)
    counts = torch.bincount(sample_targets(probs, torch.Generator().manual_seed(0)), minlength=3)
    np.testing.assert_allclose(counts.numpy() / 20_000, [0.1, 0.6, 0.3], atol=0.015)
    perm = torch.tensor([2, 0, 1])  # new class j is old class perm[j]
    p = torch.softmax(torch.randn(50, 3), 1)
    a = sample_targets(p, torch.Generator().manual_seed(4))
    b = sample_targets(p[:, perm], torch.Generator().manual_seed(4))
    assert torch.equal(perm[b], a)
