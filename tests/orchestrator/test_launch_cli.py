"""``orchestrate launch`` from the command line: dry run, config errors, a clear message instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from orchestrator.cli import main


def _write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_dry_run_prints_units_per_stage_and_cost(tmp_path: Path, mini_roots) -> None:
    config = _write(tmp_path / "sweep.yaml", {"datasets": {k: str(v) for k, v in mini_roots.items()},
                                              "experts": {"train_on": ["source:cub200"]}})
    result = CliRunner().invoke(main, ["launch", "--config", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    for stage in ("experts", "heads", "embeddings", "distances"):
        assert stage in result.output
    assert "GPU hours" in result.output
    assert not (tmp_path / "results").exists()


def test_unknown_config_key_is_a_clear_error(tmp_path: Path, mini_roots) -> None:
    config = _write(tmp_path / "sweep.yaml", {"datasets": {"cub200": str(mini_roots["cub200"])},
                                              "heads": {"epochz": 3}})
    result = CliRunner().invoke(main, ["launch", "--config", str(config), "--dry-run"])
    assert result.exit_code == 1
    assert "heads.epochz" in result.output and "Extra inputs are not permitted" in result.output
    assert "Traceback" not in result.output


def test_out_of_range_hyper_parameter_is_rejected(tmp_path: Path, mini_roots) -> None:
    config = _write(tmp_path / "sweep.yaml", {"datasets": {"cub200": str(mini_roots["cub200"])},
                                              "experts": {"lr": -1}})
    result = CliRunner().invoke(main, ["launch", "--config", str(config), "--dry-run"])
    assert result.exit_code == 1 and "experts.lr" in result.output


def test_no_dataset_is_a_clear_error(tmp_path: Path) -> None:
    config = _write(tmp_path / "sweep.yaml", {"heads": {"epochs": 3}})
    result = CliRunner().invoke(main, ["launch", "--config", str(config), "--dry-run"])
    assert result.exit_code == 1 and "name at least one dataset root" in result.output


def test_resume_of_an_unknown_run_is_a_clear_error(tmp_path: Path, mini_roots) -> None:
    config = _write(tmp_path / "sweep.yaml", {"datasets": {"cub200": str(mini_roots["cub200"])}})
    result = CliRunner().invoke(main, ["launch", "--config", str(config), "--results", str(tmp_path / "r"),
                                       "--resume", "nope", "--runner", "inline"])
    assert result.exit_code == 1 and "--resume nope" in result.output
