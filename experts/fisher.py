"""Monte-Carlo Fisher estimators and filter averaging.

Both estimators draw targets from the model's own predictive distribution (``y ~ softmax``), not
from the labels, and return one number per filter (the mean over the filter's weights of the
diagonal Fisher), concatenated over ``Probe.fisher_modules()`` in network order.

``montecarlo`` reproduces the reference's estimator: per batch, the *batch-mean* cross-entropy is
differentiated and its gradient squared; the sum is divided by the number of steps. Because the
score has zero mean under ``y ~ p``, its expectation is the per-sample diagonal Fisher divided by
``batch_size`` (the cross terms vanish in expectation but add noise). Batch-norm follows
``config.bn_mode`` (reference: train mode, with gradients through the batch statistics).
Speed-ups over the reference, which change nothing in expectation: gradients are taken with
``torch.autograd.grad`` on the covered weights only (no ``.grad`` buffers, no hooks, no classifier
or bias gradients), squared gradients are reduced per filter at once, and
``targets_per_forward > 1`` reuses one forward for several target draws (each draw still counts
``batch_size`` samples of the budget; default 1, as the reference).

``montecarlo_exact`` is the exact per-sample diagonal Fisher, E_x E_{y~p}[(d log p(y|x)/dw)^2]:
one backward of the summed loss w.r.t. the covered layers' *outputs* (no weight gradients) gives
every sample's output gradients, and the per-sample, per-filter squared weight-gradient norms
are formed from (layer input, output gradient) pairs without ever holding a batch of per-sample
gradients: by the Gram ("ghost norm") identity |sum_p d_p u_p^T|^2 = sum_{p,q} d_p d_q <u_p, u_q>
where the spatial size is small, else one sample at a time through the convolution's own
weight-gradient kernel. Its scale is about ``batch_size`` x ``montecarlo``'s. Per-sample gradients
are ill-defined when batch-norm couples the samples, so ``bn_mode="train"`` is run as
``batch_detached`` (batch statistics used as constants), recorded in ``meta["bn_mode"]``. It is
therefore ``batch_size`` x ``montecarlo`` with ``bn_mode="batch_detached"`` (64.0 +- 1 per layer
on ResNet-18), and its shape differs from the reference's train-mode estimate (benchmark: d_sym
0.155, more than between two tasks): never mix the two.

Noise estimate (both estimators): the batches are accumulated in two halves (even and odd batches)
besides the total, each half's embedding is formed, and ``split_noise`` turns their d_sym into the
expected d_sym between this run and an independent run at the full budget: for small noise d_sym
grows with the variance of the relative error, which halves when the two halves are averaged, and
two halves differ by the noise of two half-budget estimates, so the seed-to-seed d_sym at the full
budget is d_sym(half, half) / 2. With ``Task2VecConfig.independent_halves`` (the default) the halves
are independent half-runs: ``embed_task`` caches each half's features with its own augmentation
draws, fits each half its own head, and ``FisherData`` draws each half's batches on their own and
puts that half's head on the probe before each of its batches, so the estimate sees the head's and
the features' noise too (BENCHMARKS.md, 2026-12-07: 0.85-0.93x the measured seed-to-seed d_sym on
three probes). Without it (``REFERENCE``) only the Fisher draws are split: the estimate misses what
is fixed for the run and was ~3x low. Cost: one more set of per-filter sums.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.grad import conv2d_weight

from experts.backbones import Probe
from experts.distances import symmetric_rowwise
from experts.task2vec import FisherData, FisherResult, Task2VecConfig, norm_mode, register_estimator

__all__ = [
    "conv_per_sample_sq_norms", "exact_fisher", "exact_step", "filter_means", "montecarlo_fisher", "montecarlo_step",
    "per_sample_sq_norms", "sample_targets", "split_noise",
]


def sample_targets(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One class per row of ``probs`` (N, C), by inverse CDF over the classes sorted by probability.

    Same distribution as ``torch.multinomial``, but relabelling the classes relabels the draw.
    """
    sorted_p, order = probs.double().sort(dim=1, descending=True, stable=True)
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device, dtype=torch.float64)
    rank = (sorted_p.cumsum(dim=1) < u * sorted_p.sum(dim=1, keepdim=True)).sum(dim=1)
    return order.gather(1, rank.clamp(max=probs.shape[1] - 1).unsqueeze(1)).squeeze(1)


def filter_means(sq_sums: list[torch.Tensor], modules: list[nn.Module], count: int) -> np.ndarray:
    """Per-filter mean of the diagonal Fisher from per-filter sums of squared gradients."""
    out = [(s.double() / (count * (m.weight.numel() // m.weight.shape[0]))).cpu().numpy()
           for s, m in zip(sq_sums, modules)]
    return np.concatenate(out)


def _embedding(probe: Probe, modules: list[nn.Module], values: np.ndarray) -> np.ndarray:
    """``values`` of ``modules`` placed in network order; modules not covered (skip_layers) are NaN."""
    cuts = np.cumsum([m.weight.shape[0] for m in modules])[:-1]
    covered = dict(zip(modules, np.split(values, cuts)))
    return np.concatenate([covered.get(m, np.full(m.weight.shape[0], np.nan)) for _, m in probe.fisher_modules()])


def _covered(probe: Probe, start: int) -> list[nn.Module]:
    return [m for _, m in probe.fisher_modules() if start == 0 or probe.stage_of(m) >= start]


def split_noise(half_a: np.ndarray, half_b: np.ndarray) -> float | None:
    """Expected seed-to-seed d_sym at the full budget from two independent half-budget estimates."""
    keep = ~(np.isnan(half_a) | np.isnan(half_b))
    if not keep.any() or not (half_a[keep].any() and half_b[keep].any()):
        return None
    return float(symmetric_rowwise(half_a[keep][None], half_b[keep][None])[0]) / 2.0


class _HalfSums:
    """Per-filter sums of squared gradients, kept separately for even and odd batches."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules = modules
        self.sums = [[torch.zeros(m.weight.shape[0], dtype=torch.float64, device=m.weight.device) for m in modules]
                     for _ in range(2)]
        self.counts = [0, 0]

    def add(self, batch: int, batch_sums: list[torch.Tensor], count: int) -> None:
        for s, b in zip(self.sums[batch % 2], batch_sums):
            s += b
        self.counts[batch % 2] += count

    def result(self, probe: Probe, meta: dict) -> FisherResult:
        total = [a + b for a, b in zip(*self.sums)]
        hessian = _embedding(probe, self.modules, filter_means(total, self.modules, sum(self.counts)))
        noise = None
        if min(self.counts) > 0:
            halves = [_embedding(probe, self.modules, filter_means(s, self.modules, c))
                      for s, c in zip(self.sums, self.counts)]
            noise = split_noise(*halves)
        return FisherResult(hessian, np.ones_like(hessian), meta, noise)


@register_estimator("montecarlo")
def montecarlo_fisher(probe: Probe, data: FisherData, config: Task2VecConfig, gen: torch.Generator) -> FisherResult:
    """The reference's batch-gradient Monte-Carlo Fisher (see the module docstring)."""
    acc = _HalfSums(_covered(probe, data.start))
    k = config.targets_per_forward
    steps_wanted = data.samples // data.batch_size
    steps = 0
    with norm_mode(probe, config.bn_mode):
        for batch, (x, _) in enumerate(data.epoch(math.ceil(steps_wanted / k))):
            draws = min(k, steps_wanted - steps)
            acc.add(batch, montecarlo_step(probe, x, acc.modules, draws, gen, start=data.start), draws)
            steps += draws
    return acc.result(probe, {"bn_mode": config.bn_mode, "fisher_steps": steps, "targets_per_forward": k})


def montecarlo_step(probe: Probe, x: torch.Tensor, modules: list[nn.Module], draws: int, gen: torch.Generator,
                    start: int = 0) -> list[torch.Tensor]:
    """One forward, ``draws`` target draws: per-filter sums of the squared batch-mean-loss gradient."""
    weights = [m.weight for m in modules]
    logits = probe(x, start=start)
    probs = logits.detach().float().softmax(dim=1)
    sums = [torch.zeros(w.shape[0], dtype=torch.float64, device=w.device) for w in weights]
    for j in range(draws):
        loss = F.cross_entropy(logits, sample_targets(probs, gen))
        grads = torch.autograd.grad(loss, weights, retain_graph=j < draws - 1)  # weights only: no .grad, no hooks
        for s, g in zip(sums, grads):
            g = g.reshape(g.shape[0], -1)
            s += torch.einsum("ij,ij->i", g, g)
    return sums


@register_estimator("montecarlo_exact")
def exact_fisher(probe: Probe, data: FisherData, config: Task2VecConfig, gen: torch.Generator) -> FisherResult:
    """Exact per-sample diagonal Fisher, one target draw per sample (see the module docstring)."""
    acc = _HalfSums(_covered(probe, data.start))
    mode = "batch_detached" if config.bn_mode == "train" else config.bn_mode
    with norm_mode(probe, mode), _Capture(acc.modules) as cap:
        for batch, (x, _) in enumerate(data.epoch()):
            acc.add(batch, exact_step(probe, x, cap, gen, start=data.start), x.shape[0])
    return acc.result(probe, {"bn_mode": mode, "fisher_samples_seen": sum(acc.counts)})


def exact_step(probe: Probe, x: torch.Tensor, cap: "_Capture", gen: torch.Generator,
               start: int = 0) -> list[torch.Tensor]:
    """Per-filter sums over the batch of per-sample squared gradients, targets ``y ~ softmax``."""
    logits = probe(x, start=start)
    y = sample_targets(logits.detach().float().softmax(dim=1), gen)
    loss = F.cross_entropy(logits, y, reduction="sum")
    deltas = torch.autograd.grad(loss, [cap.outputs[m] for m in cap.modules])  # no weight gradients computed
    sums = [per_sample_sq_norms(m, cap.inputs[m], d).sum(dim=0).double() for m, d in zip(cap.modules, deltas)]
    cap.clear()
    return sums


class _Capture:
    """Forward hooks keeping each covered module's input and output (outputs are cloned downstream,
    so later in-place ops such as ResNet's ``out += identity`` cannot overwrite them)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules = modules
        self.inputs: dict[nn.Module, torch.Tensor] = {}
        self.outputs: dict[nn.Module, torch.Tensor] = {}

    def __enter__(self) -> "_Capture":
        self.handles = [m.register_forward_hook(self._hook) for m in self.modules]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()
        self.clear()

    def clear(self) -> None:
        self.inputs.clear()
        self.outputs.clear()

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        self.inputs[module] = inputs[0].detach()
        self.outputs[module] = output
        return output.clone()


def per_sample_sq_norms(module: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """(N, out_channels): per-sample squared norm of each filter's weight gradient.

    ``x`` is the module's input and ``delta`` the gradient of the loss w.r.t. its output (both in the
    weight's dtype here, whatever the forward's autocast dtype).
    """
    x, delta = x.to(module.weight.dtype), delta.to(module.weight.dtype)
    if isinstance(module, nn.Conv2d):
        return conv_per_sample_sq_norms(module, x, delta)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        x_hat = (x - module.running_mean.view(shape)) * torch.rsqrt(module.running_var.view(shape) + module.eps)
        return (delta * x_hat).flatten(2).sum(dim=2).square()
    if isinstance(module, nn.Linear) and x.dim() == 2:
        return delta.square() * x.square().sum(dim=1, keepdim=True)
    raise NotImplementedError(f"per-sample Fisher of {type(module).__name__}")


def conv_per_sample_sq_norms(conv: nn.Conv2d, x: torch.Tensor, delta: torch.Tensor,
                             max_floats: int = 1 << 24) -> torch.Tensor:
    """(N, out_channels) per-sample |dL/dW[o]|^2 of a convolution.

    Ghost norm, when P (CKK + O) < O CKK (P output positions, CKK fan-in, O filters): per sample,
    sum_{p,q} delta[o,p] delta[o,q] <u_p, u_q> with u = unfold(x), in chunks of samples of at most
    ``max_floats`` temporaries. Otherwise the per-sample weight gradient itself, one sample at a
    time through the convolution's own weight-gradient kernel (faster than unfold + bmm on CPU).
    """
    if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise NotImplementedError("per-sample Fisher supports ungrouped, zero-padded convolutions")
    n, o = delta.shape[:2]
    p = delta.shape[2] * delta.shape[3]
    ckk = conv.weight[0].numel()
    if p * (ckk + o) >= o * ckk:
        rows = [conv2d_weight(x[i:i + 1], conv.weight.shape, delta[i:i + 1], conv.stride, conv.padding,
                              conv.dilation).flatten(1).square().sum(dim=1) for i in range(n)]
        return torch.stack(rows)
    chunk = max(1, min(n, max_floats // (ckk * p + p * p + o * p)))
    out = []
    for i in range(0, n, chunk):
        u = F.unfold(x[i:i + chunk], conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # (b, CKK, P)
        d = delta[i:i + chunk].flatten(2)  # (b, O, P)
        gram = u.transpose(1, 2) @ u  # (b, P, P)
        out.append(((d @ gram) * d).sum(dim=2))
    return torch.cat(out)
