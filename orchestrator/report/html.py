"""Write ``index.html`` for a run: one self-contained page (plotly.js, styles and data inline; works offline)."""

from __future__ import annotations

import html
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from experts.selection import SelectionRow, selection_table
from orchestrator.report.data import SCORES, RunData
from orchestrator.report.figures import FIGURES, Figure
from orchestrator.report.summary import summary_html, tables_html

log = logging.getLogger(__name__)
SCORE_NAMES = {"logme": "LogME", "leep": "LEEP", "nce": "NCE", "hscore": "H-score"}
_HERE = Path(__file__).parent


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
    from threadpoolctl import threadpool_limits

    out.mkdir(parents=True, exist_ok=True)
    # Many small array operations: BLAS/OpenMP threads cost more than they give (at 1,458 tasks on a busy
    # 2-core machine, 70 CPU-s with them against 25 CPU-s without; benchmarks/bench_report.py).
    with threadpool_limits(1):
        start = time.perf_counter()
        tables = meta_task_tables(data)
        log.info("selection tables: %.1f s", time.perf_counter() - start)
        figures = []
        for make in FIGURES:
            t0 = time.perf_counter()
            figures.append(make(data))
            log.info("figure %s: %.1f s", figures[-1].id, time.perf_counter() - t0)
    (out / "index.html").write_text(page(data, run_id, tables, figures), encoding="utf-8")
    return tables


def page(data: RunData, run_id: str, tables: dict[str, list[SelectionRow]], figures: list[Figure]) -> str:
    from plotly.offline import get_plotlyjs

    nav = "".join(f"<a href='#{f.id}-section'>{html.escape(f.title.split(' (')[0])}</a>" for f in figures)
    parts = [f"<nav><b>task-sweep · {html.escape(run_id)}</b><a href='#summary'>Summary</a>"
             f"<a href='#selection'>Expert selection</a>{nav}<a href='#tables'>Tables</a></nav><main>",
             f"<h1>Run {html.escape(run_id)}</h1>"]
    if data.summary is not None:
        parts.append(summary_html(data.summary, data.config.report.method))
    parts.append(_selection_html(tables))
    parts += [_figure_html(f) for f in figures]
    if data.summary is not None:
        parts.append(tables_html(data.summary))
    parts.append("</main>")
    blob = json.dumps({"figures": [asdict(f) for f in figures]}, separators=(",", ":"), allow_nan=False)
    blob = blob.replace("</", "<\\/")  # no "</script>" inside the data block
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>task-sweep report · {html.escape(run_id)}</title>"
            f"<style>{(_HERE / 'page.css').read_text()}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>" + "\n".join(parts)
            + f"<script type='application/json' id='report-data'>{blob}</script>"
            + f"<script>{(_HERE / 'page.js').read_text()}</script></body></html>")


def _figure_html(f: Figure) -> str:
    controls = ""
    if f.filter_by is not None:
        options = "".join(f"<option value='{html.escape(s)}'>{html.escape(s)} ({f.filter_by.count(s)})</option>"
                          for s in sorted(set(f.filter_by)))
        controls = (f"<div class='controls'><label>Tasks: <select id='{f.id}-filter'>"
                    f"<option value='all'>all sources ({len(f.filter_by)})</option>{options}</select></label></div>")
    plot = f"<div class='plot' id='{f.id}'></div>" if f.data else ""
    return (f"<section class='figure' id='{f.id}-section'><h2>{html.escape(f.title)}</h2>{controls}{plot}"
            f"<p class='caption'>{html.escape(f.caption)}</p>"
            f"<p class='howto'><b>How to read this:</b> {html.escape(f.how_to_read)}</p></section>")


def _selection_html(tables: dict[str, list[SelectionRow]]) -> str:
    return ("<section id='selection'><h2>Expert selection</h2>"
            "<p>Relative error increase = (mean<sub>t</sub> err<sub>selected</sub> − mean<sub>t</sub> "
            "err<sub>opt</sub>) / mean<sub>t</sub> err<sub>opt</sub>, with its 95 % bootstrap interval over tasks; "
            "★ marks the lowest value of each column.</p>"
            + "".join(_table(name, rows) for name, rows in tables.items())
            + "<p class='howto'><b>How to read this:</b> each row is a way to pick an expert for a new task; 0 % "
              "means it always picks the best expert, Chance is picking one at random. A method helps when its "
              "interval lies below Chance's.</p></section>")


def _table(name: str, rows: list[SelectionRow]) -> str:
    columns = {"relative_increase": [r.relative_increase for r in rows], "ci_low": [r.ci_low for r in rows],
               "ci_high": [r.ci_high for r in rows]}
    best = {c: np.nanmin(v) if np.isfinite(v).any() else np.nan for c, v in columns.items()}
    top = max([r.ci_high for r in rows if np.isfinite(r.ci_high)] or [1.0]) or 1.0

    def cell(r: SelectionRow, column: str) -> str:
        value = getattr(r, column)
        mark = " best" if np.isfinite(value) and value == best[column] else ""
        return f"<td class='num{mark}'>{_pct(value)}</td>"

    def bar(r: SelectionRow) -> str:
        if not np.isfinite(r.ci_low):
            return "<td></td>"
        lo, hi, pt = (100 * max(0.0, v) / top for v in (r.ci_low, r.ci_high, r.relative_increase))
        return (f"<td><div class='bar'><div class='ci' style='left:{lo:.1f}%;width:{max(hi - lo, 0.5):.1f}%'></div>"
                f"<div class='pt' style='left:{pt:.1f}%'></div></div></td>")

    body = "".join(f"<tr><td>{html.escape(r.method)}</td>{cell(r, 'relative_increase')}{cell(r, 'ci_low')}"
                   f"{cell(r, 'ci_high')}{bar(r)}</tr>" for r in rows)
    return (f"<h3>{html.escape(name)} ({rows[0].n_tasks} tasks, optimal error {100 * rows[0].optimal_error:.2f} %)</h3>"
            "<table class='selection'><tr><th>method</th><th>relative error increase</th><th>95 % CI low</th>"
            f"<th>95 % CI high</th><th>interval (0 to {_pct(top)})</th></tr>{body}</table>")


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:+.2f} %"
