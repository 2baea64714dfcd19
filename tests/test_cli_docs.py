"""Every ``orchestrate`` command has help text and is documented in the README."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(main.commands))
def test_command_has_help_and_is_in_readme(name: str) -> None:
    command = main.commands[name]
    assert command.help and len(command.help) > 20, f"`orchestrate {name}` has no help text"
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"orchestrate {name}" in README, f"`orchestrate {name}` is not documented in README.md"


def test_every_sweep_config_key_is_documented() -> None:
    from orchestrator.config import SweepConfig

    doc = (Path(__file__).resolve().parents[1] / "docs" / "sweep.md").read_text()
    missing = [
        f"{section}.{key}"
        for section, field in SweepConfig.model_fields.items()
        if section != "library"  # documented in docs/task-library.md
        for key in field.annotation.model_fields
        if f"`{key}`" not in doc
    ]
    assert not missing, f"config keys missing from docs/sweep.md: {missing}"


# Default cells of docs/sweep.md that are words, not values: the code's default each one stands for.
_WORDED_DEFAULTS = {
    "—": None,  # no dataset root
    "one per GPU (else per CPU)": None,  # runtime.workers: decided at launch
    "first of `embeddings.methods`": None,  # transfer.method
    "`cpus_per_worker` − 1": None,  # input.loader_workers: decided per worker from runtime.cpus_per_worker
    "all four": ["symmetric", "asymmetric", "taxonomic", "domain"],
}


def _doc_value(cell: str):
    import yaml

    if cell in _WORDED_DEFAULTS:
        return _WORDED_DEFAULTS[cell]
    text = cell.replace("`", "")
    try:
        return int(text) if text.isdigit() else float(text)
    except ValueError:
        pass
    value = yaml.safe_load(text)
    if isinstance(value, bool) and text not in ("true", "false"):
        return text  # off, on: words, not YAML 1.1 booleans
    return None if value == "none" else value


def _documented_defaults(doc: str) -> dict[str, str]:
    """``section.key`` → the default cell of the configuration and meta-task tables of docs/sweep.md."""
    import re

    out: dict[str, str] = {}
    config = doc.split("## Configuration", 1)[1].split("\n\n", 2)[1]  # the table after the heading
    section = ""
    for line in config.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        section = cells[0].strip("`") or section
        keys, defaults = re.findall(r"`([\w.]+)`", cells[1]), cells[2]
        values = [defaults] * len(keys) if len(keys) == 1 or defaults == "—" else defaults.split(", ")
        if section != "library" and len(values) == len(keys):
            out.update({f"{section}.{k}": v for k, v in zip(keys, values)})
    meta = doc.split("### Meta-tasks", 1)[1].split("\n\n", 3)[2]
    for line in meta.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        keys, defaults = re.findall(r"`(\w+)`", cells[0]), cells[1].split(", ")
        out.update({f"meta_task.{k}": v for k, v in zip(keys, defaults) if len(keys) == len(defaults)})
    return out


def test_every_default_in_the_sweep_docs_is_the_codes() -> None:
    from orchestrator.config import MetaTaskConfig, SweepConfig

    documented = _documented_defaults((Path(__file__).resolve().parents[1] / "docs" / "sweep.md").read_text())
    code = SweepConfig.model_validate({"datasets": {"mini": True}}).model_dump(mode="json")
    code["datasets"]["mini"] = False
    code["meta_task"] = MetaTaskConfig(name="x").model_dump(mode="json")
    assert len(documented) > 60  # the parser found the tables
    for section in list(code):  # nested settings (runtime.precision.fisher) as dotted keys
        if isinstance(code[section], dict):
            for key, value in list(code[section].items()):
                if isinstance(value, dict):
                    code[section].update({f"{key}.{k}": v for k, v in code[section].pop(key).items()})
    wrong = {}
    for name, cell in documented.items():
        section, key = name.split(".", 1)
        if name in ("report.meta_tasks", "meta_task.name"):
            continue  # a list of meta-tasks (checked below); a name has no default
        value = _doc_value(cell)
        if isinstance(value, str) and value.startswith("./"):
            value = str(Path(value))
        if value != code[section][key]:
            wrong[name] = (cell, code[section][key])
    assert not wrong, f"docs/sweep.md states other defaults than the code (doc, code): {wrong}"
    assert documented["report.meta_tasks"] == "iNat+CUB, Mixed"
    assert [m["name"] for m in code["report"]["meta_tasks"]] == ["iNat+CUB", "Mixed"]
    missing = [f"{s}.{k}" for s in code if s not in ("library", "meta_task") for k in code[s]
               if f"{s}.{k}" not in documented]
    assert not missing, f"keys of docs/sweep.md's table without a default cell that parses: {missing}"


def test_config_sections_take_their_defaults_from_the_compute_dataclasses() -> None:
    import dataclasses

    from experts.heads import HeadTrainConfig
    from experts.task2vec import Task2VecConfig
    from experts.training import ExpertTrainConfig
    from orchestrator.config import EmbeddingsConfig, ExpertsConfig, HeadsConfig, TransferConfig

    fine_tune = dataclasses.asdict(ExpertTrainConfig())
    for section in (ExpertsConfig(), TransferConfig()):
        assert dataclasses.asdict(section.train_config(0)) == fine_tune
    heads = HeadsConfig()
    assert heads.train_config() == HeadTrainConfig()
    assert EmbeddingsConfig().task2vec_config() == Task2VecConfig()
