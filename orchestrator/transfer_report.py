"""Join a run's committed ``transfer`` rows with its ``distances``: what the report shows about D_ft.

Seeds are averaged per (source, target) pair (``experts.transfer_stats.pair_means``), then each pair
gets ``d_asym(source → target)`` and ``d_sym`` of one Fisher method. For ``orchestrate report``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from experts.transfer_stats import Correlation, PairStats, distance_vs_transfer, pair_means, scatter_plot
from orchestrator.commit import RunRecorder
from orchestrator.stages.distances import distance_matrices
from orchestrator.store import ResultStore


@dataclass(frozen=True)
class TransferSummary:
    pairs: list[PairStats]
    d_asym: np.ndarray
    d_sym: np.ndarray
    correlations: dict[str, Correlation]


def transfer_summary(store: ResultStore, run_id: str, method: str) -> TransferSummary | None:
    """None when the run has no committed transfer rows."""
    recorder = RunRecorder(store, run_id)
    transfer = recorder.read_committed("transfer", stage="transfer")
    if transfer is None:
        return None
    ids = sorted(set(transfer["source_task"].to_pylist()) | set(transfer["target_task"].to_pylist()))
    d = distance_matrices(recorder.read_committed("distances", stage="distances"), ids, method, ("d_sym", "d_asym"))
    return summarise_transfer(transfer, ids, d["d_sym"], d["d_asym"])


def summarise_transfer(transfer: pa.Table, task_ids: list[str], d_sym: np.ndarray, d_asym: np.ndarray) -> TransferSummary:
    """Seeds averaged per pair, each pair's ``d_sym``/``d_asym(source → target)`` from ``(N, N)`` matrices
    over ``task_ids`` (NaN for a task outside them), and both Spearman correlations with D_ft."""
    pairs = pair_means(transfer["source_task"].to_pylist(), transfer["target_task"].to_pylist(),
                       transfer["d_ft"].to_pylist())
    pos = {t: i for i, t in enumerate(task_ids)}

    def per_pair(m: np.ndarray) -> np.ndarray:
        return np.array([m[pos[p.source], pos[p.target]] if p.source in pos and p.target in pos else np.nan
                         for p in pairs], dtype=np.float64)

    asym, sym = per_pair(d_asym), per_pair(d_sym)
    d_ft = np.array([p.d_ft_mean for p in pairs])
    return TransferSummary(pairs, asym, sym, distance_vs_transfer(asym, sym, d_ft))


def transfer_figure(summary: TransferSummary, path: Path, title: str = "") -> Path:
    return scatter_plot(summary.d_asym, summary.d_sym, np.array([p.d_ft_mean for p in summary.pairs]), path,
                        d_ft_std=np.array([p.d_ft_std for p in summary.pairs]), title=title)
