"""Expert selection (the meta-learning stage): who picks which expert, and how far from the best.

A meta-task is ``errors`` ``(T, E)``: the test error of expert e's linear head on task t, NaN where
the pair is not allowed (an expert fine-tuned on task t itself is excluded for t: a selector would
otherwise only have to recognise the task). Every selector returns one expert index per task; its
score is the **relative error increase of the meta-task**, ``(mean_t err[t, chosen] − mean_t err_opt[t])
/ mean_t err_opt[t]``: a ratio of means over tasks, ``err_opt[t]`` the best allowed error (brute force),
the denominator floored at ``EPS``. A ratio of means, not a mean of per-task ratios: on small test
splits some expert often reaches ``err_opt[t] = 0`` and per-task ratios explode (measured on the mini
sweep: +3,000 %). The CI is a percentile bootstrap over tasks (tasks resampled with replacement, the
ratio recomputed). Chance uses each task's expected error over the allowed experts, not a draw.

Model2Vec here: the expert's score for task t is ``−(d_asym(m_e → t) + b_e) / τ`` with one learned
bias ``b_e`` per expert and a temperature τ, trained with the k-way cross-entropy to predict the best
expert, k-fold over tasks (a task's own errors never train the biases that select its expert). This
is the paper's ``m_i = F_i + b_i`` linearised: the bias acts on the distance, not on the Fisher vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

EPS = 1e-3


@dataclass(frozen=True)
class SelectionRow:
    method: str
    n_tasks: int
    optimal_error: float  # mean over tasks of the brute-force best error
    relative_increase: float  # (mean_t err_selected − mean_t err_opt) / mean_t err_opt
    ci_low: float
    ci_high: float


def optimal(errors: np.ndarray) -> np.ndarray:
    """Brute-force best allowed expert per task."""
    return np.nanargmin(errors, axis=1)


def chosen_errors(errors: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """``(T,)`` error of each task's chosen expert; a choice that is not allowed (NaN) is an error."""
    picked = errors[np.arange(len(errors)), chosen]
    if np.isnan(picked).any():
        raise ValueError("a selector chose an expert that is not allowed for its task")
    return picked


def chance_errors(errors: np.ndarray) -> np.ndarray:
    """``(T,)`` expected error of an expert drawn uniformly among each task's allowed ones."""
    return np.nanmean(errors, axis=1)


def relative_increase(selected: np.ndarray, best: np.ndarray) -> float:
    """``(mean selected − mean best) / mean best`` over tasks (denominator floored at ``EPS``)."""
    return float((np.mean(selected) - np.mean(best)) / max(float(np.mean(best)), EPS))


def nearest(distance: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """The allowed expert with the smallest distance (NaN distances are never chosen)."""
    d = np.where(np.isnan(errors) | np.isnan(distance), np.inf, distance)
    if np.isinf(d).all(axis=1).any():
        raise ValueError("some task has no allowed expert with a distance")
    return d.argmin(axis=1)


def bootstrap_ci(selected: np.ndarray, best: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of :func:`relative_increase` with tasks resampled with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(selected), (n_boot, len(selected)))
    sel, opt = selected[idx].mean(1), best[idx].mean(1)
    ratios = (sel - opt) / np.maximum(opt, EPS)
    lo, hi = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def row(method: str, errors: np.ndarray, selected: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> SelectionRow:
    """One table row from the ``(T,)`` errors of a selector's choices (``errors``: the meta-task)."""
    best = np.nanmin(errors, axis=1)
    lo, hi = bootstrap_ci(selected, best, n_boot=n_boot, seed=seed)
    return SelectionRow(method, len(selected), float(best.mean()), relative_increase(selected, best), lo, hi)


def model2vec(d_asym: np.ndarray, errors: np.ndarray, *, folds: int = 5, steps: int = 300, lr: float = 0.05,
              seed: int = 0) -> np.ndarray:
    """Model2Vec's choice per task, each task scored by biases trained on the other folds only."""
    t = len(errors)
    order = np.random.default_rng(seed).permutation(t)
    chosen = np.empty(t, dtype=np.int64)
    for held in np.array_split(order, min(folds, t)):
        train = np.setdiff1d(order, held)
        bias, log_tau = _fit_bias(d_asym[train], errors[train], steps, lr, seed)
        scores = -(d_asym[held] + bias[None, :]) / np.exp(log_tau)
        chosen[held] = nearest(-scores, errors[held])
    return chosen


def _fit_bias(d: np.ndarray, errors: np.ndarray, steps: int, lr: float, seed: int) -> tuple[np.ndarray, float]:
    e = d.shape[1]
    if len(d) == 0:
        return np.zeros(e), 0.0
    torch.manual_seed(seed)
    allowed = torch.from_numpy(~(np.isnan(errors) | np.isnan(d)))
    dist = torch.from_numpy(np.nan_to_num(d, nan=0.0))
    target = torch.from_numpy(optimal(errors))
    bias = torch.zeros(e, dtype=torch.float64, requires_grad=True)
    log_tau = torch.tensor(float(np.log(np.nanstd(d) + 1e-6)), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([bias, log_tau], lr=lr)
    threads = torch.get_num_threads()
    # A (tasks x experts) problem is too small to share between threads: on a busy machine the thread
    # hand-offs cost 20x the work itself (130 s vs 5.6 s for one report at 120 tasks, 2 cores, load 20).
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            opt.zero_grad()
            logits = (-(dist + bias) / log_tau.exp()).masked_fill(~allowed, float("-inf"))
            torch.nn.functional.cross_entropy(logits, target).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return bias.detach().numpy(), float(log_tau.detach())


def selection_table(errors: np.ndarray, *, generic: int | None, d_sym: np.ndarray, d_asym: np.ndarray,
                    scores: dict[str, np.ndarray] | None = None, folds: int = 5, n_boot: int = 1000,
                    seed: int = 0) -> list[SelectionRow]:
    """Every selector's row for one meta-task; ``scores`` (higher = better) add one row each.

    Distance selectors choose among the experts with a distance (fine-tuned ones); a score
    selector among the experts with a score; the ImageNet row is the ``generic`` column.
    """
    rows = [row("Chance", errors, chance_errors(errors), n_boot=n_boot, seed=seed)]
    if generic is not None and not np.isnan(errors[:, generic]).any():
        rows.append(row("ImageNet", errors, chosen_errors(errors, np.full(len(errors), generic)), n_boot=n_boot, seed=seed))
    pick = {"Task2Vec": nearest(d_sym, errors), "Asym. Task2Vec": nearest(d_asym, errors),
            "Model2Vec": model2vec(d_asym, errors, folds=folds, seed=seed)}
    for name, values in (scores or {}).items():
        if not np.isnan(np.where(np.isnan(errors), 0.0, values)).any():
            pick[name] = nearest(-values, errors)
    rows += [row(name, errors, chosen_errors(errors, c), n_boot=n_boot, seed=seed) for name, c in pick.items()]
    return rows
