"""What the formats share: the grounding splits, targets, kept queries and image file names.

Formats read the ``grounding`` shards batch by batch (:func:`medground_hf.folder.iter_rows`,
images stay undecoded bytes) and write each derived config with
:class:`medground_hf.folder.ShardFile`, so neither side holds a corpus in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq

from medground_hf.folder import config_splits, iter_rows, split_key
from medground_hf.imageio import open_bytes

GROUNDING = "grounding"
REJECTED = "rejected"
# what a COCO annotation needs of a target; a rejected target's image bytes are read only when
# no kept target of its image brings them
TARGET_COLUMNS = [
    "id", "image_id", "source", "label", "width", "height", "bbox_xyxy", "mask", "area_px",
]  # fmt: skip
# what a COCO image row needs besides: its image and the target's queries (the refs)
IMAGE_COLUMNS = [*TARGET_COLUMNS, "image", "queries"]


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
    """Every target of one split once (the columns a COCO image needs: :data:`IMAGE_COLUMNS`),
    the rows of an image together: the ``grounding`` rows,
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
    for row in iter_rows(out, GROUNDING, split, columns=IMAGE_COLUMNS):
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
    for row in iter_rows(out, REJECTED, split, columns=IMAGE_COLUMNS):
        if row["image_id"] in rejected and row["id"] not in emitted:
            emitted.add(row["id"])
            yield {**row, "queries": []}


def image_format(data: bytes, name: str) -> str:
    """File extension of encoded image bytes (``png``, ``jpeg`` -> ``jpg``)."""
    with open_bytes(data, name) as img:
        fmt = (img.format or "png").lower()
    return "jpg" if fmt == "jpeg" else fmt


def image_file(row: dict) -> str:
    """Relative file name of a row's image in an export: ``images/<image_id>.<ext>``."""
    return f"images/{row['image_id']}.{image_format(row['image']['bytes'], row['image_id'])}"
