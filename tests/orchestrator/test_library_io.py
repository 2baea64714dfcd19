"""The library written to a store (local folder and S3) reads back equal, and through pyarrow.dataset."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.library_io import load_library, write_library
from orchestrator.store import open_store
from tasks.config import LibraryConfig
from tasks.library import Library


def test_library_round_trip(store_uri, mini_library: Library) -> None:
    store = open_store(store_uri.uri, **store_uri.kwargs)
    summary = write_library(store, "run1", mini_library, LibraryConfig())
    assert summary["n_tasks"] == len(mini_library.tasks)
    back = load_library(store, "run1")
    assert back.tasks == mini_library.tasks
    assert back.skips == mini_library.skips
    for name, src in mini_library.sources.items():
        assert back.sources[name].images.equals(src.images.cast(back.sources[name].images.schema))
        assert (back.sources[name].labels is None) == (src.labels is None)
    fs, path = store.filesystem_and_path("run1/tasks")
    table = ds.dataset(path, filesystem=fs, format="parquet").to_table()
    assert table.num_rows == len(mini_library.tasks)
    assert table.schema.metadata[b"schema_version"] == b"1"


def test_cli_library_writes_readable_tables(tmp_path: Path, mini_roots) -> None:
    args = ["library", "--cub200", str(mini_roots["cub200"]), "--deepfashion", str(mini_roots["deepfashion"]),
            "--results", str(tmp_path / "results"), "--run-id", "lib1", "--verify-images", "decode"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    tasks = ds.dataset(tmp_path / "results" / "lib1" / "tasks").to_table()
    assert set(tasks["source"].to_pylist()) == {"cub200", "deepfashion"}
    assert f"{tasks.num_rows} tasks written" in result.output


def test_cli_library_bad_manifest_is_a_clear_error(tmp_path: Path, mini_roots) -> None:
    import shutil

    root = tmp_path / "deepfashion"
    shutil.copytree(mini_roots["deepfashion"], root)
    attr = root / "Anno" / "list_attr_img.txt"
    lines = attr.read_text().splitlines()
    attr.write_text("\n".join(lines[:-3]) + "\n")  # truncated: fewer rows than the count line says
    result = CliRunner().invoke(main, ["library", "--deepfashion", str(root), "--results", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "list_attr_img.txt" in result.output and "Traceback" not in result.output


def test_cli_library_needs_a_dataset(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["library", "--results", str(tmp_path)])
    assert result.exit_code == 2 and "name at least one dataset" in result.output
