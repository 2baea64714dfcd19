"""``orchestrate embed``: one image folder in, one Parquet row with a fixed-length embedding out."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from orchestrator.cli import main
from tests.orchestrator.sweep_helpers import image_folder


def test_embed_writes_one_row(tmp_path: Path, mini_library) -> None:
    folder = image_folder(tmp_path, mini_library)
    out = tmp_path / "emb.parquet"
    args = ["embed", str(folder), "--probe", "tiny_resnet", "--image-size", "32", "--max-samples", "16",
            "--fisher-samples", "16", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.num_rows == 1
    row = table.to_pylist()[0]
    assert row["task_id"] == "my_task" and row["method"] == "montecarlo" and row["pretrained"] is False
    assert len(row["embedding"]) == row["dim"] > 0
    assert row["warnings"] and "randomly initialised" in row["warnings"][0]
    assert table.schema.field("embedding").type.value_type == pa.float32()


def test_embed_of_a_one_class_folder_is_a_clear_error(tmp_path: Path, mini_library) -> None:
    folder = image_folder(tmp_path, mini_library, n_classes=1)
    result = CliRunner().invoke(main, ["embed", str(folder), "--probe", "tiny_resnet", "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert str(folder) in result.output or "class" in result.output
