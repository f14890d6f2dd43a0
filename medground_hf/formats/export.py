"""``medground export`` / ``medground convert``: a built folder (or a published dataset) to the
files a consumer reads: image files plus JSON / JSON lines per split.

Layout of ``--to DIR``::

    DIR/images/<image_id>.<ext>            each image once, bytes as stored (no re-encoding)
    DIR/<split>.json | <split>.jsonl       chat dialects (the trainer's own file type)
    DIR/instances_<split>.json             coco: COCO instances of one split (pycocotools) ...
    DIR/refcoco/instances.json             ... every split in the refer API's layout, with
    DIR/refcoco/refs(medground).json       ... RefCOCO refs (and, on request, refs(medground).p)
    DIR/dataset_info.json                  sharegpt: the LLaMA-Factory dataset entries
    DIR/meta.json                          internvl: InternVL's meta file
    DIR/env.sh                             ms-swift: ROOT_IMAGE_DIR for relative image paths

Image paths in rows are relative to DIR (absolute on request, for trainers that resolve them
against their working directory). DIR is written beside itself and put in place in one rename
when complete (:mod:`medground_hf.staging`): it is new, empty, or an earlier export, which is
replaced as a whole.
"""

from __future__ import annotations

import json
import pickle
import shlex
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from medground_hf.boxes import SmartResize
from medground_hf.folder import MANIFEST, iter_rows
from medground_hf.integrity import check_folder
from medground_hf.record import kept_queries
from medground_hf.staging import fault, staged

from .chat import get_dialect
from .coco import CocoIds, coco_image_entry, coco_images, instances_header, refer_annotation
from .names import FORMATS
from .rows import (
    GROUNDING,
    REJECTED,
    grounding_splits,
    image_file,
    split_targets,
    target_splits,
)

REFER_DIR = "refcoco"  # REFER(data_root=DIR, dataset="refcoco", splitBy="medground")
SPLIT_BY = "medground"


@dataclass(frozen=True)
class ExportOptions:
    """How an export departs from a dialect's defaults (each refused where it means nothing)."""

    resize: SmartResize | None = None  # qwen2.5-vl: the processor's min/max pixels
    square: bool = False  # llava: boxes on the image padded to a square (image_aspect_ratio pad)
    absolute_paths: bool = False  # chat dialects: image paths absolute instead of relative
    refs_pickle: bool = False  # coco: also refcoco/refs(medground).p, as the refer API reads


class ImageFiles:
    """Writes each image of an export once into ``to`` and returns its path: relative to the
    export folder, or absolute under ``absolute`` (the folder's final place)."""

    def __init__(self, to: Path, absolute: Path | None = None):
        self.to = to
        self.absolute = absolute
        self.written: set[str] = set()

    def __call__(self, row: dict) -> str:
        name = image_file(row)
        if name not in self.written:
            path = self.to / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(row["image"]["bytes"])
            self.written.add(name)
        return str(self.absolute.resolve() / name) if self.absolute else name


class JsonArray:
    """A JSON array written element by element to a file, so no corpus sits in memory."""

    def __init__(self, path: Path):
        self.path = path
        self.count = 0
        self._fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._fh.write("[")

    def add(self, value: object) -> None:
        self._fh.write(("," if self.count else "") + "\n" + json.dumps(value, ensure_ascii=False))
        self.count += 1

    def close(self) -> None:
        self._fh.write("\n]")
        self._fh.close()


def _write_instances(path: Path, header: dict, images: JsonArray, annotations: JsonArray) -> None:
    """A COCO instances file from its header and two finished :class:`JsonArray` files."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(header)[:-1])
        for key, array in (("images", images), ("annotations", annotations)):
            fh.write(f', "{key}": ')
            with open(array.path, encoding="utf-8") as part:
                shutil.copyfileobj(part, fh)
        fh.write("}\n")


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
    fault("export")
    return count


def _export_chat(out: Path, name: str, to: Path, options: ExportOptions, final: Path) -> dict:
    """Write into ``to``; ``final`` is where the export will live (absolute paths name it)."""
    dialect = get_dialect(name, options.resize, square=options.square)
    images = ImageFiles(to, final if options.absolute_paths else None)
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
                "root": str(final.resolve()),
                "annotation": str((final / f"{split}.jsonl").resolve()),
                "data_augment": False,
                "repeat_time": 1,
                "length": n,
            }
            for split, n in counts.items()
        }
        (to / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
    if name == "ms-swift":
        root = shlex.quote(str(final.resolve()))
        (to / "env.sh").write_text(
            "# ms-swift reads a relative image path against the working directory, else against"
            " $ROOT_IMAGE_DIR:\n"
            f"# . {shlex.quote(str((final / 'env.sh').resolve()))} && swift sft --dataset"
            f" {shlex.quote(str((final / 'train.jsonl').resolve()))} ...\n"
            f"export ROOT_IMAGE_DIR={root}\n",
            "utf-8",
        )
    return counts


def _export_coco(out: Path, to: Path, manifest: dict, refs_pickle: bool) -> dict:
    """Per-split COCO files, plus every split in the RefCOCO layout; ids run on across splits."""
    images = ImageFiles(to)
    ids = CocoIds.from_manifest(manifest)
    refer = to / REFER_DIR
    refer.mkdir(parents=True, exist_ok=True)
    counts = {}
    with tempfile.TemporaryDirectory(prefix=".export-", dir=to) as tmp:
        scratch = Path(tmp)
        every = {k: JsonArray(scratch / k) for k in ("images", "annotations", "refs")}
        for split in target_splits(out):
            one = {k: JsonArray(scratch / f"{split}.{k}") for k in ("images", "annotations")}
            for image in coco_images(split_targets(out, split), split, ids):
                images({"image_id": image["medground_image_id"], "image": image["image"]})
                for array in (one["images"], every["images"]):
                    array.add(coco_image_entry(image))
                for ann in image["annotations"]:
                    one["annotations"].add(ann)
                    every["annotations"].add(refer_annotation(ann))
                for ref in image["refs"]:
                    every["refs"].add(ref)
            for array in one.values():
                array.close()
            header = instances_header(manifest, ids, split)
            _write_instances(to / f"instances_{split}.json", header, **one)
            fault("export")
            counts[split] = one["images"].count
        for array in every.values():
            array.close()
        header = instances_header(manifest, ids, None)
        _write_instances(refer / "instances.json", header, every["images"], every["annotations"])
        refs_json = refer / f"refs({SPLIT_BY}).json"
        shutil.copyfile(every["refs"].path, refs_json)
    if refs_pickle:  # protocol 2: the refer API's Python 2 original reads it too
        refs = json.loads(refs_json.read_text("utf-8"))
        with open(refer / f"refs({SPLIT_BY}).p", "wb") as fh:
            pickle.dump(refs, fh, protocol=2)
    return counts


def _check_options(fmt: str, options: ExportOptions) -> None:
    """Refuse an option the format has no use for, before anything is written."""
    if fmt == "coco":
        for given, what in (
            (options.resize is not None, "min/max pixels apply to qwen2.5-vl only"),
            (options.square, "the padded square applies to llava only"),
            (options.absolute_paths, "file_name stays relative to the export folder, as COCO "
             "tools join it to their image root"),
        ):  # fmt: skip
            if given:
                raise ValueError(f"coco: {what}")
        return
    if options.refs_pickle:
        raise ValueError(f"{fmt}: the refs pickle is part of the coco export only")
    get_dialect(fmt, options.resize, square=options.square)


def export(out: str | Path, fmt: str, to: str | Path, options: ExportOptions | None = None) -> dict:
    """Export the built folder ``out`` as ``fmt`` into ``to``; returns rows (images) per split.

    ``options.resize`` replaces Qwen2.5-VL's default resize rule (qwen2.5-vl only), so the boxes
    match a training run that sets other ``min_pixels``/``max_pixels``; ``options.square``
    writes llava boxes for a model that pads images to a square.
    """
    out, to = Path(out), Path(to)
    options = options or ExportOptions()
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    _check_options(fmt, options)
    manifest = check_folder(out, configs=[GROUNDING, REJECTED])
    check_export_target(to)
    with staged(to) as stage:
        if fmt == "coco":
            return _export_coco(out, stage.path, manifest, options.refs_pickle)
        return _export_chat(out, fmt, stage.path, options, to)


EXPORT_FILES = (".json", ".jsonl", ".sh")  # what an export writes at its top level
EXPORT_FOLDERS = ("images", REFER_DIR)


def check_export_target(to: Path) -> None:
    """``--to`` is new, empty or an earlier export: it is replaced as a whole, so a folder
    holding anything an export does not write is refused."""
    if not to.exists():
        return
    if not to.is_dir():
        raise ValueError(f"{to}: exists and is not a folder")
    for entry in to.iterdir():
        export_file = entry.is_file() and entry.suffix in EXPORT_FILES
        if not (export_file or (entry.name in EXPORT_FOLDERS and entry.is_dir())):
            raise ValueError(
                f"{to}: holds {entry.name}, which no export writes; an export replaces its "
                "folder as a whole: choose a new or empty folder"
            )


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
            allow_patterns=["grounding/*.parquet", "rejected/*.parquet", MANIFEST],
        )
    )


def convert(
    src: str,
    fmt: str,
    to: str | Path,
    revision: str | None = None,
    options: ExportOptions | None = None,
) -> dict:
    """Any dialect (or COCO) from a built folder or a published dataset."""
    return export(fetch(src, revision), fmt, to, options)
