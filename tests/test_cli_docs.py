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
