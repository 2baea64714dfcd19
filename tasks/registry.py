"""The dataset-adapter registry: one small file per dataset under tasks/datasets/."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

from tasks.config import LibraryConfig
from tasks.spec import SourceLibrary


class DatasetAdapter(Protocol):
    """Reads one dataset's manifests under ``root`` and cuts its tasks."""

    def __call__(self, root: Path, config: LibraryConfig) -> SourceLibrary: ...


_ADAPTERS: dict[str, DatasetAdapter] = {}


def register_adapter(name: str) -> Callable[[DatasetAdapter], DatasetAdapter]:
    def decorate(fn: DatasetAdapter) -> DatasetAdapter:
        if name in _ADAPTERS:
            raise ValueError(f"dataset adapter {name!r} registered twice")
        _ADAPTERS[name] = fn
        return fn

    return decorate


def list_adapters() -> list[str]:
    _load_builtin()
    return sorted(_ADAPTERS)


def get_adapter(name: str) -> DatasetAdapter:
    _load_builtin()
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(_ADAPTERS))}") from None


def _load_builtin() -> None:
    # Importing the modules runs their @register_adapter decorators.
    from tasks.datasets import cub200, deepfashion, imat2018, inat2018  # noqa: F401
