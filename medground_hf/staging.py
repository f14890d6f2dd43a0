"""Atomic output folders: a command writes beside its target and replaces it in one rename.

``build``, ``generate``, ``merge`` and ``export`` never write into the folder they produce. They
write into a hidden staging folder next to it (``.<name>.medground-staging``), flush every file
to disk, and only then put it in place:

* on Linux, one ``renameat2(RENAME_EXCHANGE)`` swaps the complete new folder with the old one
  atomically: at every instant the target is either the old folder or the new complete one;
* elsewhere (or on a file system without that call) the old folder is renamed to
  ``.<name>.medground-old`` and the new one renamed into place: two renames, with a window of a
  few microseconds in which the target is missing. A process killed inside that window leaves
  the old folder under the ``-old`` name; the next command that opens the folder
  (:func:`recover`) renames it back.

The old folder stays intact until the swap. A command that fails or is killed leaves the target
untouched and its staging folder behind; rerunning the same command (same options, see
:func:`command_key`) resumes from it: the ``resume/`` part (e.g. the per-item checkpoints of
:mod:`medground_hf.checkpoints`) is kept, everything else is rewritten. A different command
discards it.

Fault injection (tests, and anyone checking these guarantees): ``MEDGROUND_FAULT=PHASE[@N][:KIND]``
makes the process kill itself with SIGKILL (``kill``, the default) or fail with "no space left on
device" (``enospc``) the ``N``-th time (default 1st) it reaches ``PHASE``; see :data:`PHASES`.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import logging
import os
import shutil
import signal
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger("medground_hf")

STAGING_SUFFIX = ".medground-staging"
OLD_SUFFIX = ".medground-old"
STATE = ".medground-staging.json"  # which command writes this staging folder
WORK = ".medground-work"  # working files, removed before the folder is put in place
RESUME = "resume"  # under WORK: kept when the same command resumes
SCRATCH = "scratch"  # under WORK: rewritten by every run

# Where a command can be interrupted; MEDGROUND_FAULT names one of these.
PHASES = (
    "item",  # a builder item's records checkpointed (build)
    "records",  # every record made, before generation (build)
    "answer",  # one VLM answer saved in the request cache (build, generate)
    "shards",  # grounding/rejected shards written (build, generate, merge)
    "formats",  # derived configs written (build, generate, merge)
    "manifest",  # manifest written, before the card
    "export",  # one export file written (export)
    "commit",  # staging folder complete and on disk, before the swap
    "swap",  # inside the swap: old folder moved aside, new one not yet cleaned up
)
_FAULT_KINDS = ("kill", "enospc")
_reached: Counter = Counter()


def fault(phase: str) -> None:
    """The fault-injection hook: act when ``MEDGROUND_FAULT`` names this phase (and count)."""
    spec = os.environ.get("MEDGROUND_FAULT")
    if not spec:
        return
    where, _, kind = spec.partition(":")
    name, _, nth = where.partition("@")
    if name not in PHASES or (kind or "kill") not in _FAULT_KINDS:
        raise ValueError(
            f"MEDGROUND_FAULT={spec!r}: expected PHASE[@N][:kill|enospc], "
            f"PHASE one of {', '.join(PHASES)}"
        )
    if name != phase:
        return
    _reached[phase] += 1
    if _reached[phase] != int(nth or 1):
        return
    if (kind or "kill") == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"<fault injected at {phase}>")


def command_key(command: str, options: Mapping) -> str:
    """A hash of everything that determines a command's output, to recognise the same command."""
    canonical = json.dumps({"command": command, **options}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def staging_path(target: Path) -> Path:
    return target.parent / f".{target.name}{STAGING_SUFFIX}"


def old_path(target: Path) -> Path:
    return target.parent / f".{target.name}{OLD_SUFFIX}"


def recover(target: Path) -> None:
    """Finish a swap a killed process left half done: the old folder back in place when the
    target is missing, else the leftover old folder removed (also from the staging path, where
    an exchange leaves it)."""
    swapped_out = staging_path(target)
    if swapped_out.is_dir() and not (swapped_out / STATE).is_file():
        shutil.rmtree(swapped_out, ignore_errors=True)
    old = old_path(target)
    if not old.exists():
        return
    if not target.exists():
        os.rename(old, target)
        logger.warning("%s: restored from %s (a replacement was interrupted)", target, old.name)
    else:
        shutil.rmtree(old, ignore_errors=True)


def is_empty(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


class Stage:
    """The staging folder of one command: write the output into :attr:`path`."""

    def __init__(self, target: Path, key: str | None):
        self.target = target
        self.path = staging_path(target)
        self.key = key

    @property
    def resume(self) -> Path:
        """Kept across runs of the same command (checkpoints); gone once the output is in place."""
        return self.path / WORK / RESUME

    @property
    def scratch(self) -> Path:
        """Working files of this run only (Arrow caches, skip reports)."""
        return self.path / WORK / SCRATCH

    def open(self) -> None:
        state = self.path / STATE
        if self.path.exists():
            previous = json.loads(state.read_text("utf-8")) if state.is_file() else {}
            if self.key is not None and previous.get("key") == self.key:
                for entry in self.path.iterdir():
                    if entry.name not in (STATE, WORK):
                        _remove(entry)
                shutil.rmtree(self.scratch, ignore_errors=True)
                logger.info("%s: resuming the interrupted run in %s", self.target, self.path.name)
            else:
                shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"key": self.key, "target": str(self.target)}), "utf-8")
        self.resume.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)

    def commit(self) -> None:
        """Drop the working files, flush everything to disk, put the folder in place."""
        shutil.rmtree(self.path / WORK)
        (self.path / STATE).unlink()
        sync_tree(self.path)
        fault("commit")
        replace(self.path, self.target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def sync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (and ``root`` itself)."""
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(os.path.join(folder, name), os.O_RDONLY)
        _fsync(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _fsync(path: str | Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where the call is unavailable."""
    if os.environ.get("MEDGROUND_NO_EXCHANGE"):  # lets tests take the two-rename path
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def replace(new: Path, target: Path) -> None:
    """Put the complete folder ``new`` at ``target`` (see the module docstring)."""
    parent = target.parent
    if not target.exists():
        os.rename(new, target)
    elif _exchange(new, target):
        fault("swap")
        os.rename(new, old_path(target))  # ``new`` now names the old folder
    else:
        os.rename(target, old_path(target))
        fault("swap")
        os.rename(new, target)
    _fsync(parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    shutil.rmtree(old_path(target), ignore_errors=True)


def carry_over(old: Path, new: Path) -> None:
    """Hard-link into ``new`` the entries of ``old`` it lacks (files the user keeps in a folder
    that ``generate`` rewrites), except folders of Parquet shards: configs the new run dropped.
    Links, not moves: the old folder stays whole until the swap."""
    for entry in old.iterdir():
        dest = new / entry.name
        if dest.exists() or dest.is_symlink():
            continue
        if entry.is_dir() and not entry.is_symlink():
            if any(entry.glob("*.parquet")):
                continue
            shutil.copytree(entry, dest, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, dest)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@contextmanager
def staged(target: str | Path, key: str | None = None) -> Iterator[Stage]:
    """Write a folder atomically: yields a :class:`Stage` whose ``path`` becomes ``target`` when
    the block ends without an error. ``key`` (see :func:`command_key`) lets a rerun of the same
    command resume; None starts afresh every time."""
    target = Path(target)
    recover(target)
    stage = Stage(target, key)
    stage.open()
    try:
        yield stage
    except BaseException:
        logger.info(
            "%s is unchanged; the partial output stays in %s (rerun the same command to resume, "
            "or delete it)",
            target,
            stage.path,
        )
        raise
    stage.commit()
