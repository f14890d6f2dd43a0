"""Errors that name the file and the problem; the skip report that keeps what was skipped."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

logger = logging.getLogger("medground_hf")


class InputError(ValueError):
    """A source file that cannot become a record: the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


ON_ERROR_CHOICES = ("raise", "skip")


class BuildError(RuntimeError):
    """The build cannot go on; the message says why (and which file, for input errors)."""


class PublishError(RuntimeError):
    """Publishing is refused or failed; the message says why and what to do."""


class MissingExtra(ImportError):
    """An optional group of dependencies is not installed: the message says what to install."""

    def __init__(self, what: str, extra: str, packages: tuple[str, ...]):
        super().__init__(
            f"{what} needs the optional '{extra}' dependencies ({', '.join(packages)}): "
            f"pip install -e '.[{extra}]' (or pip install 'medground-hf[{extra}]')"
        )


class SkipReport:
    """Appends skipped items to JSONL files in a folder, one file per writer process.

    Without a folder the skips are only logged. Builders may run in several processes
    (``--num-proc``); each writes its own file so nothing is lost or interleaved, and
    :func:`read_skips` merges them.
    """

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = Path(folder) if folder is not None else None
        self.entries: list[dict] = []  # this writer's skips, for callers that pass them on

    def add(
        self, item: str, path: str | None, stage: str, reason: str, level: int = logging.WARNING
    ) -> dict:
        """Log the skip and, when a report folder is set, append it there; returns the entry.

        Skipped items are warnings; routine drops (specks below ``min_size``) pass a lower level
        so they are counted and kept in the report without flooding the console.
        """
        logger.log(level, "skipped %s [%s] (%s): %s", item, stage, path, reason)
        entry = {"item": item, "path": path, "stage": stage, "reason": reason}
        self.extend([entry])
        return entry

    def extend(self, entries: list[dict]) -> None:
        """Append entries already logged (those of an item resumed from a checkpoint)."""
        self.entries.extend(entries)
        if self.folder is None or not entries:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"skipped-{os.getpid()}.jsonl", "a", encoding="utf-8") as fh:
            fh.writelines(json.dumps(entry) + "\n" for entry in entries)


def read_skips(folder: str | os.PathLike) -> list[dict]:
    """All skip entries written under ``folder``, sorted by item for stable reports."""
    entries: list[dict] = []
    for file in sorted(Path(folder).glob("skipped-*.jsonl")):
        with open(file, encoding="utf-8") as fh:
            entries.extend(json.loads(line) for line in fh if line.strip())
    return sort_skips(entries)


def sort_skips(entries: list[dict]) -> list[dict]:
    """Skips in a stable order (by item, then stage), whichever worker reported them."""
    return sorted(entries, key=lambda e: (e["item"], e["stage"]))
