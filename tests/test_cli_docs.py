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
