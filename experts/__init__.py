"""Probe networks, experts, linear heads, Task2Vec embeddings and distances: pure computation.

Functions take tensors or ``torch.utils.data.Dataset``s, a device, a seed or generator and a
config dataclass, and return arrays or dataclasses; nothing here reads or writes result files.
This package never imports Ray, boto3, click or ``orchestrator`` (a test enforces it).

Task2Vec entry points (imported lazily, so ``import experts.distances`` stays light):
``create_backbone``, ``list_backbones``, ``embed_task``, ``Task2VecConfig``, ``TaskEmbedding``,
``list_methods``, ``domain_embedding``, ``embed_image_folder``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "create_backbone": "experts.backbones",
    "get_backbone": "experts.backbones",
    "list_backbones": "experts.backbones",
    "Probe": "experts.backbones",
    "ProbeInfo": "experts.backbones",
    "embed_task": "experts.task2vec",
    "list_methods": "experts.task2vec",
    "Task2VecConfig": "experts.task2vec",
    "TaskEmbedding": "experts.task2vec",
    "domain_embedding": "experts.domain",
    "embed_image_folder": "experts.embed_folder",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'experts' has no attribute {name!r}")
