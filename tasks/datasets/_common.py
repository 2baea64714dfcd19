"""Helpers shared by the adapters: file lookup, JSON and text-table reading with errors that name the
file and line, ranking of taxonomic groups (iNat2018, CUB-200), and the images table (all four).
The image check over many images is ``tasks.images.check_images``; the multi-label sources' own
helpers are in ``_multilabel.py``.

Not a base class: each adapter stays a plain function that calls these.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from tasks.errors import ManifestError
from tasks.tables import IMAGES_SCHEMA, SPLITS


def require_file(root: Path, name: str, *, dataset: str, expected: str) -> Path:
    """``root / name``, or a ManifestError saying the file is missing and the root may be wrong."""
    path = root / name
    if not path.is_file():
        raise ManifestError(
            path,
            f"required {dataset} file {name!r} not found",
            fix=f"is the dataset root right? It should be the folder that holds {expected}",
        )
    return path


def load_json(path: Path) -> Any:
    """Parse a JSON file; a syntax error becomes a ManifestError with the line and column.

    The cyclic garbage collector is paused while json builds millions of dicts and lists: every
    automatic collection would walk all of them again (a 1M-image iMat train.json parses in 6 s with
    the collector on and 2 s with it paused). Nothing parsed is garbage before we return.
    """
    text = path.read_bytes()
    enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # An unterminated string runs to the end of the file: that is truncation too.
        if exc.pos >= len(exc.doc.rstrip()) or exc.msg.startswith("Unterminated string"):
            problem = f"the JSON document ends early, the file looks truncated ({exc.msg})"
        else:
            problem = f"not valid JSON: {exc.msg} at column {exc.colno}"
        raise ManifestError(path, problem, line=exc.lineno, fix="re-download or re-extract the file") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    finally:
        if enabled:
            gc.enable()


def json_list(doc: Any, key: str, *, path: Path) -> list[Any]:
    """``doc[key]``, which must be a list (a missing or wrong top-level key is a ManifestError)."""
    if not isinstance(doc, dict) or key not in doc:
        raise ManifestError(path, f"top-level key {key!r} is missing", fix="is this the right file?")
    if not isinstance(doc[key], list):
        raise ManifestError(path, f"top-level {key!r} is a {type(doc[key]).__name__}, expected a list")
    return doc[key]


def json_column(records: list[Any], key: str, *, path: Path, where: str, kind: type) -> list[Any]:
    """``[r[key] for r in records]``, checked: every record is an object with ``key`` of type ``kind``.

    The fast path is one list comprehension; only on failure is the offending record searched for.
    ``where`` names the list in messages, e.g. ``images`` gives ``images[12]``.
    """
    try:
        values = [r[key] for r in records]
    except (KeyError, TypeError, IndexError):
        i, rec = next((i, r) for i, r in enumerate(records) if not isinstance(r, dict) or key not in r)
        problem = f"record has no {key!r} key" if isinstance(rec, dict) else "record is not a JSON object"
        raise ManifestError(path, problem, record=f"{where}[{i}]") from None
    # bool is a subclass of int, but true/false is never a valid id.
    bad = next((i for i, v in enumerate(values) if type(v) is not kind), None)
    if bad is not None:
        raise ManifestError(
            path,
            f"{key!r} is {json.dumps(values[bad])}, expected {'an integer' if kind is int else 'a string'}",
            record=f"{where}[{bad}]",
        )
    return values


def first_duplicate(ids: np.ndarray) -> tuple[int, int] | None:
    """Positions (first, second) of the first repeated value in ``ids``, or None if all differ."""
    order = np.argsort(ids, kind="stable")
    same = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if same.size == 0:
        return None
    pair = np.sort(order[[same[0], same[0] + 1]])
    return int(pair[0]), int(pair[1])


def lookup(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in ``keys`` (keys unique), or -1 where it is absent. Vectorised."""
    if keys.size == 0:
        return np.full(values.shape, -1, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    pos = np.minimum(np.searchsorted(keys[order], values), keys.size - 1)
    found = keys[order][pos] == values
    return np.where(found, order[pos], -1)


def read_text_rows(path: Path, columns: Sequence[str], *, int_columns: Sequence[int]) -> list[tuple[int, list[Any]]]:
    """Rows of a space-separated text file as ``(line_number, values)``; blank lines are ignored.

    Every row must have exactly ``len(columns)`` tokens; tokens at ``int_columns`` must be integers.
    """
    rows: list[tuple[int, list[Any]]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ManifestError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    fmt = " ".join(f"<{c}>" for c in columns)
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != len(columns):
            raise ManifestError(
                path, f"expected {len(columns)} space-separated columns ({fmt}), found {len(tokens)}", line=number
            )
        for c in int_columns:
            try:
                tokens[c] = int(tokens[c])
            except ValueError:
                raise ManifestError(path, f"{columns[c]} {tokens[c]!r} is not an integer", line=number) from None
        rows.append((number, tokens))
    return rows


def index_rows(rows: list[tuple[int, list[Any]]], *, path: Path, what: str) -> dict[int, tuple[int, list[Any]]]:
    """Rows keyed by their first (integer id) column; a repeated id is a ManifestError naming both lines."""
    out: dict[int, tuple[int, list[Any]]] = {}
    for number, values in rows:
        key = values[0]
        if key in out:
            raise ManifestError(path, f"{what} {key} appears twice (first on line {out[key][0]})", line=number)
        out[key] = (number, values)
    return out


@dataclass(frozen=True)
class Group:
    """A taxonomic group (an order or a family) with its usable species, as candidate for a task."""

    name: str
    species: tuple[int, ...]  # its usable species (those with enough training images), as the adapter keys them
    n_train: int  # training images of those species


@dataclass(frozen=True)
class Selection:
    """Which groups became tasks (in rank order) and why each other group did not."""

    chosen: list[Group]
    rejected: list[tuple[str, str]]  # (group name, reason)
    n_qualifying: int  # groups with enough species, before the cap


def select_groups(
    groups: Sequence[Group], *, min_species: int, max_groups: int, min_key: str, max_key: str, min_train: int
) -> Selection:
    """Keep groups with ``>= min_species`` species, ranked by training images (desc) then name; cap.

    ``min_key``/``max_key`` name the config fields in the reasons given for rejected groups.
    """
    big = sorted((g for g in groups if len(g.species) >= min_species), key=lambda g: (-g.n_train, g.name))
    rejected = [
        (g.name, f"{len(g.species)} species with >= {min_train} training image(s); a task needs >= {min_species} "
         f"({min_key})")
        for g in sorted(groups, key=lambda g: g.name)
        if len(g.species) < min_species
    ]
    rejected += [
        (g.name, f"ranks {rank} of {len(big)} by training images ({g.n_train}); only the first {max_groups} are kept "
         f"({max_key})")
        for rank, g in enumerate(big[max_groups:], start=max_groups + 1)
    ]
    return Selection(chosen=big[:max_groups], rejected=rejected, n_qualifying=len(big))


def images_table(
    source: str,
    *,
    image_ids: Sequence[Any] | pa.Array,
    paths: Sequence[str] | pa.Array,
    splits: np.ndarray,
    category_ids: np.ndarray | None = None,
) -> pa.Table:
    """An ``IMAGES_SCHEMA`` table; ``splits`` holds indices into ``tasks.tables.SPLITS``.

    ``category_ids`` is None for the multi-label sources (a null ``category_id`` column).
    """
    n = len(image_ids)
    columns = [
        decode(np.zeros(n, np.int8), [source]),
        pa.array(np.arange(n, dtype=np.int32)),
        _strings(image_ids),
        _strings(paths),
        decode(np.asarray(splits, np.int8), list(SPLITS)),
        pa.nulls(n, pa.int32()) if category_ids is None else pa.array(category_ids.astype(np.int32)),
    ]
    return pa.Table.from_arrays(columns, schema=IMAGES_SCHEMA)


def decode(codes: np.ndarray, names: list[str]) -> pa.Array:
    """A string array ``names[codes]``, built without one Python string per row."""
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(names)).cast(pa.string())


def _strings(values: Sequence[Any] | pa.Array) -> pa.Array:
    return values.cast(pa.string()) if isinstance(values, pa.Array) else pa.array(values, pa.string())
