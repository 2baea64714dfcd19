"""How well Task2Vec distances predict the fine-tuning distance D_ft: pure statistics and one figure.

Inputs are plain arrays, one entry per measured (source, target) pair (seeds averaged first with
``pair_means``). Pairs with a missing value (NaN) in either variable are left out of that
correlation, and the count used is reported. The scatter is drawn with matplotlib's Agg backend
(no display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Correlation:
    rho: float  # Spearman's rank correlation (NaN with fewer than 3 pairs or a constant variable)
    p_value: float
    n_pairs: int  # pairs with both values present


@dataclass(frozen=True)
class PairStats:
    source: str
    target: str
    d_ft_mean: float
    d_ft_std: float  # spread over seeds (population std; 0 with one seed)
    n_seeds: int


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> Correlation:
    """Spearman ρ and its two-sided p between ``x`` and ``y`` over the entries where both are finite."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.shape} vs {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    n = int(keep.sum())
    if n < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return Correlation(float("nan"), float("nan"), n)
    result = stats.spearmanr(x[keep], y[keep])
    return Correlation(float(result.statistic), float(result.pvalue), n)


def distance_vs_transfer(d_asym: np.ndarray, d_sym: np.ndarray, d_ft: np.ndarray) -> dict[str, Correlation]:
    """``{"d_asym": ρ(d_asym, D_ft), "d_sym": ρ(d_sym, D_ft)}`` over the measured pairs."""
    return {"d_asym": spearman(d_asym, d_ft), "d_sym": spearman(d_sym, d_ft)}


def pair_means(sources: Sequence[str], targets: Sequence[str], d_ft: Sequence[float | None]) -> list[PairStats]:
    """Per (source, target): mean and spread of D_ft over its seeds (missing values left out), first-seen order."""
    grouped: dict[tuple[str, str], list[float]] = {}
    for a, b, d in zip(sources, targets, d_ft, strict=True):
        values = grouped.setdefault((a, b), [])
        if d is not None and np.isfinite(d):
            values.append(float(d))
    return [PairStats(a, b, float(np.mean(v)) if v else float("nan"), float(np.std(v)) if v else float("nan"), len(v))
            for (a, b), v in grouped.items()]


def scatter_plot(d_asym: np.ndarray, d_sym: np.ndarray, d_ft: np.ndarray, path: Path,
                 d_ft_std: np.ndarray | None = None, title: str = "") -> Path:
    """Two panels (d_asym and d_sym against D_ft, ρ in each title), written as PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    corr = distance_vs_transfer(d_asym, d_sym, d_ft)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, name, x in ((axes[0], "d_asym", d_asym), (axes[1], "d_sym", d_sym)):
        ax.errorbar(x, d_ft, yerr=d_ft_std, fmt="o", ms=4, alpha=0.8, capsize=2)
        c = corr[name]
        ax.set_title(f"{name}: Spearman ρ = {c.rho:.2f} (p = {c.p_value:.2g}, n = {c.n_pairs})", fontsize=9)
        ax.set_xlabel(f"{name}(source → target)")
    axes[0].set_ylabel("D_ft(source → target)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
