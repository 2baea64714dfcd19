"""The deepfashion adapter on tiny manifests in the exact on-disk format, good and bad."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.config import LibraryConfig
from tasks.datasets import deepfashion
from tasks.datasets.deepfashion import build_deepfashion, read_attr_img
from tasks.errors import ManifestError
from tasks.images import check_images, image_file_problem
from tasks.tables import IMAGES_SCHEMA, LABELS_SCHEMA

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.synth_deepfashion import REAL_IMAGES, _partition, write_deepfashion_manifests  # noqa: E402

ATTRS = [("a-line", 3), ("abstract chevron print", 1), ("cotton", 2), ("lace", 2), ("v-neck collar", 4)]
# image -> values; split
ROWS = {
    "img/Sheer_Pleated-Front_Blouse/img_00000001.jpg": ([1, 1, -1, -1, 1], "train"),
    "img/Sheer_Pleated-Front_Blouse/img_00000002.jpg": ([-1, 1, 1, 0, -1], "train"),
    "img/Sheer_Pleated-Front_Blouse/img_00000003.jpg": ([-1, -1, 1, -1, -1], "val"),
    "img/Boxy_Tee/img_00000001.jpg": ([1, -1, -1, 0, -1], "test"),
    "img/Boxy_Tee/img_00000002.jpg": ([-1, -1, -1, -1, -1], "train"),
}


def fmt_values(values: list[int]) -> str:
    return " ".join(f"{v:2d}" for v in values)


def write_dataset(root: Path, *, attrs=ATTRS, rows=ROWS, anno: str = "Anno", images: bool = True) -> Path:
    (root / anno).mkdir(parents=True, exist_ok=True)
    (root / "Eval").mkdir(parents=True, exist_ok=True)
    cloth = [str(len(attrs)), "attribute_name  attribute_type"] + [f"{n:<28} {t}" for n, t in attrs]
    (root / anno / "list_attr_cloth.txt").write_text("\n".join(cloth) + "\n")
    img = [str(len(rows)), "image_name  attribute_labels"] + [f"{p:<70} {fmt_values(v)}" for p, (v, _) in rows.items()]
    (root / anno / "list_attr_img.txt").write_text("\n".join(img) + "\n")
    part = [str(len(rows)), "image_name  evaluation_status"] + [f"{p:<70} {s}" for p, (_, s) in rows.items()]
    (root / "Eval" / "list_eval_partition.txt").write_text("\n".join(part) + "\n")
    if images:
        for p in rows:
            (root / p).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 4), (200, 10, 10)).save(root / p, "JPEG")
    return root


def edit_lines(path: Path, edit) -> None:
    lines = path.read_text().split("\n")
    edit(lines)
    path.write_text("\n".join(lines))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "deepfashion")


def test_builds_tables_tasks_and_skips(root: Path) -> None:
    lib = build_deepfashion(root, LibraryConfig())
    assert lib.images.schema == IMAGES_SCHEMA and lib.labels.schema == LABELS_SCHEMA
    assert lib.images.column("path").to_pylist() == list(ROWS)
    assert lib.images.column("split").to_pylist() == ["train", "train", "val", "test", "train"]
    assert lib.labels.column("positive").to_pylist() == [[1, 2, 5], [2, 3], [3], [1], []]
    assert lib.labels.column("unknown").to_pylist() == [[], [4], [], [4], []]
    by_id = {t.task_id: t for t in lib.tasks}
    assert list(by_id) == [
        "deepfashion/shape/a-line",
        "deepfashion/texture/abstract-chevron-print",
        "deepfashion/fabric/cotton",
        "deepfashion/part/v-neck-collar",
    ]
    t = by_id["deepfashion/texture/abstract-chevron-print"]
    assert (t.kind, t.class_ids) == ("binary_attribute", (2,))
    assert t.class_names == ("not abstract chevron print", "abstract chevron print")
    assert (t.n_train, t.n_test, t.image_group, t.name) == (3, 1, "deepfashion", "abstract chevron print")
    assert "2 positives >= 1" in t.rule and "1 negatives >= 1" in t.rule
    skips = {(s.item, s.reason) for s in lib.skips}
    # 'lace' (id 4): no positive, one unknown, two negatives in train.
    lace = [reason for item, reason in skips if item == "deepfashion/fabric/lace"]
    assert lace[0].startswith("0 positive and 2 negative")
    assert ("deepfashion/fabric/cotton", "kept; no positives in test") in skips
    assert ("deepfashion/shape/a-line", "kept; no positives in test") not in skips


def test_accepts_anno_coarse(tmp_path: Path) -> None:
    lib = build_deepfashion(write_dataset(tmp_path, anno="Anno_coarse"), LibraryConfig())
    assert len(lib.tasks) == 4


def test_cap_min_positives_and_clashing_slugs(tmp_path: Path) -> None:
    attrs = [("a-line", 3), ("a line", 3), ("abstract chevron print", 1), ("cotton", 2), ("lace", 2)]
    root = write_dataset(tmp_path, attrs=attrs)
    lib = build_deepfashion(root, LibraryConfig(min_binary_positives=2))
    assert [t.task_id for t in lib.tasks] == ["deepfashion/shape/a-line-2"]  # "a line" (id 2): 2 positives
    reasons = {s.item: s.reason for s in lib.skips}
    assert reasons["deepfashion/shape/a-line-1"].startswith("1 positive and 2 negative training images")
    assert "min_binary_positives" in reasons["deepfashion/texture/abstract-chevron-print"]
    lib = build_deepfashion(root, LibraryConfig(deepfashion_max_tasks=1))
    assert [t.task_id for t in lib.tasks] == ["deepfashion/shape/a-line-1"]
    reasons = {s.item: s.reason for s in lib.skips}
    assert "past the cap deepfashion_max_tasks=1" in reasons["deepfashion/texture/abstract-chevron-print"]


def test_unsafe_missing_and_corrupt_images_are_skipped(tmp_path: Path) -> None:
    rows = dict(ROWS)
    rows["../outside/img_00000001.jpg"] = ([1, 1, 1, -1, 1], "train")
    rows["/abs/img_00000001.jpg"] = ([1, 1, 1, -1, 1], "train")
    root = tmp_path / "df"
    root.mkdir()
    write_dataset(root, rows={k: v for k, v in rows.items() if not k.startswith(("/", ".."))})
    write_dataset(root, rows=rows, images=False)  # manifests with the two unsafe rows; images stay
    (root / "img/Boxy_Tee/img_00000002.jpg").unlink()
    (root / "img/Boxy_Tee/img_00000001.jpg").write_bytes(b"not a jpeg")
    lib = build_deepfashion(root, LibraryConfig(verify_images="decode"))
    skipped = {s.item: s for s in lib.skips if s.item.startswith("image ")}
    assert "escapes the dataset root" in skipped["image ../outside/img_00000001.jpg"].reason
    assert "absolute" in skipped["image /abs/img_00000001.jpg"].reason
    assert "is missing" in skipped["image img/Boxy_Tee/img_00000002.jpg"].reason
    assert "cannot be decoded" in skipped["image img/Boxy_Tee/img_00000001.jpg"].reason
    assert skipped["image img/Boxy_Tee/img_00000002.jpg"].line == 7
    assert skipped["image img/Boxy_Tee/img_00000002.jpg"].file == "Anno/list_attr_img.txt"
    assert lib.images.num_rows == lib.labels.num_rows == 3
    assert lib.labels.column("image_index").to_pylist() == [0, 1, 2]
    # With verify_images="exists" the corrupt file counts as present.
    lib = build_deepfashion(root, LibraryConfig(verify_images="exists"))
    assert lib.images.num_rows == 4


IMG = "Anno/list_attr_img.txt"
PART = "Eval/list_eval_partition.txt"
CLOTH = "Anno/list_attr_cloth.txt"


def _set(i: int, text: str):
    def edit(lines: list[str]) -> None:
        lines[i] = text

    return edit


def _edit(i: int, change):
    def edit(lines: list[str]) -> None:
        lines[i] = change(lines[i])

    return edit


def _replace_value(line_index: int, new: str):
    def edit(lines: list[str]) -> None:
        name, values = lines[line_index].split(None, 1)
        lines[line_index] = name + "  " + values.replace("-1", new, 1)

    return edit


def _drop_partition_row(lines: list[str]) -> None:
    lines.pop(5)
    lines[0] = "4"


def _add_partition_row(lines: list[str]) -> None:
    lines.insert(5, "img/Extra/img_00000001.jpg  test")
    lines[0] = "6"


# case: (file edited, edit, file named in the message, where, problem). Lines are 1-based; rows start on line 3.
BAD_CASES = {
    "count not an integer": (IMG, _set(0, "many"), IMG, "line 1", "expected the number of images, found 'many'"),
    "count differs from rows": (IMG, lambda ls: ls.pop(4), IMG, "line 1", "says 5 images but the file has 4 rows"),
    "truncated mid-row": (IMG, _edit(6, lambda line: line[:78]), IMG, "line 7", "has 3 attribute values, expected 5"),
    "extra value": (IMG, _edit(3, lambda line: line + " -1"), IMG, "line 4", "has 6 attribute values, expected 5"),
    "value 2": (IMG, _replace_value(2, "2"), IMG, "line 3", "is '2'"),
    "value x": (IMG, _replace_value(4, "x"), IMG, "line 5", "is 'x'"),
    "value -0": (IMG, _replace_value(4, "-0"), IMG, "line 5", "is '-0'"),
    "missing column names": (IMG, lambda ls: ls.pop(1), IMG, "line 2", "column names"),
    "blank line between rows": (IMG, lambda ls: ls.insert(4, ""), IMG, "line 5", "empty line"),
    "partition value": (PART, _edit(3, lambda line: line.replace("train", "training")), PART, "line 4", "train|val|"),
    "image not in partition": (PART, _drop_partition_row, IMG, "line 6", "is not in list_eval_partition.txt"),
    "image only in partition": (PART, _add_partition_row, PART, "line 6", "Extra/img_00000001.jpg' is not in list_attr_img.txt"),
    "duplicate image": (IMG, lambda ls: ls.__setitem__(6, ls[2]), IMG, "line 7", "appears twice (first on line 3)"),
    "attribute type": (CLOTH, _set(3, "abstract chevron print       7"), CLOTH, "line 4", "type 1-5"),
    "attribute count": (CLOTH, _set(0, "6"), CLOTH, "line 1", "says 6 attributes but the file has 5 rows"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_manifests_name_file_and_line(root: Path, case: str) -> None:
    edited, edit, named, where, problem = BAD_CASES[case]
    edit_lines(root / edited, edit)
    with pytest.raises(ManifestError) as err:
        build_deepfashion(root, LibraryConfig())
    message = str(err.value)
    assert message.startswith(f"{root / named}, {where}:"), message
    assert problem in message, message


def test_missing_file_names_it_and_the_root(root: Path) -> None:
    (root / PART).unlink()
    with pytest.raises(ManifestError, match=r"list_eval_partition.txt: required DeepFashion file not found.*root"):
        build_deepfashion(root, LibraryConfig())
    with pytest.raises(ManifestError, match=r"Anno/list_attr_cloth.txt.*is the dataset root"):
        build_deepfashion(root / "img", LibraryConfig())


def test_trailing_blank_lines_and_crlf_are_fine(root: Path) -> None:
    for rel in (IMG, PART, CLOTH):
        path = root / rel
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n") + b"\r\n\n")
    lib = build_deepfashion(root, LibraryConfig())
    assert lib.labels.column("positive").to_pylist() == [[1, 2, 5], [2, 3], [3], [1], []]


def random_matrix_file(path: Path, rng: np.random.Generator, *, n_rows: int, n_attr: int) -> np.ndarray:
    values = rng.choice([-1, 0, 1], size=(n_rows, n_attr), p=[0.8, 0.05, 0.15])
    lines = [str(n_rows), "image_name  attribute_labels"]
    for i, row in enumerate(values):
        pad = " " * int(rng.integers(1, 30))
        sep = " " if i % 3 else "  "
        lines.append(f"img/Item_{i % 7}/img_{i:08d}.jpg{pad}" + sep.join(f"{v:2d}" if i % 2 else str(v) for v in row))
    path.write_text("\n".join(lines) + "\n")
    return values


@pytest.mark.parametrize("chunk_bytes", [64, 1000, 1 << 20])
def test_fast_parser_matches_the_values(tmp_path: Path, chunk_bytes: int) -> None:
    values = random_matrix_file(tmp_path / "m.txt", np.random.default_rng(chunk_bytes), n_rows=300, n_attr=40)
    m = read_attr_img(tmp_path / "m.txt", n_attributes=40, chunk_bytes=chunk_bytes)
    assert m.names == [f"img/Item_{i % 7}/img_{i:08d}.jpg" for i in range(300)]
    for pairs, v in ((m.positive, 1), (m.unknown, 0)):
        rows, cols = np.nonzero(values == v)
        assert np.array_equal(pairs[0], rows) and np.array_equal(pairs[1], cols + 1)


def test_fast_path_is_taken_on_regular_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_deepfashion_manifests(tmp_path, n_images=400, n_attributes=60, seed=1)

    def no_slow(self, chunk):
        raise AssertionError("a regular block went to the line-by-line parser")

    monkeypatch.setattr(deepfashion._RowParser, "_slow", no_slow)
    lib = build_deepfashion(tmp_path, LibraryConfig(verify_images="none"))
    assert len(lib.tasks) == 60 and lib.images.num_rows == 400
    splits = lib.images.column("split").to_pylist()
    assert (splits.count("val"), splits.count("test")) == (55, 55)
    per_image = np.mean([len(p) for p in lib.labels.column("positive").to_pylist()])
    assert 2.8 < per_image < 3.8


def test_check_images_gives_the_reasons_of_image_file_problem(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    for folder in (root / "img/A", root / "img/B.jpg", outside / "C"):
        folder.mkdir(parents=True)
    for f in (root / "img/A/1.jpg", outside / "2.jpg", outside / "C/3.jpg"):
        f.write_bytes(b"x")
    (root / "img/A/in.jpg").symlink_to(root / "img/A/1.jpg")
    (root / "img/A/out.jpg").symlink_to(outside / "2.jpg")
    (root / "img/C").symlink_to(outside / "C")
    (root / "img/D").symlink_to(root / "img/A")
    paths = ["img/A/1.jpg", "img/A/missing.jpg", "img/B.jpg", "img/A/in.jpg", "img/A/out.jpg", "img/C/3.jpg",
             "img/D/1.jpg", "img/E/1.jpg", "../x.jpg", "/abs.jpg", "img//A/1.jpg", "img/./A/1.jpg", "top.jpg"]
    for mode in ("none", "exists"):
        expected = {i: why for i, p in enumerate(paths) if (why := image_file_problem(root, p, mode))}
        assert check_images(root, paths, mode, manifest=root / "m.txt") == expected
    assert set(expected) == {1, 2, 4, 5, 7, 8, 9, 12}
    with pytest.raises(ManifestError, match=r"m.txt: none of the 2 images listed is usable under .*dataset root"):
        check_images(root, ["img/A/missing.jpg", "../x.jpg"], "exists", manifest=root / "m.txt")


def test_no_image_files_at_all_is_an_error_not_a_library_of_skips(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "df", images=False)
    with pytest.raises(ManifestError, match="list_attr_img.txt: none of the 5 images listed is usable"):
        build_deepfashion(root, LibraryConfig())
    assert build_deepfashion(root, LibraryConfig(verify_images="none")).images.num_rows == 5


def test_synthetic_partition_has_the_real_counts() -> None:
    split = _partition(REAL_IMAGES, np.random.default_rng(0))
    assert np.bincount(split).tolist() == [209_222, 40_000, 40_000]



def test_fast_parser_never_accepts_what_the_line_parser_rejects(tmp_path: Path) -> None:
    """Random one-byte edits of a block: the fast parse, when it answers, equals the line-by-line parse."""
    rng = np.random.default_rng(7)
    random_matrix_file(tmp_path / "m.txt", rng, n_rows=6, n_attr=8)
    block = b"".join((tmp_path / "m.txt").read_bytes().splitlines(keepends=True)[2:])
    answered = 0
    for _ in range(600):
        mutated = bytearray(block)
        mutated[int(rng.integers(len(block) - 1))] = rng.choice(list(b" -01\t\r2x\n"))
        chunk = bytes(mutated)
        fast = deepfashion._parse_fast(chunk, 8)
        if fast is None:
            continue
        answered += 1
        slow = deepfashion._RowParser(tmp_path / "m.txt", 8)._slow(chunk)  # must not raise
        assert fast.names == slow.names
        for a, b in ((fast.positive, slow.positive), (fast.unknown, slow.unknown)):
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert answered > 50
