"""Reading the ``distances`` table back into matrices (report, transfer summary): the vectorised
reader equals a plain loop over the rows, nulls and tasks outside the selection included."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from orchestrator.stages.distances import distance_matrices


def test_distance_matrices_equal_a_loop_over_the_rows() -> None:
    rng = np.random.default_rng(0)
    ids = [f"t{i}" for i in range(12)]
    rows = [(m, a, b) for m in ("montecarlo", "variational") for a in ids + ["other"] for b in ids]
    values = {c: [None if rng.random() < 0.1 else float(rng.random()) for _ in rows] for c in ("d_sym", "d_asym", "d_tax")}
    table = pa.table({"method": [r[0] for r in rows], "task_a": [r[1] for r in rows], "task_b": [r[2] for r in rows],
                      **values})
    chosen = ids[2:10][::-1]  # a subset, in another order
    got = distance_matrices(table, chosen, "montecarlo")
    pos = {t: i for i, t in enumerate(chosen)}
    for column, matrix in got.items():
        want = np.full((len(chosen), len(chosen)), np.nan)
        for r in table.to_pylist():
            if r["method"] == "montecarlo" and r["task_a"] in pos and r["task_b"] in pos:
                want[pos[r["task_a"]], pos[r["task_b"]]] = np.nan if r[column] is None else r[column]
        np.testing.assert_array_equal(matrix, want)
    assert np.isnan(distance_matrices(None, chosen, "montecarlo")["d_sym"]).all()
