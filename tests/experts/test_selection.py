from __future__ import annotations

import numpy as np
import pytest

from experts.selection import (bootstrap_ci, chance_increase, model2vec, nearest, per_task_increase, row)


def test_relative_increase_and_chance_by_hand() -> None:
    errors = np.array([[0.2, 0.4, np.nan], [0.5, 0.25, 0.75]])
    assert per_task_increase(errors, np.array([1, 1])) == pytest.approx([1.0, 0.0])
    assert chance_increase(errors) == pytest.approx([0.5, (1.0 + 0 + 2.0) / 3])
    with pytest.raises(ValueError, match="not allowed"):
        per_task_increase(errors, np.array([2, 0]))


def test_nearest_skips_excluded_experts() -> None:
    errors = np.array([[np.nan, 0.3, 0.4]])
    assert nearest(np.array([[0.0, 0.5, 0.2]]), errors).tolist() == [2]


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_more_tasks() -> None:
    rng = np.random.default_rng(0)
    small, big = rng.normal(1, 1, 20), rng.normal(1, 1, 2000)
    lo, hi = bootstrap_ci(small)
    assert lo < small.mean() < hi
    blo, bhi = bootstrap_ci(big)
    assert bhi - blo < (hi - lo) / 3


def test_model2vec_learns_an_expert_bias_from_other_tasks() -> None:
    # Expert 0 is best for every task, but the distance always points at expert 1: the bias must fix it.
    rng = np.random.default_rng(1)
    t, e = 40, 3
    errors = np.column_stack([np.full(t, 0.1), np.full(t, 0.5), np.full(t, 0.6)]) + rng.uniform(0, 0.01, (t, e))
    d = np.column_stack([np.full(t, 0.5), np.full(t, 0.2), np.full(t, 0.6)]) + rng.uniform(0, 0.05, (t, e))
    assert (nearest(d, errors) == 1).all()
    chosen = model2vec(d, errors, folds=4)
    assert (chosen == 0).mean() > 0.9
    r = row("Model2Vec", errors, per_task_increase(errors, chosen))
    assert r.relative_increase < row("Asym", errors, per_task_increase(errors, nearest(d, errors))).relative_increase
