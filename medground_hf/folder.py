"""The built dataset folder: Parquet shards per config and split, a manifest, and the card.

Layout::

    OUT/README.md                      card with YAML ``configs:`` (what load_dataset reads)
    OUT/medground.json                 manifest: sources, counts, skips, verification stats
    OUT/<config>/<split>-00000-of-00001.parquet

The same folder works with ``load_dataset(OUT, config)`` offline and, pushed to the Hub, with
``load_dataset(repo, config, revision=...)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .splits import split_key

if TYPE_CHECKING:
    from datasets import Dataset

MANIFEST = "medground.json"
FILES = "files"  # manifest key: every shard's size, rows and sha256
DEFAULT_CONFIG = "grounding"
MAX_SHARD_BYTES = 500 * 2**20
ROW_BATCH = 64  # rows decoded at a time when streaming shards (images stay undecoded bytes)
# A row group holds at most this many bytes of distinct images (one image may exceed it alone),
# so a reader never holds more than that of one column chunk, and at most this many rows.
ROW_GROUP_IMAGE_BYTES = 2 * 2**20
ROW_GROUP_ROWS = 1024
# Large enough that no row group's image dictionary ever falls back to plain encoding.
_DICTIONARY_LIMIT = 2**30
_READ_BUFFER = 2**20  # column chunks are read in pieces, so a huge row group streams too
_SHARD = re.compile(r"^(?P<split>[A-Za-z0-9_.]+)-\d{5}-of-\d{5}\.parquet$")

Batch = pa.Table | pa.RecordBatch


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def image_bytes(batch: Batch) -> pa.Array | None:
    """The encoded bytes of each row's image (the first of an ``images`` list), or None when
    the config has no image column."""
    names = batch.schema.names
    if "image" in names:
        column = batch.column("image")
    elif "images" in names:
        column = pc.list_element(batch.column("images"), 0)
    else:
        return None
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return pc.struct_field(column, "bytes")


def image_starts(data: pa.Array, previous: pa.Scalar | None) -> np.ndarray:
    """Whether each row's image differs from the row before it (rows of one image are adjacent
    in every config, so a change marks a new image)."""
    if len(data) == 0:
        return np.zeros(0, dtype=bool)
    first = previous is None or not previous.is_valid or previous != data[0]
    if len(data) == 1:
        return np.array([first])
    same = pc.fill_null(pc.equal(data[1:], data[:-1]), False).to_numpy(zero_copy_only=False)
    return np.concatenate([[first], ~same])


class _DigestingFile:
    """A file being written that hashes what goes into it, so the manifest gets a shard's
    sha256 without reading the shard back."""

    def __init__(self, path: Path):
        self._file = open(path, "wb")  # noqa: SIM115 - closed by ``close``
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self._digest.update(data)
        self.size += memoryview(data).nbytes
        return self._file.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class ShardFile:
    """One Parquet shard, written batch by batch so nothing holds a whole split.

    Rows of one image are kept in one row group and the image bytes are dictionary-encoded, so
    each image is stored once per row group however many targets (or chat turns) it has. A row
    group is closed at an image boundary once its distinct images reach
    :data:`ROW_GROUP_IMAGE_BYTES`. The file appears under its name only when complete; then
    :attr:`record` holds what the manifest lists of it (bytes, rows, sha256, hashed as written).
    """

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = path
        self.schema = schema
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._last: pa.Scalar | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = path.with_name(f".{path.name}.partial")
        self._sink = _DigestingFile(self._partial)
        self._writer = pq.ParquetWriter(
            pa.PythonFile(self._sink, mode="w"), schema, dictionary_pagesize_limit=_DICTIONARY_LIMIT
        )
        self.record: dict | None = None

    def write(self, batch: Batch) -> None:
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        if table.num_rows == 0:
            return
        table = table.select(self.schema.names)
        if not table.schema.equals(self.schema, check_metadata=False):
            table = table.cast(self.schema)
        data = image_bytes(table)
        if data is None:
            starts = np.ones(table.num_rows, dtype=bool)
            sizes = np.zeros(table.num_rows, dtype=np.int64)
        else:
            starts = image_starts(data, self._last)
            sizes = pc.fill_null(pc.binary_length(data), 0).to_numpy().astype(np.int64)
            self._last = data[-1]
        begin = 0
        for row in np.flatnonzero(starts):
            full = self._pending_bytes + sizes[row] > ROW_GROUP_IMAGE_BYTES
            if (full or self._pending_rows + row - begin >= ROW_GROUP_ROWS) and (
                self._pending_rows + row - begin
            ):
                self._hold(table.slice(begin, row - begin))
                self._flush()
                begin = row
            self._pending_bytes += int(sizes[row])
        self._hold(table.slice(begin))

    def write_rows(self, rows: Iterable[dict]) -> None:
        """Rows as plain dicts in the schema's shape (images as ``{"bytes", "path"}``),
        converted to Arrow a batch at a time."""
        batch: list[dict] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= ROW_BATCH:
                self.write(pa.Table.from_pylist(batch, schema=self.schema))
                batch = []
        if batch:
            self.write(pa.Table.from_pylist(batch, schema=self.schema))

    def _hold(self, part: pa.Table) -> None:
        if part.num_rows:
            self._pending.append(part)
            self._pending_rows += part.num_rows

    def _flush(self) -> None:
        if self._pending_rows:
            group = pa.concat_tables(self._pending)
            self._writer.write_table(group, row_group_size=group.num_rows)
            self.rows += group.num_rows
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0

    def close(self) -> int:
        """Finish the file and move it into place; returns its number of rows."""
        self._flush()
        self._writer.close()
        self._sink.close()
        self._partial.replace(self.path)
        self.record = {
            "bytes": self._sink.size,
            "rows": self.rows,
            "sha256": self._sink.hexdigest(),
        }
        return self.rows

    def abort(self) -> None:
        self._writer.close()
        self._sink.close()
        self._partial.unlink(missing_ok=True)


def write_shard(path: Path, schema: pa.Schema, batches: Iterable[Batch]) -> dict:
    """Write ``batches`` as the one shard ``path``; returns its manifest record (bytes, rows,
    sha256)."""
    shard = ShardFile(path, schema)
    try:
        for batch in batches:
            shard.write(batch)
    except BaseException:
        shard.abort()
        raise
    shard.close()
    return shard.record


def write_table_split(out: Path, config: str, split: str, table: pa.Table) -> list[Path]:
    """Write one split of one config from an Arrow table as shards of at most ~500 MB."""
    folder = out / config
    for old in folder.glob(f"{split}-*.parquet"):
        old.unlink()
    shards = max(1, math.ceil(table.nbytes / MAX_SHARD_BYTES)) if table.num_rows else 1
    step = math.ceil(table.num_rows / shards) if table.num_rows else 0
    paths = []
    for index in range(shards):
        path = folder / shard_name(split, index, shards)
        part = table.slice(index * step, step)
        write_shard(path, table.schema, part.to_batches(max_chunksize=ROW_GROUP_ROWS))
        paths.append(path)
    return paths


def write_split(out: Path, config: str, split: str, ds: Dataset) -> list[Path]:
    """Write one split of one config (a ``datasets.Dataset``) as shards, images embedded."""
    table = ds.with_format("arrow")[:] if len(ds) else ds.data.table.slice(0, 0)
    schema = ds.features.arrow_schema
    return write_table_split(out, config, split, table.select(schema.names).cast(schema))


def config_shards(out: Path, config: str, split: str | None = None) -> list[Path]:
    """The shards of one config (one split, or every split), in order."""
    return sorted((out / config).glob(f"{split}-*.parquet" if split else "*.parquet"))


def iter_batches(
    paths: Iterable[Path], columns: Sequence[str] | None = None, batch_size: int = ROW_BATCH
) -> Iterator[pa.RecordBatch]:
    """Record batches of at most ``batch_size`` rows from shards, whatever their row groups:
    column chunks are read in pieces, so memory follows the batch, not the row group.
    ``columns`` reads only those a shard has (``rejected_stage`` exists in ``rejected`` only)."""
    for path in paths:
        try:
            parquet = pq.ParquetFile(path, buffer_size=_READ_BUFFER, pre_buffer=False)
            names = set(parquet.schema_arrow.names)
            wanted = None if columns is None else [c for c in columns if c in names]
            yield from parquet.iter_batches(batch_size=batch_size, columns=wanted)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{path}: unreadable Parquet shard: {exc}") from exc


def iter_rows(
    out: Path,
    config: str,
    split: str | None = None,
    columns: Sequence[str] | None = None,
    where: tuple[str, Collection[str]] | None = None,
) -> Iterator[dict]:
    """Rows of one config (one split, or every split) streamed as plain dicts, image bytes
    undecoded. ``columns`` reads only those of them that a shard has (``rejected_stage`` exists in
    ``rejected`` only), so one call serves every config. ``where=(column, values)`` yields only
    the rows whose ``column`` is one of ``values`` (filtered in Arrow: the others are never
    converted to Python); ``column`` must be among ``columns``."""
    allowed = pa.array(sorted(where[1]), pa.string()) if where else None
    for batch in iter_batches(config_shards(out, config, split), columns):
        if where is not None:
            batch = batch.filter(pc.is_in(batch.column(where[0]), value_set=allowed))
        yield from batch.to_pylist()


def config_splits(out: Path) -> dict[str, list[str]]:
    """Which configs and splits the folder holds, read off the shard files."""
    found: dict[str, set[str]] = {}
    for path in sorted(out.glob("*/*.parquet")):
        match = _SHARD.match(path.name)
        if match:
            found.setdefault(path.parent.name, set()).add(match["split"])
    return {config: sorted(splits, key=split_key) for config, splits in sorted(found.items())}


def configs_metadata(out: Path) -> list[dict]:
    """The ``configs:`` entries of the card: one per config, data files per split."""
    entries = []
    for config, splits in config_splits(out).items():
        entry: dict = {
            "config_name": config,
            "data_files": [{"split": s, "path": f"{config}/{s}-*.parquet"} for s in splits],
        }
        if config == DEFAULT_CONFIG:
            entry["default"] = True
        entries.append(entry)
    entries.sort(key=lambda e: (not e.get("default", False), e["config_name"]))
    return entries


def dataset_info_metadata(out: Path) -> list[dict]:
    """The ``dataset_info:`` entries of the card: rows and bytes per config and split.

    Besides informing Hub users, these sizes make ``load_dataset`` on a local folder notice a
    rebuild: ``datasets`` keys its cache for a folder on the card's metadata, not on the files.
    """
    infos = []
    for config, splits in config_splits(out).items():
        entries = []
        download = 0
        for split in splits:
            rows = size = 0
            for path in sorted((out / config).glob(f"{split}-*.parquet")):
                meta = pq.ParquetFile(path).metadata
                rows += meta.num_rows
                size += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
                download += path.stat().st_size
            entries.append({"name": split, "num_bytes": size, "num_examples": rows})
        infos.append(
            {
                "config_name": config,
                "splits": entries,
                "download_size": download,
                "dataset_size": sum(e["num_bytes"] for e in entries),
            }
        )
    return infos


def read_manifest(out: Path) -> dict:
    path = out / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{out}: not a medground dataset folder ({MANIFEST} missing)")
    return json.loads(path.read_text(encoding="utf-8"))


def write_manifest(out: Path, manifest: dict, written: Mapping[str, dict] | None = None) -> None:
    """Write the manifest, recording the folder's shards as they are now (see
    :func:`medground_hf.integrity.check_folder`, which every reader runs). ``written``: the
    records of shards this command has just written (:attr:`ShardFile.record`), not read again."""
    manifest[FILES] = shard_records(out, written)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", "utf-8")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()


def parquet_rows(path: Path) -> int:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"{path}: unreadable Parquet shard: {exc}") from exc


def shard_paths(out: Path) -> list[str]:
    """Every Parquet shard of the folder, relative, POSIX-style (hidden folders left out)."""
    return sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*.parquet")
        if not any(part.startswith(".") for part in p.relative_to(out).parts)
    )


def shard_records(out: Path, written: Mapping[str, dict] | None = None) -> dict[str, dict]:
    """``{relative path: {"bytes", "rows", "sha256"}}`` of every shard, for the manifest; the
    shards in ``written`` (relative path -> record, hashed as they were written) are not read."""
    written = written or {}
    records = {}
    for rel in shard_paths(out):
        size = (out / rel).stat().st_size
        known = written.get(rel)
        if known is not None and known["bytes"] == size:
            records[rel] = dict(known)
        else:
            records[rel] = {
                "bytes": size,
                "rows": parquet_rows(out / rel),
                "sha256": sha256_of(out / rel),
            }
    return records
