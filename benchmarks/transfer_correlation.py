"""How well d_asym / d_sym predict the measured fine-tuning distance D_ft in one finished run.

Reads the run's committed ``transfer`` and ``distances`` tables (``orchestrator.transfer_report``),
averages seeds per pair, prints Spearman ρ (and p, number of pairs) of ``d_asym`` and ``d_sym``
against ``D_ft`` per selection kind and overall, and writes the scatter. Usage::

    python benchmarks/transfer_correlation.py RESULTS RUN_ID [--method montecarlo] [--out transfer.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.store import open_store
from orchestrator.transfer_report import transfer_figure, transfer_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("run_id")
    parser.add_argument("--method", default="montecarlo")
    parser.add_argument("--out", type=Path, default=Path("transfer.png"))
    args = parser.parse_args()
    summary = transfer_summary(open_store(args.results), args.run_id, args.method)
    if summary is None:
        raise SystemExit(f"{args.results}/{args.run_id}: no committed transfer rows")
    for name, c in summary.correlations.items():
        print(f"{name:<7} vs D_ft: Spearman rho = {c.rho:+.3f}  p = {c.p_value:.3g}  n = {c.n_pairs} pairs")
    finite = [p.d_ft_mean for p in summary.pairs if p.d_ft_mean == p.d_ft_mean]
    print(f"D_ft over {len(finite)} pairs: min {min(finite):+.3f}, max {max(finite):+.3f}")
    print(f"scatter → {transfer_figure(summary, args.out, title=f'{args.run_id} ({args.method})')}")


if __name__ == "__main__":
    main()
