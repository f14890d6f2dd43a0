"""Progress for people watching a run: one bar per phase (items read, queries generated and
verified, rows written), and ``datasets``' own bars and log lines kept out of the way.

``datasets`` draws a bar for every internal step (generating each split, each filter, each Parquet
export): a build printed about fifteen. Inside our calls they say nothing a user can act on, so
:func:`quiet_datasets` silences them and each phase draws one :func:`phase_bar` instead.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Within the block ``datasets`` draws no progress bar and logs only errors; the caller's
    settings come back afterwards."""
    from datasets.utils import logging as datasets_logging

    bars = datasets_logging.is_progress_bar_enabled()
    level = datasets_logging.get_verbosity()
    datasets_logging.disable_progress_bar()
    datasets_logging.set_verbosity_error()
    try:
        yield
    finally:
        if bars:
            datasets_logging.enable_progress_bar()
        datasets_logging.set_verbosity(level)


def close_bars() -> None:
    """Close every open bar, so an error message that follows starts on a line of its own
    (a phase cut short by an error leaves its bar open)."""
    from tqdm import tqdm  # every bar, tqdm.auto's included, is one of its instances

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def phase_bar(phase: str, total: int | None, unit: str, *, disable: bool = False) -> tqdm:
    """The bar of one phase (``TQDM_DISABLE=1`` hides it, as for any tqdm bar: tqdm reads its
    environment only for arguments not given, so ``disable`` is passed only to hide a bar)."""
    from tqdm.auto import tqdm

    hide = {"disable": True} if disable else {}
    return tqdm(total=total, desc=phase, unit=f" {unit}", dynamic_ncols=True, **hide)


class ProcessBar:
    """A phase bar drawn only by the process that made it: a copy sent to ``--num-proc`` worker
    processes counts nothing, so workers never draw bars over each other."""

    def __init__(self, phase: str, total: int, unit: str):
        self._pid = os.getpid()
        self._args = (phase, total, unit)
        self._bar: tqdm | None = None

    def update(self, n: int = 1) -> None:
        if os.getpid() != self._pid:
            return
        if self._bar is None:
            self._bar = phase_bar(*self._args)
        self._bar.update(n)
        if self._bar.total is not None and self._bar.n >= self._bar.total:
            self._bar.close()

    def __getstate__(self) -> dict:
        return {"_pid": self._pid, "_args": self._args, "_bar": None}
