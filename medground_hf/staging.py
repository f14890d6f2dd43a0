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

from . import storage

logger = logging.getLogger("medground_hf")

STAGING_SUFFIX = ".medground-staging"
OLD_SUFFIX = ".medground-old"
STATE = ".medground-staging.json"  # which command writes this staging folder
WORK = ".medground-work"  # working files, removed before the folder is put in place
RESUME = "resume"  # under WORK: kept when the same command resumes
UPLOADED = "uploaded.jsonl"  # under RESUME: files of a URL output already in <out>.incoming/
INCOMING_SUFFIX = ".incoming"  # <out>.incoming/: a URL output's new folder, uploaded first
UPLOAD_MARK = ".medground-upload.json"  # in <out>.incoming/: the command uploading there
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
    "upload",  # one file of a URL output uploaded to <out>.incoming/
    "swap",  # inside the swap: old folder moved aside (URL: its manifest removed), new one not
    # yet in place
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

    def upload_and_swap(self, remote: RemoteFolder) -> None:
        """Upload the complete folder to ``<url>.incoming/`` (resuming an interrupted upload),
        drop the local staging folder, swap the new folder in (see :class:`RemoteFolder`)."""
        shutil.rmtree(self.scratch)
        files = sorted(
            p.relative_to(self.path).as_posix()
            for p in self.path.rglob("*")
            if p.is_file() and p.relative_to(self.path).parts[0] not in (STATE, WORK)
        )
        fault("commit")
        remote.upload(self.path, files, self.key or "", self.resume / UPLOADED)
        shutil.rmtree(self.path.parent)  # this URL's own folder under the work dir
        remote.swap()


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
def staged(
    target: str | Path, key: str | None = None, work_dir: str | Path | None = None
) -> Iterator[Stage]:
    """Write a folder atomically: yields a :class:`Stage` whose ``path`` becomes ``target`` when
    the block ends without an error. ``key`` (see :func:`command_key`) lets a rerun of the same
    command resume; None starts afresh every time. A URL ``target`` is built in a local
    staging folder under ``work_dir`` and then uploaded and swapped in (:class:`RemoteFolder`)."""
    remote = RemoteFolder(str(target)) if storage.is_url(target) else None
    if remote is not None:
        remote.recover()
        stage = Stage(local_target(remote.url, work_dir), key)
    else:
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
            remote.url if remote is not None else target,
            stage.path,
        )
        raise
    if remote is None:
        stage.commit()
    else:
        stage.upload_and_swap(remote)


# ---- outputs at a URL (object stores have no rename) ---------------------------------------------
def local_target(url: str, work_dir: str | Path | None) -> Path:
    """Where a URL output is built before it is uploaded: ``<work_dir>/<hash of url>/<name>``
    (default work dir ``~/.cache/medground/staging``), so its staging folder is found again by
    a rerun of the same command on this machine."""
    root = Path(work_dir).expanduser() if work_dir else Path.home() / ".cache/medground/staging"
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return root / hashlib.sha256(url.encode()).hexdigest()[:16] / name


class RemoteFolder:
    """A dataset folder at a URL, replaced by a protocol that never shows a mixed folder as
    complete (readers refuse a folder without a valid manifest, :mod:`medground_hf.integrity`):

    1. **upload**: every file goes to ``<url>.incoming/``, the manifest last; a file already
       uploaded by an interrupted run of the same command (journal in the staging folder, by
       sha256) is not sent again. A complete ``.incoming/`` is one holding its manifest.
    2. **swap**: the manifest at ``<url>`` is deleted first (from here on ``<url>`` is not a
       complete folder), stale files deleted, the new files copied in (server-side copies), the
       new manifest copied last; then ``.incoming/`` is removed (its manifest first).

    A run killed during the swap leaves a complete ``.incoming/``; the next run of a command
    writing ``<url>`` finishes the swap (:meth:`recover`) before anything else.
    """

    def __init__(self, url: str):
        self.url = storage.location(url)
        self.fs, self.root = storage.filesystem(self.url)
        self.root = self.root.rstrip("/")
        self.incoming = self.root + INCOMING_SUFFIX

    def _files(self, root: str) -> dict[str, str]:
        """Relative POSIX name -> full store path of every file under ``root``."""
        with storage.errors(self.url, "cannot list"):
            if not self.fs.exists(root):
                return {}
            found = self.fs.find(root)
        prefix = root + "/"
        return {p[len(prefix) :]: p for p in found if p.startswith(prefix)}

    def check_writable(self) -> None:
        """Fail now, not after the build, when the store cannot be written (no bucket, no
        credentials, unreachable): a probe object is written and removed."""
        probe = f"{self.incoming}/.medground-probe"
        with storage.errors(self.url, "cannot write"):
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)

    def is_empty(self) -> bool:
        return not self._files(self.root)

    def read_manifest(self) -> dict | None:
        from .folder import MANIFEST

        with storage.errors(self.url, "cannot read the manifest"):
            try:
                return json.loads(self.fs.cat_file(f"{self.root}/{MANIFEST}"))
            except FileNotFoundError:
                return None

    def incoming_complete(self) -> bool:
        from .folder import MANIFEST

        with storage.errors(self.url, "cannot read"):
            return self.fs.exists(f"{self.incoming}/{MANIFEST}")

    def upload(self, local: Path, files: list[str], key: str, journal: Path) -> None:
        """Put the complete folder ``local`` (its ``files``) at ``<url>.incoming/``."""
        from .folder import MANIFEST, sha256_of

        self.fs.invalidate_cache()
        mark = f"{self.incoming}/{UPLOAD_MARK}"
        with storage.errors(self.url + INCOMING_SUFFIX, "cannot upload"):
            try:
                previous = json.loads(self.fs.cat_file(mark)).get("key")
            except FileNotFoundError:
                previous = None
            if previous != key:  # another command's upload, or none: start afresh
                if self.fs.exists(self.incoming):
                    self.fs.rm(self.incoming, recursive=True)
                journal.unlink(missing_ok=True)
                self.fs.pipe_file(mark, json.dumps({"key": key}).encode())
            present = {rel: self.fs.size(path) for rel, path in self._files(self.incoming).items()}
            stale = [f"{self.incoming}/{rel}" for rel in present if rel not in files]
            stale = [p for p in stale if not p.endswith(UPLOAD_MARK)]
            if stale:
                self.fs.rm(stale)
            done = {}
            if journal.is_file():
                for line in journal.read_text("utf-8").splitlines():
                    entry = json.loads(line)
                    done[entry["file"]] = entry["sha256"]
            order = sorted(files, key=lambda rel: rel == MANIFEST)  # the manifest last
            sent = 0
            with open(journal, "a", encoding="utf-8") as log:
                for rel in order:
                    path = local / rel
                    digest = sha256_of(path)
                    if done.get(rel) == digest and present.get(rel) == path.stat().st_size:
                        continue
                    self.fs.put_file(str(path), f"{self.incoming}/{rel}")
                    log.write(json.dumps({"file": rel, "sha256": digest}) + "\n")
                    log.flush()
                    sent += 1
                    fault("upload")
        logger.info(
            "%s: %d file(s) uploaded, %d already there from the interrupted run",
            self.url + INCOMING_SUFFIX,
            sent,
            len(files) - sent,
        )

    def swap(self) -> None:
        """Replace the folder at the URL by the complete ``.incoming/`` one (see the class)."""
        from .folder import MANIFEST

        self.fs.invalidate_cache()
        with storage.errors(self.url, "cannot swap the new folder in"):
            new = self._files(self.incoming)
            new.pop(UPLOAD_MARK, None)
            if MANIFEST not in new:
                raise storage.StorageError(f"{self.url}{INCOMING_SUFFIX}: incomplete upload")
            target_manifest = f"{self.root}/{MANIFEST}"
            if self.fs.exists(target_manifest):
                self.fs.rm_file(target_manifest)  # from here on: not a complete folder
            fault("swap")
            stale = [p for rel, p in self._files(self.root).items() if rel not in new]
            if stale:
                self.fs.rm(stale)
            rest = sorted(rel for rel in new if rel != MANIFEST)
            if rest:
                self.fs.copy([new[rel] for rel in rest], [f"{self.root}/{rel}" for rel in rest])
            self.fs.copy(new[MANIFEST], target_manifest)  # complete again: the new folder
            self.fs.rm_file(new[MANIFEST])  # nothing left to finish
            self.fs.rm(self.incoming, recursive=True)
        self.fs.invalidate_cache()

    def recover(self) -> bool:
        """Finish a swap a killed run left half done (a complete ``.incoming/``); whether
        there was one."""
        self.fs.invalidate_cache()
        if not self.incoming_complete():
            return False
        logger.warning(
            "%s: finishing the replacement an interrupted run left in %s",
            self.url,
            self.url + INCOMING_SUFFIX,
        )
        self.swap()
        return True
