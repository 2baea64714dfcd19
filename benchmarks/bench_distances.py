"""Benchmark: the full symmetric and asymmetric Task2Vec distance matrices at the study's scale.

1,460 embeddings × 17,024 filters (ResNet-34, conv + batch-norm), float32, synthetic but shaped
like Monte-Carlo Fisher diagonals: a log-normal scale per filter (σ = 2), per task (σ = 1) and per
entry (σ = 1), and 1 % of exact zeros (filters dead on a task). Timed: ``symmetric`` (all pairs)
then ``asymmetric`` from it (``d_sym(a, t0)`` for every task), median of ``--runs`` after one
warm-up (which also builds the native kernel once). Agreement: against a float64 NumPy
computation from the definition for ``--check-rows`` rows × all 1,460 columns. Usage::

    python benchmarks/bench_distances.py --runs 5 --out benchmarks/results/distances.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from experts.distances import asymmetric, symmetric, trivial_embedding
from experts.normcos import _native_kernel


def fisher_like(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    per_filter = rng.lognormal(0, 2, size=d).astype(np.float32)
    per_task = rng.lognormal(0, 1, size=(n, 1)).astype(np.float32)
    X = per_task * per_filter * rng.lognormal(0, 1, size=(n, d)).astype(np.float32) * 1e-6
    X[rng.random((n, d)) < 0.01] = 0.0
    return X


def exact_rows(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """d_sym(X[i], X[j]) for i in rows, all j: float64, straight from the definition."""
    X64 = X.astype(np.float64)
    out = np.empty((len(rows), len(X)))
    for k, i in enumerate(rows):
        a = X64[i][None, :]
        s = a + X64
        t = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
        u, v = a * t, X64 * t
        out[k] = 1.0 - (u * v).sum(1) / np.sqrt((u * u).sum(1) * (v * v).sum(1))
    return out


def timed(fn):  # wall and CPU seconds of one call
    w, c = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1460)
    parser.add_argument("--d", type=int, default=17024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--check-rows", type=int, default=24)
    parser.add_argument("--alpha", type=float, default=0.15)
    parser.add_argument("--torch-rows", type=int, default=64, help="rows timed with the torch fallback (0: skip)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    X = fisher_like(args.n, args.d)
    t0 = trivial_embedding(estimator="montecarlo", library=X)
    _, build_s, _ = timed(_native_kernel)
    symmetric(X[:64])  # warm-up

    sym_t, asym_t, total_t, total_cpu = [], [], [], []
    for _ in range(args.runs):
        load = os.getloadavg()[0]
        S, ws, cs = timed(lambda: symmetric(X))
        A, wa, ca = timed(lambda: asymmetric(X, trivial=t0, alpha=args.alpha, symmetric_matrix=S))
        sym_t.append(ws)
        asym_t.append(wa)
        total_t.append(ws + wa)
        total_cpu.append(cs + ca)
        print(f"symmetric {ws:.3f} s, asymmetric {wa:.3f} s, total {ws + wa:.3f} s wall, "
              f"{cs + ca:.3f} s CPU (load average before: {load:.2f})")

    torch_line = ""
    if args.torch_rows:
        _, wt, _ = timed(lambda: symmetric(X[: args.torch_rows], X, backend="torch"))
        projected = wt * (args.n + 1) / 2 / args.torch_rows  # X against itself: the upper triangle
        torch_line = (f"Torch fallback (used without a C compiler; here on the CPU): {wt:.2f} s for "
                      f"{args.torch_rows} × {args.n} pairs, ≈ {projected:.0f} s projected for the full matrix.")
        print(torch_line)

    rows = np.random.default_rng(1).choice(args.n, size=args.check_rows, replace=False)
    ref = exact_rows(X, rows)
    ref_t0 = exact_rows(np.vstack([X[rows], t0[None, :].astype(np.float32)]), np.arange(len(rows)))[:, -1]
    err_sym = np.abs(S[rows] - ref).max()
    err_asym = np.abs(A[rows] - (ref - args.alpha * ref_t0[:, None])).max()
    offdiag = ref[ref > 0]

    lines = [
        "# Distances benchmark",
        "",
        f"- Date: {datetime.datetime.now().isoformat(timespec='minutes')}",
        f"- Machine: {platform.processor() or platform.machine()}, {_cpu_model()}, "
        f"{len(os.sched_getaffinity(0))} CPUs available to the process; shared with other jobs "
        f"(load average {os.getloadavg()[0]:.2f} at the end)",
        f"- Settings: N = {args.n}, D = {args.d}, float32 Fisher-like embeddings (see the script), "
        f"α = {args.alpha}, Monte-Carlo trivial embedding (library mean), native kernel, "
        f"{len(os.sched_getaffinity(0))} threads; median of {args.runs} runs after a warm-up",
        f"- Native kernel load (built on first use on a machine, then cached on disk): {build_s:.2f} s",
        "",
        "| step | median wall (s) | min wall (s) |",
        "|---|---|---|",
        f"| symmetric, {args.n}×{args.n} | {statistics.median(sym_t):.3f} | {min(sym_t):.3f} |",
        f"| asymmetric from it | {statistics.median(asym_t):.3f} | {min(asym_t):.3f} |",
        f"| **total** (target < 2 s) | **{statistics.median(total_t):.3f}** | {min(total_t):.3f} |",
        "",
        f"CPU time of the total (both cores together): median {statistics.median(total_cpu):.3f} s.",
        "",
        f"Agreement with float64 from the definition on {args.check_rows} rows × {args.n} columns: "
        f"max |Δ d_sym| = {err_sym:.2e}, max |Δ d_asym| = {err_asym:.2e} "
        f"(off-diagonal d_sym here ranges {offdiag.min():.3f}–{offdiag.max():.3f}; "
        "estimator noise between two Monte-Carlo runs of one task is ≈ 0.06).",
        "",
        torch_line,
    ]
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
