"""Tests for tasks.mini: the synthetic datasets are deterministic, in the real formats, and learnable.

The format checks here parse the files directly (json, csv, split) and do not use the adapters in
tasks.datasets, so a bug on either side cannot hide the other.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.mini import generate_mini_datasets
from tasks.mini.cub200 import taxonomy

NAMES = ("inat2018", "cub200", "imat2018", "deepfashion")
LABEL_MAP = Path(__file__).parents[2] / "tasks" / "data" / "imat2018_label_map_228.csv"


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate_mini_datasets(tmp_path_factory.mktemp("mini"), seed=0)


def _manifests(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every non-image file under root."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix != ".jpg"}


def _images(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg"))


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "JPEG", path
        return np.asarray(im.convert("RGB"))


def _decodes(root: Path, relpaths: list[str]) -> None:
    missing = [r for r in relpaths if not (root / r).is_file()]
    assert not missing, f"{len(missing)} referenced images missing, e.g. {missing[:3]}"
    for r in relpaths:
        assert _pixels(root / r).shape == (64, 64, 3)


def _lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\r" not in text, path
    return text.splitlines()


# ---------------------------------------------------------------- determinism and the output folder


def test_returns_one_root_per_dataset(mini: dict[str, Path]) -> None:
    assert tuple(mini) == NAMES
    out = mini["inat2018"].parent
    assert all(mini[n] == out / n for n in NAMES)
    assert (mini["cub200"] / "CUB_200_2011" / "images.txt").is_file()


def test_seed_fixes_every_file_and_a_rerun_replaces_the_output(mini: dict[str, Path], tmp_path: Path) -> None:
    other = generate_mini_datasets(tmp_path, seed=1)
    for name in NAMES:  # another seed: other manifests and other pixels
        assert _manifests(other[name]) != _manifests(mini[name]), name
        first = _images(mini[name])[0]
        if (other[name] / first).is_file():
            assert not np.array_equal(_pixels(other[name] / first), _pixels(mini[name] / first)), name

    again = generate_mini_datasets(tmp_path, seed=0)  # same folder: seed 1's files must all go
    for name in NAMES:
        assert _manifests(again[name]) == _manifests(mini[name]), name
        images = _images(mini[name])
        assert _images(again[name]) == images, name
        for rel in images[::40]:
            assert np.array_equal(_pixels(again[name] / rel), _pixels(mini[name] / rel)), rel


def test_refuses_to_overwrite_folders_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "cub200").mkdir()
    (tmp_path / "cub200" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="cub200"):
        generate_mini_datasets(tmp_path)
    assert (tmp_path / "cub200" / "mine.txt").read_text() == "keep me"


# ---------------------------------------------------------------- iNat2018


def _inat(root: Path, split: str) -> dict:
    return json.loads((root / f"{split}2018.json").read_text(encoding="utf-8"))


def test_inat_follows_the_coco_like_schema(mini: dict[str, Path]) -> None:
    root = mini["inat2018"]
    real = json.loads((root / "categories.json").read_text(encoding="utf-8"))
    assert [c["id"] for c in real] == list(range(len(real)))
    ranks = {"id", "name", "supercategory", "kingdom", "phylum", "class", "order", "family", "genus"}
    assert all(set(c) == ranks for c in real)
    image_ids: set[int] = set()
    for split in ("train", "val"):
        j = _inat(root, split)
        assert set(j) == {"info", "images", "categories", "annotations", "licenses"}
        assert [c["id"] for c in j["categories"]] == [c["id"] for c in real]
        assert all(c["name"] == str(c["id"]) and c["order"].startswith("Order_") for c in j["categories"])
        license_ids = {lic["id"] for lic in j["licenses"]}
        for im in j["images"]:
            assert set(im) == {"id", "width", "height", "file_name", "license", "rights_holder"}
            assert im["id"] not in image_ids and im["license"] in license_ids
            image_ids.add(im["id"])
        by_id = {im["id"]: im for im in j["images"]}
        assert len({a["id"] for a in j["annotations"]}) == len(j["annotations"]) == len(by_id)
        for a in j["annotations"]:
            cat = real[a["category_id"]]
            super_, cid, name = by_id[a["image_id"]]["file_name"].split("/")[1:]
            assert (super_, cid) == (cat["supercategory"], str(cat["id"])) and re.fullmatch(r"[0-9a-f]{32}\.jpg", name)
        _decodes(root, [im["file_name"] for im in j["images"]])


def test_inat_taxonomy_gives_seven_order_tasks(mini: dict[str, Path]) -> None:
    real = json.loads((mini["inat2018"] / "categories.json").read_text(encoding="utf-8"))
    species_per_order = Counter(c["order"] for c in real)
    assert len(species_per_order) == 8 and len({c["class"] for c in real}) == 3
    assert sum(n >= 2 for n in species_per_order.values()) == 7
    assert [o for o, n in species_per_order.items() if n == 1] == ["Coleoptera"]
    train = Counter(real[a["category_id"]]["order"] for a in _inat(mini["inat2018"], "train")["annotations"])
    assert len(set(train.values())) == len(train)  # the ranking by training images has no ties
    assert set(Counter(a["category_id"] for a in _inat(mini["inat2018"], "val")["annotations"]).values()) == {3}


def _features(path: Path, side: int) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((side, side), Image.Resampling.BOX), np.float32).ravel() / 255


def _inat_features(root: Path, split: str, side: int) -> tuple[np.ndarray, np.ndarray]:
    j = _inat(root, split)
    files = {im["id"]: im["file_name"] for im in j["images"]}
    x = np.stack([_features(root / files[a["image_id"]], side) for a in j["annotations"]])
    return x, np.array([a["category_id"] for a in j["annotations"]])


def test_inat_species_of_an_order_are_separable_from_pixels(mini: dict[str, Path]) -> None:
    """Nearest class mean on 8x8 pixels, trained on train and scored on val, inside each order task."""
    real = json.loads((mini["inat2018"] / "categories.json").read_text(encoding="utf-8"))
    xtr, ytr = _inat_features(mini["inat2018"], "train", 8)
    xva, yva = _inat_features(mini["inat2018"], "val", 8)
    accuracies = []
    for order in {c["order"] for c in real}:
        ids = np.array([c["id"] for c in real if c["order"] == order])
        if len(ids) < 2:
            continue
        means = np.stack([xtr[ytr == i].mean(0) for i in ids])
        sel = np.isin(yva, ids)
        pred = ids[((xva[sel, None, :] - means[None]) ** 2).sum(-1).argmin(1)]
        accuracies.append(acc := float((pred == yva[sel]).mean()))
        assert acc > 1.0 / len(ids), order
    assert np.mean(accuracies) >= 0.75, accuracies


def test_inat_sister_species_look_more_alike_than_distant_ones(mini: dict[str, Path]) -> None:
    real = json.loads((mini["inat2018"] / "categories.json").read_text(encoding="utf-8"))
    x, y = _inat_features(mini["inat2018"], "train", 4)
    means = {c["id"]: x[y == c["id"]].mean(0) for c in real}
    dist: dict[str, list[float]] = {"genus": [], "order": [], "class": [], "other": []}
    for a in real:
        for b in real:
            if a["id"] < b["id"]:
                rank = next((r for r in ("genus", "order", "class") if a[r] == b[r]), "other")
                dist[rank].append(float(np.linalg.norm(means[a["id"]] - means[b["id"]])))
    d = {rank: np.mean(v) for rank, v in dist.items()}
    assert d["genus"] < d["order"] and d["genus"] < d["class"] < d["other"], d


# ---------------------------------------------------------------- CUB-200-2011


def _cub_table(base: Path, name: str) -> list[list[str]]:
    return [line.split() for line in _lines(base / name)]


def test_cub_lists_agree_and_use_real_classes(mini: dict[str, Path]) -> None:
    base = mini["cub200"] / "CUB_200_2011"
    tax = taxonomy()
    images = {int(i): p for i, p in _cub_table(base, "images.txt")}
    assert list(images) == list(range(1, len(images) + 1))
    classes = {int(i): n for i, n in _cub_table(base, "classes.txt")}
    assert all(n == f"{i:03d}.{tax[i][0]}" for i, n in classes.items())
    labels = {int(i): int(c) for i, c in _cub_table(base, "image_class_labels.txt")}
    split = {int(i): int(t) for i, t in _cub_table(base, "train_test_split.txt")}
    boxes = {int(r[0]): [float(v) for v in r[1:]] for r in _cub_table(base, "bounding_boxes.txt")}
    assert set(labels) == set(split) == set(boxes) == set(images)
    for i, rel in images.items():
        folder, file = rel.split("/")
        assert folder == classes[labels[i]] and re.fullmatch(rf"{tax[labels[i]][0]}_\d{{4}}_\d+\.jpg", file)
        x, y, w, h = boxes[i]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64
    assert set(split.values()) == {0, 1}
    per_class = Counter((labels[i], split[i]) for i in images)
    assert set(per_class.values()) == {6, 3} and len(per_class) == 2 * len(classes)
    _decodes(base / "images", list(images.values()))


def test_cub_subset_gives_four_order_and_five_family_tasks(mini: dict[str, Path]) -> None:
    base = mini["cub200"] / "CUB_200_2011"
    tax = taxonomy()
    used = [tax[int(i)] for i, _ in _cub_table(base, "classes.txt")]
    orders = Counter(order for _, _, order in used if order != "Passeriformes")
    families = Counter(family for _, family, order in used if order == "Passeriformes")
    assert sorted(o for o, n in orders.items() if n >= 3) == [
        "Anseriformes", "Charadriiformes", "Piciformes", "Procellariiformes"]
    assert sorted(f for f, n in families.items() if n >= 2) == [
        "Cardinalidae", "Corvidae", "Hirundinidae", "Icteridae", "Parulidae"]
    assert min(orders.values()) < 3 and min(families.values()) < 2  # some groups must be skipped


# ---------------------------------------------------------------- iMaterialist 2018


def test_imat_json_uses_camel_case_string_ids_and_real_labels(mini: dict[str, Path]) -> None:
    root = mini["imat2018"]
    with LABEL_MAP.open(newline="", encoding="utf-8") as f:
        official = {r["labelId"] for r in csv.DictReader(f)}
    for split in ("train", "validation"):
        j = json.loads((root / f"{split}.json").read_text(encoding="utf-8"))
        assert set(j) == {"images", "annotations"}
        ids = [im["imageId"] for im in j["images"]]
        assert ids == [str(i) for i in range(1, len(ids) + 1)]
        assert all(set(im) == {"url", "imageId"} for im in j["images"])
        assert all(re.fullmatch(r"https://contestimg\.wish\.com/api/webimage/[0-9a-f]{24}-large", im["url"])
                   for im in j["images"])
        assert sorted(a["imageId"] for a in j["annotations"]) == sorted(ids)
        for a in j["annotations"]:
            assert set(a) == {"labelId", "imageId"} and 1 <= len(a["labelId"]) <= 4
            assert len(set(a["labelId"])) == len(a["labelId"]) and set(a["labelId"]) <= official
            assert all(isinstance(label, str) for label in a["labelId"])
        _decodes(root, [f"{split}/{i}.jpg" for i in ids])
    train = json.loads((root / "train.json").read_text(encoding="utf-8"))["annotations"]
    positives = Counter(label for a in train for label in a["labelId"])
    assert len(positives) == 12 and max(positives.values()) < len(train)  # 12 binary tasks


# ---------------------------------------------------------------- DeepFashion


def _df_rows(path: Path, header: str) -> list[str]:
    lines = _lines(path)
    assert int(lines[0]) == len(lines) - 2 and lines[1] == header, path
    return lines[2:]


def test_deepfashion_list_files_follow_the_count_header_rows_layout(mini: dict[str, Path]) -> None:
    root = mini["deepfashion"]
    cloth = [r.rstrip().rsplit(None, 1) for r in _df_rows(root / "Anno/list_attr_cloth.txt",
                                                          "attribute_name  attribute_type")]
    assert len(cloth) == 20 and {int(t) for _, t in cloth} == {1, 2, 3, 4, 5}
    assert "abstract chevron print" in [n for n, _ in cloth]
    cats = [r.rstrip().rsplit(None, 1) for r in _df_rows(root / "Anno/list_category_cloth.txt",
                                                        "category_name  category_type")]
    assert len(cats) == 50 and {int(t) for _, t in cats} == {1, 2, 3}

    attr = [r.split() for r in _df_rows(root / "Anno/list_attr_img.txt", "image_name  attribute_labels")]
    names = [r[0] for r in attr]
    assert len(set(names)) == len(names) == 300
    assert all(re.fullmatch(r"img/[A-Za-z0-9_-]+/img_\d{8}\.jpg", n) for n in names)
    values = np.array([[int(v) for v in r[1:]] for r in attr])
    assert values.shape == (300, 20) and set(np.unique(values)) == {-1, 0, 1}
    category = {r.split()[0]: int(r.split()[1]) for r in _df_rows(root / "Anno/list_category_img.txt",
                                                                   "image_name  category_label")}
    partition = {r.split()[0]: r.split()[1] for r in _df_rows(root / "Eval/list_eval_partition.txt",
                                                              "image_name  evaluation_status")}
    boxes = {r.split()[0]: r.split()[1:] for r in _df_rows(root / "Anno/list_bbox.txt",
                                                           "image_name  x_1  y_1  x_2  y_2")}
    assert list(category) == list(partition) == list(boxes) == names
    assert set(category.values()) <= set(range(1, 51)) and set(partition.values()) == {"train", "val", "test"}
    for box in boxes.values():
        assert all(re.fullmatch(r"\d{3}", v) for v in box)
        x1, y1, x2, y2 = (int(v) for v in box)
        assert 0 <= x1 < x2 < 64 and 0 <= y1 < y2 < 64
    train = np.array([partition[n] == "train" for n in names])
    positives = (values[train] == 1).sum(0)
    assert (positives >= 1).all() and (positives < train.sum()).all()  # 20 binary tasks
    _decodes(root, names)


def test_scale_multiplies_the_images_of_every_class_and_keeps_the_tasks(mini: dict[str, Path], tmp_path: Path) -> None:
    from tasks.library import build_library

    big = generate_mini_datasets(tmp_path / "x2", seed=0, scale=2)
    small_lib, big_lib = build_library(mini), build_library(big)
    assert [t.task_id for t in big_lib.tasks] == [t.task_id for t in small_lib.tasks]
    for small, large in zip(small_lib.tasks, big_lib.tasks):
        if small.source in ("inat2018", "cub200"):  # per-class counts: exactly doubled
            assert (large.n_train, large.n_test) == (2 * small.n_train, 2 * small.n_test), small.task_id
    assert len(_images(big["cub200"])) == 2 * len(_images(mini["cub200"]))
    with pytest.raises(ValueError, match="positive"):
        generate_mini_datasets(tmp_path / "x0", seed=0, scale=0)


def test_pretraining_set_is_a_deterministic_image_folder_of_shape_and_texture_classes(tmp_path: Path) -> None:
    from tasks.mini.images import SHAPES, TEXTURES
    from tasks.mini.pretraining import MARKER, write_pretraining_set

    root = write_pretraining_set(tmp_path / "pre", seed=3, per_class=2)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert len(folders) == len(SHAPES) * len(TEXTURES) == 63
    assert all(len(list((root / f).glob("*.jpg"))) == 2 for f in folders)
    again = write_pretraining_set(tmp_path / "again", seed=3, per_class=2)
    digest = lambda r: sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in r.rglob("*.jpg"))  # noqa: E731
    assert digest(root) == digest(again)
    write_pretraining_set(root, seed=4, per_class=1)  # its own output: replaced
    assert len(list(root.rglob("*.jpg"))) == 63 and json.loads((root / MARKER).read_text())["seed"] == 4
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not written by"):
        write_pretraining_set(foreign, per_class=1)
    assert (foreign / "holiday.jpg").exists()
