"""iMaterialist Challenge (Fashion) at FGVC5, 2018: one binary task per label of the 228-label map.

Reads, under the dataset root (datasets.md §3), ``train.json`` and ``validation.json``
(``{"images": [{"url", "imageId"}], "annotations": [{"labelId": [str, ...], "imageId"}]}``; string
image ids, label ids as strings or integers, other top-level keys ignored). Images are
``<root>/train/<imageId>.jpg`` and ``<root>/validation/<imageId>.jpg``. The label map is
``config.imat_label_map``, else ``<root>/iMat_fashion_2018_label_map_228.csv``, else the shipped copy.

Decisions a reader cannot see in the code:
- Splits: train.json -> "train", validation.json -> "test" (the competition's test set has no labels).
- ``image_id`` is the dataset's imageId, which is unique only within a split (both files count from
  "1"); ``path`` (``train/1.jpg``, ``validation/1.jpg``) is unique.
- An image whose annotation has an empty labelId list is a negative for every label (as in the
  reference's binary expansion). An image with no annotation record at all is dropped with a Skip:
  nothing says it was labelled. A label listed twice for one image counts once.
- Tasks are cut by ``_multilabel.binary_tasks``: label-id order, so with the official map task t is label
  t + 1. A kept task with no positive in validation is noted by a Skip "kept; no positives in validation"
  (three official labels reportedly never occur there).
- Scale (~1M images x ~5 labels): the only per-image Python objects are json's own and one
  imageId -> position dict per file; labels go through numpy.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from importlib import resources
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.config import LibraryConfig
from tasks.datasets._common import json_column, json_list, load_json, require_file
from tasks.datasets._multilabel import BinaryLabel, binary_library, slugify
from tasks.errors import ManifestError
from tasks.images import check_images
from tasks.registry import register_adapter
from tasks.spec import Skip, SourceLibrary

SOURCE = "imat2018"
MAP_NAME = "iMat_fashion_2018_label_map_228.csv"
MAP_COLUMNS = ["labelId", "taskId", "labelName", "taskName"]
SPLIT_FILES = (("train.json", "train", 0), ("validation.json", "validation", 2))  # file, image folder, SPLITS index
_EMPTY = (np.empty(0, np.int64), np.empty(0, np.int16))  # iMat has no "unknown" labels
_EXPECTED = "train.json, validation.json and the train/ and validation/ image folders"


@dataclass(frozen=True)
class ImatLabel:
    label_id: int
    group_id: int  # the map's taskId: 1 category, 2 color, ... (8 groups, no 7)
    name: str
    group: str


@dataclass
class SplitManifest:
    """One JSON file: its images in file order and its (image row, label id) pairs sorted by row, label."""

    file: str
    folder: str
    image_ids: list[str]
    positive: tuple[np.ndarray, np.ndarray]
    unannotated: np.ndarray  # rows of images without an annotation record


@register_adapter(SOURCE)
def build_imat2018(root: Path, config: LibraryConfig) -> SourceLibrary:
    """Read the iMaterialist 2018 manifests under ``root`` and cut one binary task per label.

    Raises:
        ManifestError: a missing or malformed file, a duplicate imageId, an annotation for an unknown
            image, or a labelId that is not in the label map.
    """
    root = Path(root)
    map_path = label_map_path(root, config)
    labels = read_label_map(map_path)
    parts = [
        read_split(require_file(root, name, dataset="iMaterialist 2018", expected=_EXPECTED), folder=folder,
                   labels=labels, map_path=map_path)
        for name, folder, _ in SPLIT_FILES
    ]
    image_ids = [i for p in parts for i in p.image_ids]
    paths = [f"{p.folder}/{i}.jpg" for p in parts for i in p.image_ids]
    offsets = np.cumsum([0] + [len(p.image_ids) for p in parts])
    split = np.concatenate([np.full(len(p.image_ids), code, np.int8) for p, (_, _, code) in zip(parts, SPLIT_FILES)])
    positive = (np.concatenate([p.positive[0] + o for p, o in zip(parts, offsets)]),
                np.concatenate([p.positive[1] for p in parts]))

    reasons = _unusable_images(root, parts, paths, offsets, config.verify_images)
    file_of = np.searchsorted(offsets, list(reasons), side="right") - 1
    skips = [Skip(SOURCE, f"imageId {image_ids[i]!r} ({paths[i]})", why, parts[f].file)
             for (i, why), f in zip(reasons.items(), file_of)]
    return binary_library(
        SOURCE, root, [_binary_label(label) for label in labels],
        image_ids=image_ids, paths=paths, split=split, positive=positive, unknown=_EMPTY, drop=reasons, skips=skips,
        kind="binary_label", config=config, max_tasks=config.imat_max_tasks, cap_key="imat_max_tasks",
        test_name="validation", label_file=map_path, what="label",
    )


def _unusable_images(
    root: Path, parts: list[SplitManifest], paths: list[str], offsets: np.ndarray, mode: str
) -> dict[int, str]:
    """Reason by image position (sorted): no annotation record, or the image file check failed."""
    reasons = {int(r + o): f"no annotation record in {p.file}; an image needs one (an empty labelId list makes it "
               "a negative for every label)" for p, o in zip(parts, offsets) for r in p.unannotated}
    annotated = [i for i in range(len(paths)) if i not in reasons] if reasons else range(len(paths))
    checked = check_images(root, [paths[i] for i in annotated], mode, manifest=root / SPLIT_FILES[0][0])
    reasons.update({annotated[i]: why for i, why in checked.items()})
    return dict(sorted(reasons.items()))


def label_map_path(root: Path, config: LibraryConfig) -> Path:
    """``config.imat_label_map``, else the copy in the dataset root, else the one shipped in tasks/data."""
    if config.imat_label_map is not None:
        return Path(config.imat_label_map)
    beside = root / MAP_NAME
    if beside.is_file():
        return beside
    return Path(str(resources.files("tasks") / "data" / "imat2018_label_map_228.csv"))


def read_label_map(path: Path) -> list[ImatLabel]:
    """The labelId,taskId,labelName,taskName CSV (quoted fields allowed), sorted by labelId."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(path, "label map not found", fix="point imat_label_map at the CSV, or unset it to use "
                            "the shipped 228-label map") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    if header[:4] != MAP_COLUMNS:
        raise ManifestError(path, f"the header must start with {','.join(MAP_COLUMNS)}, found {','.join(header)!r}",
                            line=1)
    labels: dict[int, ImatLabel] = {}
    for row in reader:
        if not any(field.strip() for field in row):
            continue
        try:
            label_id, group_id = int(row[0]), int(row[1])
            name, group = row[2].strip(), row[3].strip()
        except (ValueError, IndexError):
            raise ManifestError(path, f"expected integer labelId and taskId, then labelName and taskName; found {row}",
                                line=reader.line_num) from None
        if not 1 <= label_id <= 32767 or not name or not group:
            raise ManifestError(path, f"labelId must be in 1..32767 and names non-empty; found {row}",
                                line=reader.line_num)
        if label_id in labels:
            raise ManifestError(path, f"labelId {label_id} appears twice", line=reader.line_num)
        labels[label_id] = ImatLabel(label_id, group_id, name, group)
    if not labels:
        raise ManifestError(path, "the label map has no labels")
    return sorted(labels.values(), key=lambda label: label.label_id)


def read_split(path: Path, *, folder: str, labels: list[ImatLabel], map_path: Path) -> SplitManifest:
    """Parse one iMat JSON file; labels are checked against the map; ids must be unique and joined."""
    doc = load_json(path)  # pauses the garbage collector while json builds ~1M dicts
    images, annotations = json_list(doc, "images", path=path), json_list(doc, "annotations", path=path)
    image_ids = json_column(images, "imageId", path=path, where="images", kind=str)
    position = dict(zip(image_ids, range(len(image_ids))))
    if len(position) != len(image_ids):
        first = next(i for i, x in enumerate(image_ids) if position[x] != i)  # the dict kept the last one
        second = image_ids.index(image_ids[first], first + 1)
        raise ManifestError(path, f"imageId {image_ids[second]!r} appears twice (also images[{first}])",
                            record=f"images[{second}]", fix="each image must be listed once")
    ann_ids = json_column(annotations, "imageId", path=path, where="annotations", kind=str)
    rows = np.array([position.get(x, -1) for x in ann_ids], dtype=np.int64)
    _check_annotation_rows(rows, ann_ids, path)
    lists = _label_lists(annotations, ann_ids, path)
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    flat = list(chain.from_iterable(lists))
    codes = _label_codes(flat, labels)
    bad = np.flatnonzero(codes < 0)
    if bad.size:
        k = int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))
        raise ManifestError(path, f"labelId {json.dumps(flat[bad[0]])} is not in the label map {map_path}",
                            record=_where(k, ann_ids), fix="use the label map that matches this data "
                            "(config imat_label_map) or correct the record")
    key = np.sort(np.repeat(rows, lengths) * 65536 + codes)  # by (row, label); repeats merged below
    key = key[np.concatenate(([True], key[1:] != key[:-1]))]
    annotated = np.zeros(len(image_ids), dtype=bool)
    annotated[rows] = True
    return SplitManifest(path.name, folder, image_ids, (key >> 16, key & 0xFFFF), np.flatnonzero(~annotated))


def _where(k: int, ann_ids: list[str]) -> str:
    return f"annotations[{k}] (imageId {ann_ids[k]!r})"


def _check_annotation_rows(rows: np.ndarray, ann_ids: list[str], path: Path) -> None:
    """Every annotation names a listed image, and no image has two annotation records."""
    unknown = np.flatnonzero(rows < 0)
    if unknown.size:
        raise ManifestError(path, f"annotation for imageId {ann_ids[unknown[0]]!r}, which is not in 'images' "
                            f"({unknown.size} in all)", record=_where(int(unknown[0]), ann_ids),
                            fix="the images and annotations lists must describe the same images")
    order = np.argsort(rows, kind="stable")
    twice = np.flatnonzero(rows[order][1:] == rows[order][:-1])
    if twice.size:
        first, second = sorted(order[[twice[0], twice[0] + 1]].tolist())
        raise ManifestError(path, f"two annotation records for imageId {ann_ids[second]!r} (also annotations[{first}])",
                            record=_where(second, ann_ids), fix="merge them into one labelId list")


def _label_lists(annotations: list[Any], ann_ids: list[str], path: Path) -> list[list[Any]]:
    try:
        lists = [a["labelId"] for a in annotations]
    except KeyError:
        k = next(k for k, a in enumerate(annotations) if "labelId" not in a)
        raise ManifestError(path, "record has no 'labelId' key", record=_where(k, ann_ids)) from None
    bad = next((k for k, x in enumerate(lists) if type(x) is not list), None)
    if bad is not None:
        raise ManifestError(path, f"'labelId' is {json.dumps(lists[bad])}, expected a list of label ids",
                            record=_where(bad, ann_ids))
    return lists


def _label_codes(flat: list[Any], labels: list[ImatLabel]) -> np.ndarray:
    """Label id of each labelId value (a string like "66" or an integer), -1 if not in the map."""
    known = np.array([label.label_id for label in labels], dtype=np.int64)
    try:  # the real files: all strings, looked up in one vectorised pass
        where = pc.index_in(pa.array(flat, pa.string()), value_set=pa.array([str(x) for x in known]))
        return np.where(where.is_null().to_numpy(zero_copy_only=False), -1, known[where.fill_null(0).to_numpy()])
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    code_of: dict[Any, int] = {str(x): int(x) for x in known} | {int(x): int(x) for x in known}
    # bool is an int (true == 1) and lists are unhashable: neither is a label id.
    return np.array([code_of.get(x, -1) if type(x) in (str, int) else -1 for x in flat], dtype=np.int64)


def _binary_label(label: ImatLabel) -> BinaryLabel:
    return BinaryLabel(
        label_id=label.label_id,
        name=label.name,
        base_id=f"{SOURCE}/{slugify(label.group)}/{slugify(label.name)}",
        rule=f"positive iff labelId {label.label_id} ({label.name!r}, group {label.group!r}) is in the image's "
        "labelId list, else negative; train.json -> train, validation.json -> test; one shared image group",
    )

