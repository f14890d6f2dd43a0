"""Source builders, by name. Each is a ``datasets.GeneratorBasedBuilder`` over one corpus layout."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the base imports `datasets` (a second): not to name or refuse a source
    from .base import MedGroundBuilder

# name -> "module:Class"; imported lazily so that listing or refusing a source stays cheap.
REGISTRY: dict[str, str] = {
    "image_mask_folder": "image_mask_folder:ImageMaskFolder",
    "kvasir_seg": "kvasir_seg:KvasirSeg",
    "hc18": "hc18:HC18",
    "nifti_labelmap": "nifti_labelmap:NiftiLabelmap",
    "msd": "msd:MedicalSegmentationDecathlon",
    "brats": "brats:Brats",
    "dicom_seg": "dicom_seg:DicomSeg",
    "dicom_rtstruct": "dicom_rtstruct:DicomRtstruct",
    "coco_instances": "coco_instances:CocoInstances",
}


def get_builder_class(name: str) -> type[MedGroundBuilder]:
    """The builder class registered under ``name``."""
    if name not in REGISTRY:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


__all__ = ["REGISTRY", "get_builder_class"]
