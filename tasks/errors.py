"""Errors raised on bad input, phrased for the person who has to fix the file.

Every message names the file, the line or record when there is one, what is wrong, and what to do.
"""

from __future__ import annotations

from pathlib import Path


class TaskSweepInputError(ValueError):
    """Bad user input (a manifest, an image, a config value): the message says what, where and how to fix."""


class ManifestError(TaskSweepInputError):
    """A dataset annotation file that cannot be read as its format requires.

    Args:
        path: the offending file.
        problem: what is wrong, in one sentence.
        line: 1-based line number in a text file, if known.
        record: a record locator for JSON files, e.g. ``images[12]`` or ``imageId '45'``.
        fix: what the user should do about it.
    """

    def __init__(
        self,
        path: str | Path,
        problem: str,
        *,
        line: int | None = None,
        record: str | None = None,
        fix: str = "",
    ) -> None:
        self.path = str(path)
        self.problem = problem
        self.line = line
        self.record = record
        self.fix = fix
        where = self.path
        if line is not None:
            where += f", line {line}"
        if record is not None:
            where += f", {record}"
        message = f"{where}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)
