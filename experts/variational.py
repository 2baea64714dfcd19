"""The variational ("robust") Fisher of Achille's thesis, as the reference implements it.

Each covered convolution (and VGG hidden linear layer) gets one log-variance per filter
(``logvar0``, shape (O,)) and a log prior precision scale per layer (``loglambda2``). With the
weights fixed, minimise over the variances, by Adam, the cross-entropy of the *true* labels under
weight noise w ~ N(w_hat, diag(exp(logvar))) plus beta * KL(N(w_hat, var) || N(0, lambda^2 I)):

    KL = sum_layers |w|^2 / lambda^2 + sum(var) / lambda^2 + k log lambda^2 - sum(log var) - k

(the reference's form: the factor 1/2 is dropped, k counts the layer's weights). The noise enters
through the local reparametrisation trick (Kingma et al. 2015): a convolution's output gets
``sqrt(conv(x^2 + 1e-2, var)) * eps`` added, eps ~ N(0, 1). Embedding: hessian = exp(-logvar0),
scale = exp(-loglambda2) repeated per filter. Reference settings: beta = 1e-7, 2 epochs of
``fisher_samples`` class-balanced draws, Adam lr 1e-2 (variances, prior) and 5e-4 (head).

Differences from the reference: the noise is added by forward hooks (the reference replaces each
layer's ``forward`` method, which is one reason a probe cannot be embedded twice) and drawn from an
explicit generator. As in the reference (its batch-norm parameters are handed to Adam but have
``requires_grad=False``), batch-norm parameters and the convolution weights stay frozen; the head
keeps training. Batch-norm statistics follow ``config.bn_mode``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from experts.backbones import Probe
from experts.task2vec import FisherData, FisherResult, Task2VecConfig, norm_mode, register_estimator

__all__ = ["VariationalLayer", "kl_divergence", "variational_fisher"]


class VariationalLayer(nn.Module):
    """The variational parameters of one layer, initialised from its weights like the reference."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        w = layer.weight.detach()
        var = w.flatten(1).var(dim=1)  # per-filter weight variance, the initial ballpark
        self.logvar0 = nn.Parameter((var * 0.05 + 1e-8).log())
        self.loglambda2 = nn.Parameter((w.pow(2).mean() + 1e-8).log())
        self.layer = layer

    def variance(self) -> torch.Tensor:
        """exp(logvar0) expanded to the weight's shape."""
        w = self.layer.weight
        return self.logvar0.exp().view(-1, *([1] * (w.dim() - 1))).expand_as(w)


def kl_divergence(layers: list[VariationalLayer]) -> torch.Tensor:
    """The reference's KL term (without the 1/2), summed over layers."""
    total = torch.zeros((), device=layers[0].logvar0.device)
    for v in layers:
        w = v.layer.weight
        fan = w[0].numel()
        lam2 = v.loglambda2.exp()
        total = total + (w.pow(2).sum() / lam2 + fan * v.logvar0.exp().sum() / lam2
                         + v.loglambda2 * w.numel() - fan * v.logvar0.sum() - w.numel())
    return total


def _noise_hook(v: VariationalLayer, gen: torch.Generator):  # type: ignore[no-untyped-def]
    def hook(layer: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
        if isinstance(layer, nn.Conv2d):
            out_var = F.conv2d(x.square() + 1e-2, v.variance(), None, layer.stride, layer.padding,
                               layer.dilation, layer.groups)
        else:
            out_var = F.linear(x.square() + 1e-2, v.variance())
        eps = torch.randn(out.shape, generator=gen, device=out.device, dtype=out.dtype)
        return out + out_var.sqrt() * eps

    return hook


@register_estimator("variational")
def variational_fisher(probe: Probe, data: FisherData, config: Task2VecConfig, gen: torch.Generator) -> FisherResult:
    """Variational Fisher over the covered conv/linear layers (see the module docstring)."""
    layers = [m for _, m in probe.variational_modules() if data.start == 0 or probe.stage_of(m) >= data.start]
    var_layers = [VariationalLayer(m) for m in layers]
    for p in probe.parameters():
        p.requires_grad_(False)
    for p in probe.classifier.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam([
        {"params": [p for v in var_layers for p in (v.logvar0, v.loglambda2)], "lr": config.variational_lr},
        {"params": list(probe.classifier.parameters()), "lr": config.variational_head_lr},
    ], betas=(0.9, 0.999))
    handles = [m.register_forward_hook(_noise_hook(v, gen)) for m, v in zip(layers, var_layers)]
    losses = []
    try:
        with norm_mode(probe, config.bn_mode), torch.enable_grad():
            for _ in range(config.variational_epochs):
                for x, y in data.epoch():
                    loss = F.cross_entropy(probe(x, start=data.start), y)
                    loss = loss + config.variational_beta * kl_divergence(var_layers)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    losses.append(float(loss.detach()))
    finally:
        for h in handles:
            h.remove()
    by_layer = {v.layer: v for v in var_layers}
    hess, scale = [], []
    for _, m in probe.variational_modules():
        v = by_layer.get(m)
        o = m.weight.shape[0]
        hess.append(np.exp(-v.logvar0.detach().double().cpu().numpy()) if v else np.full(o, np.nan))
        scale.append(np.full(o, np.exp(-float(v.loglambda2.detach())) if v else np.nan))
    return FisherResult(np.concatenate(hess), np.concatenate(scale),
                        {"bn_mode": config.bn_mode, "final_loss": float(np.mean(losses[-10:]))})
