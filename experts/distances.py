"""Distances between tasks, all pairs at once: a small registry of pure functions over arrays.

Every distance has the signature ``fn(X, Y=None, **options) -> np.ndarray`` and returns the float64
matrix ``M[i, j] = d(X[i] → Y[j])`` of shape ``(len(X), len(Y))``; ``Y=None`` means ``Y = X`` (and a
symmetric distance then returns an exactly symmetric matrix with a zero diagonal). What ``X`` holds
depends on the distance: Task2Vec hessians ``(N, D)`` for ``symmetric``, ``asymmetric``, ``cosine``,
``correlation``, ``kl``; mean probe activations for ``domain``; taxonomy paths for ``taxonomic``.
A row of NaN (an embedding that is missing) gives a row and a column of NaN.

The normalised cosine ``d_sym`` is the expensive one (1,460² pairs × 17,024 filters). It is not a
matrix product, because each coordinate is divided by ``a_k + b_k`` of its own pair, so it runs in a
small C kernel (AVX2, compiled on first use with the system C compiler, cached on disk) that
evaluates every pair exactly in float32 with float64 sums; where the kernel is unavailable (no
compiler, not x86-64, or ``device`` is a GPU) the same sums run blocked in torch (fast on a GPU,
about 40 s for the full matrix on two CPU cores; see experts/normcos.py). Not here: reading
embeddings from Parquet, choosing which embeddings may be compared (never mix estimators in one
matrix: the caller's job).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Literal

import numpy as np
import torch

from experts.normcos import normcos_sums

log = logging.getLogger(__name__)

DistanceFn = Callable[..., np.ndarray]
_DISTANCES: dict[str, DistanceFn] = {}

#: The paper's weight of the "complexity" term of the asymmetric distance (ResNet-34 probe).
DEFAULT_ALPHA = 0.15


def register_distance(name: str) -> Callable[[DistanceFn], DistanceFn]:
    def decorate(fn: DistanceFn) -> DistanceFn:
        if name in _DISTANCES:
            raise ValueError(f"distance {name!r} registered twice")
        _DISTANCES[name] = fn
        return fn

    return decorate


def list_distances() -> list[str]:
    return sorted(_DISTANCES)


def get_distance(name: str) -> DistanceFn:
    try:
        return _DISTANCES[name]
    except KeyError:
        raise KeyError(f"unknown distance {name!r}; known: {', '.join(list_distances())}") from None


# ----------------------------------------------------------------------------------------------
# Normalised (symmetric) cosine and the asymmetric distance
# ----------------------------------------------------------------------------------------------


@register_distance("symmetric")
def symmetric(
    X: np.ndarray,
    Y: np.ndarray | None = None,
    *,
    backend: Literal["auto", "native", "torch"] = "auto",
    device: str | torch.device = "cpu",
    num_threads: int | None = None,
) -> np.ndarray:
    """Normalised cosine distance ``d_sym(a, b) = cos_dist(a/(a+b), b/(a+b))``, element-wise division.

    Coordinates where ``a_k + b_k = 0`` count as 0 in both vectors: the limit ε → 0 of the
    reference's ``a/(a+b+ε)``. Unlike the reference's absolute ε = 1e-8 (which quietly discounts
    every coordinate below ~1e-8), this makes the distance invariant to rescaling both embeddings
    together and to any per-filter scale shared by all tasks. An all-zero embedding gives NaN.

    Args:
        X: ``(N, D)`` non-negative hessians (one Task2Vec embedding per row).
        Y: ``(M, D)`` or None for ``X`` against itself.
        backend: ``native`` (the C kernel on CPU), ``torch`` (blocked torch on ``device``), or
            ``auto``: native on CPU when it can be built, else torch.
        device: where the torch backend runs (a GPU makes it fast).
        num_threads: threads of the native kernel; default: the CPUs this process may use.

    Returns:
        ``(N, M)`` float64. Each coordinate is evaluated in float32 and summed in float64: the
        error against float64 is ~1e-7 (benchmarks/results/distances.md), ≤ 1e-5 in the tests'
        worst case (one task's Fisher 10⁴× another's in every filter).
    """
    X, Y, same = _pair(X, Y)
    missing = (mx := _missing_rows(X)), (mx if same else _missing_rows(Y))
    uu, vv, uv = normcos_sums(_zero_rows(X, missing[0]), None if same else _zero_rows(Y, missing[1]),
                               backend=backend, device=device, num_threads=num_threads)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 1.0 - uv / np.sqrt(uu * vv)
    d = np.clip(d, 0.0, 1.0)  # non-negative vectors: the cosine lies in [0, 1]; NaN stays NaN
    if same:
        # The kernel filled the upper triangle; d_sym is symmetric, so mirror it.
        d = np.triu(d) + np.triu(d, 1).T
        np.fill_diagonal(d, np.where(np.isnan(np.diag(d)), np.nan, 0.0))
    return _mask_missing(d, *missing)


def symmetric_rowwise(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``d_sym(A[i], B[i])`` for each row (``B`` may be one row, broadcast), float64, exact.

    Used for the distance of every task to the trivial embedding. Same convention as
    :func:`symmetric` for coordinates where both are zero.
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.broadcast_to(np.asarray(B, dtype=np.float64), A.shape)
    out = np.empty(A.shape[0])
    step = max(1, 2**20 // max(1, A.shape[1]))  # blocks of rows: bounded temporaries
    for i in range(0, A.shape[0], step):
        a, b = A[i:i + step], B[i:i + step]
        s = a + b
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(s > 0, 1.0 / s, 0.0)
            u, v = a * t, b * t
            out[i:i + step] = 1.0 - (u * v).sum(1) / np.sqrt((u * u).sum(1) * (v * v).sum(1))
    return np.clip(out, 0.0, 1.0)


def noise_floor(noise: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
    """``(N, M)`` d_sym that estimator noise alone gives between rows: ``(noise[i] + other[j]) / 2``.

    ``noise[i]`` is embedding i's own estimate of its distance to an independent run of the same task
    (``TaskEmbedding.noise``: the seed-to-seed d_sym). For small noise d_sym adds the two vectors'
    relative variances, so two runs of one task with noise levels n_a and n_b lie (n_a + n_b) / 2
    apart on average. NaN where either estimate is missing. ``other=None``: ``noise`` against itself.
    """
    a = np.asarray(noise, dtype=np.float64)
    b = a if other is None else np.asarray(other, dtype=np.float64)
    return (a[:, None] + b[None, :]) / 2.0


def above_noise_floor(d_sym: np.ndarray, floor: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """Which distances stand above their noise floor: ``d_sym > factor * floor`` (element-wise, bool).

    ``factor`` leaves room for the spread of the noise itself (a single seed-to-seed d_sym scatters
    around its mean; benchmarks/bench_task2vec_noise.py prints that spread): 2 calls a distance real
    only when two runs of one task should rarely be that far apart (a default to revisit with the
    benchmark's figures). False where either value is NaN (no estimate:
    nothing can be claimed), so report both ``floor`` and this mask.
    """
    d, f = np.broadcast_arrays(np.asarray(d_sym, dtype=np.float64), np.asarray(floor, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(d) | np.isnan(f), False, d > factor * f)


@register_distance("asymmetric")
def asymmetric(
    X: np.ndarray,
    Y: np.ndarray | None = None,
    *,
    trivial: np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    symmetric_matrix: np.ndarray | None = None,
    **symmetric_options: object,
) -> np.ndarray:
    """``d_asym(a → b) = d_sym(a, b) − α · d_sym(a, t0)``: rows are sources (experts' tasks), columns targets.

    The subtracted term favours sources far from the trivial embedding (complex tasks make better
    experts); to pick an expert for target ``j``, take the row minimising column ``j``.

    Args:
        X: ``(N, D)`` source hessians. Y: ``(M, D)`` target hessians, or None for ``X``.
        trivial: the trivial embedding ``t0``: ``(D,)``, or ``(N, D)`` with one per source (the
            variational prior differs per task); see :func:`trivial_embedding`.
        alpha: weight of the complexity term (0.15 for a ResNet-34 probe, from the thesis).
        symmetric_matrix: ``d_sym(X, Y)`` if already computed (saves the expensive part).
        **symmetric_options: passed to :func:`symmetric` otherwise.
    """
    d = symmetric(X, Y, **symmetric_options) if symmetric_matrix is None else symmetric_matrix
    t0 = np.asarray(trivial)
    X = np.asarray(X)
    if t0.shape not in ((X.shape[1],), X.shape):
        raise ValueError(f"trivial must have shape ({X.shape[1]},) or {X.shape}, got {t0.shape}")
    if t0.ndim == 1:  # one t0 for all: a (N, 1) block of the fast all-pairs kernel
        to_trivial = symmetric(X, t0[None, :], **symmetric_options)[:, 0]
    else:
        to_trivial = symmetric_rowwise(X, t0)
    return d - alpha * to_trivial[:, None]


def trivial_embedding(
    *,
    estimator: Literal["variational", "montecarlo"],
    prior_precision: np.ndarray | None = None,
    library: np.ndarray | None = None,
) -> np.ndarray:
    """The embedding ``t0`` of a task that carries no information, for the asymmetric distance.

    - ``variational``: the prior. With no data the posterior precision of every filter equals the
      prior precision, so ``t0 = prior_precision`` (the embedding's ``scale`` vector,
      ``exp(−loglambda2)`` expanded to filters; ``(D,)`` or ``(N, D)``, one prior per task).
    - ``montecarlo``: there is no prior; an uninformative task's Fisher is ≈ 0 (its head learns to
      ignore the features), whose normalised cosine to anything is undefined. We take the per-filter
      mean of the library's embeddings (same probe, same estimator; NaN rows skipped): "the typical
      task". ``d_sym(a, t0)`` then measures how atypical ``a`` is rather than how complex; α tuned
      for the variational prior does not carry over.

    Returns:
        float64 ``(D,)`` (or ``(N, D)`` for per-task priors), strictly positive where defined.
    """
    if estimator == "variational":
        if prior_precision is None:
            raise ValueError("trivial_embedding(estimator='variational') needs prior_precision (the scale vector)")
        t0 = np.array(prior_precision, dtype=np.float64)
        if not (np.isfinite(t0).all() and (t0 > 0).all()):
            raise ValueError("prior_precision must be finite and > 0 (it is exp(-loglambda2))")
        return t0
    if estimator == "montecarlo":
        if library is None:
            raise ValueError("trivial_embedding(estimator='montecarlo') needs library, the (N, D) embeddings")
        lib = np.asarray(library, dtype=np.float64)
        rows = lib[~_missing_rows(lib)]
        if rows.shape[0] == 0:
            raise ValueError("library has no complete embedding to average")
        return rows.mean(axis=0)
    raise ValueError(f"unknown estimator {estimator!r}; known: montecarlo, variational")


# ----------------------------------------------------------------------------------------------
# Distances that are matrix products
# ----------------------------------------------------------------------------------------------


@register_distance("cosine")
def cosine(X: np.ndarray, Y: np.ndarray | None = None) -> np.ndarray:
    """Plain cosine distance ``1 − <a, b>/(|a||b|)`` of the rows (hessians, or any vectors)."""
    X, Y, same = _pair(X, Y)
    missing = _missing_rows(X), _missing_rows(Y)
    nx, ny = (_unit_rows(np.where(m[:, None], 0, Z)) for m, Z in zip(missing, (X, Y)))
    d = 1.0 - nx @ ny.T
    if same:
        d = (d + d.T) / 2
        np.fill_diagonal(d, np.where(np.isnan(np.diag(d)), np.nan, 0.0))
    return _mask_missing(d, *missing)


@register_distance("domain")
def domain(X: np.ndarray, Y: np.ndarray | None = None) -> np.ndarray:
    """Domain-embedding baseline: cosine distance between mean probe activations (depends on p(x) only).

    Activations after a ReLU are non-negative, so the result lies in [0, 1].
    """
    return cosine(X, Y)


@register_distance("correlation")
def correlation(X: np.ndarray, Y: np.ndarray | None = None) -> np.ndarray:
    """``1 − Pearson correlation`` of the rows (the cosine of the row-centred vectors)."""
    X, Y, same = _pair(X, Y)
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    Xc = X - X.mean(1, keepdims=True)
    return cosine(Xc) if same else cosine(Xc, Y - Y.mean(1, keepdims=True))


@register_distance("kl")
def kl(X: np.ndarray, Y: np.ndarray | None = None) -> np.ndarray:
    """``KL(N(0, 1/a) ‖ N(0, 1/b))`` summed over filters: the implied diagonal Gaussian posteriors.

    ``½ Σ_k (b_k/a_k − 1 + log(a_k/b_k))``, asymmetric (rows → columns), exact as one matrix product.
    Hessians must be > 0. (The reference's ``kl`` takes an element-wise max of both directions,
    which is no matrix product; symmetrise with ``(M + M.T)/2`` if needed.)
    """
    X, Y, _ = _pair(X, Y)
    missing = _missing_rows(X), _missing_rows(Y)
    X, Y = (np.where(m[:, None], 1.0, Z.astype(np.float64)) for m, Z in zip(missing, (X, Y)))
    if (X <= 0).any() or (Y <= 0).any():
        raise ValueError("kl needs strictly positive hessians (variances 1/h)")
    logx, logy = np.log(X).sum(1), np.log(Y).sum(1)
    d = 0.5 * ((1.0 / X) @ Y.T - X.shape[1] + logx[:, None] - logy[None, :])
    return _mask_missing(d, *missing)


# ----------------------------------------------------------------------------------------------
# Taxonomic distance
# ----------------------------------------------------------------------------------------------

TaxonomyPaths = Collection[tuple[str, ...]] | None


@register_distance("taxonomic")
def taxonomic(X: Sequence[TaxonomyPaths], Y: Sequence[TaxonomyPaths] | None = None) -> np.ndarray:
    """``D_tax(a, b) = min over categories i ∈ a, j ∈ b of the tree distance d(i, j)`` (edges).

    Each task is the collection of its categories' paths from the root, e.g.
    ``("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Corvus", "Corvus corax")``;
    a node is a path prefix, all paths share the root ``()``. ``None`` or empty: no taxonomy, NaN.

    How: for a node n let ``h_a(n)`` be the depth below n of a's nearest category under n. Then
    ``D_tax(a, b) = min_n h_a(n) + h_b(n)`` (the minimum is reached at the lowest common ancestor),
    so each node updates the block of tasks that contain it at once.
    """
    same = Y is None
    ys = X if same else Y
    heights_x = [_node_heights(paths) for paths in X]
    heights_y = heights_x if same else [_node_heights(paths) for paths in ys]
    by_node_x, by_node_y = _invert(heights_x), _invert(heights_y)
    out = np.full((len(X), len(ys)), np.inf)
    for node, (ix, hx) in by_node_x.items():
        if node in by_node_y:
            iy, hy = by_node_y[node]
            block = np.ix_(ix, iy)
            out[block] = np.minimum(out[block], hx[:, None] + hy[None, :])
    out[np.isinf(out)] = np.nan  # tasks without taxonomy (every other pair shares the root)
    return out


def _node_heights(paths: TaxonomyPaths) -> dict[tuple[str, ...], int]:
    heights: dict[tuple[str, ...], int] = {}
    for path in paths or ():
        path = tuple(path)
        if not path or not all(isinstance(p, str) for p in path):
            raise ValueError(f"a taxonomy path must be a non-empty tuple of names, got {path!r}")
        for depth in range(len(path) + 1):
            node, h = path[:depth], len(path) - depth
            if heights.get(node, h + 1) > h:
                heights[node] = h
    return heights


def _invert(heights: list[dict[tuple[str, ...], int]]) -> dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]]:
    tasks: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}
    for i, h in enumerate(heights):
        for node, height in h.items():
            ids, hs = tasks.setdefault(node, ([], []))
            ids.append(i)
            hs.append(height)
    return {n: (np.array(i), np.array(h, dtype=np.float64)) for n, (i, h) in tasks.items()}


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _pair(X: np.ndarray, Y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, bool]:
    X = np.asarray(X)
    X = X if X.dtype in (np.float32, np.float64) else X.astype(np.float64)
    if X.ndim != 2:
        raise ValueError(f"embeddings must be a 2-d (N, D) array, got shape {X.shape}")
    if Y is None:
        return X, X, True
    Y = np.asarray(Y)
    Y = Y if Y.dtype in (np.float32, np.float64) else Y.astype(np.float64)
    if Y.ndim != 2 or Y.shape[1] != X.shape[1]:
        raise ValueError(f"X and Y must be (N, D) and (M, D), got {X.shape} and {Y.shape}")
    return X, Y, False


def _missing_rows(X: np.ndarray) -> np.ndarray:
    """Rows holding a NaN (missing embeddings). Raises on ±inf."""
    bad = np.flatnonzero(~np.isfinite(X.sum(axis=1)))  # one cheap pass; inspect only suspicious rows
    missing = np.zeros(X.shape[0], dtype=bool)
    for i in bad:
        if np.isnan(X[i]).any():
            missing[i] = True
        elif not np.isfinite(X[i]).all():
            raise ValueError(f"embedding row {i} holds an infinite value")
    return missing


def _zero_rows(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.where(rows[:, None], 0, X) if rows.any() else X


def _mask_missing(d: np.ndarray, missing_x: np.ndarray, missing_y: np.ndarray) -> np.ndarray:
    d[missing_x, :] = np.nan
    d[:, missing_y] = np.nan
    return d


def _unit_rows(X: np.ndarray) -> np.ndarray:
    X = X.astype(np.float64)
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, X / norm, np.nan)
