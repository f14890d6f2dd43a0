"""What a builder yields (a decoded image with its masks) and how the core turns it into records.

A builder's business is where pixels come from (a PNG, a slice of a volume); from a :class:`Sample`
on, every source goes through the same instance, cue and relation code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import PIPELINE_VERSION
from .cues import relations, spatial_cues, visual_stats
from .geometry import Component, component_rle, components, shape_cues
from .record import image_key, record_id
from .source import LabelSpec, SourceInfo


@dataclass
class SliceInfo:
    """Where a rendered slice comes from in its volume, and how it is displayed."""

    volume_id: str
    axis: str  # "axial" | "coronal" | "sagittal"
    index: int
    num_slices: int
    voxel_spacing_mm: tuple[float, float, float]
    display_convention: str = "radiological"


@dataclass
class Sample:
    """One decoded image with its expert masks, ready to become records.

    ``image_bytes`` are embedded as they are (the original file, or the rendered slice's PNG), so
    the image is decoded exactly once. ``masks`` may overlap (e.g. "whole tumour" over its parts).
    ``patient_side`` maps a target mask to "right" / "left" / "midline" for volume sources.

    Each mask is split into connected components unless ``masks_are_instances`` (a source that
    delineates instances itself, e.g. COCO annotations: each mask is one target, whatever its
    connectivity). ``refs`` say where the image came from in the source and ``mask_refs`` (one
    entry per mask, when given) where each target did, e.g. a DICOM segment's coded concepts or
    a COCO annotation id; both end up in the record's ``provenance.source_refs``.
    """

    case_id: str
    group_id: str
    image: np.ndarray
    image_bytes: bytes
    masks: list[tuple[LabelSpec, np.ndarray]]
    source_files: list[str]
    modality: str
    pixel_spacing_mm: tuple[float, float] | None = None
    slice: SliceInfo | None = None
    context: dict[str, np.ndarray] = field(default_factory=dict)
    patient_side: Callable[[np.ndarray], str] | None = None
    split: str = "train"
    # Which rendering of the slice this is when one slice yields several images (one per modality).
    image_variant: str | None = None
    # How the embedded image differs from the source file (e.g. "CMYK -> RGB, PNG"); None when
    # the file's own bytes are embedded.
    image_converted: str | None = None
    masks_are_instances: bool = False
    refs: tuple[tuple[str, str], ...] = ()
    mask_refs: list[tuple[tuple[str, str], ...]] | None = None

    @property
    def image_key(self) -> str:
        if self.slice is None:
            return image_key(self.case_id)
        return image_key(self.case_id, self.slice.axis, self.slice.index, self.image_variant)


@dataclass
class Dropped:
    """A connected component smaller than its label's ``min_size``: reported, never silent."""

    image_id: str
    label: str
    area_px: int


def sample_to_records(
    sample: Sample, source: SourceInfo, *, builder: str, builder_version: str, config_name: str
) -> tuple[list[dict], list[Dropped]]:
    """All target records of one image, with cues and relations computed across its targets."""
    height, width = sample.image.shape[:2]
    image_id = f"{source.name}/{sample.image_key}"
    comps: list[Component] = []
    specs: list[LabelSpec] = []
    instance_index: list[int] = []
    target_refs: list[tuple[tuple[str, str], ...]] = []
    dropped: list[Dropped] = []
    mask_refs = sample.mask_refs if sample.mask_refs is not None else [()] * len(sample.masks)
    if len(mask_refs) != len(sample.masks):
        raise ValueError(f"{image_id}: {len(mask_refs)} mask refs for {len(sample.masks)} masks")
    per_label: dict[str, int] = {}  # instances are numbered per label across the image's masks
    for (spec, mask), refs in zip(sample.masks, mask_refs, strict=True):
        whole = spec.single_region or sample.masks_are_instances
        kept, small = components(mask, single_region=whole, min_size=spec.min_size)
        dropped.extend(Dropped(image_id, spec.name, size) for size in small)
        comps.extend(kept)
        specs.extend([spec] * len(kept))
        start = per_label.get(spec.name, 0)
        instance_index.extend(range(start, start + len(kept)))
        per_label[spec.name] = start + len(kept)
        target_refs.extend([refs] * len(kept))
    context = {}
    for name, mask in sample.context.items():
        found, _ = components(mask, single_region=True)
        if found:
            context[name] = found[0]
    rels = relations(comps, [s.name for s in specs], context)
    counts = {name: sum(1 for s in specs if s.name == name) for name in {s.name for s in specs}}
    px_area = (
        sample.pixel_spacing_mm[0] * sample.pixel_spacing_mm[1] if sample.pixel_spacing_mm else None
    )
    sl = sample.slice
    records = []
    for comp, spec, idx, rel, refs in zip(
        comps, specs, instance_index, rels, target_refs, strict=True
    ):
        # the RLE comes from the box alone; only a volume's patient side needs the full mask
        side = sample.patient_side(comp.mask) if sample.patient_side else None
        records.append(
            {
                "id": record_id(source.name, sample.image_key, spec.name, idx),
                "image_id": image_id,
                "source": source.name,
                "source_license": source.license,
                "modality": sample.modality,
                "body_part": source.body_part,
                "case_id": sample.case_id,
                "group_id": sample.group_id,
                "split": sample.split,
                "image": {"bytes": sample.image_bytes, "path": None},
                "width": width,
                "height": height,
                "pixel_spacing_mm": list(sample.pixel_spacing_mm) if px_area else None,
                "volume_id": sl.volume_id if sl else None,
                "slice_axis": sl.axis if sl else None,
                "slice_index": sl.index if sl else None,
                "num_slices": sl.num_slices if sl else None,
                "voxel_spacing_mm": list(sl.voxel_spacing_mm) if sl else None,
                "label": spec.name,
                "label_id": spec.id,
                "label_display": spec.display,
                "instance": idx,
                "num_candidates": counts[spec.name],
                "num_targets_in_image": len(comps),
                "bbox_xyxy": list(comp.bbox_xyxy),
                "mask": component_rle(comp),
                "area_px": comp.area,
                "area_mm2": comp.area * px_area if px_area else None,
                "centroid_xy": list(comp.centroid_xy),
                "shape": shape_cues(comp, width * height),
                "spatial": spatial_cues(
                    comp.bbox_xyxy,
                    comp.centroid_xy,
                    width,
                    height,
                    patient_side=side,
                    display_convention=sl.display_convention if sl else "as-acquired",
                ),
                "relations": rel,
                "context_boxes": [
                    {"name": name, "bbox_xyxy": list(structure.bbox_xyxy)}
                    for name, structure in context.items()
                ],
                "visual": visual_stats(sample.image, comp),
                "queries": [],
                "provenance": {
                    "pipeline_version": PIPELINE_VERSION,
                    "builder": builder,
                    "builder_version": builder_version,
                    "config_name": config_name,
                    "source_files": sample.source_files,
                    "image_converted": sample.image_converted,
                    "source_refs": [
                        {"key": key, "value": value} for key, value in (*sample.refs, *refs)
                    ],
                },
            }
        )
    return records, dropped
