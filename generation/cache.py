"""A content-addressed request cache on disk (SQLite), and the persisted Message Batch ids.

Keys hash everything that determines an answer (task, model, prompt version, parameters, image
bytes, target cues, query), so re-running or resuming an interrupted run sends no request twice.
Values are the normalized answers only; no header, key or request body is ever stored.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY, created REAL, keys TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0
);
"""


def request_key(parts: Mapping) -> str:
    """sha256 of the canonical JSON of ``parts`` (64 hex chars, also a valid batch custom_id)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class RequestCache:
    """``key -> answer`` plus the batches submitted but not yet collected; safe to share between
    processes (WAL mode), every write committed at once so a crash loses nothing."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
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

    def add_batch(self, batch_id: str, keys: Iterable[str]) -> None:
        """Record a submitted batch the moment its id exists."""
        self.db.execute(
            "INSERT OR REPLACE INTO batches (batch_id, created, keys, done) VALUES (?, ?, ?, 0)",
            (batch_id, time.time(), json.dumps(list(keys))),
        )
        self.db.commit()

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
