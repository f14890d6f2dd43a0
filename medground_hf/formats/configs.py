"""Write the derived configs of a built folder (``coco`` and any ``chat-*``) from its
``grounding`` (and ``rejected``) shards, so ``load_dataset(OUT, "coco")`` and
``load_dataset(OUT, "chat-<d>")`` work.

Every config is written with :class:`medground_hf.folder.ShardFile` (each image stored once per
row group) from Arrow tables, never through per-row ``Features.encode_example``. Chat rows are
made from Arrow columns: the light columns of a grounding batch become Python rows for the
text, and the image column is carried over with ``take`` (never copied into Python objects).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pyarrow as pa

from medground_hf.folder import (
    ShardFile,
    config_shards,
    iter_batches,
    iter_rows,
    parquet_rows,
    read_manifest,
    shard_name,
)
from medground_hf.record import kept_queries

from .chat import DIALECTS, Dialect
from .coco import CocoIds, coco_features, coco_images
from .names import COCO, derived_configs, selected_configs
from .rows import (
    GROUNDING,
    REJECTED,
    grounding_splits,
    split_targets,
    target_splits,
)

# Columns a chat row is made of (the image travels as an Arrow column beside them).
_LIGHT = [
    "id",
    "image_id",
    "label",
    "label_display",
    "width",
    "height",
    "bbox_xyxy",
    "num_candidates",
    "queries",
]
_IMAGE_BATCH = 32  # grounding rows read at a time (whole images are kept together)


def remove_format_configs(out: Path) -> None:
    """Drop every derived config (they are rewritten from ``grounding``, or gone with it)."""
    for config in derived_configs():
        shutil.rmtree(out / config, ignore_errors=True)


def image_batches(paths: list[Path]) -> Iterator[pa.Table]:
    """Grounding rows in small tables that never split an image's rows."""
    held: pa.Table | None = None
    for batch in iter_batches(paths, batch_size=_IMAGE_BATCH):
        table = pa.Table.from_batches([batch])
        if held is not None:
            table = pa.concat_tables([held, table])
        ids = table.column("image_id")
        last = ids[len(ids) - 1]
        cut = len(ids)
        while cut > 0 and ids[cut - 1] == last:
            cut -= 1
        if cut:
            yield table.slice(0, cut)
        held = table.slice(cut)
    if held is not None and held.num_rows:
        yield held


def chat_table(dialect: Dialect, table: pa.Table, rows: list[dict]) -> pa.Table:
    """The chat rows of a grounding table; ``rows`` are its light columns as Python rows."""
    key = "images" if dialect.layout.image_list else "image"
    out, source = [], []
    for index, row in enumerate(rows):
        for chat in dialect.rows(row, None):
            chat.pop(key)
            out.append(chat)
            source.append(index)
    schema = dialect.layout.features().arrow_schema
    images = table.column("image").take(pa.array(source, pa.int64())).combine_chunks()
    if dialect.layout.image_list:
        images = pa.ListArray.from_arrays(pa.array(range(len(source) + 1), pa.int32()), images)
    at = schema.get_field_index(key)
    light = pa.Table.from_pylist(out, schema=schema.remove(at))
    return light.add_column(at, schema.field(key), images)


def coco_offsets(out: Path, manifest: dict) -> dict[str, dict[str, int]]:
    """The first COCO image, annotation, ref and sentence id of each split: ids run on across
    splits (unique in the whole dataset), and knowing where each split starts lets the splits
    be written at the same time. Counted from light columns, no image read."""
    offsets, running = {}, dict(CocoIds.from_manifest(manifest).next_ids)
    for split in target_splits(out):
        offsets[split] = dict(running)
        targets, images = set(), set()
        for row in iter_rows(out, GROUNDING, split, columns=["id", "image_id", "queries"]):
            targets.add(row["id"])
            images.add(row["image_id"])
            kept = len(kept_queries(row))
            running["ref"] += kept > 0
            running["sent"] += kept
        for row in iter_rows(out, REJECTED, split, columns=["id", "image_id"]):
            targets.add(row["id"])
            images.add(row["image_id"])
        running["image"] += len(images)
        running["ann"] += len(targets)
    return offsets


def write_config_split(
    out: str, manifest: dict, offsets: dict, task: tuple[str | None, str]
) -> dict:
    """One derived config of one split (a task an engine may run in any process); returns its
    rows, and for a chat config (or ``None``: count only) the split's targets and those without
    kept queries."""
    config, split = task
    out_path = Path(out)
    if config is None:
        targets = without = 0
        for row in iter_rows(out_path, GROUNDING, split, columns=["queries"]):
            targets += 1
            without += not kept_queries(row)
        return {"rows": 0, "targets": targets, "without": without}
    path = out_path / config / shard_name(split, 0, 1)
    if config == COCO:
        ids = CocoIds.from_manifest(manifest)
        ids.next_ids = dict(offsets[split])
        coco = ShardFile(path, coco_features().arrow_schema)
        coco.write_rows(coco_images(split_targets(out_path, split), split, ids))
        return _close(coco)
    dialect = next(d for d in DIALECTS.values() if d.config == config)
    writer = ShardFile(path, dialect.layout.features().arrow_schema)
    targets = without = 0
    for table in image_batches(config_shards(out_path, GROUNDING, split)):
        rows = table.select(_LIGHT).to_pylist()
        targets += len(rows)
        without += sum(not kept_queries(row) for row in rows)
        writer.write(chat_table(dialect, table, rows))
    return {**_close(writer), "targets": targets, "without": without}


def _close(writer: ShardFile) -> dict:
    """Close a shard: its rows and manifest record (by path relative to the folder); one
    without rows is removed (an empty config would not load)."""
    count = writer.close()
    if not count:
        writer.path.unlink()
        return {"rows": 0, "shards": {}}
    return {
        "rows": count,
        "shards": {f"{writer.path.parent.name}/{writer.path.name}": writer.record},
    }


def write_format_configs(
    out: str | Path, manifest: dict | None = None, engine=None, written: dict | None = None
) -> dict:
    """Write the selected derived configs; returns their row counts for the manifest (and adds
    the manifest records of the shards written to ``written``).

    Every target becomes a COCO annotation, rejected ones and those without kept queries (a
    build without a generator) included; only targets with kept queries give chat rows and refs,
    and how many were left out is part of the returned stats. A chat config with no rows at all
    is not written (an empty config would not load). Each config of each split is one task of
    ``engine`` (a build's worker processes or Ray cluster), else they run here one by one.
    """
    from medground_hf.engine import LocalEngine

    out = Path(out)
    manifest = manifest or read_manifest(out)
    remove_format_configs(out)
    stats: dict = {"targets": {}, "targets_without_kept_queries": {}, "rows": {}}
    selected = selected_configs(manifest)
    splits = grounding_splits(out)  # a clear error when there is nothing to derive from
    tasks = [(COCO, split) for split in target_splits(out) if COCO in selected]
    # the targets of each split are counted with its first chat config, or alone (no config)
    chats = [d.config for d in DIALECTS.values() if d.config in selected] or [None]
    tasks += [(config, split) for split in splits for config in chats]
    rows = {s: sum(parquet_rows(p) for p in config_shards(out, GROUNDING, s)) for s in splits}
    offsets = coco_offsets(out, manifest) if COCO in selected else {}
    runner = engine or LocalEngine()
    results = runner.map(
        partial(write_config_split, str(out), manifest, offsets),
        tasks,
        desc="writing formats",
        weights=[rows.get(split, 0) for _, split in tasks],
        unit="row",
    )
    for (config, split), result in zip(tasks, results, strict=True):
        if config is not None and result["rows"]:
            stats["rows"].setdefault(config, {})[split] = result["rows"]
            if written is not None:
                written.update(result["shards"])
        if config != COCO:  # every chat config counts the same targets
            stats["targets"][split] = result["targets"]
            stats["targets_without_kept_queries"][split] = result["without"]
    for config in selected:
        if (out / config).is_dir() and not any((out / config).iterdir()):
            (out / config).rmdir()
    return stats
