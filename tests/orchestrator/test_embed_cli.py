"""``orchestrate embed``: one image folder in, one Parquet row with a fixed-length embedding out."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from orchestrator.cli import main
from tests.orchestrator.sweep_helpers import image_folder


def _embed(tmp_path: Path, mini_library, fisher_samples: int):  # type: ignore[no-untyped-def]
    folder = image_folder(tmp_path, mini_library)
    out = tmp_path / "emb.parquet"
    args = ["embed", str(folder), "--probe", "tiny_resnet", "--image-size", "32", "--max-samples", "16",
            "--fisher-samples", str(fisher_samples), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out, result


def test_embed_writes_one_row(tmp_path: Path, mini_library) -> None:
    out, _ = _embed(tmp_path, mini_library, 16)
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


def test_embed_reports_its_noise_and_progress(tmp_path: Path, mini_library) -> None:
    out, result = _embed(tmp_path, mini_library, 128)  # two batches of 64: two halves
    row = pq.read_table(out).to_pylist()[0]
    assert row["noise"] is not None and 0 < row["noise"] < 1 and f"noise d_sym {row['noise']:.4f}" in result.output
    for phase in ("features", "head", "fisher"):  # each phase's closing line
        assert f"{phase}: " in result.output


def test_progress_printer_prints_rate_and_eta_per_phase(capsys) -> None:
    from orchestrator.commands.embed import ProgressPrinter

    now = [0.0]
    printer = ProgressPrinter(interval=2.0, clock=lambda: now[0])
    printer("head", 0, 100)
    for step in range(1, 101):
        now[0] += 0.1
        printer("head", step, 100)
    now[0] += 1.0
    printer("fisher", 0, 40)  # a new phase: its own clock
    now[0] += 3.0
    printer("fisher", 4, 40)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "head: 20/100 steps, 2.0s, ETA 8.0s"  # throttled to one line every 2 s
    assert "head: 100/100 steps, 10.0s" in err and all("ETA" not in e for e in err if "100/100" in e)
    assert err[-1] == "fisher: 4/40 batches, 3.0s, ETA 27.0s"
