"""COCO instances and RefCOCO-style refs from canonical rows.

Every target of an image is one COCO annotation (``bbox`` xywh from ``boxes.to_coco``, the RLE
mask as ``segmentation``), whether verification kept it or not: ``verified`` says which, so a
detector that finds a target verification rejected is not scored a false positive, and COCO
counts the same regions the chat ``disambiguate`` prompts announce. Each verified target (one with
kept queries) becomes one ref whose sentences are those queries, laid out as in RefCOCO's
``refs(unc).p``: ``raw`` the query as written, ``tokens`` its lower-cased words and ``sent``
those tokens joined; its ``split`` is named as RefCOCO names it (``validation`` -> ``val``).
COCO needs integer ids: they run on across splits in row order (one ``instances.json`` of every
split, as the refer API reads, has no duplicates), and every image, annotation and ref also
carries the stable medground id (``medground_image_id`` / ``record_id``) so it can be traced back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from medground_hf import boxes
from medground_hf.record import kept_queries
from medground_hf.schema import IMAGE, Fixed, features

from .rows import image_file

if TYPE_CHECKING:
    from datasets import Features

ANNOTATION = {
    "id": "int64",
    "image_id": "int64",
    "category_id": "int32",
    "bbox": Fixed("float32", 4),
    "area": "float32",
    "iscrowd": "int32",
    "segmentation": {"size": Fixed("int32", 2), "counts": "string"},
    "verified": "bool",
    "record_id": "string",
}
# our split names -> RefCOCO's (the refer API's ``getRefIds(split=...)`` knows train/val/test*)
REFCOCO_SPLITS = {"validation": "val"}

SENTENCE = {
    "sent_id": "int64",
    "sent": "string",
    "raw": "string",
    "tokens": ["string"],
}
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")

REF = {
    "ref_id": "int64",
    "ann_id": "int64",
    "image_id": "int64",
    "category_id": "int32",
    "split": "string",
    "file_name": "string",
    "sent_ids": ["int64"],
    "sentences": [SENTENCE],
    "record_id": "string",
}

COCO_COLUMNS = {
    "id": "int64",
    "medground_image_id": "string",
    "file_name": "string",
    "width": "int32",
    "height": "int32",
    "license": "int32",
    "image": IMAGE,
    "annotations": [ANNOTATION],
    "refs": [REF],
}


@cache
def coco_features() -> Features:
    """The ``coco`` config's ``datasets.Features`` (one row per image)."""
    return features(COCO_COLUMNS)


@dataclass
class CocoIds:
    """Category and licence ids from the manifest, and the running ids (one set for every
    split, so ids are unique across splits)."""

    categories: list[dict]
    licenses: list[dict]
    category_ids: dict[tuple[str, str], int]
    license_ids: dict[str, int]
    next_ids: dict[str, int] = field(
        default_factory=lambda: {"image": 1, "ann": 1, "ref": 1, "sent": 1}
    )

    @classmethod
    def from_manifest(cls, manifest: dict) -> CocoIds:
        categories, category_ids, licenses, license_ids = [], {}, [], {}
        for source in manifest["sources"]:
            license_ids[source["name"]] = len(licenses) + 1
            licenses.append(
                {"id": len(licenses) + 1, "name": source["license"], "url": source["license_url"]}
            )
            for label in source["labels"]:
                category_ids[(source["name"], label["name"])] = len(categories) + 1
                category = {"id": len(categories) + 1, "name": label["name"]}
                categories.append({**category, "supercategory": source["name"]})
        return cls(categories, licenses, category_ids, license_ids)

    def take(self, kind: str) -> int:
        value = self.next_ids[kind]
        self.next_ids[kind] += 1
        return value

    def category(self, row: dict) -> int:
        try:
            return self.category_ids[(row["source"], row["label"])]
        except KeyError:
            raise ValueError(
                f"record {row['id']}: label {row['label']!r} of source {row['source']!r} "
                "is not declared in the manifest"
            ) from None


def refcoco_split(split: str) -> str:
    """The split name a RefCOCO ref carries: ``val`` for ``validation``, others unchanged."""
    return REFCOCO_SPLITS.get(split, split)


def _annotation(row: dict, image_id: int, ids: CocoIds) -> dict:
    boxes.check_canonical(row["bbox_xyxy"], row["width"], row["height"])
    return {
        "id": ids.take("ann"),
        "image_id": image_id,
        "category_id": ids.category(row),
        "bbox": [float(v) for v in boxes.to_coco(row["bbox_xyxy"])],
        "area": float(row["area_px"]),
        "iscrowd": 0,
        "segmentation": dict(row["mask"]),
        "verified": bool(kept_queries(row)),
        "record_id": row["id"],
    }


def sentence(sent_id: int, text: str) -> dict:
    """A RefCOCO sentence: tokens are the lower-cased words (punctuation dropped), as its
    tokenizer leaves them, so tools that read ``tokens`` or ``sent`` see what they expect."""
    tokens = _WORD.findall(text.lower().replace("\u2019", "'"))
    return {"sent_id": sent_id, "sent": " ".join(tokens), "raw": text, "tokens": tokens}


def _ref(row: dict, ann: dict, split: str, file_name: str, ids: CocoIds) -> dict | None:
    queries = kept_queries(row)
    if not queries:
        return None
    sentences = [sentence(ids.take("sent"), q["text"]) for q in queries]
    return {
        "ref_id": ids.take("ref"),
        "ann_id": ann["id"],
        "image_id": ann["image_id"],
        "category_id": ann["category_id"],
        "split": refcoco_split(split),
        "file_name": file_name,
        "sent_ids": [s["sent_id"] for s in sentences],
        "sentences": sentences,
        "record_id": row["id"],
    }


def coco_images(rows: Iterable[dict], split: str, ids: CocoIds) -> Iterator[dict]:
    """One COCO image (with its annotations and refs) per run of rows sharing an ``image_id``.

    ``rows`` are every target of the split (:func:`~.rows.split_targets`); the first row of an
    image carries its bytes. Records of one image are written together by the builders; an image
    that shows up again later would get two COCO ids, so that is refused.
    """
    seen: set[str] = set()
    current: dict | None = None
    for row in rows:
        if current is None or row["image_id"] != current["medground_image_id"]:
            if current is not None:
                yield current
            if row["image_id"] in seen:
                raise ValueError(
                    f"record {row['id']}: rows of image {row['image_id']} are not adjacent"
                )
            seen.add(row["image_id"])
            current = {
                "id": ids.take("image"),
                "medground_image_id": row["image_id"],
                "file_name": image_file(row),
                "width": row["width"],
                "height": row["height"],
                "license": ids.license_ids.get(row["source"], 0),
                "image": row["image"],
                "annotations": [],
                "refs": [],
            }
        ann = _annotation(row, current["id"], ids)
        current["annotations"].append(ann)
        ref = _ref(row, ann, split, current["file_name"], ids)
        if ref is not None:
            current["refs"].append(ref)
    if current is not None:
        yield current


def instances_header(manifest: dict, ids: CocoIds, split: str | None) -> dict:
    """``info``, ``licenses`` and ``categories`` of an instances file (one split, or all)."""
    titles = ", ".join(s["title"] for s in manifest["sources"])
    which = f"split {split}" if split else "all splits"
    return {
        "info": {
            "description": f"MedGround grounding data ({titles}), {which}",
            "version": manifest.get("pipeline_version", ""),
            "contributor": "medground-hf",
        },
        "licenses": ids.licenses,
        "categories": ids.categories,
    }


def coco_image_entry(image: dict) -> dict:
    """The ``images`` entry of an instances file for one COCO image row."""
    keys = ("id", "file_name", "width", "height", "license", "medground_image_id")
    return {k: image[k] for k in keys}


def refer_annotation(ann: dict) -> dict:
    """An annotation as the refer API's mask helpers read it: ``segmentation`` a list of RLEs.

    ``REFER.getMask`` takes ``segmentation[0]`` to tell polygons (a list) from masks, decodes
    the rest as a list of RLEs and sums them (RefCLEF's layout); a bare RLE dict fails there
    with ``KeyError: 0``, while pycocotools and detectron2 want the bare dict. So the per-split
    COCO files keep the dict and the RefCOCO-layout ``instances.json`` wraps it.
    """
    return {**ann, "segmentation": [ann["segmentation"]]}
