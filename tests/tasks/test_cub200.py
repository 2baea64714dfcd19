"""The CUB-200-2011 adapter on tiny manifests written in tmp_path (with real, tiny JPEGs), and on a
generated full 200-class manifest against the shipped taxonomy (images not on disk)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from tasks.config import LibraryConfig
from tasks.datasets.cub200 import SHIPPED_TAXONOMY, load_cub200
from tasks.errors import ManifestError
from tasks.tables import IMAGES_SCHEMA

# CUB's own spelling of two classes differs from the shipped taxonomy's.
CUB_SPELLING = {70: "Green_Violetear", 141: "Artic_Tern"}
SPECIES = {
    int(line.split("\t")[0]): line.split("\t")[1]
    for line in SHIPPED_TAXONOMY.read_text(encoding="utf-8").splitlines()[1:]
}
# Procellariiformes x3, Cuculiformes x1, Icteridae x2 and Cardinalidae x1 (both Passeriformes).
SMALL = (1, 2, 3, 4, 9, 10, 17)


def class_dir(class_id: int) -> str:
    return f"{class_id:03d}.{CUB_SPELLING.get(class_id, SPECIES[class_id])}"


def manifest(class_ids=SMALL, per_class=((1, 2), (0, 1))) -> dict[str, list[str]]:
    """The four list files as lines; ``per_class`` is ((is_training_image, count), ...)."""
    files: dict[str, list[str]] = {"images.txt": [], "classes.txt": [], "image_class_labels.txt": [], "train_test_split.txt": []}
    for c in class_ids:
        files["classes.txt"].append(f"{c} {class_dir(c)}")
        for is_train, count in per_class:
            for _ in range(count):
                i = len(files["images.txt"]) + 1
                files["images.txt"].append(f"{i} {class_dir(c)}/{SPECIES[c]}_{i:04d}.jpg")
                files["image_class_labels.txt"].append(f"{i} {c}")
                files["train_test_split.txt"].append(f"{i} {is_train}")
    return files


def write_cub(parent: Path, files: dict[str, list[str]], jpegs: bool = True) -> Path:
    cub = parent / "CUB_200_2011"
    cub.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        (cub / name).write_text("\n".join(lines) + "\n")
    if jpegs:
        for line in files["images.txt"]:
            path = cub / "images" / line.split()[-1]
            if ".." not in line and " /" not in line:
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), (10, 200, 60)).save(path)
    return cub


def load(root: Path, **config):
    return load_cub200(root, LibraryConfig(**config))


def skip_reasons(lib) -> dict[str, str]:
    return {s.item: s.reason for s in lib.skips}


def test_order_and_family_tasks_from_a_small_manifest(tmp_path):
    lib = load(write_cub(tmp_path, manifest()))
    assert [t.task_id for t in lib.tasks] == ["cub200/order/Procellariiformes", "cub200/family/Icteridae"]
    order, family = lib.tasks
    assert order.class_names == ("Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross")
    assert (order.kind, order.n_train, order.n_test, order.class_ids) == ("species_in_order", 6, 3, (1, 2, 3))
    assert order.taxonomy == ("Animalia", "Chordata", "Aves", "Procellariiformes")
    assert family.kind == "species_in_family" and family.class_names == ("Brewer_Blackbird", "Red_winged_Blackbird")
    assert family.taxonomy == ("Animalia", "Chordata", "Aves", "Passeriformes", "Icteridae")
    assert family.image_group == family.task_id and "rank 1 of 1" in family.rule
    reasons = skip_reasons(lib)
    assert "1 species with >= 1 training image(s); a task needs >= 3" in reasons["cub200/order/Cuculiformes"]
    assert "a task needs >= 2 (cub_min_species_per_family)" in reasons["cub200/family/Cardinalidae"]
    assert "family tasks" in reasons["cub200/order/Passeriformes"]


def test_images_table_and_either_root(tmp_path):
    cub = write_cub(tmp_path, manifest())
    for root in (tmp_path, cub):
        lib = load(root)
        assert lib.root == str(cub) and lib.images.schema == IMAGES_SCHEMA
    rows = lib.images.to_pylist()
    assert len(rows) == 21 and rows[0]["image_id"] == "1" and rows[0]["path"].startswith("images/001.Black_footed")
    assert [r["split"] for r in rows[:3]] == ["train", "train", "test"]
    assert all((cub / r["path"]).is_file() for r in rows)


def test_full_manifest_with_the_shipped_taxonomy_gives_23_tasks(tmp_path):
    lib = load(write_cub(tmp_path, manifest(range(1, 201)), jpegs=False), verify_images="none")
    orders = [t.name for t in lib.tasks if t.kind == "species_in_order"]
    families = [t.name for t in lib.tasks if t.kind == "species_in_family"]
    assert sorted(orders) == sorted(["Procellariiformes", "Cuculiformes", "Charadriiformes", "Caprimulgiformes", "Suliformes",
                                     "Piciformes", "Anseriformes", "Podicipediformes", "Apodiformes", "Coraciiformes"])  # fmt: skip
    assert len(families) == 13 and families[:2] == ["Parulidae", "Passerellidae"]
    reasons = skip_reasons(lib)
    assert reasons["cub200/family/*"].startswith(
        "asked for 15 Passeriformes family tasks, the taxonomy has only 13 Passeriformes families with >= 2 species"
    )
    single = [k for k, r in reasons.items() if k.startswith("cub200/family/") and "a task needs >= 2" in r]
    assert len(single) == 9
    assert {"cub200/order/Gaviiformes", "cub200/order/Pelecaniformes"} <= reasons.keys()
    assert "cub200/order/*" not in reasons
    assert sum(t.n_classes for t in lib.tasks) == 200 - 1 - 2 - 9  # Gaviiformes, Pelecaniformes, one-species families


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("images.txt", lambda ls: ls.__setitem__(1, ls[1] + " extra"), r"images\.txt, line 2: expected 2 space-separated columns \(<image_id> <image_name>\), found 3"),
        ("image_class_labels.txt", lambda ls: ls.__setitem__(2, "3 x"), r"image_class_labels\.txt, line 3: class_id 'x' is not an integer"),
        ("train_test_split.txt", lambda ls: ls.__setitem__(3, "4 2"), r"train_test_split\.txt, line 4: is_training_image is 2, expected 1 \(train\) or 0 \(test\)"),
        ("classes.txt", lambda ls: ls.append(ls[0]), r"classes\.txt, line 8: class id 1 appears twice \(first on line 1\)"),
        ("images.txt", lambda ls: ls.__setitem__(4, ls[0]), r"images\.txt, line 5: image id 1 appears twice \(first on line 1\)"),
        ("image_class_labels.txt", lambda ls: ls.append("99 1"), r"image_class_labels\.txt, line 22: image id 99 is not in images\.txt"),
        ("image_class_labels.txt", lambda ls: ls.__setitem__(0, "1 150"), r"image_class_labels\.txt, line 1: class id 150 is not in classes\.txt"),
        ("classes.txt", lambda ls: ls.__setitem__(0, "1 001.Black_browed_Albatross"), r"classes\.txt, line 1: class 1 is '001\.Black_browed_Albatross', but cub200_taxonomy\.tsv line 2 names species 'Black_footed_Albatross'"),
        ("classes.txt", lambda ls: ls.append("201 201.Dodo"), r"classes\.txt, line 8: class 201 \(201\.Dodo\) is not in the taxonomy"),
    ],
)  # fmt: skip
def test_bad_lines_are_errors_that_name_file_and_line(tmp_path, name, change, message):
    files = manifest()
    change(files[name])
    with pytest.raises(ManifestError, match=message):
        load(write_cub(tmp_path, files, jpegs=False), verify_images="none")


def test_missing_file_or_wrong_root(tmp_path):
    cub = write_cub(tmp_path, manifest(), jpegs=False)
    with pytest.raises(ManifestError, match=r"images\.txt.*not found.*dataset root right"):
        load(tmp_path / "elsewhere")
    (cub / "image_class_labels.txt").unlink()
    with pytest.raises(ManifestError, match=r"image_class_labels\.txt.*not found.*dataset root right"):
        load(tmp_path)


def test_bad_taxonomy_file(tmp_path):
    tax = tmp_path / "tax.tsv"
    tax.write_text("class_id\tspecies\torder\n1\tBlack_footed_Albatross\tProcellariiformes\n")
    with pytest.raises(ManifestError, match=r"tax\.tsv, line 1: the header must be"):
        load(write_cub(tmp_path, manifest(), jpegs=False), cub_taxonomy=tax)
    tax.write_text("class_id\tspecies\tfamily\torder\n1\tBlack_footed_Albatross\tDiomedeidae\n")
    with pytest.raises(ManifestError, match=r"tax\.tsv, line 2: expected 4 tab-separated columns, found 3"):
        load(tmp_path, cub_taxonomy=tax)


def test_image_without_label_or_split_is_skipped(tmp_path):
    files = manifest()
    del files["image_class_labels.txt"][0]
    del files["train_test_split.txt"][1]
    lib = load(write_cub(tmp_path, files))
    reasons = skip_reasons(lib)
    assert "no line in image_class_labels.txt" in reasons["cub200/image/1"]
    assert "no line in train_test_split.txt" in reasons["cub200/image/2"]
    assert lib.images.num_rows == 19 and lib.skips[0].line == 1


@pytest.mark.parametrize(("name", "expected"), [("../../outside.jpg", "escapes the dataset root"), ("/abs.jpg", "is absolute")])
def test_paths_that_escape_the_root_are_skipped(tmp_path, name, expected):
    files = manifest()
    files["images.txt"][0] = f"1 {name}"
    lib = load(write_cub(tmp_path, files), verify_images="exists")
    assert expected in skip_reasons(lib)["cub200/image/1"]
    assert lib.images.num_rows == 20


def test_symlink_missing_and_corrupt_images_are_skipped(tmp_path):
    cub = write_cub(tmp_path / "data", manifest())
    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (8, 8)).save(outside)
    images = [cub / "images" / line.split()[1] for line in (cub / "images.txt").read_text().splitlines()]
    images[0].unlink()
    os.symlink(outside, images[0])
    images[1].unlink()
    images[2].write_bytes(b"\xff\xd8 truncated")
    reasons = skip_reasons(load(cub, verify_images="decode"))
    assert "symlink that leaves the dataset root" in reasons["cub200/image/1"]
    assert "is missing" in reasons["cub200/image/2"]
    assert "cannot be decoded" in reasons["cub200/image/3"]


def test_species_below_min_train_and_groups_beyond_the_cap_are_skipped(tmp_path):
    files = manifest(per_class=((1, 1), (0, 1)))
    lib = load(write_cub(tmp_path, files), min_train_per_class=2, cub_max_orders=0)
    assert lib.tasks == []
    reasons = skip_reasons(lib)
    assert "1 training images, fewer than 2 (min_train_per_class)" in reasons["cub200/species/1"]
    assert "0 species with >= 2 training image(s)" in reasons["cub200/order/Procellariiformes"]
    lib = load(tmp_path, cub_max_orders=0)
    assert "ranks 1 of 1 by training images (3); only the first 0 are kept (cub_max_orders)" in skip_reasons(lib)["cub200/order/Procellariiformes"]
