"""A content-addressed request cache on disk (SQLite), and the persisted Message Batch ids; or,
for workers on several machines, the same cache as one small file per answer in a folder on
storage they all share (:class:`FolderCache`).

Keys hash everything that determines an answer (task, model, prompt version, parameters, image
bytes, target cues, query), so re-running or resuming an interrupted run sends no request twice.
Values are the normalized answers only; no header, key or request body is ever stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY, created REAL, keys TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS submissions (token TEXT PRIMARY KEY, started REAL, keys TEXT NOT NULL);
"""


def request_key(parts: Mapping) -> str:
    """sha256 of the canonical JSON of ``parts`` (64 hex chars, also a valid batch custom_id)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class RequestCache:
    """``key -> answer`` plus the batches submitted but not yet collected; safe to share between
    processes (WAL mode), every write committed at once so a crash loses nothing."""

    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path = Path(path)
        if read_only:  # another process's cache, only looked into (it must exist)
            self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across process crashes
        self.db.executescript(_SCHEMA)
        self.db.commit()

    def get(self, key: str) -> dict | None:
        row = self.db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Mapping) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
            (key, json.dumps(value), time.time()),
        )
        self.db.commit()

    def begin_submission(self, keys: Iterable[str]) -> tuple[str, float, list[str]]:
        """Record that a batch of ``keys`` is about to be created, before the create call: a run
        killed before it learns the batch id finds the batch again instead of paying twice."""
        keys = list(keys)
        token, started = request_key({"keys": keys, "at": time.time()}), time.time()
        self.db.execute(
            "INSERT INTO submissions (token, started, keys) VALUES (?, ?, ?)",
            (token, started, json.dumps(keys)),
        )
        self.db.commit()
        return token, started, keys

    def open_submissions(self) -> list[tuple[str, float, list[str]]]:
        rows = self.db.execute("SELECT token, started, keys FROM submissions ORDER BY started")
        return [(token, started, json.loads(keys)) for token, started, keys in rows.fetchall()]

    def add_batch(self, batch_id: str, keys: Iterable[str], submission: str | None = None) -> None:
        """Record a submitted batch the moment its id exists (and close its submission)."""
        self.db.execute(
            "INSERT OR REPLACE INTO batches (batch_id, created, keys, done) VALUES (?, ?, ?, 0)",
            (batch_id, time.time(), json.dumps(list(keys))),
        )
        if submission is not None:
            self.db.execute("DELETE FROM submissions WHERE token = ?", (submission,))
        self.db.commit()

    def end_submission(self, token: str) -> None:
        self.db.execute("DELETE FROM submissions WHERE token = ?", (token,))
        self.db.commit()

    def known_batches(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT batch_id FROM batches").fetchall()}

    def forget_batch(self, batch_id: str) -> bool:
        """Drop a saved batch id (one the API no longer knows); False when none was saved."""
        gone = self.db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,)).rowcount
        self.db.commit()
        return gone > 0

    def pending_batches(self) -> list[tuple[str, list[str]]]:
        rows = self.db.execute(
            "SELECT batch_id, keys FROM batches WHERE done = 0 ORDER BY created"
        ).fetchall()
        return [(batch_id, json.loads(keys)) for batch_id, keys in rows]

    def finish_batch(self, batch_id: str) -> None:
        self.db.execute("UPDATE batches SET done = 1 WHERE batch_id = ?", (batch_id,))
        self.db.commit()

    def close(self) -> None:
        self.db.close()


class FolderCache:
    """``key -> answer`` as one JSON file per key under a folder every worker sees (a shared
    filesystem): nothing to lock, an answer appears by rename, so workers on any machine and a
    resumed run share it. Answers only: Message Batches need the SQLite cache.

    ``also``: an SQLite cache consulted read-only on a miss, where it exists on the worker's
    machine (the driver's own cache on a Ray build), so answers paid in an earlier run are not
    paid again."""

    def __init__(self, path: str | Path, also: str | Path | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.also = Path(also) if also else None
        self._earlier: RequestCache | None = None

    def _file(self, key: str) -> Path:
        return self.path / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self._file(key).read_text("utf-8"))
        except FileNotFoundError:
            return self._earlier_answer(key)

    def _earlier_answer(self, key: str) -> dict | None:
        """The answer in the read-only SQLite cache, if there is one on this machine."""
        if self._earlier is None:
            if self.also is None or not self.also.is_file():
                return None
            self._earlier = RequestCache(self.also, read_only=True)
        return self._earlier.get(key)

    def put(self, key: str, value: Mapping) -> None:
        path = self._file(key)
        path.parent.mkdir(exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(value), "utf-8")
        os.replace(partial, path)

    def items(self) -> Iterable[tuple[str, dict]]:
        for path in sorted(self.path.glob("??/*.json")):
            yield path.stem, json.loads(path.read_text("utf-8"))

    def close(self) -> None:
        if self._earlier is not None:
            self._earlier.close()
            self._earlier = None


def open_cache(path: str | Path, also: str | Path | None = None) -> RequestCache | FolderCache:
    """A folder (an existing one, or a path ending in ``/``) is a :class:`FolderCache` (reading
    ``also`` on a miss); anything else the SQLite :class:`RequestCache`."""
    if str(path).endswith("/") or Path(path).is_dir():
        return FolderCache(path, also)
    return RequestCache(path)


def merge_into(folder: str | Path, path: str | Path) -> int:
    """Copy a folder cache's answers into an SQLite cache (after a distributed run, so later
    runs on this machine reuse them); returns how many."""
    target = RequestCache(path)
    try:
        count = 0
        for key, value in FolderCache(folder).items():
            target.put(key, value)
            count += 1
        return count
    finally:
        target.close()
