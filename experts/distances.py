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
~10 min or more for the full matrix on two CPU cores). Not here: reading
embeddings from Parquet, choosing which embeddings may be compared (never mix estimators in one
matrix: the caller's job).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import threading
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import scipy.sparse
import torch

log = logging.getLogger(__name__)

DistanceFn = Callable[..., np.ndarray]
T = TypeVar("T")
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
    uu, vv, uv = _normcos_sums(_zero_rows(X, missing[0]), None if same else _zero_rows(Y, missing[1]),
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


# ----------------------------------------------------------------------------------------------
# The three sums behind d_sym: Σ u², Σ v², Σ uv with u = a/(a+b), v = b/(a+b)
# ----------------------------------------------------------------------------------------------

# Values more than 2^62 below their filter's maximum over X ∪ Y are treated as 0 (the native kernel
# multiplies two denominators, which must stay above float32's smallest normal number).
_FLUSH = 2.0**-62
_TILE = 32  # rows per tile side: a 32-row block of one 2,048-column chunk is 256 KiB (fits L2)


def _normcos_sums(X: np.ndarray, Y: np.ndarray | None, *, backend: str, device: str | torch.device,
                  num_threads: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Σu², Σv², Σuv for all pairs (float64 matrices); Y None: X against itself, upper triangle only."""
    if backend not in ("auto", "native", "torch"):
        raise ValueError(f"unknown backend {backend!r}; known: auto, native, torch")
    same = Y is None
    Xs, Ys = _scaled_float32(X, X if same else Y)
    on_cpu = torch.device(device).type == "cpu"
    lib = _native_kernel() if backend in ("auto", "native") and on_cpu else None
    if backend == "native" and lib is None:
        raise RuntimeError("the native d_sym kernel is unavailable here (needs x86-64 with AVX2 and a C compiler)")
    if lib is None:
        return _sums_torch(Xs, Ys, torch.device(device), same)
    # The kernel computes v = 1 − u, which is 1 (not 0) where a_k = b_k = 0: count those meanwhile
    # (in this thread, while the kernel's threads run) and remove them.
    (uu, vv, uv), joint_zeros = _sums_native(lib, Xs, Ys, same=same, num_threads=num_threads,
                                             meanwhile=lambda: _count_joint_zeros(Xs, Ys))
    return uu, vv - joint_zeros, uv


def _scaled_float32(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Divide each filter by its max over X ∪ Y (d_sym does not change), drop all-zero filters, float32."""
    if X.min(initial=0.0) < 0 or Y.min(initial=0.0) < 0:
        raise ValueError("the normalised cosine needs non-negative embeddings (Fisher diagonals)")
    colmax = np.maximum(X.max(axis=0, initial=0.0), Y.max(axis=0, initial=0.0))
    keep = colmax > 0
    inv = (1.0 / colmax[keep]).astype(np.float32)

    def scale(Z: np.ndarray) -> np.ndarray:
        Zs = np.multiply(Z[:, keep] if not keep.all() else Z, inv, dtype=np.float32)
        Zs[Zs < _FLUSH] = 0.0
        return Zs

    Xs = scale(X)
    return Xs, (Xs if Y is X else scale(Y))


def _count_joint_zeros(Xs: np.ndarray, Ys: np.ndarray) -> np.ndarray | float:
    """Number of filters where both embeddings of a pair are 0, ``(N, M)`` (or 0 if there are none)."""
    zx = Xs == 0
    zy = zx if Ys is Xs else Ys == 0
    density_x, density_y = zx.mean(), (zy.mean() if Ys is not Xs else zx.mean())
    if density_x == 0 or density_y == 0:
        return 0.0
    if max(density_x, density_y) < 0.05:  # Fisher zeros are rare: a sparse product is ~free
        sx = _sparse(zx)
        return (sx @ (sx if Ys is Xs else _sparse(zy)).T).toarray()
    cols = zx.any(axis=0) & zy.any(axis=0)
    return zx[:, cols].astype(np.float32) @ zy[:, cols].astype(np.float32).T  # exact: counts ≪ 2^24


def _sparse(mask: np.ndarray) -> scipy.sparse.csr_matrix:
    rows, cols = np.nonzero(mask)
    return scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=mask.shape)


def _sums_torch(Xs: np.ndarray, Ys: np.ndarray, device: torch.device,
                same: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same sums, blocked in torch (float32 dot products); ``same``: upper-triangle blocks only."""
    x = torch.from_numpy(Xs).to(device)
    y = x if same else torch.from_numpy(Ys).to(device)
    n, m, dim = x.shape[0], y.shape[0], x.shape[1]
    out = torch.zeros(3, n, m, dtype=torch.float64, device=device)
    bj = max(1, min(m, 64))
    budget = 2**22 if device.type == "cpu" else 2**27  # elements of one (bi, bj, D) float32 temporary
    bi = max(1, budget // max(1, bj * dim))
    for i in range(0, n, bi):
        a = x[i:i + bi, None, :]
        for j in range((i // bj) * bj if same else 0, m, bj):
            b = y[None, j:j + bj, :]
            t = (a + b).clamp_min_(torch.finfo(torch.float32).tiny).reciprocal_()  # 0 + 0 → u = v = 0
            u, v = a * t, b * t
            for k, (p, q) in enumerate(((u, u), (v, v), (u, v))):
                out[k, i:i + bi, j:j + bj] = torch.linalg.vecdot(p, q)
    uu, vv, uv = out.cpu().numpy()
    return uu, vv, uv


def _sums_native(lib: ctypes.CDLL, Xs: np.ndarray, Ys: np.ndarray, *, same: bool, num_threads: int | None,
                 meanwhile: Callable[[], T]) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], T]:
    n, m = Xs.shape[0], Ys.shape[0]
    xp, yp = _pad(Xs), (None if same else _pad(Ys))
    yp = xp if yp is None else yp
    rows_x, rows_y, dim = xp.shape[0], yp.shape[0], xp.shape[1]
    tiles = np.array([(i, min(i + _TILE, rows_x), j, min(j + _TILE, rows_y))
                      for i in range(0, rows_x, _TILE) for j in range(i if same else 0, rows_y, _TILE)],
                     dtype=np.int64).reshape(-1, 4)
    sums = np.zeros((3, rows_x, rows_y), dtype=np.float64)
    counter = np.zeros(1, dtype=np.int64)
    args = (xp.ctypes.data, yp.ctypes.data, dim, tiles.ctypes.data, len(tiles), counter.ctypes.data,
            sums.ctypes.data, rows_x, rows_y)
    workers = [threading.Thread(target=lib.ts_normcos_run, args=args)
               for _ in range(num_threads or len(os.sched_getaffinity(0)))]
    for w in workers:  # ctypes releases the GIL: the threads share the tiles through an atomic counter
        w.start()
    try:
        other = meanwhile()
    finally:
        for w in workers:
            w.join()
    pad_cols = dim - Xs.shape[1]  # zero padding: v = 1 − 0 there too, like joint zeros
    return (sums[0, :n, :m], sums[1, :n, :m] - pad_cols, sums[2, :n, :m]), other


def _pad(Z: np.ndarray) -> np.ndarray:
    """Pad to an even number of rows and a multiple of 8 columns (zeros contribute nothing)."""
    rows, cols = Z.shape[0] + Z.shape[0] % 2, -(-Z.shape[1] // 8) * 8
    if (rows, cols) == Z.shape and Z.flags.c_contiguous:
        return Z
    out = np.zeros((rows, cols), dtype=np.float32)
    out[: Z.shape[0], : Z.shape[1]] = Z
    return out


# u = x/(x+y) for two pairs (x, y0), (x, y1) with one division: w = x/((x+y0)(x+y1)),
# u0 = (x+y1)·w, u1 = (x+y0)·w; v = 1 − u. max(·, FLT_MIN) makes x = 0 give u = 0.
_KERNEL_SOURCE = r"""
#include <immintrin.h>
#include <float.h>
#include <stdint.h>
#define CHUNK 2048
#define AVX __attribute__((target("avx2,fma")))

int ts_normcos_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

AVX static inline double hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s); s = _mm_hadd_ps(s, s);
    return (double)_mm_cvtss_f32(s);
}

#define STEP(X, Y0, Y1, UU0, VV0, UV0, UU1, VV1, UV1) { \
    __m256 s0 = _mm256_add_ps(X, Y0), s1 = _mm256_add_ps(X, Y1); \
    __m256 w = _mm256_div_ps(X, _mm256_max_ps(_mm256_mul_ps(s0, s1), tiny)); \
    __m256 u0 = _mm256_mul_ps(s1, w), u1 = _mm256_mul_ps(s0, w); \
    __m256 v0 = _mm256_sub_ps(one, u0), v1 = _mm256_sub_ps(one, u1); \
    UU0 = _mm256_fmadd_ps(u0, u0, UU0); VV0 = _mm256_fmadd_ps(v0, v0, VV0); UV0 = _mm256_fmadd_ps(u0, v0, UV0); \
    UU1 = _mm256_fmadd_ps(u1, u1, UU1); VV1 = _mm256_fmadd_ps(v1, v1, VV1); UV1 = _mm256_fmadd_ps(u1, v1, UV1); }

/* Adds the sums over columns [c0, c1) of pairs (i, j), (i, j+1), (i+1, j), (i+1, j+1) to S. */
AVX static void block2x2(const float* a0, const float* a1, const float* b0, const float* b1,
                         int64_t c0, int64_t c1, double* S, int64_t plane, int64_t ld) {
    const __m256 one = _mm256_set1_ps(1.f), tiny = _mm256_set1_ps(FLT_MIN);
    __m256 z = _mm256_setzero_ps();
    __m256 uu00 = z, vv00 = z, uv00 = z, uu01 = z, vv01 = z, uv01 = z;
    __m256 uu10 = z, vv10 = z, uv10 = z, uu11 = z, vv11 = z, uv11 = z;
    for (int64_t d = c0; d < c1; d += 8) {
        __m256 x0 = _mm256_loadu_ps(a0 + d), x1 = _mm256_loadu_ps(a1 + d);
        __m256 y0 = _mm256_loadu_ps(b0 + d), y1 = _mm256_loadu_ps(b1 + d);
        STEP(x0, y0, y1, uu00, vv00, uv00, uu01, vv01, uv01)
        STEP(x1, y0, y1, uu10, vv10, uv10, uu11, vv11, uv11)
    }
    S[0] += hsum(uu00); S[1] += hsum(uu01); S[ld] += hsum(uu10); S[ld + 1] += hsum(uu11);
    S += plane;
    S[0] += hsum(vv00); S[1] += hsum(vv01); S[ld] += hsum(vv10); S[ld + 1] += hsum(vv11);
    S += plane;
    S[0] += hsum(uv00); S[1] += hsum(uv01); S[ld] += hsum(uv10); S[ld + 1] += hsum(uv11);
}

/* Threads call this together; each takes the next tile (i0, i1, j0, j1) until none is left. */
void ts_normcos_run(const float* X, const float* Y, int64_t D, const int64_t* tiles, int64_t ntiles,
                    int64_t* next, double* S, int64_t nx, int64_t ny) {
    int64_t plane = nx * ny;
    for (;;) {
        int64_t t = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
        if (t >= ntiles) return;
        const int64_t* b = tiles + 4 * t;
        for (int64_t c0 = 0; c0 < D; c0 += CHUNK) {
            int64_t c1 = c0 + CHUNK < D ? c0 + CHUNK : D;
            for (int64_t i = b[0]; i < b[1]; i += 2)
                for (int64_t j = b[2]; j < b[3]; j += 2)
                    block2x2(X + i * D, X + (i + 1) * D, Y + j * D, Y + (j + 1) * D, c0, c1,
                             S + i * ny + j, plane, ny);
        }
    }
}
"""


@functools.cache
def _native_kernel() -> ctypes.CDLL | None:
    """Build (once per source version and machine type) and load the C kernel; None if impossible."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    key = hashlib.sha256((_KERNEL_SOURCE + platform.machine()).encode()).hexdigest()[:16]
    for folder in (_cache_dir(), Path(tempfile.gettempdir()) / "task-sweep-kernels"):
        try:
            path = _build(folder, key)
            lib = ctypes.CDLL(str(path))
        except (OSError, subprocess.SubprocessError) as err:
            log.warning("could not build the native d_sym kernel in %s (%s); trying elsewhere or torch", folder, err)
            continue
        if not lib.ts_normcos_supported():
            return None
        lib.ts_normcos_run.restype = None
        lib.ts_normcos_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                                       ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                       ctypes.c_int64]
        return lib
    return None


def _cache_dir() -> Path:
    if "TASK_SWEEP_CACHE_DIR" in os.environ:
        return Path(os.environ["TASK_SWEEP_CACHE_DIR"]) / "kernels"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "task-sweep" / "kernels"


def _build(folder: Path, key: str) -> Path:
    target = folder / f"normcos-{key}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src, out = Path(tmp) / "normcos.c", Path(tmp) / "normcos.so"
        src.write_text(_KERNEL_SOURCE)
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-O3", "-shared", "-fPIC", "-o", str(out), str(src)],
                       check=True, capture_output=True, timeout=120)
        os.replace(out, target)  # atomic: concurrent workers never load a half-written file
    return target
