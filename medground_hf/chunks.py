"""Work units of a build: each split's items in chunks, and which chunks a ``--shard`` takes.

Chunks depend only on the item list (never on the engine or the number of workers), so a local
build, a ``--num-proc`` build, a Ray build and the merged shards of a sharded build make the
same chunks, hence the same records in the same order.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .checkpoints import item_key
from .splits import split_key

if TYPE_CHECKING:
    from .builders.base import Item

# A split is cut into about this many chunks (enough for every worker of a machine) ...
TARGET_CHUNKS = 32
# ... of at most this many items, so a chunk's records stay a few hundred MB at most.
MAX_CHUNK_ITEMS = 32
_SHARD = re.compile(r"^(\d+)/(\d+)$")


@dataclass(frozen=True)
class Chunk:
    """Consecutive items of one split: the unit a worker turns into records and queries."""

    split: str
    index: int
    items: tuple[Item, ...]

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}"

    def identity(self) -> str:
        """Its items and their files as they are now (names, sizes, modification times): a
        chunk finished by an interrupted run is taken only while this is unchanged."""
        keys = [item_key(item.key, item.files) for item in self.items]
        return hashlib.sha256("\n".join(keys).encode()).hexdigest()


def plan_chunks(items_by_split: Mapping[str, Sequence[Item]]) -> list[Chunk]:
    """Every split's items, in listing order, as chunks of equal size."""
    chunks = []
    for split in sorted(items_by_split, key=split_key):
        items = list(items_by_split[split])
        size = min(MAX_CHUNK_ITEMS, max(1, math.ceil(len(items) / TARGET_CHUNKS)))
        for index, start in enumerate(range(0, len(items), size)):
            chunks.append(Chunk(split, index, tuple(items[start : start + size])))
    return chunks


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` (0 <= i < N) as ``(i, N)``; a clear error otherwise."""
    match = _SHARD.match(text.strip())
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise ValueError(f"--shard must be i/N with 0 <= i < N (e.g. 0/3), got {text!r}")
    return int(match[1]), int(match[2])


def shard_chunks(chunks: Sequence[Chunk], index: int, count: int) -> list[Chunk]:
    """Shard ``index`` of ``count``: a contiguous run of every split's chunks, so the shards
    concatenated in order are the unsharded build."""
    picked = []
    for split in dict.fromkeys(c.split for c in chunks):
        own = [c for c in chunks if c.split == split]
        picked += own[len(own) * index // count : len(own) * (index + 1) // count]
    return picked
