"""The imat2018 adapter on tiny manifests in the real files' format (camelCase keys, string ids)."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tasks.config import LibraryConfig
from tasks.datasets._common import load_json
from tasks.datasets.imat2018 import MAP_NAME, build_imat2018
from tasks.errors import ManifestError
from tasks.tables import IMAGES_SCHEMA, LABELS_SCHEMA

MAP = """labelId,taskId,labelName,taskName
1,6,Argyle,pattern
2,9,Asymmetric,style
3,1,Athletic Pants,category
89,1,"Hosiery, Stockings, Tights",category
"""
TRAIN = {"1": ["1", "89"], "2": ["89"], "3": [], "4": ["1", "2"], "5": ["89", "1", "89"]}
VALIDATION = {"1": ["1"], "2": ["89", "3"], "3": ["1"]}


def manifest(labels: dict[str, list[Any]], **extra: Any) -> dict[str, Any]:
    images = [{"url": f"https://contestimg.wish.com/api/webimage/{i}-large", "imageId": i} for i in labels]
    annotations = [{"labelId": v, "imageId": i} for i, v in labels.items()]
    return {"images": images, "annotations": annotations, **extra}


def write_dataset(root: Path, *, train: dict[str, Any] | None = None, validation: dict[str, Any] | None = None,
                  images: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    train = train or manifest(TRAIN, info={"year": 2018}, license=[])
    validation = validation or manifest(VALIDATION)
    for name, doc in (("train", train), ("validation", validation)):
        (root / f"{name}.json").write_text(json.dumps(doc))
        if images:
            (root / name).mkdir(exist_ok=True)
            for record in doc["images"]:
                Image.new("RGB", (4, 4), (10, 200, 10)).save(root / name / f"{record['imageId']}.jpg", "JPEG")
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "imat")


@pytest.fixture
def config(tmp_path: Path) -> LibraryConfig:
    (tmp_path / "map.csv").write_text(MAP)
    return LibraryConfig(imat_label_map=tmp_path / "map.csv")


def test_builds_tables_tasks_and_skips(root: Path, config: LibraryConfig) -> None:
    lib = build_imat2018(root, config)
    assert lib.images.schema == IMAGES_SCHEMA and lib.labels.schema == LABELS_SCHEMA
    assert lib.images.column("path").to_pylist() == [f"train/{i}.jpg" for i in "12345"] + [
        f"validation/{i}.jpg" for i in "123"
    ]
    assert lib.images.column("image_id").to_pylist() == list("12345123")
    assert lib.images.column("split").to_pylist() == ["train"] * 5 + ["test"] * 3
    assert lib.images.column("category_id").null_count == 8
    assert lib.labels.column("positive").to_pylist() == [[1, 89], [89], [], [1, 2], [1, 89], [1], [3, 89], [1]]
    assert lib.labels.column("unknown").to_pylist() == [[]] * 8
    assert [t.task_id for t in lib.tasks] == [
        "imat2018/pattern/argyle",
        "imat2018/style/asymmetric",
        "imat2018/category/hosiery-stockings-tights",
    ]
    t = lib.tasks[2]
    assert (t.kind, t.class_ids, t.image_group) == ("binary_label", (89,), "imat2018")
    assert t.name == "Hosiery, Stockings, Tights"
    assert t.class_names == ("not Hosiery, Stockings, Tights", "Hosiery, Stockings, Tights")
    assert (t.n_train, t.n_test) == (5, 3)
    assert "train 3 positives >= 1, 2 negatives >= 1" in t.rule and "1 positives of 3" in t.rule
    reasons = {s.item: s.reason for s in lib.skips}
    assert reasons["imat2018/style/asymmetric"] == "kept; no positives in validation"
    assert reasons["imat2018/category/athletic-pants"].startswith("0 positive and 5 negative training images")
    assert len(lib.skips) == 2


def test_label_map_lookup_order(root: Path, config: LibraryConfig) -> None:
    shipped = build_imat2018(root, LibraryConfig())  # the 228-label map shipped in tasks/data
    assert [t.class_ids[0] for t in shipped.tasks] == [1, 2, 89]
    assert len(shipped.tasks) + sum(not s.reason.startswith("kept;") for s in shipped.skips) == 228
    (root / MAP_NAME).write_text(MAP.replace("Argyle", "Argyle Knit"))  # a map in the root wins over the shipped one
    assert build_imat2018(root, LibraryConfig()).tasks[0].task_id == "imat2018/pattern/argyle-knit"
    assert build_imat2018(root, config).tasks[0].task_id == "imat2018/pattern/argyle"  # the configured one wins


def test_thresholds_cap_and_clashing_slugs(root: Path, tmp_path: Path) -> None:
    (tmp_path / "map.csv").write_text(MAP.replace("Asymmetric,style", "Argyle,pattern"))
    config = LibraryConfig(imat_label_map=tmp_path / "map.csv", min_binary_positives=3)
    lib = build_imat2018(root, config)
    assert [t.task_id for t in lib.tasks] == ["imat2018/pattern/argyle-1", "imat2018/category/hosiery-stockings-tights"]
    assert "a binary task needs >= 3 positives" in {s.item: s.reason for s in lib.skips}["imat2018/pattern/argyle-2"]
    lib = build_imat2018(root, config.model_copy(update={"imat_max_tasks": 1}))
    assert [t.task_id for t in lib.tasks] == ["imat2018/pattern/argyle-1"]
    reasons = {s.item: s.reason for s in lib.skips}
    assert "past the cap imat_max_tasks=1" in reasons["imat2018/category/hosiery-stockings-tights"]


def test_unannotated_unsafe_missing_and_corrupt_images_are_skipped(tmp_path: Path, config: LibraryConfig) -> None:
    train = manifest({**TRAIN, "../../etc/passwd": ["1"]})
    train["images"].append({"url": "u", "imageId": "6"})  # no annotation record
    root = write_dataset(tmp_path / "imat", train=train, images=False)
    for name, doc in (("train", train), ("validation", manifest(VALIDATION))):
        (root / name).mkdir()
        for i in ("1", "2", "3", "4", "5", "6"):
            Image.new("RGB", (4, 4)).save(root / name / f"{i}.jpg", "JPEG")
    (root / "train/2.jpg").unlink()
    (root / "validation/3.jpg").write_bytes(b"\xff\xd8 truncated")
    lib = build_imat2018(root, config.model_copy(update={"verify_images": "decode"}))
    skipped = {s.item: s for s in lib.skips if s.item.startswith("imageId")}
    assert "no annotation record in train.json" in skipped["imageId '6' (train/6.jpg)"].reason
    assert "escapes the dataset root" in skipped["imageId '../../etc/passwd' (train/../../etc/passwd.jpg)"].reason
    assert "is missing" in skipped["imageId '2' (train/2.jpg)"].reason
    assert "cannot be decoded" in skipped["imageId '3' (validation/3.jpg)"].reason
    assert skipped["imageId '3' (validation/3.jpg)"].file == "validation.json"
    assert lib.images.column("path").to_pylist() == ["train/1.jpg", "train/3.jpg", "train/4.jpg", "train/5.jpg",
                                                     "validation/1.jpg", "validation/2.jpg"]
    assert lib.labels.column("positive").to_pylist() == [[1, 89], [], [1, 2], [1, 89], [1], [3, 89]]
    assert lib.tasks[0].n_train == 4 and lib.tasks[0].n_test == 2


def test_no_image_files_at_all_is_an_error(tmp_path: Path, config: LibraryConfig) -> None:
    root = write_dataset(tmp_path / "imat", images=False)
    with pytest.raises(ManifestError, match=r"train.json: none of the 8 images listed is usable .*1.jpg is missing"):
        build_imat2018(root, config)
    assert build_imat2018(root, config.model_copy(update={"verify_images": "none"})).images.num_rows == 8


def test_integer_label_ids_are_accepted(tmp_path: Path, config: LibraryConfig) -> None:
    train = manifest({i: [int(x) for x in v] for i, v in TRAIN.items()})
    lib = build_imat2018(write_dataset(tmp_path / "imat", train=train), config)
    assert lib.labels.column("positive").to_pylist()[:5] == [[1, 89], [89], [], [1, 2], [1, 89]]


def _train_with(**changes: Any) -> dict[str, Any]:
    doc = manifest(TRAIN)
    for path, value in changes.items():
        kind, index, key = path.split("__")
        if key == "append":
            doc[kind].append(value)
        else:
            doc[kind][int(index)][key] = value
    return doc


# case: (train.json document or raw text, the record locator/line, the problem)
ANN_7 = {"labelId": [], "imageId": "77"}
ANN_4 = {"labelId": ["1"], "imageId": "4"}
BAD_TRAIN = {
    "malformed": ('{"images": [}', "line 1", "not valid JSON"),
    "truncated": (json.dumps(manifest(TRAIN))[:150], "line 1", "truncated"),
    "not a list": ({"images": {}, "annotations": []}, "", "top-level 'images' is a dict, expected a list"),
    "missing key": ({"images": []}, "", "top-level key 'annotations' is missing"),
    "unknown label": (
        _train_with(annotations__1__labelId=["89", "999"]), "annotations[1] (imageId '2')",
        'labelId "999" is not in the label map',
    ),
    "label not a string": (
        _train_with(annotations__3__labelId=["1", None]), "annotations[3] (imageId '4')", "labelId null",
    ),
    "labelId not a list": (
        _train_with(annotations__2__labelId="1"), "annotations[2] (imageId '3')", "expected a list of label ids",
    ),
    "integer imageId": (_train_with(images__4__imageId=5), "images[4]", "'imageId' is 5, expected a string"),
    "duplicate imageId": (
        _train_with(images__3__imageId="2"), "images[3]", "imageId '2' appears twice (also images[1])",
    ),
    "annotation for unknown image": (
        _train_with(annotations__x__append=ANN_7), "annotations[5] (imageId '77')", "not in 'images'",
    ),
    "two annotations": (
        _train_with(annotations__x__append=ANN_4), "annotations[5] (imageId '4')",
        "two annotation records for imageId '4' (also annotations[3])",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TRAIN))
def test_bad_train_json_names_file_and_record(tmp_path: Path, config: LibraryConfig, case: str) -> None:
    doc, where, problem = BAD_TRAIN[case]
    root = write_dataset(tmp_path / "imat", images=False)
    (root / "train.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(ManifestError) as err:
        build_imat2018(root, config)
    message = str(err.value)
    assert message.startswith(f"{root / 'train.json'}{', ' + where if where else ''}:"), message
    assert problem in message, message


def test_load_json_pauses_the_collector_and_restores_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    monkeypatch.setattr(json, "loads", lambda text: seen.append(gc.isenabled()) or {"ok": 1})
    (tmp_path / "a.json").write_text("{}")
    assert load_json(tmp_path / "a.json") == {"ok": 1} and seen == [False] and gc.isenabled()
    monkeypatch.undo()
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ManifestError, match="truncated"):
        load_json(tmp_path / "bad.json")
    assert gc.isenabled()
    gc.disable()
    try:
        load_json(tmp_path / "a.json")
        assert not gc.isenabled()  # a collector the caller paused stays paused
    finally:
        gc.enable()


def test_missing_file_names_it_and_the_root(root: Path, config: LibraryConfig) -> None:
    (root / "validation.json").unlink()
    with pytest.raises(ManifestError, match=r"validation.json: required iMaterialist 2018 file .* root"):
        build_imat2018(root, config)


BAD_MAPS = {
    "header": ("id,task,name,group\n1,6,Argyle,pattern\n", "line 1", "header must start with labelId,taskId"),
    "not an integer": (MAP + "x,1,Foo,category\n", "line 6", "expected integer labelId"),
    "too few columns": (MAP + "90,1\n", "line 6", "expected integer labelId"),
    "duplicate labelId": (MAP + "89,1,Tights,category\n", "line 6", "labelId 89 appears twice"),
}


@pytest.mark.parametrize("case", list(BAD_MAPS))
def test_bad_label_map_names_file_and_line(root: Path, tmp_path: Path, case: str) -> None:
    text, where, problem = BAD_MAPS[case]
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(ManifestError, match=f"bad.csv, {where}: .*{problem}"):
        build_imat2018(root, LibraryConfig(imat_label_map=tmp_path / "bad.csv"))
    with pytest.raises(ManifestError, match="nope.csv: label map not found"):
        build_imat2018(root, LibraryConfig(imat_label_map=tmp_path / "nope.csv"))
