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
        except (TaskSweepInputError, FileNotFoundError, FileExistsError) as exc:
            raise click.ClickException(str(exc)) from exc
        except pydantic.ValidationError as exc:
            raise click.ClickException(f"invalid settings:\n{exc}") from exc

    return wrapper


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
