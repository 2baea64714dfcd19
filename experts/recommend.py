"""Rank a run's experts for a new task by Task2Vec distance (what ``orchestrate recommend`` prints).

An expert's distance to the new task ``t`` is the mean over its training tasks ``a`` of ``d(a → t)``
(the same convention as the report's selection table): ``d_sym`` and
``d_asym(a → t) = d_sym(a, t) − α · d_sym(a, t0)``. The generic expert has no training task, so no
distance: it is listed last, as the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experts import distances as dist


@dataclass(frozen=True)
class RankedExpert:
    expert_id: str
    d_sym: float  # NaN for an expert without a training task with an embedding
    d_asym: float
    n_tasks: int  # training tasks with an embedding


def rank_experts(
    target: np.ndarray,
    library: np.ndarray,
    trivial: np.ndarray,
    expert_tasks: dict[str, list[int]],
    *,
    alpha: float,
    by: str = "asymmetric",
) -> list[RankedExpert]:
    """Experts sorted by ``d_asym`` (``by="asymmetric"``) or ``d_sym``, ascending; no-distance ones last.

    Args:
        target: ``(D,)`` embedding of the new task (same probe and Fisher method as ``library``).
        library: ``(N, D)`` embeddings of the run's tasks (NaN rows: no embedding).
        trivial: ``t0`` for the sources, ``(D,)`` or ``(N, D)`` (see ``distances.trivial_embedding``).
        expert_tasks: expert id → row indices in ``library`` of its training tasks (empty: generic).
        alpha: the run's ``distances.alpha``.
    """
    library = np.asarray(library, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)[None, :]
    if library.ndim != 2 or library.shape[1] != target.shape[1]:
        raise ValueError(f"the new embedding has length {target.shape[1]}, the run's have {library.shape[1:]}: "
                         "embed with the run's probe and method")
    d_sym = dist.symmetric(library, target)[:, 0]
    d_asym = dist.asymmetric(library, target, trivial=trivial, alpha=alpha, symmetric_matrix=d_sym[:, None])[:, 0]
    out = []
    for expert, rows in expert_tasks.items():
        rows = [r for r in rows if np.isfinite(d_sym[r])]
        if rows:
            out.append(RankedExpert(expert, float(d_sym[rows].mean()), float(d_asym[rows].mean()), len(rows)))
        else:
            out.append(RankedExpert(expert, float("nan"), float("nan"), 0))

    def order(r: RankedExpert) -> tuple[bool, float, str]:
        d = r.d_asym if by == "asymmetric" else r.d_sym
        return (not np.isfinite(d), d if np.isfinite(d) else 0.0, r.expert_id)

    return sorted(out, key=order)
