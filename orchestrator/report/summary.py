"""The run summary at the top of the report: what ran, with which probe and budget, what failed, what warned.

Read from ``run.json`` and the committed tables (``read_summary``); rendered as HTML by ``summary_html``.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from experts.distances import above_noise_floor
from orchestrator.plan import STAGES
from orchestrator.store import ResultStore

# Tables a reader may want, in the order the page lists them.
TABLES = ("tasks", "experts", "heads", "embeddings", "distances", "transfer_init", "transfer", "failures")

# Boolean columns of the distances table that say whether a distance is above its noise floor, read first if
# present; otherwise the summary applies ``experts.distances.above_noise_floor`` to ``d_sym`` and ``noise_floor``
# (one row per unordered pair of tasks with an estimate).
ABOVE_NOISE_FLOOR_COLUMNS: tuple[str, ...] = ()

RANDOM_PROBE_MEANING = (
    "The probe's weights are random (no embeddings.probe_weights). Its Fisher reflects the architecture and the "
    "images' statistics, not features learned on a large pre-training set: distances, the norm-vs-error "
    "relation and the Task2Vec selectors do not carry the meaning they have in the paper. Use it to test the "
    "pipeline, not to draw conclusions.")


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    info: dict  # run.json
    probe: str
    pretrained: bool | None  # None: no embeddings or experts rows to tell
    row_counts: dict[str, int]  # committed rows per table
    warnings: dict[str, Counter] = field(default_factory=dict)  # table -> warning text -> rows
    failures: list[dict] = field(default_factory=list)  # failures rows (unit_key, stage, label, error_type, message)
    failure_keys: dict[str, str] = field(default_factory=dict)  # unit_key -> path or URI of its failures part
    table_uris: dict[str, str] = field(default_factory=dict)  # table -> folder (path or URI)
    above_noise_floor: tuple[int, int] | None = None  # (distances above their noise floor, distances with an estimate)


def read_summary(store: ResultStore, run_id: str, info: dict, tables: dict[str, pa.Table | None]) -> RunSummary:
    """``tables``: the committed tables already read by the report (name -> table or None)."""
    config = info.get("config", {})
    probe = config.get("embeddings", {}).get("probe", "?")
    pretrained = None
    for name in ("embeddings", "experts"):
        t = tables.get(name)
        if t is not None and t.num_rows and "pretrained" in t.column_names:
            pretrained = bool(all(t["pretrained"].to_pylist()))
            break
    warnings = {}
    for name, t in tables.items():
        if t is not None and "warnings" in t.column_names:
            counts = Counter(w for ws in t["warnings"].to_pylist() for w in (ws or []))
            if counts:
                warnings[name] = counts
    failures, failure_keys = [], {}
    for key in sorted(k for k in store.list(f"{run_id}/failures/") if k.endswith(".parquet")):
        for row in store.read_table(key).to_pylist():
            failures.append({k: row[k] for k in ("unit_key", "stage", "label", "error_type", "message", "attempts")})
            failure_keys[row["unit_key"]] = _uri(store, key)
    counts = {name: t.num_rows for name, t in tables.items() if t is not None}
    counts["failures"] = len(failures)
    return RunSummary(run_id, info, probe, pretrained, counts, warnings, failures, failure_keys,
                      {name: _uri(store, f"{run_id}/{name}") for name in TABLES},
                      _above_noise_floor(tables.get("distances")))


def _uri(store: ResultStore, key: str) -> str:
    return store.path(key) if store.is_local else f"s3://{store.path(key)}"


def _above_noise_floor(distances: pa.Table | None) -> tuple[int, int] | None:
    if distances is None:
        return None
    for column in ABOVE_NOISE_FLOOR_COLUMNS:
        if column in distances.column_names:  # vectorised: N² rows
            flags = distances[column]
            return int(pc.sum(flags.cast(pa.int64())).as_py() or 0), len(flags) - flags.null_count
    if "noise_floor" in distances.column_names and "d_sym" in distances.column_names:
        pairs = distances.filter(pc.and_(pc.less(distances["task_a"], distances["task_b"]),
                                         pc.is_valid(distances["noise_floor"])))
        if pairs.num_rows == 0:
            return None
        above = above_noise_floor(pairs["d_sym"].to_numpy(zero_copy_only=False),
                                  pairs["noise_floor"].to_numpy(zero_copy_only=False))
        return int(above.sum()), pairs.num_rows
    return None


def summary_html(s: RunSummary, method: str) -> str:
    info, config = s.info, s.info.get("config", {})
    emb, runtime = config.get("embeddings", {}), config.get("runtime", {})
    versions = info.get("versions", {})
    dates = f"started {info.get('started_at', '?')}, finished {info.get('finished_at', 'not yet')}"
    if info.get("resumed_at"):
        dates += f", resumed {', '.join(info['resumed_at'])}"
    status = ("<span class='ok'>complete</span>" if info.get("complete")
              else "<span class='bad'>incomplete: some units failed or never ran</span>")
    if s.pretrained is None:
        probe = f"{_e(s.probe)} (no rows yet to tell whether pretrained)"
    elif s.pretrained:
        probe = f"{_e(s.probe)}, <span class='ok'>pretrained</span> ({_e(str(emb.get('probe_weights') or 'weights given'))})"
    else:
        probe = (f"{_e(s.probe)}, <span class='bad'>randomly initialised</span>"
                 f"<div class='warn-box'>{_e(RANDOM_PROBE_MEANING)}</div>")
    budget = emb.get("fisher_samples") or emb.get("max_samples")
    rows = [
        ("Run", f"<b>{_e(s.run_id)}</b> · {status} · {_e(dates)}"),
        ("task-sweep", f"{_e(versions.get('task-sweep', '?'))} (git {_e(str(info.get('git_revision') or '?')[:12])}), "
                       f"torch {_e(versions.get('torch', '?'))}, host {_e(str(info.get('host', '?')))}"),
        ("Probe", probe),
        ("Fisher", f"method(s) {_e(', '.join(emb.get('methods', [])))} (this report: <b>{_e(method)}</b>); "
                   f"budget {_e(str(budget))} Fisher draws, at most {_e(str(emb.get('max_samples')))} images per task"),
        ("Images", f"{_e(str(runtime.get('image_size', '?')))} px"),
        ("Rows", ", ".join(f"{_e(k)} {v:,}" for k, v in s.row_counts.items())),
    ]
    if s.above_noise_floor is not None:
        above, n = s.above_noise_floor
        rows.append(("Noise floor", f"{above:,} of {n:,} distances ({100 * above / max(n, 1):.1f} %) are above their "
                                    "noise floor"))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (f"<section id='summary'><h2>Run summary</h2><table class='summary'>{body}</table>"
            f"{_stages_html(info.get('stages', {}))}{_failures_html(s)}{_warnings_html(s.warnings)}</section>")


def _stages_html(stages: dict) -> str:
    if not stages:
        return "<p>run.json has no stage counts yet (the run is still going, or its driver stopped).</p>"
    rows = []
    for stage, r in sorted(stages.items(), key=lambda kv: STAGES.index(kv[0]) if kv[0] in STAGES else len(STAGES)):
        failed = len(r.get("failed", []))
        cell = f"<a href='#failures-{_e(stage)}' class='bad'>{failed}</a>" if failed else "0"
        rows.append(f"<tr><td>{_e(stage)}</td><td>{r['planned']:,}</td><td>{r['skipped'] + r['committed']:,}</td>"
                    f"<td>{cell}</td><td>{r.get('retries', 0)}</td></tr>")
    return ("<table class='stages'><tr><th>stage</th><th>units planned</th><th>committed</th><th>failed</th>"
            f"<th>retries</th></tr>{''.join(rows)}</table>")


def _failures_html(s: RunSummary) -> str:
    if not s.failures:
        return "<p id='failures'>No failed units.</p>"
    parts = [f"<h3 id='failures'>Failed units ({len(s.failures)})</h3>"]
    by_stage: dict[str, list[dict]] = {}
    for f in s.failures:
        by_stage.setdefault(f["stage"], []).append(f)
    for stage, rows in by_stage.items():
        items = "".join(
            f"<li><b>{_e(f['label'])}</b> — {_e(f['error_type'])}: {_e(f['message'][:500])} "
            f"(after {f['attempts']} attempts; <a href='{_e(_href(s.failure_keys[f['unit_key']]))}'>failure row</a>)</li>"
            for f in rows)
        parts.append(f"<h4 id='failures-{_e(stage)}'>{_e(stage)}</h4><ul>{items}</ul>")
    return "".join(parts)


def _warnings_html(warnings: dict[str, Counter]) -> str:
    if not warnings:
        return "<p>No warnings in the rows.</p>"
    items = "".join(f"<li>{_e(text)} <span class='muted'>({n:,} {_e(table)} rows)</span></li>"
                    for table, counts in warnings.items() for text, n in counts.most_common())
    return f"<h3>Warnings the rows carry</h3><ul class='warnings'>{items}</ul>"


def tables_html(s: RunSummary) -> str:
    """Where each Parquet table is, and one line to read it."""
    rows = []
    for name in TABLES:
        if not s.row_counts.get(name):
            continue
        uri = s.table_uris[name]
        read = (f"import pyarrow.dataset as ds; t = ds.dataset({uri!r}, format='parquet').to_table()"
                if not uri.startswith("s3://") else
                f"import pyarrow.dataset as ds; t = ds.dataset({uri[5:]!r}, filesystem=pyarrow.fs.S3FileSystem("
                "endpoint_override=...), format='parquet').to_table()")
        rows.append(f"<tr><td><a href='{_e(_href(uri))}'>{_e(name)}</a></td><td>{s.row_counts[name]:,}</td>"
                    f"<td><code>{_e(read)}</code><br><code>duckdb -c \"SELECT * FROM '{_e(uri)}/*.parquet' LIMIT 5\""
                    "</code></td></tr>")
    return ("<section id='tables'><h2>The Parquet tables</h2><p>Every number on this page comes from these tables "
            "(committed rows only: a stray part of an interrupted write is never counted; "
            "<code>orchestrator.commit.RunRecorder(store, run).read_committed(name)</code> reads exactly those).</p>"
            f"<table class='files'><tr><th>table</th><th>rows</th><th>read it</th></tr>{''.join(rows)}</table></section>")


def _href(path_or_uri: str) -> str:
    return path_or_uri if "://" in path_or_uri else "file://" + path_or_uri


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
