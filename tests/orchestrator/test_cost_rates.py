"""The dry-run's GPU hours come from per-stage rates: a ``benchmarks/gpu.py`` file, or the labelled default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.config import SweepConfig
from orchestrator.cost import ASSUMED_RATES, estimate, gpu_hours, load_rates
from orchestrator.plan import plan
from tasks.errors import TaskSweepInputError


def _rates_file(path: Path, scale: float = 1.0, **extra) -> Path:
    data = {"device": "Test GPU 80GB", "measured_at": "2026-12-07", "probe": "resnet34", "image_size": 224,
            "rates": {"features": {"fp32": 4000.0 * scale, "bf16": 9000.0 * scale},
                      "finetune": {"fp32": 1000.0 * scale, "bf16": 2500.0 * scale},
                      "fisher": {"fp32": 900.0 * scale}}, **extra}
    path.write_text(json.dumps(data))
    return path


def test_rates_follow_the_runs_precision_and_say_where_they_come_from(tmp_path: Path) -> None:
    config = SweepConfig.model_validate({"datasets": {"mini": True}})
    rates = load_rates(_rates_file(tmp_path / "r.json"), config)
    assert (rates.features, rates.finetune, rates.fisher) == (9000.0, 2500.0, 900.0)
    assert "Test GPU 80GB" in rates.source and not rates.assumed
    assert rates.notes == ("fisher: no bf16 rate measured, using fp32's",)
    fp32 = SweepConfig.model_validate({"datasets": {"mini": True}, "runtime": {"precision": "fp32"}})
    assert load_rates(tmp_path / "r.json", fp32).features == 4000.0
    default = load_rates(None, config)
    assert default.assumed and "not measured" in default.source
    assert default.features == ASSUMED_RATES["rates"]["features"]["bf16"]


def test_gpu_hours_scale_inversely_with_the_measured_rates(tmp_path: Path, mini_library) -> None:
    config = SweepConfig.model_validate({"datasets": {"mini": True}, "experts": {"per_task": True, "max_experts": 3},
                                         "transfer": {"mode": "group", "groups": ["source:cub200"]}})
    cost = estimate(plan(config, mini_library.tasks), config)
    assert cost["experts"]["finetune"] > 0 and cost["embeddings"]["fisher"] > 0 and cost["transfer"]["finetune"] > 0
    slow = load_rates(_rates_file(tmp_path / "slow.json"), config)
    fast = load_rates(_rates_file(tmp_path / "fast.json", scale=2.0), config)
    for stage in ("experts", "heads", "embeddings", "transfer_init", "transfer"):
        assert gpu_hours(cost[stage], slow) == pytest.approx(2 * gpu_hours(cost[stage], fast))
    embed = cost["embeddings"]
    assert gpu_hours(embed, slow) == pytest.approx((embed["features"] / 9000 + embed["fisher"] / 900) / 3600)


def test_dry_run_names_the_rates_source(tmp_path: Path, mini_roots) -> None:
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({"datasets": {"cub200": str(mini_roots["cub200"])}}))
    default = CliRunner().invoke(main, ["launch", "--config", str(config), "--dry-run"])
    assert default.exit_code == 0, default.output
    assert "rates: shipped default, not measured" in default.output and "benchmarks/gpu.py" in default.output
    measured = CliRunner().invoke(main, ["launch", "--config", str(config), "--dry-run", "--rates",
                                         str(_rates_file(tmp_path / "r.json"))])
    assert measured.exit_code == 0, measured.output
    assert "measured on Test GPU 80GB (2026-12-07)" in measured.output and "9,000 (features, bf16)" in measured.output


def test_a_bad_rates_file_is_a_clear_error(tmp_path: Path) -> None:
    config = SweepConfig.model_validate({"datasets": {"mini": True}})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TaskSweepInputError, match="bad.json: not a rates file written by benchmarks/gpu.py"):
        load_rates(tmp_path / "bad.json", config)
    (tmp_path / "partial.json").write_text(json.dumps({"rates": {"features": {"fp32": 1.0}}}))
    with pytest.raises(TaskSweepInputError, match="no finetune rate"):
        load_rates(tmp_path / "partial.json", config)
