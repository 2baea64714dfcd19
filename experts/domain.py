"""Domain embedding: the mean of the probe's penultimate activations over a task's images.

The baseline the Task2Vec paper compares against: it depends on p(x) only (labels are never
read), so tasks on the same images with different labels get the same domain embedding. Returned
as a ``TaskEmbedding`` with ``method="domain"`` (``hessian`` holds the mean activation, length
``probe.info.feature_dim``; ``scale`` is ones) so it can be stored and compared like the others.

Choice: batch-norm runs with its running statistics by default (``bn_mode="eval"``), so an
image's features do not depend on which other images share its batch; the images used are a
seeded random subset of ``max_samples``, through the dataset's own transform (its augmentation
runs inside ``torch.random.fork_rng`` seeded from ``seed``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from experts.backbones import Probe
from experts.task2vec import BnMode, TaskEmbedding, norm_mode

__all__ = ["domain_embedding"]


def domain_embedding(
    dataset: Dataset,
    probe: Probe,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    max_samples: int = 10_000,
    batch_size: int = 64,
    bn_mode: BnMode = "eval",
    num_workers: int = 0,
) -> TaskEmbedding:
    """Mean penultimate features (D,) of up to ``max_samples`` images of ``dataset``."""
    n_total = len(dataset)  # type: ignore[arg-type]
    if n_total == 0:
        raise ValueError("cannot embed an empty dataset")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_total, generator=gen)[:max_samples]
    batches = [b.tolist() for b in np.array_split(order.numpy(), -(-len(order) // batch_size))]
    net = copy.deepcopy(probe).to(device)
    total = torch.zeros(probe.info.feature_dim, dtype=torch.float64, device=device)
    with torch.random.fork_rng(devices=[]), torch.no_grad(), norm_mode(net, bn_mode):
        torch.manual_seed(seed)
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                            generator=torch.Generator().manual_seed(seed))
        for x, _ in loader:
            total += net.features(x.to(device)).double().sum(dim=0)
    mean = (total / len(order)).cpu().numpy().astype(np.float32)
    meta = {"bn_mode": bn_mode, "n_used": len(order), "probe_info": probe.info.as_dict(), "device": str(device)}
    return TaskEmbedding(mean, np.ones_like(mean), "domain", probe.info.name, probe.info.pretrained, n_total, seed, meta)
