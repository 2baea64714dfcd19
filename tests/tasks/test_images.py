"""The shared image check ``tasks.images.check_images``: the reasons of ``image_file_problem``, fast."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from tasks import images
from tasks.errors import ManifestError
from tasks.images import check_images, image_file_problem

PATHS = [
    "img/good.jpg",  # 0: a real JPEG
    "img/missing.jpg",  # 1: not on disk
    "img/corrupt.jpg",  # 2: exists, does not decode
    "img/inside.jpg",  # 3: symlink to good.jpg, inside the root: fine
    "img/outside.jpg",  # 4: symlink to a file outside the root
    "../escape.jpg",  # 5: escapes the root lexically
    "/abs/good.jpg",  # 6: absolute
    "img/../img/good.jpg",  # 7: '..' even though it lands inside
    "",  # 8: empty
    "linked/good.jpg",  # 9: a folder symlinked inside the root: fine
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "img").mkdir(parents=True)
    outside.mkdir()
    Image.new("RGB", (4, 4)).save(root / "img/good.jpg", "JPEG")
    (root / "img/corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    Image.new("RGB", (4, 4)).save(outside / "elsewhere.jpg", "JPEG")
    (root / "img/inside.jpg").symlink_to(root / "img/good.jpg")
    (root / "img/outside.jpg").symlink_to(outside / "elsewhere.jpg")
    (root / "linked").symlink_to(root / "img")
    return root


@pytest.mark.parametrize("mode", ["none", "exists", "decode"])
def test_same_reasons_as_image_file_problem_one_by_one(root: Path, mode: str) -> None:
    expected = {i: why for i, p in enumerate(PATHS) if (why := image_file_problem(root, p, mode))}
    assert check_images(root, PATHS, mode) == expected
    assert check_images(root, pa.array(PATHS, pa.string()), mode) == expected  # an arrow column gives the same
    assert list(expected) == sorted(expected)
    lexical = {5: "escapes the dataset root", 6: "is absolute", 7: "escapes the dataset root", 8: "empty image path"}
    on_disk = {1: "is missing", 4: "symlink that leaves the dataset root"}
    wanted = lexical | (on_disk if mode != "none" else {}) | ({2: "cannot be decoded"} if mode == "decode" else {})
    assert set(expected) == set(wanted)
    for i, words in wanted.items():
        assert words in expected[i], (PATHS[i], expected[i])


def test_plain_files_skip_the_per_file_check(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(50):
        (root / "img" / f"{i}.jpg").write_bytes(b"x")
    judged: list[str] = []

    def spy(root_: Path, relpath: str, mode: str) -> str | None:
        judged.append(relpath)
        return image_file_problem(root_, relpath, mode)

    monkeypatch.setattr(images, "image_file_problem", spy)
    paths = [f"img/{i}.jpg" for i in range(50)] + ["img/missing.jpg", "img/inside.jpg"]
    assert list(check_images(root, paths, "exists")) == [50]
    assert judged == ["img/missing.jpg", "img/inside.jpg"]  # only the odd cases go file by file


def test_none_usable_is_an_error_only_when_a_manifest_is_named(root: Path) -> None:
    paths = ["img/missing.jpg", "../escape.jpg"]
    assert set(check_images(root, paths, "exists")) == {0, 1}
    with pytest.raises(ManifestError, match=r"m.txt: none of the 2 images listed is usable under .*is missing"):
        check_images(root, paths, "exists", manifest=root / "m.txt")
    assert check_images(root, [], "exists", manifest=root / "m.txt") == {}
