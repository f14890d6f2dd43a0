"""The work folder of a build: each chunk's records and verified rows, and the summaries that
let a killed build resume where it stopped.

Layout (in the ``resume/`` part of the staging folder, :mod:`medground_hf.staging`, which is
kept when the same command runs again and removed once the folder is in place)::

    chunks/records/<chunk>.arrow, <chunk>.json                   a chunk's records, its summary
    chunks/verified/<chunk>.<config>.arrow, <chunk>.json         its kept and rejected rows

A summary ``.json`` is written last, after its tables, so its presence means the chunk is done
(for the items it names: see :meth:`medground_hf.chunks.Chunk.identity`); every file appears by
rename. Tables are Arrow IPC files.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow as pa


class WorkDir:
    """Chunk tables and summaries under one folder, written atomically."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, stage: str, name: str, suffix: str) -> Path:
        return self.root / stage / f"{name}{suffix}"

    def _replace(self, path: Path, write) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
        write(partial)
        os.replace(partial, path)

    def write_table(self, stage: str, name: str, table: pa.Table) -> None:
        def write(path: Path) -> None:
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
                for batch in table.to_batches(max_chunksize=256):
                    w.write_batch(batch)

        self._replace(self.path(stage, name, ".arrow"), write)

    def read_table(self, stage: str, name: str) -> pa.Table:
        path = self.path(stage, name, ".arrow")
        with pa.OSFile(str(path)) as source:
            return pa.ipc.open_file(source).read_all()

    def has_table(self, stage: str, name: str) -> bool:
        return self.path(stage, name, ".arrow").is_file()

    def write_json(self, stage: str, name: str, value: dict) -> None:
        self._replace(
            self.path(stage, name, ".json"),
            lambda p: p.write_text(json.dumps(value, sort_keys=True), "utf-8"),
        )

    def read_json(self, stage: str, name: str) -> dict | None:
        path = self.path(stage, name, ".json")
        return json.loads(path.read_text("utf-8")) if path.is_file() else None
