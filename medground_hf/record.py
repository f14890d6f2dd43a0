"""The canonical grounding record: one row per (image or rendered slice) x target.

Every other format (COCO, chat dialects, the rejected config) is derived from these rows, so the
schema is defined once here as ``datasets.Features``. Lists of dicts use ``List({...})``.
"""

from __future__ import annotations

from datasets import Features, Image, List, Value

VERDICT = {
    "stage": Value("string"),
    "check": Value("string"),
    "passed": Value("bool"),
    "reason": Value("string"),
}

QUERY = {
    "text": Value("string"),
    "style": Value("string"),
    "generator": Value("string"),
    "model": Value("string"),
    "prompt_version": Value("string"),
    "kept": Value("bool"),
    "verdicts": List(VERDICT),
}

SHAPE = {
    "relative_area": Value("float32"),
    "size_category": Value("string"),
    "aspect_ratio": Value("float32"),
    "elongation": Value("float32"),
    "solidity": Value("float32"),
    "circularity": Value("float32"),
    "orientation_deg": Value("float32"),
    "orientation": Value("string"),
    "major_axis_px": Value("float32"),
    "minor_axis_px": Value("float32"),
}

SPATIAL = {
    "grid_row": Value("string"),
    "grid_col": Value("string"),
    "grid_cell": Value("string"),
    "image_side": Value("string"),
    "patient_side": Value("string"),
    "display_convention": Value("string"),
}

RELATIONS = {
    "leftmost": Value("bool"),
    "rightmost": Value("bool"),
    "uppermost": Value("bool"),
    "lowermost": Value("bool"),
    "largest": Value("bool"),
    "smallest": Value("bool"),
    "size_rank": Value("int32"),
    "adjacent_to": List(Value("string")),
    "inside": List(Value("string")),
    "contains": List(Value("string")),
}

# Named structures of the image that are not targets (e.g. the brain mask of a slice), by their
# box on the image: what anatomical claims relative to them need ("frontal": the front of the
# brain's extent on this slice). Empty for sources without context masks.
CONTEXT_BOX = {"name": Value("string"), "bbox_xyxy": List(Value("int32"), length=4)}

VISUAL = {
    "region_mean": Value("float32"),
    "region_std": Value("float32"),
    "ring_mean": Value("float32"),
    "ring_std": Value("float32"),
    "contrast": Value("float32"),
    "edge_contrast": Value("float32"),
    "blank_fraction": Value("float32"),
}

PROVENANCE = {
    "pipeline_version": Value("string"),
    "builder": Value("string"),
    "builder_version": Value("string"),
    "config_name": Value("string"),
    "source_files": List(Value("string")),
    "image_converted": Value("string"),  # e.g. "CMYK -> RGB, PNG"; null: the file as it is
    # where the target sits in the source: COCO image/annotation ids, DICOM series and segment
    # (with its coded concepts), RT ROI; empty for sources whose files say it all
    "source_refs": List({"key": Value("string"), "value": Value("string")}),
}

GROUNDING_FEATURES = Features(
    {
        "id": Value("string"),
        "image_id": Value("string"),
        "source": Value("string"),
        "source_license": Value("string"),
        "modality": Value("string"),
        "body_part": Value("string"),
        "case_id": Value("string"),
        "group_id": Value("string"),
        "split": Value("string"),
        "image": Image(),
        "width": Value("int32"),
        "height": Value("int32"),
        "pixel_spacing_mm": List(Value("float32")),
        "volume_id": Value("string"),
        "slice_axis": Value("string"),
        "slice_index": Value("int32"),
        "num_slices": Value("int32"),
        "voxel_spacing_mm": List(Value("float32")),
        "label": Value("string"),
        "label_id": Value("int32"),
        "label_display": Value("string"),
        "instance": Value("int32"),
        "num_candidates": Value("int32"),
        "num_targets_in_image": Value("int32"),
        "bbox_xyxy": List(Value("int32"), length=4),
        "mask": {"size": List(Value("int32"), length=2), "counts": Value("string")},
        "area_px": Value("int64"),
        "area_mm2": Value("float32"),
        "centroid_xy": List(Value("float32"), length=2),
        "shape": SHAPE,
        "spatial": SPATIAL,
        "relations": RELATIONS,
        "context_boxes": List(CONTEXT_BOX),
        "visual": VISUAL,
        "queries": List(QUERY),
        "provenance": PROVENANCE,
    }
)


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


def record_id(source: str, image: str, label: str, instance: int) -> str:
    """Stable, content-derived id: source, case (and slice), label and instance, never a row."""
    return f"{source}/{image}/{label}/{instance}"
