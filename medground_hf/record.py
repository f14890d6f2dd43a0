"""The canonical grounding record: one row per (image or rendered slice) x target.

Every other format (COCO, chat dialects, the rejected config) is derived from these rows, so the
schema is defined once here, as plain data (:mod:`medground_hf.schema`): ``datasets.Features``
and the Arrow schema are made from it on first use (lists of dicts become ``List({...})``).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from .schema import IMAGE, Fixed, features

if TYPE_CHECKING:
    import pyarrow as pa
    from datasets import Features

VERDICT = {
    "stage": "string",
    "check": "string",
    "passed": "bool",
    "reason": "string",
}

QUERY = {
    "text": "string",
    "style": "string",
    "generator": "string",
    "model": "string",
    "prompt_version": "string",
    "kept": "bool",
    "verdicts": [VERDICT],
}

SHAPE = {
    "relative_area": "float32",
    "size_category": "string",
    "aspect_ratio": "float32",
    "elongation": "float32",
    "solidity": "float32",
    "circularity": "float32",
    "orientation_deg": "float32",
    "orientation": "string",
    "major_axis_px": "float32",
    "minor_axis_px": "float32",
}

SPATIAL = {
    "grid_row": "string",
    "grid_col": "string",
    "grid_cell": "string",
    "image_side": "string",
    "patient_side": "string",
    "display_convention": "string",
}

RELATIONS = {
    "leftmost": "bool",
    "rightmost": "bool",
    "uppermost": "bool",
    "lowermost": "bool",
    "largest": "bool",
    "smallest": "bool",
    "size_rank": "int32",
    "adjacent_to": ["string"],
    "inside": ["string"],
    "contains": ["string"],
}

# Named structures of the image that are not targets (e.g. the brain mask of a slice), by their
# box on the image: what anatomical claims relative to them need ("frontal": the front of the
# brain's extent on this slice). Empty for sources without context masks.
CONTEXT_BOX = {"name": "string", "bbox_xyxy": Fixed("int32", 4)}

VISUAL = {
    "region_mean": "float32",
    "region_std": "float32",
    "ring_mean": "float32",
    "ring_std": "float32",
    "contrast": "float32",
    "edge_contrast": "float32",
    "blank_fraction": "float32",
}

PROVENANCE = {
    "pipeline_version": "string",
    "builder": "string",
    "builder_version": "string",
    "config_name": "string",
    "source_files": ["string"],
    "image_converted": "string",  # e.g. "CMYK -> RGB, PNG"; null: the file as it is
    # where the target sits in the source: COCO image/annotation ids, DICOM series and segment
    # (with its coded concepts), RT ROI; empty for sources whose files say it all
    "source_refs": [{"key": "string", "value": "string"}],
}

RECORD = {
    "id": "string",
    "image_id": "string",
    "source": "string",
    "source_license": "string",
    "modality": "string",
    "body_part": "string",
    "case_id": "string",
    "group_id": "string",
    "split": "string",
    "image": IMAGE,
    "width": "int32",
    "height": "int32",
    "pixel_spacing_mm": ["float32"],
    "volume_id": "string",
    "slice_axis": "string",
    "slice_index": "int32",
    "num_slices": "int32",
    "voxel_spacing_mm": ["float32"],
    "label": "string",
    "label_id": "int32",
    "label_display": "string",
    "instance": "int32",
    "num_candidates": "int32",
    "num_targets_in_image": "int32",
    "bbox_xyxy": Fixed("int32", 4),
    "mask": {"size": Fixed("int32", 2), "counts": "string"},
    "area_px": "int64",
    "area_mm2": "float32",
    "centroid_xy": Fixed("float32", 2),
    "shape": SHAPE,
    "spatial": SPATIAL,
    "relations": RELATIONS,
    "context_boxes": [CONTEXT_BOX],
    "visual": VISUAL,
    "queries": [QUERY],
    "provenance": PROVENANCE,
}


@cache
def grounding_features() -> Features:
    """The record as ``datasets.Features`` (``datasets`` is imported on first use only)."""
    return features(RECORD)


@cache
def record_schema() -> pa.Schema:
    """The Arrow schema of ``grounding`` rows (with the Features in its metadata)."""
    return grounding_features().arrow_schema


def __getattr__(name: str):
    # ``GROUNDING_FEATURES`` is made when first asked for: importing this module stays cheap
    if name == "GROUNDING_FEATURES":
        return grounding_features()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def image_key(
    case_id: str,
    slice_axis: str | None = None,
    slice_index: int | None = None,
    variant: str | None = None,
) -> str:
    """The image part of an id: the case for 2D sources, ``case/axis-NNN`` for volume slices,
    ``case/axis-NNN/variant`` when one slice is rendered as several images (one per modality)."""
    if slice_axis is None:
        return case_id
    key = f"{case_id}/{slice_axis}-{slice_index:03d}"
    return f"{key}/{variant}" if variant else key


def kept_queries(row: dict) -> list[dict]:
    """The queries a format may use: ``kept == True`` (the verified ones)."""
    return [q for q in row.get("queries") or [] if q.get("kept")]


def record_id(source: str, image: str, label: str, instance: int) -> str:
    """Stable, content-derived id: source, case (and slice), label and instance, never a row."""
    return f"{source}/{image}/{label}/{instance}"
