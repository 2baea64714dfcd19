"""tasks/ and experts/ are pure computation: they never import Ray, boto3, click or the orchestrator."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"ray", "boto3", "botocore", "click", "orchestrator"}


def imported_top_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):  # walks function bodies too: deferred imports count
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["tasks", "experts"])
def test_pure_packages_import_no_runtime(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    offenders = {str(f.relative_to(ROOT)): sorted(imported_top_modules(f) & FORBIDDEN) for f in files}
    offenders = {f: mods for f, mods in offenders.items() if mods}
    assert not offenders, f"forbidden imports in {package}/: {offenders}"


def test_checker_sees_deferred_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import ray.util\n    from orchestrator.store import open_store\n")
    assert imported_top_modules(bad) & FORBIDDEN == {"ray", "orchestrator"}
