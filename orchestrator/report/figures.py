"""The report's interactive figures: one function per figure, each ``data -> Figure`` (a plotly.js spec).

Specs are plain plotly.js ``data``/``layout`` dicts, drawn in the page by ``page.js`` with the plotly.js
bundle the page carries inline (no CDN). Large matrices travel quantised (``quantise``: uint8, base64)
and are decoded in the browser. To add a section, write one more function and append it to ``FIGURES``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform
from scipy.stats import spearmanr

from orchestrator.report.data import RunData

MAX_PAIRS_DRAWN = 4000  # pair scatters draw a seeded sample beyond this; ρ is always over every pair


@dataclass
class Figure:
    id: str  # the element id in the page
    title: str
    caption: str  # what was measured (numbers)
    how_to_read: str  # one or two sentences for a reader new to the figure
    data: list[dict] = field(default_factory=list)  # plotly.js traces ([] : nothing to draw)
    layout: dict = field(default_factory=dict)
    matrix: dict | None = None  # quantised z of the first trace, decoded by page.js
    filter_by: list[str] | None = None  # per row/column label to filter the matrix by (source)


def task_hover(data: RunData) -> list[str]:
    """One hover label per task: id, source, group, the probe's and the best expert's test error, norm."""
    g = data.experts.index(data.generic) if data.generic in data.experts else None
    best = np.fmin.reduce(data.errors, axis=1)
    labels = []
    for i, t in enumerate(data.tasks):
        errs = data.errors[i]
        parts = [f"<b>{t}</b>", f"{data.source.get(t, '?')} · {data.group.get(t, '?')}"]
        probe = f"probe's head {_pct(errs[g])}" if g is not None else ""
        if np.isfinite(best[i]):
            e = int(np.nanargmin(errs))
            parts.append(f"test error: {probe}{' · ' if probe else ''}best {_pct(best[i])} ({data.experts[e]})")
        if t in data.embeddings:
            parts.append(f"embedding norm {np.linalg.norm(data.embeddings[t]):.4g}")
        labels.append("<br>".join(parts))
    return labels


def tsne(data: RunData) -> Figure:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    tasks = [t for t in data.tasks if t in data.embeddings]
    fig = Figure("tsne", "Task embeddings (t-SNE)", "",
                 "Each dot is a task; tasks whose Fisher embeddings point the same way sit close together. "
                 "Click a legend entry to hide a group, double-click to show it alone; drag to zoom.")
    if len(tasks) < 4:
        fig.caption = f"Only {len(tasks)} embedded tasks: too few for a t-SNE."
        return fig
    x = np.stack([data.embeddings[t] for t in tasks])
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    if x.shape[1] > 50 and len(tasks) > 50:
        x = PCA(n_components=50, random_state=0).fit_transform(x)
    xy = TSNE(n_components=2, perplexity=min(30.0, max(2.0, (len(tasks) - 1) / 3)), random_state=0,
              init="random").fit_transform(x)
    hover, pos = task_hover(data), {t: i for i, t in enumerate(data.tasks)}
    symbols = dict(zip(sorted({data.source[t] for t in tasks}), ("circle", "square", "diamond", "triangle-up",
                                                                 "x", "star", "cross")))
    for src, group in sorted({(data.source[t], data.group[t]) for t in tasks}):
        m = [k for k, t in enumerate(tasks) if (data.source[t], data.group[t]) == (src, group)]
        fig.data.append({"type": "scatter", "mode": "markers", "name": f"{src}: {group}", "x": _r(xy[m, 0]),
                         "y": _r(xy[m, 1]), "text": [hover[pos[tasks[k]]] for k in m], "hoverinfo": "text",
                         "marker": {"symbol": symbols.get(src, "circle"), "size": 8 if len(tasks) < 300 else 5}})
    fig.layout = {"xaxis": {"visible": False}, "yaxis": {"visible": False}, "height": 560,
                  "legend": {"font": {"size": 10}}, "hovermode": "closest"}
    fig.caption = (f"t-SNE of the L2-normalised Task2Vec embeddings of {len(tasks)} tasks: colour by group "
                   "(taxonomic class for iNat/CUB, attribute kind otherwise), marker by source.")
    return fig


def similarity(data: RunData) -> Figure:
    d = np.nan_to_num((data.d_sym + data.d_sym.T) / 2, nan=1.0)
    np.fill_diagonal(d, 0.0)
    n = len(data.tasks)
    order = leaves_list(linkage(squareform(d, checks=False), method="average")) if n > 2 else np.arange(n)
    names = [data.tasks[i] for i in order]
    fig = Figure("similarity", "Task similarity (d_sym, clustered)",
                 f"Symmetric Task2Vec distances between {n} tasks ({data.config.report.method}), rows and columns "
                 "in average-linkage clustering order.",
                 "Bright blocks along the diagonal are clusters of tasks the probe sees as alike (yellow: close, dark: far); hover a cell for the "
                 "two tasks and their distance, drag to zoom in, double-click to zoom out, and use the menu to keep "
                 "one source's tasks only.")
    sym = (data.d_sym + data.d_sym.T) / 2
    fig.matrix = quantise(sym[np.ix_(order, order)])
    fig.filter_by = [data.source.get(t, "?") for t in names]
    fig.data = [{"type": "heatmap", "x": names, "y": names, "colorscale": "Viridis", "reversescale": True,
                 "colorbar": {"title": {"text": "d_sym"}},
                 "hovertemplate": "%{y}<br>%{x}<br>d_sym = %{z:.3f}<extra></extra>"}]
    ticks = n <= 60
    fig.layout = {"height": 700, "xaxis": {"showticklabels": ticks, "tickfont": {"size": 8}, "constrain": "domain"},
                  "yaxis": {"showticklabels": ticks, "tickfont": {"size": 8}, "autorange": "reversed",
                            "scaleanchor": "x"}}
    return fig


def norm_vs_error(data: RunData) -> Figure:
    rows, norm, err, which = _norm_rows(data)
    fig = Figure("norm_vs_error", "Embedding norm and difficulty", "",
                 "Task2Vec's claim: a task that is hard for the probe has a large Fisher, hence a large embedding norm; "
                 "a positive Spearman ρ agrees with it. Hover a dot for its task.")
    if len(norm) < 3:
        fig.caption = "Fewer than 3 tasks with both an embedding and a test error."
        return fig
    rho, p = spearmanr(norm, err)
    hover = task_hover(data)
    fig.data = [{"type": "scatter", "mode": "markers", "x": _r(norm), "y": _r(err), "text": [hover[i] for i in rows],
                 "hoverinfo": "text", "marker": {"size": 7 if len(rows) < 300 else 4}}]
    fig.layout = {"xaxis": {"title": {"text": "embedding L2 norm"}},
                  "yaxis": {"title": {"text": f"{which} test error"}, "tickformat": ".0%"},
                  "title": {"text": f"Spearman ρ = {rho:.2f} (p = {p:.2g})"}, "height": 460, "hovermode": "closest"}
    fig.caption = f"Embedding norm against the {which} test error: Spearman ρ = {rho:.3f}, p = {p:.3g}, {len(norm)} tasks."
    return fig


def taxonomy(data: RunData) -> Figure:
    a, b = np.triu_indices(len(data.tasks), 1)
    tax, emb = data.d_tax[a, b], data.d_sym[a, b]
    keep = np.isfinite(tax) & np.isfinite(emb)
    fig = Figure("taxonomy", "Taxonomic and embedding distance", "",
                 "Each dot is a pair of iNat/CUB tasks: how far apart they are in the tree of life against how far "
                 "apart their embeddings are. Task2Vec should grow with the taxonomic distance (ρ > 0).")
    if keep.sum() < 3:
        fig.caption = "No taxonomic distances in this run (no iNat/CUB pairs)."
        return fig
    rho, p = spearmanr(tax[keep], emb[keep])
    idx = np.flatnonzero(keep)
    drawn = idx if len(idx) <= MAX_PAIRS_DRAWN else np.sort(np.random.default_rng(0).choice(idx, MAX_PAIRS_DRAWN,
                                                                                               replace=False))
    jitter = np.random.default_rng(1).uniform(-0.15, 0.15, len(drawn))
    fig.data = [{"type": "scatter", "mode": "markers", "x": _r(tax[drawn] + jitter), "y": _r(emb[drawn]),
                 "text": [f"<b>{data.tasks[a[k]]}</b><br><b>{data.tasks[b[k]]}</b><br>d_tax = {tax[k]:g}, "
                          f"d_sym = {emb[k]:.3f}" for k in drawn],
                 "hoverinfo": "text", "marker": {"size": 5, "opacity": 0.5}}]
    sampled = f" ({len(drawn):,} drawn at random)" if len(drawn) < len(idx) else ""
    fig.layout = {"xaxis": {"title": {"text": "taxonomic distance (jittered)"}}, "yaxis": {"title": {"text": "d_sym"}},
                  "title": {"text": f"Spearman ρ = {rho:.2f} (p = {p:.2g})"}, "height": 460, "hovermode": "closest"}
    fig.caption = (f"Taxonomic vs embedding distance over {len(idx)} iNat/CUB pairs{sampled}: "
                   f"Spearman ρ = {rho:.3f}, p = {p:.3g}.")
    return fig


def error_distribution(data: RunData) -> Figure:
    d = data.expert_distance(data.config.report.selector)
    n = len(data.tasks)
    finite = np.isfinite(data.errors)
    best = np.where(finite.any(1), np.fmin.reduce(data.errors, axis=1), np.nan)
    order = np.argsort(np.nan_to_num(best, nan=np.inf), kind="stable")
    hover = task_hover(data)
    with np.errstate(all="ignore"):
        lines = {"best expert": best, "median expert": np.nanmedian(np.where(finite, data.errors, np.nan), axis=1),
                 "worst expert": np.fmax.reduce(data.errors, axis=1)}
    fig = Figure("errors", "Experts' errors per task", "",
                 "Tasks sorted by their best error; the band between best and worst expert is what expert selection "
                 "can win or lose, and a red × is the expert the run's selector picks (close to the lower line is good).")
    x = list(range(n))
    for name, values in lines.items():  # task labels once, on the best-expert line
        trace = {"type": "scatter", "mode": "lines", "name": name, "x": x, "y": _r(values[order])}
        if name == "best expert":
            trace.update(text=[hover[i] for i in order], hoverinfo="text+name")
        else:
            trace["hovertemplate"] = "%{y:.1%}"
        fig.data.append(trace)
    pick = np.where(finite & np.isfinite(d), d, np.inf)
    has = np.isfinite(pick).any(1)
    chosen = pick.argmin(1)
    sel = [k for k, i in enumerate(order) if has[i]]
    fig.data.append({"type": "scatter", "mode": "markers", "name": f"selected ({data.config.report.selector})",
                     "x": sel, "y": _r(np.array([data.errors[order[k], chosen[order[k]]] for k in sel])),
                     "text": [f"{hover[order[k]]}<br>selected: {data.experts[chosen[order[k]]]}" for k in sel],
                     "hoverinfo": "text", "marker": {"symbol": "x", "color": "red", "size": 7 if n < 300 else 4}})
    fig.layout = {"xaxis": {"title": {"text": "task (sorted by best error)"}},
                  "yaxis": {"title": {"text": "head test error"}, "tickformat": ".0%"}, "height": 460,
                  "hovermode": "closest"}
    fig.caption = ("Best, median and worst test error over the experts of each task; red ×: the expert the run's "
                   f"selector ({data.config.report.selector} distance) picks.")
    return fig


def transfer(data: RunData) -> Figure:
    summary = data.transfer
    fig = Figure("transfer", "Task2Vec distance and transfer (D_ft)", "",
                 "Each dot is a (source → target) pair: how much fine-tuning from the source's expert changes the "
                 "target's error (D_ft < 0: it helps) against the Task2Vec distance. If the distance predicts "
                 "transfer, dots rise from left to right (ρ > 0).")
    if summary is None or not summary.pairs:
        fig.caption = "No transfer stage in this run (transfer.mode: off): no D_ft pairs measured."
        return fig
    d_ft = np.array([p.d_ft_mean for p in summary.pairs])
    std = np.nan_to_num(np.array([p.d_ft_std for p in summary.pairs]))
    text = [f"<b>{p.source}</b> →<br><b>{p.target}</b><br>D_ft = {p.d_ft_mean:.3f} ± {s:.3f} ({p.n_seeds} seeds)"
            for p, s in zip(summary.pairs, std)]
    c = summary.correlations
    for k, (name, x) in enumerate((("d_asym", summary.d_asym), ("d_sym", summary.d_sym))):
        axis = "" if k == 0 else "2"
        fig.data.append({"type": "scatter", "mode": "markers", "name": name, "x": _r(x), "y": _r(d_ft),
                         "error_y": {"type": "data", "array": _r(std), "visible": True, "thickness": 1},
                         "text": text, "hoverinfo": "text", "xaxis": f"x{axis}", "yaxis": f"y{axis}"})
    fig.layout = {"grid": {"rows": 1, "columns": 2, "pattern": "independent"}, "height": 440, "hovermode": "closest",
                  "xaxis": {"title": {"text": f"d_asym(a → b) · ρ = {c['d_asym'].rho:.2f}"}},
                  "xaxis2": {"title": {"text": f"d_sym(a, b) · ρ = {c['d_sym'].rho:.2f}"}},
                  "yaxis": {"title": {"text": "D_ft(a → b)"}}, "showlegend": False}
    fig.caption = (f"D_ft(a → b) over {len(summary.pairs)} measured pairs (seeds averaged, bars: their spread). "
                   f"Spearman ρ(d_asym, D_ft) = {c['d_asym'].rho:.2f} (p = {c['d_asym'].p_value:.2g}, "
                   f"n = {c['d_asym'].n_pairs}); ρ(d_sym, D_ft) = {c['d_sym'].rho:.2f} (p = {c['d_sym'].p_value:.2g}).")
    return fig


def norm_and_error(data: RunData) -> tuple[np.ndarray, np.ndarray, str]:
    """Embedding norm and test error of every task with both.

    The error is the generic expert's: a linear head on the probe, the network whose Fisher the
    embedding is (a head that fits the task with confidence gives a small Fisher). Without a generic
    expert in the run, the best error over experts. The third value names which.
    """
    _, norm, err, which = _norm_rows(data)
    return norm, err, which


def _norm_rows(data: RunData) -> tuple[list[int], np.ndarray, np.ndarray, str]:
    g = data.experts.index(data.generic) if data.generic in data.experts else None
    err = data.errors[:, g] if g is not None else np.fmin.reduce(data.errors, axis=1)  # NaN-skipping min
    rows = [i for i, t in enumerate(data.tasks) if t in data.embeddings and np.isfinite(err[i])]
    norm = np.array([np.linalg.norm(data.embeddings[data.tasks[i]]) for i in rows])
    return rows, norm, err[rows], "probe's (generic expert's)" if g is not None else "best expert's"


def taxonomic_pairs(data: RunData) -> tuple[np.ndarray, np.ndarray]:
    iu = np.triu_indices(len(data.tasks), 1)
    tax, emb = data.d_tax[iu], data.d_sym[iu]
    keep = np.isfinite(tax) & np.isfinite(emb)
    return tax[keep], emb[keep]


def quantise(m: np.ndarray) -> dict:
    """``m`` as uint8 codes 0..254 spanning [lo, hi] (255: NaN), row-major, base64: 1 byte a cell; the page
    decodes ``lo + code * (hi - lo) / 254`` (error at most (hi - lo) / 508)."""
    finite = np.isfinite(m)
    lo, hi = (float(m[finite].min()), float(m[finite].max())) if finite.any() else (0.0, 1.0)
    span = hi - lo if hi > lo else 1.0
    codes = np.full(m.shape, 255, dtype=np.uint8)
    codes[finite] = np.rint((m[finite] - lo) / span * 254).astype(np.uint8)
    return {"shape": list(m.shape), "lo": lo, "hi": hi, "b64": base64.b64encode(codes.tobytes()).decode("ascii")}


def _r(x: np.ndarray, digits: int = 4) -> list:
    """JSON-ready list, 4 significant digits, NaN as null (keeps the page small)."""
    return [None if not np.isfinite(v) else float(f"{v:.{digits}g}") for v in np.asarray(x, dtype=np.float64)]


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:.1f} %"


FIGURES: list[Callable[[RunData], Figure]] = [tsne, similarity, norm_vs_error, taxonomy, error_distribution, transfer]
