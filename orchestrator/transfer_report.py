"""Join a run's committed ``transfer`` rows with its ``distances``: what the report shows about D_ft.

Seeds are averaged per (source, target) pair (``experts.transfer_stats.pair_means``), then each pair
gets ``d_asym(source → target)`` and ``d_sym`` of one Fisher method. For ``orchestrate report``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from experts.transfer_stats import Correlation, PairStats, distance_vs_transfer, pair_means, scatter_plot
from orchestrator.commit import RunRecorder
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
    pairs = pair_means(transfer["source_task"].to_pylist(), transfer["target_task"].to_pylist(),
                       transfer["d_ft"].to_pylist())
    distances = recorder.read_committed("distances", stage="distances")
    lookup: dict[tuple[str, str], tuple[float, float]] = {}
    if distances is not None:
        rows = distances.filter(pc.equal(distances["method"], method))
        for a, b, ds, da in zip(rows["task_a"].to_pylist(), rows["task_b"].to_pylist(), rows["d_sym"].to_pylist(),
                                rows["d_asym"].to_pylist()):
            lookup[(a, b)] = (np.nan if ds is None else ds, np.nan if da is None else da)
    d_sym = np.array([lookup.get((p.source, p.target), (np.nan, np.nan))[0] for p in pairs])
    d_asym = np.array([lookup.get((p.source, p.target), (np.nan, np.nan))[1] for p in pairs])
    d_ft = np.array([p.d_ft_mean for p in pairs])
    return TransferSummary(pairs, d_asym, d_sym, distance_vs_transfer(d_asym, d_sym, d_ft))


def transfer_figure(summary: TransferSummary, path: Path, title: str = "") -> Path:
    return scatter_plot(summary.d_asym, summary.d_sym, np.array([p.d_ft_mean for p in summary.pairs]), path,
                        d_ft_std=np.array([p.d_ft_std for p in summary.pairs]), title=title)
