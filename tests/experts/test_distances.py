"""Distances against slow double loops written from the definitions, on small random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cosine as scipy_cosine
from scipy.spatial.distance import correlation as scipy_correlation

from experts import normcos
from experts.distances import (
    asymmetric,
    get_distance,
    list_distances,
    symmetric,
    taxonomic,
    trivial_embedding,
)

BACKENDS = ["torch"] + (["native"] if normcos._native_kernel() is not None else [])


def slow_dsym(a: np.ndarray, b: np.ndarray) -> float:
    """d_sym from the definition, one pair, float64; 0/0 counts as 0 in both vectors."""
    s = a + b
    safe = np.where(s > 0, s, 1.0)
    u, v = np.where(s > 0, a / safe, 0.0), np.where(s > 0, b / safe, 0.0)
    return scipy_cosine(u, v)


@pytest.fixture
def hessians() -> np.ndarray:
    rng = np.random.default_rng(0)
    X = rng.random((9, 45)) ** 3  # odd sizes: exercises the kernel's padding
    X[2, :5] = 0.0  # zeros, some shared with row 3 (both zero: contributes nothing)
    X[3, :3] = 0.0
    X[:, 7] = 0.0  # a filter that is zero in every task
    X[4] *= 1e4  # a task with a much larger Fisher
    X[5, 10:20] *= 1e-6
    return X


def test_registry_names_and_unknown():
    assert {"symmetric", "asymmetric", "cosine", "correlation", "kl", "taxonomic", "domain"} <= set(list_distances())
    assert get_distance("symmetric") is symmetric
    with pytest.raises(KeyError, match="known: .*symmetric"):
        get_distance("nope")


@pytest.mark.parametrize("backend", BACKENDS)
def test_symmetric_matches_slow_double_loop(hessians, backend):
    ref = np.array([[slow_dsym(a, b) for b in hessians] for a in hessians])
    np.testing.assert_allclose(symmetric(hessians, backend=backend), ref, atol=1e-5, rtol=0)
    # X against another set (cdist), both directions of every pair computed
    np.testing.assert_allclose(symmetric(hessians, hessians[:5], backend=backend), ref[:, :5], atol=1e-5, rtol=0)
    np.testing.assert_allclose(symmetric(hessians[:3], hessians, backend=backend), ref[:3], atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_symmetric_properties(hessians, backend):
    d = symmetric(hessians, backend=backend)
    assert np.array_equal(d, d.T)
    assert np.all(np.diag(d) == 0)
    assert np.all((d >= 0) & (d <= 1))
    # invariant to rescaling both embeddings together and to a per-filter scale shared by all tasks
    scale = np.random.default_rng(1).random(hessians.shape[1]) * 100
    np.testing.assert_allclose(symmetric(hessians * scale * 3.0, backend=backend), d, atol=1e-5)


def test_native_and_torch_agree_and_threads_are_bitwise_identical():
    if "native" not in BACKENDS:
        pytest.skip(reason="no native kernel on this machine (no C compiler or not x86-64)")
    rng = np.random.default_rng(4)
    X = rng.random((67, 50)) ** 4  # several 32-row tiles, an odd row count, columns not a multiple of 8
    X[rng.random(X.shape) < 0.1] = 0.0
    one, three = symmetric(X, backend="native", num_threads=1), symmetric(X, backend="native", num_threads=3)
    assert np.array_equal(one, three)
    np.testing.assert_allclose(one, symmetric(X, backend="torch"), atol=1e-6)
    np.testing.assert_allclose(symmetric(X[:40], X[20:], backend="native"), one[:40, 20:], atol=1e-6)


def test_missing_rows_give_nan_and_bad_values_raise(hessians):
    X = hessians.copy()
    X[1] = np.nan
    d = symmetric(X)
    assert np.isnan(d[1]).all() and np.isnan(d[:, 1]).all()
    keep = [0, 2, 3, 4, 5, 6, 7, 8]
    np.testing.assert_allclose(d[np.ix_(keep, keep)], symmetric(hessians[keep]), atol=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        symmetric(-hessians)
    X[1] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        symmetric(X)


def test_asymmetric_against_definition_and_not_symmetric(hessians):
    t0 = trivial_embedding(estimator="montecarlo", library=hessians)
    d = asymmetric(hessians, trivial=t0, alpha=0.15)
    ref = np.array([[slow_dsym(a, b) - 0.15 * slow_dsym(a, t0) for b in hessians] for a in hessians])
    np.testing.assert_allclose(d, ref, atol=1e-5)
    assert not np.allclose(d, d.T)
    # reusing a precomputed d_sym gives the same matrix
    np.testing.assert_allclose(asymmetric(hessians, trivial=t0, symmetric_matrix=symmetric(hessians)), d, atol=1e-12)


def test_asymmetric_with_per_task_variational_prior(hessians):
    rng = np.random.default_rng(2)
    X = hessians[:, :20] + 0.1
    prior = np.repeat(rng.random((len(X), 1)) + 0.5, 20, axis=1)  # one precision per task (a layer)
    X[0] = prior[0]  # task 0 learned nothing: its posterior is its prior
    t0 = trivial_embedding(estimator="variational", prior_precision=prior)
    d = asymmetric(X, X[:4], trivial=t0, alpha=0.5)
    ref = np.array([[slow_dsym(a, b) - 0.5 * slow_dsym(a, t) for b in X[:4]] for a, t in zip(X, t0)])
    np.testing.assert_allclose(d, ref, atol=1e-5)
    np.testing.assert_allclose(d[0], symmetric(X[:1], X[:4])[0], atol=1e-6)  # d_sym(t0, t0) = 0


def test_trivial_embedding_variants_and_errors(hessians):
    X = hessians.copy()
    X[3] = np.nan
    np.testing.assert_allclose(trivial_embedding(estimator="montecarlo", library=X),
                               np.delete(hessians, 3, axis=0).mean(0))
    prior = np.full(45, 2.0)
    t0 = trivial_embedding(estimator="variational", prior_precision=prior)
    assert np.array_equal(t0, prior) and t0 is not prior
    with pytest.raises(ValueError, match="prior_precision"):
        trivial_embedding(estimator="variational")
    with pytest.raises(ValueError, match="> 0"):
        trivial_embedding(estimator="variational", prior_precision=np.zeros(3))
    with pytest.raises(ValueError, match="library"):
        trivial_embedding(estimator="montecarlo")
    with pytest.raises(ValueError, match="unknown estimator"):
        trivial_embedding(estimator="magic")  # type: ignore[arg-type]


def test_cosine_correlation_domain_kl_against_loops(hessians):
    X = hessians + 0.01
    Y = X[:4] * 1.5 + 0.2
    np.testing.assert_allclose(get_distance("cosine")(X, Y), [[scipy_cosine(a, b) for b in Y] for a in X], atol=1e-12)
    np.testing.assert_allclose(get_distance("domain")(X), [[scipy_cosine(a, b) for b in X] for a in X], atol=1e-12)
    np.testing.assert_allclose(get_distance("correlation")(X, Y),
                               [[scipy_correlation(a, b) for b in Y] for a in X], atol=1e-12)
    kl_ref = [[0.5 * np.sum(b / a - 1 + np.log(a / b)) for b in Y] for a in X]
    np.testing.assert_allclose(get_distance("kl")(X, Y), kl_ref, rtol=1e-10)
    assert np.allclose(np.diag(get_distance("kl")(X)), 0, atol=1e-9)


def test_taxonomic_on_a_hand_computed_tree():
    # root ─ A ─ A1 ─ s1, s2 ;  A ─ A2 ─ s3 ;  root ─ B ─ B1 ─ s4
    s1, s2, s3, s4 = ("A", "A1", "s1"), ("A", "A1", "s2"), ("A", "A2", "s3"), ("B", "B1", "s4")
    tasks = [{s1}, {s2, s4}, {s3}, {s4}, None, {("A", "A1")}]
    nan = np.nan
    expected = np.array([
        [0, 2, 4, 6, nan, 1],
        [2, 0, 4, 0, nan, 1],
        [4, 4, 0, 6, nan, 3],
        [6, 0, 6, 0, nan, 5],
        [nan] * 6,
        [1, 1, 3, 5, nan, 0],
    ])
    np.testing.assert_array_equal(taxonomic(tasks), expected)
    np.testing.assert_array_equal(taxonomic(tasks[:2], tasks[2:]), expected[:2, 2:])
    with pytest.raises(ValueError, match="non-empty tuple"):
        taxonomic([{()}])


def test_taxonomic_against_brute_force():
    rng = np.random.default_rng(3)
    leaves = [tuple(f"n{level}_{rng.integers(3)}" for level in range(rng.integers(2, 5))) for _ in range(30)]
    tasks = [set(leaves[k] for k in rng.choice(30, rng.integers(1, 4))) for _ in range(12)]

    def tree(p, q):
        common = next((k for k, (x, y) in enumerate(zip(p, q)) if x != y), min(len(p), len(q)))
        return len(p) + len(q) - 2 * common

    ref = [[min(tree(p, q) for p in a for q in b) for b in tasks] for a in tasks]
    np.testing.assert_array_equal(taxonomic(tasks), ref)


def test_asymmetric_rejects_a_misshapen_trivial_embedding(hessians):
    with pytest.raises(ValueError, match="trivial must have shape"):
        asymmetric(hessians, trivial=np.ones(3))


def test_native_kernel_builds_into_a_fresh_cache(tmp_path):
    if "native" not in BACKENDS:
        pytest.skip(reason="no native kernel on this machine (no C compiler or not x86-64)")
    import ctypes

    path = normcos._build(tmp_path, "fresh")
    assert path.parent == tmp_path and path.exists()
    assert ctypes.CDLL(str(path)).ts_normcos_supported() == 1
    assert normcos._build(tmp_path, "fresh") == path  # cached: not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left behind
