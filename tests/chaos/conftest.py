"""Chaos-suite fixtures: one undisturbed baseline sweep that every faulted run is compared to."""

from __future__ import annotations

import time

import pytest

from orchestrator.store import open_store
from orchestrator.sweep import launch
from tests.chaos.chaos_helpers import chaos_config, committed_rows, exactly_once, plan_of

FIGURES: dict[str, dict] = {}  # fault → measured outcome, printed at the end (docs/reliability.md)


@pytest.fixture(scope="session")
def baseline(tmp_path_factory, mini_roots, mini_library, ray_local):
    """(config, plan, rows) of the undisturbed chaos sweep on local Ray, results in a local folder."""
    config = chaos_config(mini_roots, mini_library)
    store = open_store(str(tmp_path_factory.mktemp("baseline") / "results"))
    t0 = time.monotonic()
    info = launch(config, store, run_id="baseline", show_progress=False)
    seconds = time.monotonic() - t0
    assert info["complete"]
    the_plan = plan_of(config, mini_library)
    counts = exactly_once(store, "baseline", the_plan)
    FIGURES["baseline"] = {**counts, "seconds": round(seconds, 1)}
    return config, the_plan, committed_rows(store, "baseline")


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.write_line("chaos figures:")
        for name, fig in FIGURES.items():
            terminalreporter.write_line(f"  {name}: {fig}")
