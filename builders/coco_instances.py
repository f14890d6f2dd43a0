"""COCO instance files as input: ``instances*.json`` and the images they describe.

``--data-dir`` holds one or more instance files: those named by ``annotation_files``, else every
``instances_<split>.json`` below it, or every ``instances*.json`` when there is none of those.
An image's ``file_name`` is looked up under ``image_dir`` when given, else in turn under the
instance file's folder, the data dir, ``<data dir>/<split>``, ``<data dir>/images`` and
``<data dir>/images/<split>``.

* Categories are labels (``label_map`` renames, merges or leaves them out); every annotation
  that is not ``iscrowd`` is one target, its mask exactly as the COCO API decodes it (polygons,
  uncompressed or compressed RLE; a list of RLEs, the refer API's layout, as their union),
  whatever its connectivity. Instances of a label are numbered by the raster position of their
  first pixel, so ids do not depend on annotation order.
* ``iscrowd`` regions are context, never targets: named by their category, they take part in
  "inside" and "next to" relations.
* The split is the instance file's (``instances_<split>.json``, renamed by ``split_names``,
  e.g. COCO's ``val`` to ``validation``); a file without one splits images by their group.
* COCO image ids, file names, annotation and category ids go into ``provenance.source_refs``.
* The licence is the ``license`` option, or the one licence all images of the files name.

An image without annotations is no item (they are counted in a warning); a file-level problem
(unreadable JSON, an annotation of an unknown image) names the file and stops the build, a
problem of one image or annotation is that image's error (``--on-error skip`` skips it).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from pycocotools import mask as mask_utils

from medground_hf.errors import InputError
from medground_hf.imageio import load_image
from medground_hf.sample import Sample
from medground_hf.source import LabelSpec, SourceInfo

from .base import CustomSourceConfig, Item, MedGroundBuilder
from .label_map import mapped, normalise

logger = logging.getLogger("medground_hf")

INSTANCES_GLOB = "instances*.json"
SPLIT_OF_FILE = re.compile(r"^instances_(.+)\.json$")


@dataclass
class CocoInstancesConfig(CustomSourceConfig):
    """Where the instance files and images are, and how names and splits map."""

    annotation_files: tuple[str, ...] = ()
    image_dir: str | None = None
    label_map: Mapping[str, str | None] = field(default_factory=dict)
    split_names: Mapping[str, str] = field(default_factory=lambda: {"val": "validation"})
    min_size: int = 16
    source_name: str = "coco_instances"
    source_title: str = "COCO instances"

    def validate(self) -> None:
        super().validate()
        self.label_map = normalise(self.label_map)
        self.split_names = {str(k): str(v) for k, v in dict(self.split_names).items()}
        if int(self.min_size) < 1:
            raise ValueError(f"min_size must be >= 1, got {self.min_size}")


@dataclass
class CocoFile:
    """One parsed instance file: images by id, annotations by image id, categories by id."""

    path: Path
    split: str | None
    images: dict[int, dict]
    annotations: dict[int, list[dict]]
    categories: dict[int, dict]
    licenses: dict[int, dict]


def read_instances(path: Path, split_names: Mapping[str, str]) -> CocoFile:
    """Parse and check the structure of one instance file; problems name it."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"unreadable JSON: {exc}") from exc
    if not isinstance(doc, dict) or not all(
        isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise InputError(
            path, "a COCO instance file needs 'images', 'annotations' and 'categories' lists"
        )
    try:
        images = {int(im["id"]): im for im in doc["images"]}
        categories = {int(c["id"]): c for c in doc["categories"]}
        licenses = {int(lic["id"]): lic for lic in doc.get("licenses") or []}
        for im in images.values():
            if not (im["file_name"] and int(im["width"]) > 0 and int(im["height"]) > 0):
                raise ValueError(f"image {im['id']} lacks a file name or a size")
        for c in categories.values():
            str(c["name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            path, f"images need id, file_name, width, height; categories id, name: {exc!r}"
        ) from exc
    if len(images) != len(doc["images"]):
        raise InputError(path, "two images share one id")
    by_image: dict[int, list[dict]] = {}
    for ann in doc["annotations"]:
        if not isinstance(ann, dict) or not {"id", "image_id", "category_id"} <= ann.keys():
            raise InputError(
                path, f"annotation without id, image_id or category_id: {str(ann)[:80]}"
            )
        if int(ann["image_id"]) not in images:
            raise InputError(
                path, f"annotation {ann['id']} refers to image {ann['image_id']}, not in 'images'"
            )
        by_image.setdefault(int(ann["image_id"]), []).append(ann)
    match = SPLIT_OF_FILE.match(path.name)
    split = split_names.get(match.group(1), match.group(1)) if match else None
    return CocoFile(path, split, images, by_image, categories, licenses)


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A mask as ``pycocotools`` (the COCO API's ``annToMask``) decodes it, or, for a list of
    RLEs (the refer API's layout), their union as ``REFER.getMask`` takes it; ValueError when
    the segmentation is malformed or of another size than its image."""
    if (
        isinstance(segmentation, list)
        and segmentation
        and all(isinstance(p, dict) for p in segmentation)
    ):  # the refer API's layout: a list of RLEs, united
        masks = [decode_segmentation(rle, height, width) for rle in segmentation]
        return np.logical_or.reduce(masks)
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if isinstance(p, list)]
        if not polygons or len(polygons) != len(segmentation):
            raise ValueError("polygon segmentation must be a list of coordinate lists")
        if any(len(p) < 6 or len(p) % 2 for p in polygons):
            raise ValueError("a polygon needs at least three x, y pairs")
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and {"size", "counts"} <= segmentation.keys():
        size = [int(v) for v in segmentation["size"]]
        if size != [height, width]:
            raise ValueError(
                f"RLE size {size} is not the image's [height, width] {[height, width]}"
            )
        counts = segmentation["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = {
                "size": size,
                "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
            }
    else:
        raise ValueError("segmentation is neither polygons nor an RLE {size, counts}")
    return mask_utils.decode(rle).astype(bool)


def first_pixel(mask: np.ndarray) -> int:
    """Raster index of a mask's first pixel (how instances of a label are ordered)."""
    return int(np.argmax(mask.ravel())) if mask.any() else mask.size


class CocoInstances(MedGroundBuilder):
    """COCO instance files (polygons or RLE) and their images: categories as labels."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = CocoInstancesConfig
    BUILDER_CONFIGS = [CocoInstancesConfig(name="default", version=VERSION)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point --data-dir at a folder holding COCO instance files (instances_<split>.json, any "
        "nesting, or --set annotation_files='[...]') and the images their file_name fields name "
        "(or --set image_dir=...)."
    )
    files: list[CocoFile]
    root: Path

    # ---- metadata -----------------------------------------------------------------------------
    @cached_property
    def labels(self) -> dict[str, LabelSpec]:
        """Labels by name, in order of first appearance; id from the first category so named."""
        out: dict[str, LabelSpec] = {}
        for coco in self.files:
            for cid, category in sorted(coco.categories.items()):
                hit = mapped(str(category["name"]), self.config.label_map)
                if hit and hit[0] not in out:
                    out[hit[0]] = self.config.label_spec(
                        cid,
                        hit[0],
                        hit[1],
                        min_size=int(self.config.min_size),
                        modalities=(self.config.modality,),
                        description=str(category.get("supercategory") or ""),
                    )
        return out

    @property
    def source(self) -> SourceInfo:
        """The options' metadata; labels (and a licence all images share) once files are read."""
        if "files" not in self.__dict__:
            return self.config.source_info((), "images with COCO instances")
        info = self.config.source_info(tuple(self.labels.values()), "images with COCO instances")
        if self.config.license != "unknown":
            return info
        named = {
            (str(lic.get("name") or ""), str(lic.get("url") or "")) if lic else None
            for coco in self.files
            for image in coco.images.values()
            for lic in [coco.licenses.get(int(image.get("license") or 0))]
        }
        if len(named) == 1 and None not in named:
            name, url = named.pop()
            return replace(info, license=name or info.license, license_url=url)
        return info

    # ---- items --------------------------------------------------------------------------------
    def instance_files(self, data_dir: Path) -> list[Path]:
        """The files named by ``annotation_files``; else every ``instances_<split>.json`` below
        the data dir, or, when there is none, every ``instances*.json``. (A split file and an
        all-splits file of the same images, as this project's export writes them, would list
        every image twice.)"""
        if self.config.annotation_files:
            paths = [data_dir / p for p in self.config.annotation_files]
            for path in paths:
                if not path.is_file():
                    raise InputError(path, "annotation file does not exist")
            return paths
        found = sorted(p for p in data_dir.rglob(INSTANCES_GLOB) if not p.name.startswith("."))
        return [p for p in found if SPLIT_OF_FILE.match(p.name)] or found

    def list_items(self, data_dir: Path) -> list[Item]:
        self.files = [
            read_instances(p, self.config.split_names) for p in self.instance_files(data_dir)
        ]
        self.root = data_dir
        items = []
        empty = 0
        for n, coco in enumerate(self.files):
            for image_id, image in sorted(coco.images.items()):
                if not coco.annotations.get(image_id):
                    empty += 1
                    continue
                key = Path(str(image["file_name"])).with_suffix("").as_posix()
                items.append(
                    Item(
                        key,
                        self.group_of(key),
                        (str(coco.path),),
                        source_split=coco.split,
                        extra=(("file", str(n)), ("image_id", str(image_id))),
                    )
                )
        if empty:
            logger.warning("%d image(s) without annotations are not items", empty)
        return items

    def image_path(self, coco: CocoFile, file_name: str) -> Path:
        if self.config.image_dir:
            candidates = [self.root / self.config.image_dir]
        else:
            candidates = [coco.path.parent, self.root]
            if coco.split:
                candidates.append(self.root / coco.split)
            candidates.append(self.root / "images")
            if coco.split:
                candidates.append(self.root / "images" / coco.split)
        for folder in candidates:
            if (folder / file_name).is_file():
                return folder / file_name
        tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
        raise InputError(coco.path, f"image {file_name} not found (looked in {tried})")

    def load_item(self, item: Item) -> Iterator[Sample]:
        extra = dict(item.extra)
        coco = self.files[int(extra["file"])]
        image_id = int(extra["image_id"])
        entry = coco.images[image_id]
        name = str(entry["file_name"])
        path = self.image_path(coco, name)
        pixels, data, converted = load_image(path)
        height, width = int(entry["height"]), int(entry["width"])
        if pixels.shape[:2] != (height, width):
            raise InputError(
                path,
                f"image is {pixels.shape[1]}x{pixels.shape[0]} but {coco.path.name} says "
                f"{width}x{height}",
            )
        targets: list[tuple[int, int, LabelSpec, np.ndarray, tuple]] = []
        context: dict[str, np.ndarray] = {}
        order = list(self.labels)
        for ann in coco.annotations[image_id]:
            category = coco.categories.get(int(ann["category_id"]))
            if category is None:
                raise InputError(
                    coco.path,
                    f"annotation {ann['id']}: category {ann['category_id']} is not in 'categories'",
                )
            hit = mapped(str(category["name"]), self.config.label_map)
            if hit is None:
                continue
            try:
                mask = decode_segmentation(ann.get("segmentation"), height, width)
            except (ValueError, TypeError) as exc:
                raise InputError(coco.path, f"annotation {ann['id']}: {exc}") from exc
            if not mask.any():
                raise InputError(coco.path, f"annotation {ann['id']}: empty segmentation")
            if ann.get("iscrowd"):
                context[hit[0]] = context[hit[0]] | mask if hit[0] in context else mask
                continue
            refs = (
                ("coco_annotation_id", str(ann["id"])),
                ("coco_category_id", str(category["id"])),
            )
            spec = self.labels[hit[0]]
            targets.append((order.index(spec.name), first_pixel(mask), spec, mask, refs))
        if not targets:
            raise InputError(coco.path, f"image {image_id} ({name}) has only crowd regions")
        targets.sort(key=lambda t: (t[0], t[1]))
        yield Sample(
            case_id=item.key,
            group_id=item.group,
            image=pixels,
            image_bytes=data,
            masks=[(spec, mask) for _, _, spec, mask, _ in targets],
            source_files=[coco.path.name, name],
            modality=self.config.modality,
            context=context,
            image_converted=converted,
            masks_are_instances=True,
            refs=(("coco_image_id", str(image_id)), ("file_name", name)),
            mask_refs=[refs for *_, refs in targets],
        )
