"""Many linear heads trained at once on one shared feature matrix.

The heads stage computes features once per (expert, image group) and then fits every task's linear
classifier on them. All heads of a call live in one padded weight tensor (the T heads' ``(D, Kmax)``
matrices, stored ``(D, T, Kmax)`` so the forward pass is one matrix product): a class mask hides the
logits a task does not have, a sample mask per task selects its training images, and the loss is
the sum over tasks of each task's own mean cross-entropy. Two-class chunks (DeepFashion's 1,000
attributes) skip the padding and use ``softplus(margin)``, the same loss computed more cheaply. Every task has its own
parameters, Adam's state is per element and its step count is shared by construction, so a head
trained with a thousand others follows the same trajectory as trained alone (a test checks this).
We avoid L-BFGS for that reason: its line search takes one step length for all parameters, which
would couple the tasks. Heads start at zero, so training is deterministic; the only randomness is
the image order of the optional mini-batches, drawn from ``config.seed`` independently of tasks.

Not here: computing the features (experts/features.py), choosing tasks, writing results.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class HeadSpec:
    """One task's head on the shared images.

    Attributes:
        task_id: carried into the result.
        targets: ``(N,)`` integer labels, one per row of the feature matrix: local labels 0..K-1
            (binary tasks: 0/1). Entries of images the task does not use are ignored (e.g. -1).
        train_idx, test_idx: rows the task trains and is evaluated on.
        n_classes: K; default ``1 + max label`` over the task's rows (at least 2).
    """

    task_id: str
    targets: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    n_classes: int | None = None


@dataclass(frozen=True)
class HeadTrainConfig:
    """Optimisation of the heads: Adam for a fixed number of epochs.

    ``batch_size=None`` is full batch (one step per epoch, the exact gradient, accumulated over
    slices of images to bound memory). With a batch size, every step draws the same images for
    every task (one permutation per epoch from ``seed``); each task averages over its own rows in it.
    """

    epochs: int = 100
    lr: float = 0.01
    weight_decay: float = 1e-4
    batch_size: int | None = None
    standardize: bool = True
    seed: int = 0
    max_params_per_chunk: int = 2**26  # T×D×Kmax of one group of heads trained together
    max_logits_per_pass: int = 2**24  # images × T × Kmax of one forward slice


@dataclass(frozen=True)
class HeadResult:
    task_id: str
    n_classes: int
    n_train: int
    n_test: int
    train_error: float
    test_error: float  # NaN when n_test == 0
    train_loss: float  # mean cross-entropy of the final head on its training rows
    test_loss: float


def train_heads(
    features: torch.Tensor,
    specs: Sequence[HeadSpec],
    *,
    config: HeadTrainConfig = HeadTrainConfig(),
    device: str | torch.device = "cpu",
) -> list[HeadResult]:
    """Train one linear softmax head per spec on ``features`` and report its errors, in spec order.

    Args:
        features: ``(N, D)`` one row per image of the group (the output of ``extract_features``).
        specs: the tasks; they may use different rows and numbers of classes.
        config: optimisation settings. Features are standardised once with the mean and standard
            deviation of all N rows (label-free, the same for every task).
        device: where to train.
    """
    device = torch.device(device)
    X = features.to(device=device, dtype=torch.float32)
    if config.standardize:
        X = (X - X.mean(0)) / X.std(0).clamp_min(1e-6)
    tasks = [_validated(spec, X.shape[0]) for spec in specs]
    if config.batch_size is None and _alone_is_cheaper(tasks, X.shape[0], X.shape[1], config.max_params_per_chunk):
        return [_train_alone(X, task, config, device) for task in tasks]
    results: list[HeadResult | None] = [None] * len(tasks)
    for chunk in _chunks(tasks, X.shape[1], config.max_params_per_chunk):
        batch = _Batch.build([tasks[i] for i in chunk], X.shape[0], device)
        W, b = _fit(X, batch, config)
        for i, result in zip(chunk, _evaluate(X, batch, W, b, config)):
            results[i] = result
    return results  # type: ignore[return-value]


@dataclass(frozen=True)
class _Task:
    spec: HeadSpec
    n_classes: int

    @property
    def n_rows(self) -> int:
        return len(self.spec.train_idx) + len(self.spec.test_idx)


def _alone_is_cheaper(tasks: list[_Task], n: int, dim: int, max_params: int) -> bool:
    """Whether training each task on its own rows computes far fewer logits than the padded chunks.

    Chunks compute every head on every row (``N × T × Kmax``): right when tasks share their images
    (iMaterialist, DeepFashion), quadratic in tasks when each owns its images (iNat and CUB orders:
    ``N`` grows with ``T``). Training alone computes ``Σ n_t × K_t``.
    """
    padded = sum(n * len(c) * max(tasks[i].n_classes for i in c) for c in _chunks(tasks, dim, max_params))
    alone = sum(task.n_rows * task.n_classes for task in tasks)
    return 4 * alone < padded


def _train_alone(X: torch.Tensor, task: _Task, config: HeadTrainConfig, device: torch.device) -> HeadResult:
    """One head on its own rows of ``X``: with a full batch, the same optimisation as among the others."""
    train, test = np.asarray(task.spec.train_idx), np.asarray(task.spec.test_idx)
    rows = np.unique(np.concatenate([train, test]))
    local = _Task(HeadSpec(task.spec.task_id, np.asarray(task.spec.targets)[rows], np.searchsorted(rows, train),
                           np.searchsorted(rows, test), task.n_classes), task.n_classes)
    batch = _Batch.build([local], len(rows), device)
    x = X[torch.from_numpy(rows).to(X.device)]
    W, b = _fit(x, batch, config)
    return _evaluate(x, batch, W, b, config)[0]


def _validated(spec: HeadSpec, n: int) -> _Task:
    targets = np.asarray(spec.targets)
    if targets.shape != (n,):
        raise ValueError(f"task {spec.task_id}: targets has shape {targets.shape}, expected ({n},), one per image")
    train, test = np.asarray(spec.train_idx), np.asarray(spec.test_idx)
    if len(train) == 0:
        raise ValueError(f"task {spec.task_id}: no training images")
    rows = np.concatenate([train, test]).astype(np.int64)
    if rows.min() < 0 or rows.max() >= n:
        raise ValueError(f"task {spec.task_id}: image index out of range 0..{n - 1}")
    used = targets[rows]
    k = spec.n_classes if spec.n_classes is not None else max(2, int(used.max()) + 1)
    if used.min() < 0 or used.max() >= k:
        raise ValueError(f"task {spec.task_id}: labels must lie in 0..{k - 1} on its train/test images")
    return _Task(spec, k)


def _chunks(tasks: list[_Task], dim: int, max_params: int) -> Iterator[list[int]]:
    """Groups of task indices whose padded heads fit ``max_params``; similar class counts together."""
    order = sorted(range(len(tasks)), key=lambda i: tasks[i].n_classes)
    chunk: list[int] = []
    for i in order:
        kmax = tasks[i].n_classes  # the largest so far: tasks come in increasing class count
        if chunk and (len(chunk) + 1) * dim * kmax > max_params:
            yield chunk
            chunk = []
        chunk.append(i)
    if chunk:
        yield chunk


@dataclass(frozen=True)
class _Batch:
    """The padded problem of one chunk of T tasks (compact dtypes: DeepFashion has 289k × 1,000)."""

    targets: torch.Tensor  # (N, T) int16/int32 local labels, 0 where a task does not use the image
    train_mask: torch.Tensor  # (N, T) bool
    test_mask: torch.Tensor  # (N, T) bool
    class_mask: torch.Tensor  # (T, Kmax) bool, True for the task's real classes
    tasks: list[_Task]

    @property
    def padding(self) -> torch.Tensor | None:
        """The class mask where some task has fewer than Kmax classes, else None (nothing to hide)."""
        return None if self._all_real else self.class_mask

    @property
    def _all_real(self) -> bool:
        return len({task.n_classes for task in self.tasks}) == 1

    @staticmethod
    def build(tasks: list[_Task], n: int, device: torch.device) -> _Batch:
        t, kmax = len(tasks), max(task.n_classes for task in tasks)
        targets = np.zeros((n, t), dtype=np.int16 if kmax <= np.iinfo(np.int16).max else np.int32)
        train = np.zeros((n, t), dtype=bool)
        test = np.zeros((n, t), dtype=bool)
        for j, task in enumerate(tasks):
            tr, te = np.asarray(task.spec.train_idx), np.asarray(task.spec.test_idx)
            rows = np.concatenate([tr, te])
            targets[rows, j] = np.asarray(task.spec.targets)[rows]
            train[tr, j] = True
            test[te, j] = True
        class_mask = torch.arange(kmax)[None, :] < torch.tensor([task.n_classes for task in tasks])[:, None]
        return _Batch(torch.from_numpy(targets).to(device), torch.from_numpy(train).to(device),
                      torch.from_numpy(test).to(device), class_mask.to(device), tasks)


def _fit(X: torch.Tensor, batch: _Batch, config: HeadTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    n, dim = X.shape
    t, kmax = batch.class_mask.shape
    # All heads as one (D, T, Kmax) tensor: the (T, D, Kmax) stack stored so that the forward is one
    # plain matrix product X @ W.view(D, T·Kmax).
    W = torch.zeros(dim, t, kmax, device=X.device, requires_grad=True)
    b = torch.zeros(t, kmax, device=X.device, requires_grad=True)
    opt = torch.optim.Adam([{"params": [W], "weight_decay": config.weight_decay}, {"params": [b]}], lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(config.epochs):
        for rows in _steps(n, config.batch_size, generator):
            opt.zero_grad(set_to_none=False)
            # each task's mean over its own training rows in this step
            count = batch.train_mask[rows].sum(0).clamp_min(1).float()  # (T,)
            for part in _parts(rows, t * kmax, config.max_logits_per_pass):
                logits = _logits(X[part], W, b, batch.padding)
                nll = _nll(logits, batch.targets[part])  # (B, T)
                (nll * batch.train_mask[part] / count).sum().backward()
            opt.step()
    return W.detach(), b.detach()


def _logits(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
    """Every head on every image: ``(B, T, Kmax)``; a task's padded classes get −inf."""
    dim, t, kmax = W.shape
    logits = torch.addmm(b.view(1, t * kmax), x, W.view(dim, t * kmax)).view(-1, t, kmax)
    return logits if padding is None else logits.masked_fill(~padding, float("-inf"))


def _nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every image under every head, ``(B, T)``."""
    targets = targets.long()
    if logits.shape[-1] == 2:  # two classes: −log softmax = softplus(z_other − z_target), cheaper
        margin = logits[..., 1] - logits[..., 0]
        return F.softplus(torch.where(targets == 1, -margin, margin))
    logp = F.log_softmax(logits, dim=-1)
    return -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


Rows = slice | torch.Tensor


def _steps(n: int, batch_size: int | None, generator: torch.Generator) -> Iterator[Rows]:
    if batch_size is None or batch_size >= n:
        yield slice(0, n)  # full batch: contiguous slices, no gather
        return
    yield from torch.randperm(n, generator=generator).split(batch_size)


def _parts(rows: Rows, width: int, max_logits: int) -> Iterator[Rows]:
    """Split the rows of a step so that one forward holds at most ``max_logits`` logits."""
    start, stop = (rows.start, rows.stop) if isinstance(rows, slice) else (0, len(rows))
    step = max(1, max_logits // max(1, width))
    for a in range(start, stop, step):
        b = min(stop, a + step)
        yield slice(a, b) if isinstance(rows, slice) else rows[a:b]


def _evaluate(X: torch.Tensor, batch: _Batch, W: torch.Tensor, b: torch.Tensor,
              config: HeadTrainConfig) -> list[HeadResult]:
    t, kmax = batch.class_mask.shape
    sums = torch.zeros(4, t, dtype=torch.float64, device=X.device)  # train err, test err, train nll, test nll
    with torch.no_grad():
        for part in _parts(slice(0, X.shape[0]), t * kmax, config.max_logits_per_pass):
            logits = _logits(X[part], W, b, batch.padding)
            targets = batch.targets[part].long()
            nll = _nll(logits, targets).double()
            wrong = (logits.argmax(-1) != targets).double()
            train, test = batch.train_mask[part].double(), batch.test_mask[part].double()
            sums += torch.stack([(wrong * train).sum(0), (wrong * test).sum(0), (nll * train).sum(0), (nll * test).sum(0)])
    n_train = batch.train_mask.sum(0).cpu().numpy()
    n_test = batch.test_mask.sum(0).cpu().numpy()
    s = sums.cpu().numpy()
    return [
        HeadResult(task_id=task.spec.task_id, n_classes=task.n_classes, n_train=int(n_train[j]), n_test=int(n_test[j]),
                   train_error=float(s[0, j] / n_train[j]), test_error=_ratio(s[1, j], n_test[j]),
                   train_loss=float(s[2, j] / n_train[j]), test_loss=_ratio(s[3, j], n_test[j]))
        for j, task in enumerate(batch.tasks)
    ]


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else math.nan
