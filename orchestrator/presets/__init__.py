"""Sweep designs shipped with the package, as YAML: a preset is the base a config file and CLI flags override."""

from __future__ import annotations

from importlib import resources

import yaml

from tasks.errors import TaskSweepInputError


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files(__package__).iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict:
    """The preset's config mapping (sections → keys), as written in ``orchestrator/presets/<name>.yaml``."""
    if name not in preset_names():
        raise TaskSweepInputError(f"no preset {name!r}; the presets are: {', '.join(preset_names())}")
    return yaml.safe_load(resources.files(__package__).joinpath(f"{name}.yaml").read_text())
