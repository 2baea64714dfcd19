"""Helpers shared by the commands: user-facing errors without tracebacks, logging, run ids."""

from __future__ import annotations

import functools
import logging
import sys
import time
from typing import Any, Callable

import click
import pydantic

from tasks.errors import TaskSweepInputError


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn bad-input exceptions into a one-paragraph message and exit status 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TaskSweepInputError as exc:
            raise click.ClickException(str(exc)) from exc
        except (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from exc
        except pydantic.ValidationError as exc:
            raise click.ClickException(f"invalid settings: {validation_summary(exc)}") from exc

    return wrapper


def validation_summary(exc: pydantic.ValidationError) -> str:
    """One line per invalid setting, ``section.key: what is wrong (got value)``, without pydantic's links."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        got = f" (got {err['input']!r})" if where and not isinstance(err.get("input"), dict) else ""
        lines.append(f"{where + ': ' if where else ''}{err['msg']}{got}")
    return "; ".join(lines)


def check_probe(name: str, flag: str = "--probe") -> str:
    """``name`` if it is a registered probe, else a one-line error listing the valid names."""
    from experts.backbones import list_backbones

    if name not in list_backbones():
        raise click.ClickException(f"{flag}: unknown probe {name!r}; valid: {', '.join(list_backbones())}")
    return name


def check_device(device: str) -> str:
    """``device`` if torch can use it here, else a one-line error (a typo, or CUDA on a machine without it)."""
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise click.ClickException(f"--device: {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and (not torch.cuda.is_available() or (parsed.index or 0) >= torch.cuda.device_count()):
        raise click.ClickException(f"--device {device}: no such CUDA device on this machine "
                                   f"({torch.cuda.device_count()} visible); use --device cpu")
    return device


def probe_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--probe", default=default, show_default=True, callback=lambda _c, _p, v: check_probe(v),
                        help="Probe architecture (see experts.backbones).")


def device_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--device", default="cpu", show_default=True, callback=lambda _c, _p, v: check_device(v),
                        help="cpu, cuda, cuda:1, ...")(fn)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def default_run_id(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def results_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--results URI`` and ``--s3-endpoint URL``, shared by every command that writes or reads results."""
    fn = click.option(
        "--s3-endpoint",
        default=None,
        help="Endpoint of an S3-compatible server (e.g. http://127.0.0.1:8333); credentials come from the AWS chain.",
    )(fn)
    fn = click.option(
        "--results",
        default="./results",
        show_default=True,
        help="Where results go: a local folder or s3://bucket/prefix.",
    )(fn)
    return fn
