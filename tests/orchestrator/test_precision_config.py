"""``runtime.precision`` / ``runtime.channels_last``: one home in the config, applied per device, recorded in rows."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from orchestrator.config import SweepConfig
from orchestrator.context import SweepContext, run_task2vec_config, stage_precision
from orchestrator.store import open_store
from orchestrator.sweep import launch
from tests.orchestrator.sweep_helpers import read_table, small_config

BASE = {"datasets": {"mini": True}}


def _config(**runtime) -> SweepConfig:
    return SweepConfig.model_validate({**BASE, "runtime": runtime})


def test_defaults_shorthand_and_bad_values() -> None:
    default = _config().runtime
    assert (default.precision.finetune, default.precision.features, default.precision.fisher) == ("bf16",) * 3
    assert default.channels_last
    fp16 = _config(precision="fp16").runtime.precision
    assert (fp16.finetune, fp16.features, fp16.fisher) == ("fp16", "fp16", "fp32")  # no fp16 Fisher
    assert _config(precision={"features": "fp32"}).runtime.precision.finetune == "bf16"
    with pytest.raises(ValidationError, match="fisher"):
        _config(precision={"fisher": "fp16"})
    with pytest.raises(ValidationError, match="finetune"):
        _config(precision={"finetune": "half"})


def test_the_cpu_runs_float32_whatever_the_setting(tmp_path) -> None:
    config = _config(precision="bf16")
    cpu = torch.device("cpu")
    assert {stage_precision(config, cpu, s) for s in ("finetune", "features", "fisher")} == {"fp32"}
    assert run_task2vec_config(config, cpu).precision == "fp32"
    assert not run_task2vec_config(_config(channels_last=False), cpu).channels_last
    ctx = SweepContext(open_store(str(tmp_path)), "r", _config(device="cpu"))
    train = ctx.train_config(ctx.config.experts, 3)
    assert (train.precision, train.channels_last, train.seed) == ("fp32", False, 3)


@pytest.mark.usefixtures("one_thread")
def test_every_result_row_records_its_precision(tmp_path, mini_roots, mini_library) -> None:
    config = small_config(mini_roots, mini_library, runner="inline", device="cpu")
    source, target = config.tasks.include[:2]  # two iNat tasks; one source dataset keeps the library small
    config = config.model_copy(update={
        "datasets": config.datasets.model_copy(update={"cub200": None, "imat2018": None, "deepfashion": None}),
        "tasks": config.tasks.model_copy(update={"include": [source, target]}),
        "transfer": config.transfer.model_copy(update={"mode": "explicit", "pairs": [(source, target)],
                                                       "epochs": 1, "batch_size": 16}),
    })
    store = open_store(str(tmp_path / "results"))
    assert launch(config, store, run_id="p", show_progress=False)["complete"]
    for table in ("embeddings", "heads", "transfer_init", "transfer"):
        assert set(read_table(store, "p", table)["precision"].to_pylist()) == {"fp32"}, table
    experts = read_table(store, "p", "experts").to_pylist()
    assert {(e["kind"], e["precision"]) for e in experts} == {("generic", None), ("finetuned", "fp32")}
