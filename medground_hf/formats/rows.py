"""What the formats share: the grounding splits, kept queries, image file names, and a streaming
Parquet writer for derived configs.

Formats read the ``grounding`` shards batch by batch (:func:`medground_hf.folder.iter_rows`,
images stay undecoded bytes) and write each derived config the same way, so neither side holds a
corpus in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features

from medground_hf.folder import MAX_SHARD_BYTES, ROW_BATCH, config_splits, iter_rows, split_key
from medground_hf.imageio import open_bytes

GROUNDING = "grounding"
REJECTED = "rejected"
# what a COCO annotation needs of a target; a rejected target's image bytes are read only when
# no kept target of its image brings them
TARGET_COLUMNS = [
    "id", "image_id", "source", "label", "width", "height", "bbox_xyxy", "mask", "area_px",
]  # fmt: skip


def grounding_splits(out: Path) -> list[str]:
    """The splits of the folder's ``grounding`` config; a clear error when there are none."""
    splits = config_splits(out).get(GROUNDING)
    if not splits:
        raise FileNotFoundError(f"{out}: no {GROUNDING}/<split>-*.parquet shards")
    return splits


def count_rows(out: Path, config: str) -> int:
    """Rows of a config, from the shards' footers (nothing decoded)."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in (out / config).glob("*.parquet"))


def target_splits(out: Path) -> list[str]:
    """The splits holding any target, kept (``grounding``) or rejected."""
    found = config_splits(out)
    return sorted({*found.get(GROUNDING, []), *found.get(REJECTED, [])}, key=split_key)


def split_targets(
    out: Path, split: str, tick: Callable[[], object] | None = None
) -> Iterator[dict]:
    """Every target of one split once, the rows of an image together: the ``grounding`` rows,
    each image followed by its targets rejected as a whole, then the images none of whose targets
    was kept.

    A target rejected by verification is still a region of its image: COCO ground truth without
    it would score a detector that finds it as a false positive. Rejected targets carry no
    queries (``kept_queries`` is empty), so they give annotations but no refs. ``tick`` is
    called for every ``grounding`` row read (progress).
    """
    kept_ids = {r["id"] for r in iter_rows(out, GROUNDING, split, columns=["id"])}
    rejected: dict[str, list[dict]] = {}
    seen = set(kept_ids)
    for row in iter_rows(out, REJECTED, split, columns=TARGET_COLUMNS):
        if row["id"] not in seen:  # a rejected target has a row per rejected query, too
            seen.add(row["id"])
            rejected.setdefault(row["image_id"], []).append({**row, "queries": []})
    current = None
    for row in iter_rows(out, GROUNDING, split):
        if tick is not None:
            tick()
        if row["image_id"] != current:
            yield from rejected.pop(current, [])
            current = row["image_id"]
        yield row
    yield from rejected.pop(current, [])
    if not rejected:
        return
    # images without a kept target: their rows (with the image bytes) from the rejected shards
    emitted: set[str] = set()
    for row in iter_rows(out, REJECTED, split):
        if row["image_id"] in rejected and row["id"] not in emitted:
            emitted.add(row["id"])
            yield {**row, "queries": []}


def kept_queries(row: dict) -> list[dict]:
    """The queries a format may use: ``kept == True`` (the verified ones)."""
    return [q for q in row.get("queries") or [] if q.get("kept")]


def image_format(data: bytes, name: str) -> str:
    """File extension of encoded image bytes (``png``, ``jpeg`` -> ``jpg``)."""
    with open_bytes(data, name) as img:
        fmt = (img.format or "png").lower()
    return "jpg" if fmt == "jpeg" else fmt


def image_file(row: dict) -> str:
    """Relative file name of a row's image in an export: ``images/<image_id>.<ext>``."""
    return f"images/{row['image_id']}.{image_format(row['image']['bytes'], row['image_id'])}"


class ShardWriter:
    """Writes rows of one config split as ``<split>-NNNNN-of-MMMMM.parquet`` shards of <~500 MB.

    The schema carries the ``datasets`` features (images embedded as bytes) so ``load_dataset``
    decodes them; shard names get their final count when the writer closes.
    """

    def __init__(self, out: Path, config: str, split: str, features: Features):
        self.folder = out / config
        self.split = split
        self.features = features
        self.schema = features.arrow_schema
        self.paths: list[Path] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._bytes = 0
        self._pending: list[dict] = []

    def write(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self._pending.append(self.features.encode_example(row))
            if len(self._pending) >= ROW_BATCH:
                self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_pylist(self._pending, schema=self.schema)
        self._pending = []
        if self._writer is None or self._bytes >= MAX_SHARD_BYTES:
            self._open()
        self._writer.write_table(table)
        self._bytes += table.nbytes
        self.rows += table.num_rows

    def _open(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f".{self.split}-{len(self.paths):05d}.partial"
        self.paths.append(path)
        self._writer = pq.ParquetWriter(path, self.schema)
        self._bytes = 0

    def close(self) -> int:
        """Finish the shards (none when no row was written); returns the number of rows."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
        for old in self.folder.glob(f"{self.split}-*.parquet"):
            old.unlink()
        for index, path in enumerate(self.paths):
            path.rename(self.folder / f"{self.split}-{index:05d}-of-{len(self.paths):05d}.parquet")
        return self.rows
