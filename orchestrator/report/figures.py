"""The report's figures: one function per figure, each ``(data, path) -> caption`` (matplotlib, Agg).

To add a section (e.g. a transfer-distance scatter), write one more function with that signature and
append it to ``FIGURES``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.cluster.hierarchy import dendrogram, linkage  # noqa: E402
from scipy.spatial.distance import squareform  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from orchestrator.report.data import RunData  # noqa: E402
from orchestrator.transfer_report import transfer_figure  # noqa: E402


def tsne(data: RunData, path: Path) -> str:
    tasks = [t for t in data.tasks if t in data.embeddings]
    x = np.stack([data.embeddings[t] for t in tasks])
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    xy = TSNE(n_components=2, perplexity=min(30.0, max(2.0, (len(tasks) - 1) / 3)), random_state=0,
              init="random").fit_transform(x)
    fig, ax = plt.subplots(figsize=(7, 5))
    groups = sorted({(data.source[t], data.group[t]) for t in tasks})
    markers = dict(zip(sorted({src for src, _ in groups}), "osD^v<>"))
    colours = plt.get_cmap("tab20")
    for k, (src, group) in enumerate(groups):
        m = np.array([(data.source[t], data.group[t]) == (src, group) for t in tasks])
        ax.scatter(xy[m, 0], xy[m, 1], label=f"{src}: {group}", s=30, marker=markers[src], color=colours(k % 20))
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_title("t-SNE of the task embeddings")
    _save(fig, path)
    return ("t-SNE of the L2-normalised Task2Vec embeddings: marker by source, colour by group "
            "(taxonomic class for iNat/CUB, attribute kind otherwise).")


def similarity(data: RunData, path: Path) -> str:
    d = np.nan_to_num((data.d_sym + data.d_sym.T) / 2, nan=1.0)
    np.fill_diagonal(d, 0.0)
    z = linkage(squareform(d, checks=False), method="average")
    fig, (top, ax) = plt.subplots(2, 1, figsize=(7, 8), gridspec_kw={"height_ratios": [1, 4]})
    order = dendrogram(z, ax=top, no_labels=True, color_threshold=0)["leaves"]
    top.axis("off")
    im = ax.imshow(d[np.ix_(order, order)], cmap="viridis_r")
    ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=ax, label="d_sym")
    _save(fig, path)
    return "Symmetric Task2Vec distances, tasks ordered by average-linkage clustering (dendrogram above)."


def norm_vs_error(data: RunData, path: Path) -> str:
    norm, err, which = norm_and_error(data)
    rho, p = spearmanr(norm, err)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(norm, err, s=20)
    ax.set_xlabel("embedding L2 norm"), ax.set_ylabel(f"{which} test error")
    ax.set_title(f"Spearman ρ = {rho:.2f} (p = {p:.2g})")
    _save(fig, path)
    return f"Embedding norm against the {which} test error: Spearman ρ = {rho:.3f}, p = {p:.3g}, {len(norm)} tasks."


def taxonomy(data: RunData, path: Path) -> str:
    tax, emb = taxonomic_pairs(data)
    if len(tax) < 3:
        return "No taxonomic distances in this run (no iNat/CUB pairs)."
    rho, p = spearmanr(tax, emb)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(tax, emb, s=10, alpha=0.6)
    ax.set_xlabel("taxonomic distance"), ax.set_ylabel("d_sym")
    ax.set_title(f"Spearman ρ = {rho:.2f} (p = {p:.2g})")
    _save(fig, path)
    return f"Taxonomic vs embedding distance over {len(tax)} iNat/CUB pairs: Spearman ρ = {rho:.3f}, p = {p:.3g}."


def error_distribution(data: RunData, path: Path) -> str:
    d = data.expert_distance(data.config.report.selector)
    fig, ax = plt.subplots(figsize=(max(5, 0.25 * len(data.tasks)), 4))
    for i in range(len(data.tasks)):
        err = data.errors[i]
        ax.scatter(np.full(np.isfinite(err).sum(), i), err[np.isfinite(err)], s=8, c="grey")
        cand = np.where(np.isfinite(err) & np.isfinite(d[i]), d[i], np.inf)
        if np.isfinite(cand).any():
            ax.scatter([i], [err[cand.argmin()]], marker="x", c="red", s=30)
    ax.set_xlabel("task"), ax.set_ylabel("head test error")
    _save(fig, path)
    return "Test error of every expert per task (grey); red ×: the expert the run's selector picks."


def transfer(data: RunData, path: Path) -> str:
    summary = data.transfer
    if summary is None or not summary.pairs:
        return "No transfer stage in this run (transfer.mode: off): no D_ft pairs measured."
    transfer_figure(summary, path, title="Task2Vec distance vs fine-tuning distance D_ft")
    c = summary.correlations
    return (f"D_ft(a → b) over {len(summary.pairs)} measured pairs (seeds averaged, bars: their spread). "
            f"Spearman ρ(d_asym, D_ft) = {c['d_asym'].rho:.2f} (p = {c['d_asym'].p_value:.2g}, "
            f"n = {c['d_asym'].n_pairs}); ρ(d_sym, D_ft) = {c['d_sym'].rho:.2f} (p = {c['d_sym'].p_value:.2g}).")


def norm_and_error(data: RunData) -> tuple[np.ndarray, np.ndarray, str]:
    """Embedding norm and test error of every task with both.

    The error is the generic expert's: a linear head on the probe, the network whose Fisher the
    embedding is (a head that fits the task with confidence gives a small Fisher). Without a generic
    expert in the run, the best error over experts. The third value names which.
    """
    g = data.experts.index(data.generic) if data.generic in data.experts else None
    err = data.errors[:, g] if g is not None else np.fmin.reduce(data.errors, axis=1)  # NaN-skipping min
    rows = [i for i, t in enumerate(data.tasks) if t in data.embeddings and np.isfinite(err[i])]
    norm = np.array([np.linalg.norm(data.embeddings[data.tasks[i]]) for i in rows])
    return norm, err[rows], "probe's (generic expert's)" if g is not None else "best expert's"


def taxonomic_pairs(data: RunData) -> tuple[np.ndarray, np.ndarray]:
    iu = np.triu_indices(len(data.tasks), 1)
    tax, emb = data.d_tax[iu], data.d_sym[iu]
    keep = np.isfinite(tax) & np.isfinite(emb)
    return tax[keep], emb[keep]


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


FIGURES: list[tuple[str, str, Callable[[RunData, Path], str]]] = [
    ("tsne.png", "Task embeddings", tsne),
    ("similarity.png", "Task similarity", similarity),
    ("norm_vs_error.png", "Embedding norm and difficulty", norm_vs_error),
    ("taxonomy.png", "Taxonomic and embedding distance", taxonomy),
    ("errors.png", "Experts' errors per task", error_distribution),
    ("transfer.png", "Task2Vec distance and transfer (D_ft)", transfer),
]
