"""DeepFashion Category-and-Attribute Prediction: one binary task per clothing attribute.

Reads, under the dataset root (datasets.md §4), ``Anno/`` (or, failing that, the newer release's
``Anno_coarse/``) ``list_attr_cloth.txt`` and ``list_attr_img.txt``, and
``Eval/list_eval_partition.txt``. Images are ``img/<Item>/img_XXXXXXXX.jpg`` relative to the root.

Decisions a reader cannot see in the code:
- Splits keep their names: train -> "train", val -> "val", test -> "test"; ``n_test`` counts test.
- Attribute id = 1-based row of ``list_attr_cloth.txt``; type 1..5 = texture/fabric/shape/part/style.
- Values: 1 positive, -1 negative, 0 unknown. Unknowns go to the label table's ``unknown`` list and
  count neither as positive nor as negative when a task is judged; every image stays in the group.
- The image name is both ``image_id`` and ``path``. Unusable images (unsafe path, missing or
  corrupt file per ``config.verify_images``) are dropped from the tables, each with a Skip.
- The 850 MB value matrix is parsed in ~16 MB blocks of whole lines with numpy over the bytes;
  a block that does not look perfectly regular is re-read line by line (``_RowParser._slow``),
  which is the reference semantics and produces the exact error message and line number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from tasks.config import LibraryConfig
from tasks.datasets._multilabel import BinaryLabel, binary_library, slugify
from tasks.errors import ManifestError
from tasks.images import check_images
from tasks.registry import register_adapter
from tasks.spec import Skip, SourceLibrary

SOURCE = "deepfashion"
TYPE_NAMES = {1: "texture", 2: "fabric", 3: "shape", 4: "part", 5: "style"}
ANNO_DIRS = ("Anno", "Anno_coarse")  # the original release, then the newer one (same attribute files)
_TYPE_IDS = {str(t): t for t in TYPE_NAMES}
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}  # indices into tasks.tables.SPLITS
CHUNK_BYTES = 16 << 20


@dataclass(frozen=True)
class Attribute:
    attr_id: int  # 1-based row of list_attr_cloth.txt
    name: str
    type_id: int


@dataclass
class AttributeMatrix:
    """``list_attr_img.txt`` in sparse form: (row, attribute id) pairs sorted by row, then id."""

    names: list[str]  # image names in file order (row i is on line i + 3)
    positive: tuple[np.ndarray, np.ndarray]
    unknown: tuple[np.ndarray, np.ndarray]


@register_adapter(SOURCE)
def build_deepfashion(root: Path, config: LibraryConfig) -> SourceLibrary:
    """Read the DeepFashion attribute manifests under ``root`` and cut one binary task per attribute.

    Raises:
        ManifestError: a missing file, a malformed row, or the attribute and partition files disagreeing.
    """
    root = Path(root)
    cloth_path, img_path, part_path = locate_files(root)
    attributes = read_attr_cloth(cloth_path)
    matrix = read_attr_img(img_path, n_attributes=len(attributes))
    split = join_partition(matrix.names, read_partition(part_path), img_path=img_path, part_path=part_path)

    img_file = img_path.relative_to(root).as_posix()
    problems = check_images(root, matrix.names, config.verify_images, manifest=img_path)
    skips = [Skip(SOURCE, f"image {matrix.names[i]}", why, img_file, i + 3) for i, why in problems.items()]
    return binary_library(
        SOURCE, root, [_binary_label(a) for a in attributes],
        image_ids=matrix.names, paths=matrix.names, split=split, positive=matrix.positive, unknown=matrix.unknown,
        drop=problems, skips=skips, kind="binary_attribute", config=config, max_tasks=config.deepfashion_max_tasks,
        cap_key="deepfashion_max_tasks", test_name="test", label_file=cloth_path, what="attribute",
    )


def locate_files(root: Path) -> tuple[Path, Path, Path]:
    """Paths of list_attr_cloth.txt, list_attr_img.txt (from Anno/ or Anno_coarse/) and list_eval_partition.txt."""
    anno = next((root / d for d in ANNO_DIRS if (root / d / "list_attr_img.txt").is_file()), root / ANNO_DIRS[0])
    paths = (anno / "list_attr_cloth.txt", anno / "list_attr_img.txt", root / "Eval" / "list_eval_partition.txt")
    for path in paths:
        if not path.is_file():
            raise ManifestError(
                path, "required DeepFashion file not found",
                fix=f"is the dataset root ({root}) right? It should hold Anno/ (or Anno_coarse/) with "
                "list_attr_cloth.txt and list_attr_img.txt, and Eval/list_eval_partition.txt",
            )
    return paths


def read_attr_cloth(path: Path) -> list[Attribute]:
    """Attributes in file order: ``<name with single spaces>  <type 1..5>`` per row."""
    with open(path, "rb") as f:
        count = read_header(f, path, first_column="attribute_name", what="attributes")
        rows = _text_rows(f, path)
    out = []
    for number, line in rows:
        parts = line.rsplit(None, 1)  # names hold single spaces: the type is the last token
        type_id = _TYPE_IDS.get(parts[-1])
        if len(parts) != 2 or type_id is None:
            raise ManifestError(path, f"expected '<attribute name>  <type 1-5>', found {line.strip()!r}", line=number)
        out.append(Attribute(len(out) + 1, parts[0].strip(), type_id))
    check_count(path, count, len(out), "attributes")
    return out


def read_partition(path: Path) -> tuple[list[str], np.ndarray, list[int]]:
    """Image names, split codes (SPLIT_CODES) and line numbers of ``list_eval_partition.txt``."""
    with open(path, "rb") as f:
        count = read_header(f, path, first_column="image_name", what="images")
        rows = _text_rows(f, path)
    names, codes = [], np.empty(len(rows), dtype=np.int8)
    for i, (number, line) in enumerate(rows):
        parts = line.split()
        code = SPLIT_CODES.get(parts[-1], -1)
        if len(parts) != 2 or code < 0:
            raise ManifestError(
                path, f"expected '<image name>  <train|val|test>', found {line.strip()!r}", line=number,
                fix="evaluation_status must be train, val or test",
            )
        names.append(parts[0])
        codes[i] = code
    check_count(path, count, len(names), "images")
    return names, codes, [number for number, _ in rows]


def join_partition(
    names: list[str], partition: tuple[list[str], np.ndarray, list[int]], *, img_path: Path, part_path: Path
) -> np.ndarray:
    """Split code of each attribute-file image; both files must list the same images, each once."""
    part_names, codes, part_lines = partition
    if len(set(names)) != len(names):
        _check_unique(names, img_path, [i + 3 for i in range(len(names))])
    where = dict(zip(part_names, range(len(part_names))))
    if len(where) != len(part_names):
        _check_unique(part_names, part_path, part_lines)
    index = np.fromiter((where.get(n, -1) for n in names), dtype=np.int64, count=len(names))
    missing = np.flatnonzero(index < 0)
    if missing.size:
        i = int(missing[0])
        raise ManifestError(
            img_path, f"image {names[i]!r} is not in {part_path.name} ({missing.size} missing in all)", line=i + 3,
            fix=f"both files must list the same images; check {part_path}",
        )
    if len(part_names) != len(names):
        extra = sorted(set(range(len(part_names))) - set(index.tolist()))
        raise ManifestError(
            part_path, f"image {part_names[extra[0]]!r} is not in {img_path.name} ({len(extra)} missing in all)",
            line=part_lines[extra[0]], fix=f"both files must list the same images; check {img_path}",
        )
    return codes[index]


def read_header(f: BinaryIO, path: Path, *, first_column: str, what: str) -> int:
    """Read line 1 (the row count) and line 2 (column names, the first one ``first_column``)."""
    first = f.readline()
    try:
        count = int(first)
    except ValueError:
        raise ManifestError(
            path, f"expected the number of {what}, found {first.strip()[:40].decode(errors='replace')!r}",
            line=1, fix="DeepFashion list files start with the row count, then a line of column names",
        ) from None
    second = f.readline().split()
    if not second or second[0].decode(errors="replace").lower() != first_column:
        raise ManifestError(
            path, f"expected the column names, starting with {first_column!r}", line=2,
            fix="DeepFashion list files start with the row count, then a line of column names",
        )
    return count


def check_count(path: Path, count: int, rows: int, what: str) -> None:
    if count != rows:
        raise ManifestError(
            path, f"the count line says {count} {what} but the file has {rows} rows (lines 3-{rows + 2})", line=1,
            fix="the file looks truncated or edited; re-download or re-extract it",
        )


def _text_rows(f: BinaryIO, path: Path) -> list[tuple[int, str]]:
    """The remaining non-blank lines as (line number, text); blank lines only at the end."""
    data = f.read()
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        line = 3 + data.count(b"\n", 0, exc.start)
        raise ManifestError(path, f"not UTF-8 text ({exc.reason})", line=line) from None
    while lines and not lines[-1].strip():
        lines.pop()
    rows = [(number, line) for number, line in enumerate(lines, start=3)]
    blank = next((number for number, line in rows if not line.strip()), None)
    if blank is not None:
        raise ManifestError(path, "empty line between rows", line=blank, fix="remove the empty line")
    return rows


def _check_unique(names: list[str], path: Path, lines: list[int]) -> None:
    seen: dict[str, int] = {}
    for name, line in zip(names, lines):
        if name in seen:
            raise ManifestError(path, f"image {name!r} appears twice (first on line {seen[name]})", line=line,
                                fix="each image must be listed once")
        seen[name] = line


def _binary_label(a: Attribute) -> BinaryLabel:
    return BinaryLabel(
        label_id=a.attr_id,
        name=a.name,
        base_id=f"{SOURCE}/{TYPE_NAMES[a.type_id]}/{slugify(a.name)}",
        rule=f"positive iff attribute {a.attr_id} ({a.name!r}, type {a.type_id} {TYPE_NAMES[a.type_id]}) is 1 in "
        "list_attr_img.txt, negative if -1, 0 = unknown (neither); one shared image group",
    )


# ---------------------------------------------------------------------------------------------------
# list_attr_img.txt: 289,222 rows x 1,000 values. Never one Python string per value.


def read_attr_img(path: Path, *, n_attributes: int, chunk_bytes: int = CHUNK_BYTES) -> AttributeMatrix:
    """Parse ``list_attr_img.txt``: each row is an image name and exactly ``n_attributes`` values in {-1, 0, 1}."""
    with open(path, "rb") as f:
        count = read_header(f, path, first_column="image_name", what="images")
        parser = _RowParser(path, n_attributes)
        for chunk in _line_chunks(f, chunk_bytes):
            parser.feed(chunk)
    matrix = parser.finish()
    check_count(path, count, len(matrix.names), "images")
    return matrix


def _line_chunks(f: BinaryIO, size: int) -> Iterator[bytes]:
    """Blocks of about ``size`` bytes, each ending at a line end (a final newline is supplied)."""
    while chunk := f.read(size):
        if not chunk.endswith(b"\n"):
            chunk += f.readline()
            if not chunk.endswith(b"\n"):
                chunk += b"\n"
        yield chunk


_PATH_WINDOW = 256  # a name longer than this sends its block to the line-by-line parser
_VALUES = {b"-1": -1, b"0": 0, b"1": 1}


@dataclass
class _Block:
    names: list[str]
    positive: tuple[np.ndarray, np.ndarray]  # (row within block, attribute id)
    unknown: tuple[np.ndarray, np.ndarray]


class _RowParser:
    """Parses blocks of whole lines, fast when a block is regular, line by line otherwise."""

    def __init__(self, path: Path, n_attributes: int) -> None:
        self.path, self.n = path, n_attributes
        self.next_line = 3  # line number of the next block's first line
        self.blank_line: int | None = None  # a blank line is fine only if no row follows it
        self.blocks: list[_Block] = []

    def feed(self, chunk: bytes) -> None:
        block = _parse_fast(chunk, self.n) if self.blank_line is None else None
        self.blocks.append(block if block is not None else self._slow(chunk))
        self.next_line += chunk.count(b"\n")

    def finish(self) -> AttributeMatrix:
        offsets = np.cumsum([0] + [len(b.names) for b in self.blocks])

        def join(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
            rows = [r + o for (r, _), o in zip(pairs, offsets)]
            ids = [i for _, i in pairs]
            return np.concatenate(rows or [np.empty(0, np.int64)]), np.concatenate(ids or [np.empty(0, np.int16)])

        names = [n for b in self.blocks for n in b.names]
        return AttributeMatrix(names, join([b.positive for b in self.blocks]), join([b.unknown for b in self.blocks]))

    def _slow(self, chunk: bytes) -> _Block:
        names: list[str] = []
        pos: list[tuple[int, int]] = []
        unk: list[tuple[int, int]] = []
        for number, raw in enumerate(chunk.split(b"\n")[:-1], start=self.next_line):
            tokens = raw.split()
            if not tokens:
                self.blank_line = self.blank_line or number
                continue
            if self.blank_line is not None:
                raise ManifestError(self.path, "empty line between rows", line=self.blank_line, fix="remove it")
            values = [_VALUES.get(t) for t in tokens[1:]]
            name = self._name(tokens[0], number)
            if len(values) != self.n:
                raise ManifestError(
                    self.path, f"image {name!r} has {len(values)} attribute values, expected {self.n}", line=number,
                    fix="one value per row of list_attr_cloth.txt; a short last row means the file is truncated",
                )
            if None in values:
                j = values.index(None)
                raise ManifestError(
                    self.path, f"value {j + 1} of image {name!r} is {tokens[j + 1].decode(errors='replace')!r}",
                    line=number, fix="attribute values must be -1 (negative), 0 (unknown) or 1 (positive)",
                )
            row = len(names)
            names.append(name)
            pos += [(row, j) for j, v in enumerate(values, start=1) if v == 1]
            unk += [(row, j) for j, v in enumerate(values, start=1) if v == 0]
        return _Block(names, _as_arrays(pos), _as_arrays(unk))

    def _name(self, token: bytes, number: int) -> str:
        try:
            return token.decode("utf-8")
        except UnicodeDecodeError:
            raise ManifestError(self.path, f"image name {token!r} is not UTF-8", line=number) from None


def _as_arrays(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r for r, _ in pairs], np.int64), np.array([j for _, j in pairs], np.int16)


def _parse_fast(chunk: bytes, n_attr: int) -> _Block | None:
    """Vectorised parse of a block of lines, or None if the block is not perfectly regular.

    Regular: every line is a name (no whitespace, < 256 bytes), then values separated by spaces
    (CR allowed), each value exactly ``1``, ``0`` or ``-1``, and ``n_attr`` values per line.
    None sends the block to ``_RowParser._slow``. Only whole-block numpy passes over the bytes.
    """
    buf = np.frombuffer(chunk, dtype=np.uint8)
    newline = buf == 10
    ends = np.flatnonzero(newline)
    starts = np.concatenate(([0], ends[:-1] + 1))
    window = buf[np.minimum(starts[:, None] + np.arange(_PATH_WINDOW), buf.size - 1)]  # (lines, 256)
    first_space = (window == 32).argmax(axis=1)
    name_ends = starts + first_space
    in_name = np.arange(_PATH_WINDOW) < first_space[:, None]
    if (first_space == 0).any() or (name_ends >= ends).any() or (window[in_name] < 33).any():
        return None  # blank line, leading blank, name without values, too long, or holding a tab/CR
    # Blank out the names; what is left must be values and separators only.
    lengths = name_ends - starts
    work = buf.copy()
    work[np.arange(lengths.sum()) + np.repeat(starts - np.cumsum(lengths) + lengths, lengths)] = 32
    one, zero, minus = work == 49, work == 48, work == 45
    blank = (work == 32) | (work == 13) | newline
    n_one, n_zero, n_minus = np.count_nonzero(one), np.count_nonzero(zero), np.count_nonzero(minus)
    if n_one + n_zero + n_minus + np.count_nonzero(blank) != buf.size:
        return None  # some other byte
    # Each value is 1, 0 or -1 iff: every digit ends its token, there are as many tokens as digits,
    # and every '-' is followed by a '1'. (Position 0 is a blanked name byte, the last one a newline.)
    digit = one | zero
    n_digit = n_one + n_zero
    if (
        np.count_nonzero(digit[:-1] & blank[1:]) != n_digit
        or np.count_nonzero(blank[:-1] & ~blank[1:]) != n_digit
        or np.count_nonzero(minus[:-1] & one[1:]) != n_minus
    ):
        return None
    digits = np.flatnonzero(digit)
    if (np.diff(np.searchsorted(digits, ends), prepend=0) != n_attr).any():
        return None
    try:
        names = [chunk[a:b].decode("utf-8") for a, b in zip(starts.tolist(), name_ends.tolist())]
    except UnicodeDecodeError:
        return None
    # The k-th value of the block is row k // n_attr, attribute k % n_attr + 1.
    k_pos = np.searchsorted(digits, np.flatnonzero(one[1:] & blank[:-1]) + 1)  # '1' after a separator
    k_unk = np.searchsorted(digits, np.flatnonzero(zero))
    return _Block(names, (k_pos // n_attr, (k_pos % n_attr + 1).astype(np.int16)),
                  (k_unk // n_attr, (k_unk % n_attr + 1).astype(np.int16)))
