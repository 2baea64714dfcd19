"""The three sums behind the normalised cosine ``d_sym``, for all pairs: Σu², Σv², Σuv with
``u = a/(a+b)``, ``v = b/(a+b)`` element-wise.

Two backends: a small C kernel (AVX2 + FMA, compiled on first use with the system C compiler and
cached on disk under ``~/.cache/task-sweep/kernels`` or ``$TASK_SWEEP_CACHE_DIR``) and blocked torch
(no compiler, not x86-64, or a GPU). Used by ``experts.distances.symmetric``; nothing else here.
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
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import scipy.sparse
import torch

log = logging.getLogger(__name__)
T = TypeVar("T")


# Values more than 2^62 below their filter's maximum over X ∪ Y are treated as 0 (the native kernel
# multiplies two denominators, which must stay above float32's smallest normal number).
_FLUSH = 2.0**-62
_TILE = 32  # rows per tile side: a 32-row block of one 2,048-column chunk is 256 KiB (fits L2)


def normcos_sums(X: np.ndarray, Y: np.ndarray | None, *, backend: str, device: str | torch.device,
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
