"""Per-item checkpoints of a build, so a rerun after an interruption decodes only unfinished items.

A builder hands every finished item (its records and its skip-report entries) to
:class:`ItemCheckpoints`, which appends them to chunk files in the staging folder's ``resume/``
part (:mod:`medground_hf.staging`). A chunk is flushed every :data:`FLUSH_ITEMS` items or
:data:`FLUSH_BYTES` of images: at most that much work is redone after a kill. Each chunk is
written to a temporary name, flushed to disk and renamed, then its index (the item keys it holds)
is written the same way: a chunk without an index is ignored, so a kill mid-write loses only that
chunk. Several worker processes (``--num-proc``) write chunks of their own.

An item is found again by a key over its id and its files' names, sizes and modification times:
an input file changed since the interrupted run makes the item be read again. The chunks are
private working files of one build (pickled records), removed when the folder is put in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from . import storage

FLUSH_ITEMS = 32
FLUSH_BYTES = 64 * 2**20
_LOADED_CHUNKS = 4  # chunks kept in memory while resuming (items come back in listing order)


def item_key(key: str, files: Sequence[str]) -> str:
    """The item's identity: its key and each file's path, size and modification time (for a
    URL: size and the store's version tag, see :func:`medground_hf.storage.stamp`)."""
    parts = [key, *(f"{name}:{storage.stamp(name)}" for name in files)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class ItemCheckpoints:
    """Finished items of one build in ``folder``: look one up, add one, flush."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.index: dict[str, str] = {}  # item key -> chunk file name
        for idx in sorted(self.folder.glob("chunk-*.json")):
            chunk = idx.name.removesuffix(".json") + ".pkl"
            if (self.folder / chunk).is_file():
                self.index.update(dict.fromkeys(json.loads(idx.read_text("utf-8")), chunk))
        self.loaded: OrderedDict[str, dict] = OrderedDict()
        self.pending: dict[str, tuple[list[dict], list[dict]]] = {}
        self.pending_bytes = 0
        self.chunks_written = 0
        self.resumed = 0

    def __len__(self) -> int:
        return len(self.index)

    def get(self, key: str) -> tuple[list[dict], list[dict]] | None:
        """``(records, skips)`` of a finished item, or None."""
        chunk = self.index.get(key)
        if chunk is None:
            return None
        if chunk not in self.loaded:
            with open(self.folder / chunk, "rb") as fh:
                self.loaded[chunk] = pickle.load(fh)
            if len(self.loaded) > _LOADED_CHUNKS:
                self.loaded.popitem(last=False)
        self.resumed += 1
        return self.loaded[chunk][key]

    def add(self, key: str, records: list[dict], skips: list[dict]) -> None:
        self.pending[key] = (records, skips)
        self.pending_bytes += sum(len(r["image"]["bytes"] or b"") for r in records)
        if len(self.pending) >= FLUSH_ITEMS or self.pending_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the pending items as one chunk (data first, then its index)."""
        if not self.pending:
            return
        name = f"chunk-{os.getpid()}-{self.chunks_written:06d}-{os.urandom(4).hex()}"
        _write_atomic(self.folder / f"{name}.pkl", pickle.dumps(self.pending, protocol=5))
        _write_atomic(self.folder / f"{name}.json", json.dumps(list(self.pending)).encode())
        self.index.update(dict.fromkeys(self.pending, f"{name}.pkl"))
        self.chunks_written += 1
        self.pending, self.pending_bytes = {}, 0
