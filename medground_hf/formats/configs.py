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
from pathlib import Path

import pyarrow as pa

from medground_hf.folder import ShardFile, config_shards, iter_batches, read_manifest, shard_name
from medground_hf.progress import phase_bar

from .chat import DIALECTS, Dialect
from .coco import COCO_FEATURES, CocoIds, coco_images
from .rows import (
    GROUNDING,
    count_rows,
    grounding_splits,
    kept_queries,
    split_targets,
    target_splits,
)

COCO = "coco"
# What a build writes unless told otherwise: ``coco`` (one more copy of each image). Each chat
# dialect is one more copy again, so they are chosen with ``--configs`` or exported as files.
DEFAULT_DERIVED = (COCO,)
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


def derived_configs() -> list[str]:
    return [COCO, *(d.config for d in DIALECTS.values())]


def check_selection(configs: list[str]) -> list[str]:
    """The chosen derived configs in canonical order (``all`` for every one); unknown names
    are an error."""
    known = derived_configs()
    if "all" in configs:
        return known
    unknown = sorted(set(configs) - set(known))
    if unknown:
        raise ValueError(
            f"unknown derived config(s) {unknown}; choose from all, {', '.join(known)}"
        )
    return [c for c in known if c in configs]


def selected_configs(manifest: dict) -> list[str]:
    """What the build asked for (``derived_configs`` in the manifest), else the default."""
    chosen = manifest.get("derived_configs")
    return list(DEFAULT_DERIVED) if chosen is None else check_selection(chosen)


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


def _finish(writer: ShardFile, stats: dict, config: str, split: str) -> None:
    """Close a config's shard of a split; a split without rows gets no file (it would not
    load)."""
    count = writer.close()
    if count:
        stats["rows"].setdefault(config, {})[split] = count
    else:
        writer.path.unlink()


def write_format_configs(out: str | Path, manifest: dict | None = None) -> dict:
    """Write the selected derived configs; returns their row counts for the manifest.

    Every target becomes a COCO annotation, rejected ones and those without kept queries (a
    build without a generator) included; only targets with kept queries give chat rows and refs,
    and how many were left out is part of the returned stats. A chat config with no rows at all
    is not written (an empty config would not load).
    """
    out = Path(out)
    manifest = manifest or read_manifest(out)
    remove_format_configs(out)
    stats: dict = {"targets": {}, "targets_without_kept_queries": {}, "rows": {}}
    selected = selected_configs(manifest)
    grounding_splits(out)  # a clear error when there is nothing to derive from
    dialects = [d for d in DIALECTS.values() if d.config in selected]
    passes = (COCO in selected) + 1  # the second pass also counts targets for the stats
    bar = phase_bar("writing formats", count_rows(out, GROUNDING) * passes, "row")
    if COCO in selected:
        ids = CocoIds.from_manifest(manifest)  # one id sequence: ids unique across splits
        for split in target_splits(out):
            coco = ShardFile(out / COCO / shard_name(split, 0, 1), COCO_FEATURES.arrow_schema)
            coco.write_rows(coco_images(split_targets(out, split, bar.update), split, ids))
            _finish(coco, stats, COCO, split)
    for split in grounding_splits(out):
        writers = {
            d.config: ShardFile(
                out / d.config / shard_name(split, 0, 1), d.layout.features().arrow_schema
            )
            for d in dialects
        }
        targets = without = 0
        for table in image_batches(config_shards(out, GROUNDING, split)):
            rows = table.select(_LIGHT).to_pylist()
            bar.update(len(rows))
            targets += len(rows)
            without += sum(not kept_queries(row) for row in rows)
            for d in dialects:
                writers[d.config].write(chat_table(d, table, rows))
        for config, writer in writers.items():
            _finish(writer, stats, config, split)
        stats["targets"][split] = targets
        stats["targets_without_kept_queries"][split] = without
    for config in selected:
        if (out / config).is_dir() and not any((out / config).iterdir()):
            (out / config).rmdir()
    bar.close()
    return stats
