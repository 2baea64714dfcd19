"""Each forward-only score against a slow, literal implementation of its published formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experts.transferability import hscore, leep, logme, nce


def _slow_logme_column(f: np.ndarray, y: np.ndarray, iters: int) -> float:
    """Matrix form: A = αI + βFᵀF, m = βA⁻¹Fᵀy, γ = Σ βσ/(α+βσ), α ← γ/mᵀm, β ← (n−γ)/‖Fm−y‖²."""
    n, d = f.shape
    alpha = beta = 1.0
    sig = np.linalg.eigvalsh(f.T @ f)
    for _ in range(iters + 1):
        a = alpha * np.eye(d) + beta * f.T @ f
        m = beta * np.linalg.solve(a, f.T @ y)
        if _ == iters:
            break
        gamma = float((beta * sig / (alpha + beta * sig)).sum())
        alpha, beta = gamma / (m @ m + 1e-5), (n - gamma) / (np.sum((f @ m - y) ** 2) + 1e-5)
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    ev = (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - n / 2 * math.log(2 * math.pi)
          - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * m @ m - 0.5 * np.linalg.slogdet(a)[1])
    return ev / n


@pytest.mark.parametrize("n,d,k", [(40, 6, 3), (12, 20, 2)])
def test_logme_matches_the_matrix_form_of_the_evidence(n, d, k) -> None:
    rng = np.random.default_rng(n)
    f = rng.normal(size=(n, d))
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)
    fast = logme(f, y, max_iter=200, tol=1e-12)
    slow = np.mean([_slow_logme_column(f, (y == c).astype(float), 200) for c in range(k)])
    assert fast == pytest.approx(slow, rel=1e-6, abs=1e-8)


def test_logme_prefers_features_that_separate_the_classes() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    good = np.eye(3)[y] * 3 + rng.normal(size=(200, 3)) * 0.3
    bad = rng.normal(size=(200, 3))
    assert logme(good, y) > logme(bad, y)


def test_leep_matches_its_definition() -> None:
    rng = np.random.default_rng(1)
    n, z, k = 30, 4, 3
    logits = rng.normal(size=(n, z))
    theta = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, k, n)
    total = 0.0
    for i in range(n):
        s = 0.0
        for zz in range(z):
            p_yz = sum(theta[j, zz] for j in range(n) if y[j] == y[i]) / n
            p_z = sum(theta[j, zz] for j in range(n)) / n
            s += p_yz / p_z * theta[i, zz]
        total += math.log(s)
    assert leep(theta, y) == pytest.approx(total / n, rel=1e-10)


def test_nce_matches_its_definition() -> None:
    rng = np.random.default_rng(2)
    z = rng.integers(0, 5, 60)
    y = rng.integers(0, 2, 60)
    want = 0.0
    for zz in set(z.tolist()):
        for yy in set(y.tolist()):
            p = np.mean((z == zz) & (y == yy))
            if p > 0:
                want += p * math.log(p / np.mean(z == zz))
    assert nce(z, y) == pytest.approx(want, rel=1e-10)
    assert nce(y, y) == pytest.approx(0.0, abs=1e-12)  # Z determines Y: no conditional entropy


def test_hscore_matches_its_definition_with_the_shrinkage_covariance() -> None:
    from sklearn.covariance import ledoit_wolf

    rng = np.random.default_rng(3)
    f = rng.normal(size=(50, 4))
    y = rng.integers(0, 3, 50)
    fc = f - f.mean(0)
    g = np.stack([fc[y == y[i]].mean(0) for i in range(50)])
    between = sum(np.outer(g[i], g[i]) for i in range(50)) / 50
    cov = ledoit_wolf(fc, assume_centered=True)[0]
    assert hscore(f, y) == pytest.approx(np.trace(np.linalg.inv(cov) @ between), rel=1e-8)
    separated = f + 5 * np.eye(4)[y]
    assert hscore(separated, y) > hscore(f, y)


def test_scores_on_a_shared_basis_equal_the_scores_computed_alone() -> None:
    """A heads unit scores every binary task of a source on one ScoreBasis: same numbers as one by one."""
    from experts.transferability import all_scores, basis_scores, score_basis

    rng = np.random.default_rng(4)
    f = rng.normal(size=(80, 5))
    logits = rng.normal(size=(80, 7))
    basis = score_basis(f, logits)
    for y in (rng.integers(0, 2, 80), rng.integers(0, 4, 80), (f[:, 0] > 0).astype(int)):
        alone = {"logme": logme(f, y), "hscore": hscore(f, y), "leep": leep(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), y),
                 "nce": nce(logits.argmax(1), y)}
        assert basis_scores(basis, y) == pytest.approx(alone, rel=1e-10)
        assert all_scores(f, y, logits) == pytest.approx(alone, rel=1e-10)
    assert basis_scores(score_basis(f, None), y)["leep"] is None
    assert nce(logits.argmax(1) - 3, 2 * y - 5) == pytest.approx(nce(logits.argmax(1), y), rel=1e-12)  # any codes
    assert hscore(f, 2 * y) == pytest.approx(hscore(f, y), rel=1e-12)  # an empty class changes nothing
