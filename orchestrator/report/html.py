"""Write ``index.html`` + PNGs for a run."""

from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np

from experts.selection import SelectionRow, selection_table
from orchestrator.report.data import SCORES, RunData
from orchestrator.report.figures import FIGURES

log = logging.getLogger(__name__)
SCORE_NAMES = {"logme": "LogME", "leep": "LEEP", "nce": "NCE", "hscore": "H-score"}


def meta_task_tables(data: RunData) -> dict[str, list[SelectionRow]]:
    cfg = data.config.report
    out = {}
    d_sym, d_asym = data.expert_distance("symmetric"), data.expert_distance("asymmetric")
    generic = data.experts.index(data.generic) if data.generic else None
    for meta in cfg.meta_tasks:
        rows, errors = data.allowed(meta)
        out[meta.name] = selection_table(errors, generic=generic, d_sym=d_sym[rows], d_asym=d_asym[rows],
                                         scores={SCORE_NAMES[s]: data.scores[s][rows] for s in SCORES},
                                         folds=cfg.folds, n_boot=cfg.bootstrap, seed=cfg.seed)
    return out


def write_report(data: RunData, run_id: str, out: Path) -> dict[str, list[SelectionRow]]:
    out.mkdir(parents=True, exist_ok=True)
    tables = meta_task_tables(data)
    parts = [f"<h1>Run {html.escape(run_id)}</h1>", "<h2>Expert selection</h2>",
             "<p>Relative error increase = (mean<sub>t</sub> err<sub>selected</sub> − mean<sub>t</sub> "
             "err<sub>opt</sub>) / mean<sub>t</sub> err<sub>opt</sub>; 95 % bootstrap interval over tasks.</p>"]
    for name, rows in tables.items():
        parts.append(_table(name, rows))
    for file, title, figure in FIGURES:
        caption = figure(data, out / file)
        img = f'<img src="{file}">' if (out / file).exists() else ""
        parts.append(f"<h2>{html.escape(title)}</h2>{img}<p>{html.escape(caption)}</p>")
    (out / "index.html").write_text("<!doctype html><html><head><meta charset='utf-8'><title>task-sweep report"
                                    "</title></head><body>" + "\n".join(parts) + "</body></html>")
    return tables


def _table(name: str, rows: list[SelectionRow]) -> str:
    head = f"<h3>{html.escape(name)} ({rows[0].n_tasks} tasks, optimal error {100 * rows[0].optimal_error:.2f} %)</h3>"
    body = "".join(f"<tr><td>{html.escape(r.method)}</td><td>{_pct(r.relative_increase)}</td>"
                   f"<td>[{_pct(r.ci_low)}, {_pct(r.ci_high)}]</td></tr>" for r in rows)
    return head + f"<table border=1><tr><th>method</th><th>relative error increase</th><th>95 % CI</th></tr>{body}</table>"


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"+{100 * x:.2f} %"
