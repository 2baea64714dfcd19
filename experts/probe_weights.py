"""Where a probe's weights come from: a local state-dict file, or torchvision's hub cache.

Never downloads. A weights file is loaded strictly except the classifier; the error names the file
and lists the missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torchvision.models as tvm
from torch import nn

from tasks.errors import TaskSweepInputError

if TYPE_CHECKING:
    from experts.backbones import BackboneSpec

log = logging.getLogger(__name__)

__all__ = ["imagenet_cache_path", "load_body_weights", "load_state_dict_file", "resolve_weights"]


def imagenet_cache_path(spec: BackboneSpec) -> Path | None:
    """Where torchvision would cache this backbone's ImageNet weights (None: it has none)."""
    if spec.imagenet_weights is None:
        return None
    enum_name, member = spec.imagenet_weights.split(".")
    url = getattr(getattr(tvm, enum_name), member).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def resolve_weights(spec: BackboneSpec, weights: str | Path | None) -> Path | None:
    if weights == "random":
        return None
    if weights is None or weights == "imagenet":
        cached = imagenet_cache_path(spec)
        if cached is not None and cached.is_file():
            return cached
        if weights == "imagenet":
            where = f"at {cached}" if cached else "(torchvision has none for this probe)"
            raise FileNotFoundError(
                f"ImageNet weights for {spec.name} are not in the torch hub cache {where}; "
                "this code never downloads: copy the file there or pass a weights file"
            )
        log.warning("probe %s: no weights given and none cached; random initialisation", spec.name)
        return None
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"probe weights file {path} does not exist")
    return path


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict (plain, or under "state_dict"/"model"; "module." prefixes stripped)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise TaskSweepInputError(f"{path}: cannot be read as a PyTorch state dict ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TaskSweepInputError(f"{path}: not a state dict (expected a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


_DENSENET_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def load_body_weights(body: nn.Module, spec: BackboneSpec, state: dict[str, torch.Tensor], *, source: str) -> None:
    if any(k.startswith("body.") for k in state):  # a Probe's own state dict
        state = {k.removeprefix("body."): v for k, v in state.items() if k.startswith("body.")}
    state = {_DENSENET_OLD_KEY.sub(r"\1\2", k): v for k, v in state.items()}  # torchvision's legacy names
    state = {k: v for k, v in state.items() if not k.startswith(spec.classifier + ".")}
    expected = body.state_dict()
    for key in expected:  # checkpoints older than PyTorch 0.4.1 have no num_batches_tracked
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = expected[key]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"{label} ({len(items)}): {', '.join(items[:5])}" for label, items in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if items]
        raise TaskSweepInputError(f"{source}: does not match probe {spec.name}: " + "; ".join(parts))
    body.load_state_dict(state, strict=True)
