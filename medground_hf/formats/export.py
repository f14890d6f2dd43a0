"""``medground export`` / ``medground convert``: a built folder (or a published dataset) to the
files a consumer reads: image files plus JSON / JSON lines per split.

Layout of ``--to DIR``::

    DIR/images/<image_id>.<ext>            each image once, bytes as stored (no re-encoding)
    DIR/<split>.json | <split>.jsonl       chat dialects (the trainer's own file type)
    DIR/instances_<split>.json             coco: COCO instances ...
    DIR/refs_<split>.json                  ... and RefCOCO-style refs
    DIR/dataset_info.json                  sharegpt: the LLaMA-Factory dataset entries
    DIR/meta.json                          internvl: InternVL's meta file

Image paths in rows are relative to DIR.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from medground_hf.boxes import SmartResize
from medground_hf.folder import MANIFEST, iter_rows, read_manifest

from .chat import DIALECTS, get_dialect
from .coco import CocoIds, coco_image_entry, coco_images, instances_header
from .rows import GROUNDING, grounding_splits, image_file, kept_queries

FORMATS = ("coco", *DIALECTS)


class ImageFiles:
    """Writes each image of an export once and returns its relative path."""

    def __init__(self, to: Path):
        self.to = to
        self.written: set[str] = set()

    def __call__(self, row: dict) -> str:
        name = image_file(row)
        if name not in self.written:
            path = self.to / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(row["image"]["bytes"])
            self.written.add(name)
        return name


def _write_rows(path: Path, rows: Iterable[dict]) -> int:
    """JSON lines for ``.jsonl``, else one JSON list; both streamed row by row."""
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        jsonl = path.suffix == ".jsonl"
        if not jsonl:
            fh.write("[")
        for row in rows:
            text = json.dumps(row, ensure_ascii=False)
            fh.write(text + "\n" if jsonl else ("," if count else "") + "\n" + text)
            count += 1
        if not jsonl:
            fh.write("\n]\n")
    return count


def _export_chat(out: Path, name: str, to: Path, resize: SmartResize | None) -> dict:
    dialect = get_dialect(name, resize)
    images = ImageFiles(to)
    counts = {}
    for split in grounding_splits(out):
        queried = (row for row in iter_rows(out, GROUNDING, split) if kept_queries(row))
        rows = (r for row in queried for r in dialect.rows(row, images(row)))
        counts[split] = _write_rows(to / f"{split}.{dialect.json_ext}", rows)
    if name == "sharegpt":
        info = {
            f"medground_{split}": {
                "file_name": f"{split}.json",
                "formatting": "sharegpt",
                "columns": {"messages": "conversations", "images": "images"},
                "tags": {
                    "role_tag": "from",
                    "content_tag": "value",
                    "user_tag": "human",
                    "assistant_tag": "gpt",
                },
            }
            for split in counts
        }
        (to / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", "utf-8")
    if name == "internvl":
        meta = {
            f"medground_{split}": {
                "root": str(to.resolve()),
                "annotation": str((to / f"{split}.jsonl").resolve()),
                "data_augment": False,
                "repeat_time": 1,
                "length": n,
            }
            for split, n in counts.items()
        }
        (to / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
    return counts


def _export_coco(out: Path, to: Path) -> dict:
    manifest = read_manifest(out)
    images = ImageFiles(to)
    counts = {}
    for split in grounding_splits(out):
        ids = CocoIds.from_manifest(manifest)
        doc = {**instances_header(manifest, ids, split), "images": [], "annotations": []}
        refs = []
        for image in coco_images(iter_rows(out, GROUNDING, split), split, ids):
            images({"image_id": image["medground_image_id"], "image": image["image"]})
            doc["images"].append(coco_image_entry(image))
            doc["annotations"].extend(image["annotations"])
            refs.extend(image["refs"])
        (to / f"instances_{split}.json").write_text(json.dumps(doc), "utf-8")
        (to / f"refs_{split}.json").write_text(json.dumps(refs), "utf-8")
        counts[split] = len(doc["images"])
    return counts


def export(out: str | Path, fmt: str, to: str | Path, resize: SmartResize | None = None) -> dict:
    """Export the built folder ``out`` as ``fmt`` into ``to``; returns rows (images) per split.

    ``resize`` replaces Qwen2.5-VL's default resize rule (qwen2.5-vl only), so the boxes match
    a training run that caps ``min_pixels``/``max_pixels``.
    """
    out, to = Path(out), Path(to)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "coco":
        if resize is not None:
            raise ValueError("coco: min/max pixels only apply to qwen2.5-vl (absolute pixels)")
        to.mkdir(parents=True, exist_ok=True)
        return _export_coco(out, to)
    get_dialect(fmt, resize)  # a clear error before anything is written
    to.mkdir(parents=True, exist_ok=True)
    return _export_chat(out, fmt, to, resize)


def fetch(src: str, revision: str | None = None) -> Path:
    """A local folder with the ``grounding`` shards and manifest of ``src``.

    ``src`` is a built folder, or a Hub dataset repo id read at ``revision`` (a tag such as
    ``v1.0.0``); the token, if any, comes from the environment.
    """
    path = Path(src)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            src,
            repo_type="dataset",
            revision=revision,
            allow_patterns=["grounding/*.parquet", MANIFEST],
        )
    )


def convert(
    src: str,
    fmt: str,
    to: str | Path,
    revision: str | None = None,
    resize: SmartResize | None = None,
) -> dict:
    """Any dialect (or COCO) from a built folder or a published dataset."""
    return export(fetch(src, revision), fmt, to, resize)
