from __future__ import annotations

import numpy as np
import pytest

from experts.selection import (bootstrap_ci, chance_errors, chosen_errors, model2vec, nearest, relative_increase,
                                row)


def test_relative_increase_and_chance_by_hand() -> None:
    errors = np.array([[0.2, 0.4, np.nan], [0.5, 0.25, 0.75]])
    picked = chosen_errors(errors, np.array([1, 1]))
    assert picked == pytest.approx([0.4, 0.25])
    best = np.array([0.2, 0.25])
    assert relative_increase(picked, best) == pytest.approx((0.325 - 0.225) / 0.225)  # ratio of the means
    assert chance_errors(errors) == pytest.approx([0.3, 0.5])
    r = row("Chance", errors, chance_errors(errors))
    assert r.optimal_error == pytest.approx(0.225) and r.relative_increase == pytest.approx((0.4 - 0.225) / 0.225)
    with pytest.raises(ValueError, match="not allowed"):
        chosen_errors(errors, np.array([2, 0]))


def test_a_task_solved_perfectly_does_not_blow_up_the_increase() -> None:
    errors = np.array([[0.0, 0.1], [0.3, 0.3]])  # task 0: one expert is perfect
    assert relative_increase(chosen_errors(errors, np.array([1, 0])), np.array([0.0, 0.3])) == pytest.approx(0.05 / 0.15)


def test_nearest_skips_excluded_experts() -> None:
    errors = np.array([[np.nan, 0.3, 0.4]])
    assert nearest(np.array([[0.0, 0.5, 0.2]]), errors).tolist() == [2]


def test_bootstrap_ci_brackets_the_increase_and_shrinks_with_more_tasks() -> None:
    rng = np.random.default_rng(0)

    def meta(n):
        best = rng.uniform(0.1, 0.3, n)
        return best + rng.uniform(0, 0.2, n), best

    small, big = meta(20), meta(2000)
    lo, hi = bootstrap_ci(*small)
    assert lo < relative_increase(*small) < hi
    blo, bhi = bootstrap_ci(*big)
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
    r = row("Model2Vec", errors, chosen_errors(errors, chosen))
    assert r.relative_increase < row("Asym", errors, chosen_errors(errors, nearest(d, errors))).relative_increase
