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
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Dataset

MANIFEST = "medground.json"
FILES = "files"  # manifest key: every shard's size, rows and sha256
DEFAULT_CONFIG = "grounding"
MAX_SHARD_BYTES = 500 * 2**20
ROW_BATCH = 64  # rows decoded at a time when streaming shards (images stay undecoded bytes)
SPLIT_ORDER = ("train", "validation", "test")
_SHARD = re.compile(r"^(?P<split>[A-Za-z0-9_.]+)-\d{5}-of-\d{5}\.parquet$")


def write_split(out: Path, config: str, split: str, ds: Dataset) -> list[Path]:
    """Write one split of one config as Parquet shards of at most ~500 MB, images embedded."""
    folder = out / config
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{split}-*.parquet"):
        old.unlink()
    size = ds.data.nbytes if len(ds) else 0
    shards = max(1, math.ceil(size / MAX_SHARD_BYTES))
    paths = []
    for index in range(shards):
        path = folder / f"{split}-{index:05d}-of-{shards:05d}.parquet"
        ds.shard(num_shards=shards, index=index, contiguous=True).to_parquet(str(path))
        paths.append(path)
    return paths


def split_key(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


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
    for path in sorted((out / config).glob(f"{split}-*.parquet" if split else "*.parquet")):
        try:
            parquet = pq.ParquetFile(path)
            names = set(parquet.schema_arrow.names)
            wanted = None if columns is None else [c for c in columns if c in names]
            for batch in parquet.iter_batches(batch_size=ROW_BATCH, columns=wanted):
                if where is not None:
                    batch = batch.filter(pc.is_in(batch.column(where[0]), value_set=allowed))
                yield from batch.to_pylist()
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{path}: unreadable Parquet shard: {exc}") from exc


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


def write_manifest(out: Path, manifest: dict) -> None:
    """Write the manifest, recording the folder's shards as they are now (see
    :func:`medground_hf.integrity.check_folder`, which every reader runs)."""
    manifest[FILES] = shard_records(out)
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


def shard_records(out: Path) -> dict[str, dict]:
    """``{relative path: {"bytes", "rows", "sha256"}}`` of every shard, for the manifest."""
    return {
        rel: {
            "bytes": (out / rel).stat().st_size,
            "rows": parquet_rows(out / rel),
            "sha256": sha256_of(out / rel),
        }
        for rel in shard_paths(out)
    }
