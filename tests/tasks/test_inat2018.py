"""The iNat2018 adapter on tiny manifests written in tmp_path (with real, tiny JPEGs), plus one
full-scale run (marked slow) on the synthetic iNat2018-sized manifests of benchmarks/."""

from __future__ import annotations

import copy
import csv
import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from tasks.config import LibraryConfig
from tasks.datasets.inat2018 import load_inat2018
from tasks.errors import ManifestError
from tasks.tables import IMAGES_SCHEMA

REPO = Path(__file__).resolve().parents[2]
MAMMAL = {"supercategory": "Mammalia", "kingdom": "Animalia", "phylum": "Chordata", "class": "Mammalia"}
BIRD = {"supercategory": "Aves", "kingdom": "Animalia", "phylum": "Chordata", "class": "Aves"}
PLANT = {"supercategory": "Plantae", "kingdom": "Plantae", "phylum": "Tracheophyta", "class": "Magnoliopsida"}
# Category ids are neither contiguous nor equal to the list index, on purpose.
CATEGORIES = [
    {"id": 10, "name": "Zapus hudsonius", "order": "Rodentia", **MAMMAL},
    {"id": 3, "name": "Castor canadensis", "order": "Rodentia", **MAMMAL},
    {"id": 7, "name": "Mus musculus", "order": "Rodentia", **MAMMAL},
    {"id": 1, "name": "Aquila chrysaetos", "order": "Accipitriformes", **BIRD},
    {"id": 2, "name": "Buteo jamaicensis", "order": "Accipitriformes", **BIRD},
    {"id": 5, "name": "Quercus alba", "order": "Fagales", **PLANT},
]
TRAIN_PER_SPECIES = {10: 2, 3: 2, 7: 1, 1: 3, 2: 3, 5: 2}  # Accipitriformes 6, Rodentia 5, Fagales 2


def split_doc(counts: dict[int, int], first_id: int) -> dict:
    """A COCO-like split file; annotations are written in reverse image order (join must use image_id)."""
    images, annotations = [], []
    for cat, n in counts.items():
        sc = next(c["supercategory"] for c in CATEGORIES if c["id"] == cat)
        for _ in range(n):
            i = first_id + len(images)
            images.append({"id": i, "width": 8, "height": 8, "file_name": f"train_val2018/{sc}/{cat}/{i:032x}.jpg"})
            annotations.append({"id": len(annotations), "image_id": i, "category_id": cat})
    obfuscated = [{**c, "name": f"{c['id']:08x}", "order": f"order{c['id']}"} for c in CATEGORIES]
    return {"info": {}, "images": images, "annotations": annotations[::-1], "categories": obfuscated, "licenses": []}


def write_inat(root: Path, train: dict, val: dict, categories: list | None = CATEGORIES, jpegs: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train2018.json").write_text(json.dumps(train))
    (root / "val2018.json").write_text(json.dumps(val))
    if categories is not None:
        (root / "categories.json").write_text(json.dumps(categories))
    if jpegs:
        for doc in (train, val):
            for im in doc["images"]:
                path = root / im["file_name"]
                if ".." not in path.parts and not im["file_name"].startswith("/"):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.new("RGB", (8, 8), (120, 30, 200)).save(path)
    return root


@pytest.fixture
def docs() -> tuple[dict, dict]:
    return split_doc(TRAIN_PER_SPECIES, 100), split_doc({c["id"]: 1 for c in CATEGORIES}, 500)


def load(root: Path, **config) -> object:
    return load_inat2018(root, LibraryConfig(**config))


def skip_reasons(lib) -> dict[str, str]:
    return {s.item: s.reason for s in lib.skips}


def test_orders_ranked_by_training_images_and_labels_follow_species_names(tmp_path, docs):
    lib = load(write_inat(tmp_path, *docs))
    assert [t.task_id for t in lib.tasks] == ["inat2018/order/Accipitriformes", "inat2018/order/Rodentia"]
    rodentia = lib.tasks[1]
    assert rodentia.class_names == ("Castor canadensis", "Mus musculus", "Zapus hudsonius")
    assert rodentia.class_ids == (3, 7, 10)
    assert (rodentia.n_train, rodentia.n_test, rodentia.kind) == (5, 3, "species_in_order")
    assert rodentia.taxonomy == ("Animalia", "Chordata", "Mammalia", "Rodentia")
    assert rodentia.image_group == rodentia.task_id
    assert "rank 2 of 2" in rodentia.rule and ">= 2 species" in rodentia.rule
    reasons = skip_reasons(lib)
    assert "a task needs >= 2 (inat_min_species)" in reasons["inat2018/order/Fagales"]
    assert "asked for 207 order tasks" in reasons["inat2018/order/*"]


def test_images_are_joined_to_annotations_by_image_id(tmp_path, docs):
    lib = load(write_inat(tmp_path, *docs))
    assert lib.images.schema == IMAGES_SCHEMA
    rows = lib.images.to_pylist()
    assert len(rows) == 13 + 6 and [r["image_index"] for r in rows] == list(range(19))
    for r in rows:  # the category id is the third path component by construction
        assert r["category_id"] == int(r["path"].split("/")[2])
    assert {r["split"] for r in rows[:13]} == {"train"} and {r["split"] for r in rows[13:]} == {"test"}
    assert rows[0]["image_id"] == "100" and lib.root == str(tmp_path)


def test_cap_skips_the_lower_ranked_orders(tmp_path, docs):
    lib = load(write_inat(tmp_path, *docs), inat_max_tasks=1)
    assert [t.name for t in lib.tasks] == ["Accipitriformes"]
    assert "ranks 2 of 2 by training images (5)" in skip_reasons(lib)["inat2018/order/Rodentia"]


def test_species_below_min_train_is_skipped_and_the_order_shrinks(tmp_path, docs):
    lib = load(write_inat(tmp_path, *docs), min_train_per_class=2)
    rodentia = next(t for t in lib.tasks if t.name == "Rodentia")
    assert rodentia.class_ids == (3, 10)
    assert "1 training images, fewer than 2" in skip_reasons(lib)["inat2018/species/7"]


def test_without_categories_json_the_split_files_categories_are_used(tmp_path, docs):
    lib = load(write_inat(tmp_path, *docs, categories=None), inat_min_species=2)
    assert lib.tasks == []  # the obfuscated orders have one species each
    assert len([s for s in lib.skips if s.item.startswith("inat2018/order/order")]) == 6


def test_image_without_annotation_is_skipped_not_dropped(tmp_path, docs):
    train, val = docs
    train["annotations"] = [a for a in train["annotations"] if a["image_id"] != 104]
    lib = load(write_inat(tmp_path, train, val))
    assert "104" not in lib.images.column("image_id").to_pylist()
    assert skip_reasons(lib)["inat2018/image/104"] == "image has no annotation, so it has no label"


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [("../outside.jpg", "escapes the dataset root"), ("/abs.jpg", "is absolute")],
)
def test_paths_that_escape_the_root_are_skipped(tmp_path, docs, file_name, expected):
    train, val = docs
    train["images"][0]["file_name"] = file_name
    lib = load(write_inat(tmp_path, train, val), verify_images="none")
    assert expected in skip_reasons(lib)["inat2018/image/100"]
    assert lib.images.num_rows == 18


def test_symlink_leaving_the_root_is_skipped(tmp_path, docs):
    root = write_inat(tmp_path / "root", *docs)
    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (8, 8)).save(outside)
    target = root / docs[0]["images"][0]["file_name"]
    target.unlink()
    os.symlink(outside, target)
    lib = load(root, verify_images="exists")
    assert "symlink that leaves the dataset root" in skip_reasons(lib)["inat2018/image/100"]


def test_missing_and_corrupt_image_files_are_skipped(tmp_path, docs):
    root = write_inat(tmp_path, *docs)
    (root / docs[0]["images"][0]["file_name"]).unlink()
    (root / docs[0]["images"][1]["file_name"]).write_bytes(b"not a jpeg")
    assert "is missing" in skip_reasons(load(root, verify_images="exists"))["inat2018/image/100"]
    reasons = skip_reasons(load(root, verify_images="decode"))
    assert "cannot be decoded" in reasons["inat2018/image/101"]


def test_missing_file_names_it_and_the_root(tmp_path, docs):
    root = write_inat(tmp_path, *docs, jpegs=False)
    (root / "val2018.json").unlink()
    with pytest.raises(ManifestError, match=r"val2018\.json.*not found.*dataset root right"):
        load(root)


def test_malformed_json_gives_line_and_column(tmp_path, docs):
    root = write_inat(tmp_path, *docs, jpegs=False)
    (root / "train2018.json").write_text('{"images": [\n  {"id": 1,, "file_name": "a.jpg"}\n]}')
    with pytest.raises(ManifestError, match=r"train2018\.json, line 2: not valid JSON: .* column 12"):
        load(root)


def test_truncated_json_is_named_as_such(tmp_path, docs):
    root = write_inat(tmp_path, *docs, jpegs=False)
    text = (root / "val2018.json").read_text()
    (root / "val2018.json").write_text(text[: len(text) // 2])
    with pytest.raises(ManifestError, match=r"val2018\.json, line 1: the JSON document ends early, .*truncated"):
        load(root)


def mutate(docs, change) -> tuple[dict, dict]:
    train, val = copy.deepcopy(docs)
    change(train, val)
    return train, val


BAD_RECORDS = {
    "missing key": (lambda t, v: t["images"][1].pop("file_name"), r"train2018\.json, images\[1\]: record has no 'file_name'"),
    "not an object": (lambda t, v: t["annotations"].__setitem__(2, 7), r"train2018\.json, annotations\[2\]: record is not a JSON object"),
    "non-integer id": (lambda t, v: t["images"][3].update(id="103"), r"train2018\.json, images\[3\]: 'id' is \"103\", expected an integer"),
    "bool id": (lambda t, v: t["annotations"][0].update(category_id=True), r"annotations\[0\]: 'category_id' is true"),
    "duplicate image id": (lambda t, v: t["images"][4].update(id=100), r"train2018\.json, images\[4\]: image id 100 appears twice \(also images\[0\]\)"),
    "id in both splits": (lambda t, v: (v["images"][2].update(id=101), v["annotations"][3].update(image_id=101)), r"val2018\.json, images\[2\]: image id 101 is also an image id in train2018\.json"),
    "unknown image": (lambda t, v: v["annotations"][1].update(image_id=999), r"val2018\.json, annotations\[1\]: image_id 999 matches no record"),
    "unknown category": (lambda t, v: t["annotations"][0].update(category_id=999), r"train2018\.json, annotations\[0\]: category_id 999 is not a category of categories\.json"),
    "two annotations": (lambda t, v: t["annotations"].append({"id": 99, "image_id": 100, "category_id": 1}), r"train2018\.json, annotations\[13\]: image 100 has two annotations \(also annotations\[12\]\)"),
    "missing top-level key": (lambda t, v: v.pop("annotations"), r"val2018\.json: top-level key 'annotations' is missing"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_RECORDS)
def test_bad_records_are_errors_that_name_file_and_record(tmp_path, docs, case):
    change, message = BAD_RECORDS[case]
    root = write_inat(tmp_path, *mutate(docs, change), jpegs=False)
    with pytest.raises(ManifestError, match=message):
        load(root, verify_images="none")


def test_bad_categories_json_is_an_error(tmp_path, docs):
    cats = copy.deepcopy(CATEGORIES)
    del cats[2]["order"]
    with pytest.raises(ManifestError, match=r"categories\.json, categories\[2\]: record has no 'order'"):
        load(write_inat(tmp_path, *docs, categories=cats, jpegs=False), verify_images="none")
    (tmp_path / "categories.json").write_text('{"categories": []}')
    with pytest.raises(ManifestError, match="expected a bare JSON list"):
        load(tmp_path, verify_images="none")


def _synth_module():
    spec = importlib.util.spec_from_file_location("synth_inat2018", REPO / "benchmarks" / "synth_inat2018.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_full_scale_manifest_gives_the_207_task2vec_orders_fast(tmp_path):
    _synth_module().write_inat2018_manifests(tmp_path, seed=0)
    start = time.perf_counter()
    lib = load(tmp_path, verify_images="none")
    seconds = time.perf_counter() - start
    print(f"iNat2018-sized adapter run: {seconds:.2f} s")

    with open(REPO / "tasks" / "data" / "inat2018_orders.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    column = "task2vec_inat_task(0-206, blank=unused)"
    expected = [r["order"] for r in sorted((r for r in rows if r[column]), key=lambda r: int(r[column]))]
    assert [t.name for t in lib.tasks] == expected
    assert len(lib.tasks) == 207 and min(t.n_classes for t in lib.tasks) >= 2
    assert lib.images.num_rows == 437_513 + 24_426
    assert sum(t.n_classes for t in lib.tasks) == 8_076
    reasons = skip_reasons(lib)
    assert "ranks 208 of 208" in reasons["inat2018/order/Umbilicariales"]
    assert sum("a task needs >= 2" in r for r in reasons.values()) == 64
    assert seconds < 30  # the target is well under 15 s on 2 shared cores; this guards against a regression
