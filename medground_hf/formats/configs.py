"""Write the derived configs of a built folder (``coco`` and every ``chat-*``) from its
``grounding`` shards, so ``load_dataset(OUT, "coco")`` and ``load_dataset(OUT, "chat-<d>")`` work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from medground_hf.folder import iter_rows, read_manifest
from medground_hf.progress import phase_bar

from .chat import DIALECTS
from .coco import COCO_FEATURES, CocoIds, coco_images
from .rows import (
    GROUNDING,
    ShardWriter,
    count_rows,
    grounding_splits,
    kept_queries,
    split_targets,
    target_splits,
)

COCO = "coco"


def derived_configs() -> list[str]:
    return [COCO, *(d.config for d in DIALECTS.values())]


def check_selection(configs: list[str]) -> list[str]:
    """The chosen derived configs in canonical order; unknown names are an error."""
    known = derived_configs()
    unknown = sorted(set(configs) - set(known))
    if unknown:
        raise ValueError(f"unknown derived config(s) {unknown}; choose from {', '.join(known)}")
    return [c for c in known if c in configs]


def selected_configs(manifest: dict) -> list[str]:
    """What the build asked for (``derived_configs`` in the manifest), all of them by default.

    Every derived config embeds its images, so a release that needs two dialects need not store
    the pictures eleven times.
    """
    chosen = manifest.get("derived_configs")
    return derived_configs() if chosen is None else check_selection(chosen)


def remove_format_configs(out: Path) -> None:
    """Drop every derived config (they are rewritten from ``grounding``, or gone with it)."""
    for config in derived_configs():
        shutil.rmtree(out / config, ignore_errors=True)


def write_format_configs(out: str | Path, manifest: dict | None = None) -> dict:
    """Write ``coco`` and ``chat-*`` configs; returns their row counts for the manifest.

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
    chats = [name for name, d in DIALECTS.items() if d.config in selected]
    passes = (COCO in selected) + 1  # the second pass also counts targets for the stats
    bar = phase_bar("writing formats", count_rows(out, GROUNDING) * passes, "row")
    if COCO in selected:
        ids = CocoIds.from_manifest(manifest)  # one id sequence: ids unique across splits
        for split in target_splits(out):
            coco = ShardWriter(out, COCO, split, COCO_FEATURES)
            coco.write(coco_images(split_targets(out, split, bar.update), split, ids))
            stats["rows"].setdefault(COCO, {})[split] = coco.close()
    for split in grounding_splits(out):
        writers = {
            name: ShardWriter(out, DIALECTS[name].config, split, DIALECTS[name].layout.features())
            for name in chats
        }
        targets = without = 0
        for row in iter_rows(out, GROUNDING, split):
            bar.update()
            targets += 1
            without += not kept_queries(row)
            for name, writer in writers.items():
                writer.write(DIALECTS[name].rows(row, row["image"]))
        for name, writer in writers.items():
            stats["rows"].setdefault(DIALECTS[name].config, {})[split] = writer.close()
        stats["targets"][split] = targets
        stats["targets_without_kept_queries"][split] = without
    bar.close()
    return stats
