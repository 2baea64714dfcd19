"""``benchmarks/gpu.py`` runs on the CPU with tiny sizes and writes what the dry-run's cost model reads."""

from __future__ import annotations

import argparse
import json

from benchmarks.gpu import KINDS, run
from orchestrator.config import SweepConfig
from orchestrator.cost import load_rates


def test_a_tiny_cpu_run_writes_a_rates_file_the_dry_run_reads(tmp_path, one_thread) -> None:
    args = argparse.Namespace(device="cpu", probe="tiny_resnet", image_size=32, batch=4, seconds=0.2, warmup=1,
                              images=8, workers=1, quiet=True)
    result = run(args)
    assert result["device_slug"] == "cpu" and result["gpu_busy"] is None and "no GPU" in result["notes"][-1]
    for kind in KINDS:
        assert set(result["rates"][kind]) == {"fp32", "bf16"} and min(result["rates"][kind].values()) > 0
    assert {s: v["images_per_s"] > 0 for s, v in result["loader"].items()} == {"jpeg": True, "decoded": True}
    path = tmp_path / "gpu-cpu.json"
    path.write_text(json.dumps(result))
    config = SweepConfig.model_validate({"datasets": {"mini": True}, "embeddings": {"probe": "tiny_resnet"},
                                         "runtime": {"image_size": 32}})
    rates = load_rates(path, config)
    assert rates.fisher == result["rates"]["fisher"]["bf16"] and not rates.notes and "measured on cpu" in rates.source
