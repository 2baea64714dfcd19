"""Mixed precision: the autocast context a computation runs under, from one setting.

``precision`` is ``fp32`` (no autocast), ``bf16`` (bfloat16 autocast: float32's range, no loss
scaling needed) or ``fp16`` (float16 autocast; training adds a ``GradScaler``). The functions here
apply the setting on whatever device they are given, CPU included (that is how the tolerance tests
run); ``effective_precision`` is the sweep's rule for what a stage actually uses on a device.

Only forward passes run under autocast. Quantities that accumulate (the Fisher's squared
gradients, per-sample norms, losses) stay float32: ``autocast_forward`` wraps a module's forward
so that its output comes back as float32 and nothing outside it is autocast.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Literal, get_args

import torch
from torch import nn

__all__ = ["PRECISIONS", "Precision", "autocast", "autocast_forward", "check_precision", "effective_precision",
           "grad_scaler"]

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def effective_precision(device: str | torch.device, precision: str, *, allow_fp16: bool = True) -> Precision:
    """What a stage runs with on ``device``: the setting on CUDA, float32 on any other device.

    On a GPU without bfloat16 support, ``bf16`` becomes ``fp16`` (or ``fp32`` where ``allow_fp16``
    is false: the Fisher squares gradients that float16 would underflow), with a warning.
    """
    check_precision(precision)
    device = torch.device(device)
    if device.type != "cuda" or precision == "fp32":
        return "fp32"
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        fallback: Precision = "fp16" if allow_fp16 else "fp32"
        log.warning("%s has no bfloat16 support: running in %s instead", torch.cuda.get_device_name(device), fallback)
        return fallback
    return precision  # type: ignore[return-value]


def autocast(device: str | torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``precision`` on ``device``'s type; a no-op for ``fp32``."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=_DTYPES[precision])


@contextlib.contextmanager
def autocast_forward(module: nn.Module, device: str | torch.device, precision: str) -> Iterator[nn.Module]:
    """Within the block, ``module(...)`` runs under autocast and returns float32; restored afterwards.

    Everything the caller does with the output (losses, gradients, their squares and sums) runs
    outside autocast, in the dtype of the module's parameters.
    """
    if check_precision(precision) == "fp32":
        yield module
        return
    forward = module.forward

    def mixed(*args, **kwargs):  # type: ignore[no-untyped-def]
        with autocast(device, precision):
            out = forward(*args, **kwargs)
        return out.float() if isinstance(out, torch.Tensor) else out

    module.forward = mixed  # type: ignore[method-assign]
    try:
        yield module
    finally:
        del module.forward


def grad_scaler(device: str | torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for ``fp16`` training; a pass-through scaler (same steps as no scaler) otherwise."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=check_precision(precision) == "fp16")
