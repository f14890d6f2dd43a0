"""DICOM-SEG: image series with Segmentation objects (binary, fractional or label-map SEGs).

Segments become labels by their SegmentLabel (renamed, merged or left out with ``label_map``);
their coded concepts (segmented property category and type) and algorithm type go into every
record's ``provenance.source_refs``. Each frame is placed on the slice of the series it names in
its derivation (ReferencedSOPInstanceUID) and, where it names none, on the slice at its plane
position; a frame that names one slice and lies on another is refused. Fractional frames count
where the fraction exceeds one half. Segments may overlap (see :mod:`medground_hf.overlaps`).

pydicom decodes the frames one at a time; highdicom reads the segment descriptions and their
coded concepts. (highdicom's whole ``Segmentation`` object would first index every frame, which
takes seconds on a large SEG and is not needed to place frames on a known series.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np

from medground_hf import dicom
from medground_hf.errors import InputError
from medground_hf.overlaps import OverlapLabels
from medground_hf.volumes import MASK_THRESHOLD

from .dicom_base import DicomBuilder, DicomConfig, Refs


@dataclass
class DicomSegConfig(DicomConfig):
    source_name: str = "dicom_seg"
    source_title: str = "DICOM series with DICOM-SEG segmentations"


def segment_label(item: Any) -> str:
    """A segment's name: its SegmentLabel (type 1), else its number."""
    return dicom.text(item, "SegmentLabel") or f"segment {int(item.SegmentNumber)}"


def concept(code: Any) -> str:
    """A coded concept as ``SCHEME:value meaning`` (e.g. ``SCT:108369006 Neoplasm``)."""
    return f"{code.scheme_designator}:{code.value} {code.meaning}"


def functional_group(seg: Any, index: int, keyword: str) -> Any:
    """The first item of a functional group of one frame: per-frame, else shared."""
    per_frame = seg.get("PerFrameFunctionalGroupsSequence")
    shared = seg.get("SharedFunctionalGroupsSequence")
    for group in (per_frame[index] if per_frame else None, shared[0] if shared else None):
        items = group.get(keyword) if group is not None else None
        if items:
            return items[0]
    return None


SEGMENTATION_TYPES = ("BINARY", "FRACTIONAL", "LABELMAP")


class DicomSeg(DicomBuilder):
    """DICOM image series with DICOM-SEG objects: one case per study and referenced series."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = DicomSegConfig
    BUILDER_CONFIGS = [DicomSegConfig(name="default", version=VERSION)]
    OBJECT_MODALITY = "SEG"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point --data-dir at a folder holding your studies (one folder per study, any nesting) "
        "as exported from an archive or PACS: each image series as single-frame CT/MR files and "
        "one or more DICOM-SEG objects that reference it. Needs pip install -e '.[dicom]'."
    )

    def structure_names(self, obj: dicom.DicomFile) -> list[str]:
        """The segments' labels; segment 0 of a label-map SEG is its background, no structure."""
        return [
            segment_label(item)
            for item in obj.header.get("SegmentSequence", [])
            if int(item.get("SegmentNumber", 1)) != 0
        ]

    def references(self, obj: dicom.DicomFile) -> tuple[set[str], set[str]]:
        series = {
            dicom.text(s, "SeriesInstanceUID")
            for s in obj.header.get("ReferencedSeriesSequence", [])
        }
        frames = {obj.frame_of_reference} - {""}
        return series - {""}, frames

    def paint(
        self, obj: dicom.DicomFile, series: dicom.Series, labels: OverlapLabels
    ) -> dict[str, Refs]:
        hd = dicom.optional_module("highdicom", self.name)
        pydicom = dicom.pydicom_module(self.name)
        path = obj.path
        seg = dicom.read_dataset(path)
        kind = dicom.text(seg, "SegmentationType")
        if kind not in SEGMENTATION_TYPES or "PixelData" not in seg:
            raise InputError(path, f"not a DICOM-SEG with frames (SegmentationType {kind!r})")
        dicom.check_decodable(path, seg)
        geometry = series.geometry
        if (int(seg.Rows), int(seg.Columns)) != (geometry.rows, geometry.columns):
            raise InputError(
                path,
                f"SEG frames are {seg.Columns}x{seg.Rows} pixels but the slices of series "
                f"{series.uid} are {geometry.columns}x{geometry.rows}: a SEG on another pixel "
                "grid is not supported",
            )
        names: dict[int, str | None] = {}
        refs: dict[int, tuple[str | None, Refs]] = {}
        for item in seg.get("SegmentSequence", []):
            try:
                description = hd.seg.SegmentDescription.from_dataset(item, copy=False)
                number, label = description.segment_number, segment_label(description)
                pairs = (
                    ("seg_sop_instance_uid", obj.sop_uid),
                    ("segment_number", str(number)),
                    ("segment_label", label),
                    (
                        "segmented_property_category",
                        concept(description.segmented_property_category),
                    ),
                    ("segmented_property_type", concept(description.segmented_property_type)),
                    ("segment_algorithm_type", description.algorithm_type.value),
                )
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise InputError(path, f"segment description unreadable: {exc}") from exc
            names[number] = self.label_name(label)
            refs[number] = (names[number], pairs)
        largest = float(seg.get("MaximumFractionalValue", 1) or 1)
        painted: set[int] = set()
        for index, frame in enumerate(pydicom.pixels.iter_pixels(seg)):
            k = self.frame_slice(seg, index, series, path)
            if kind == "LABELMAP":
                masks = {int(n): frame == n for n in np.unique(frame) if n}
            else:
                identification = functional_group(seg, index, "SegmentIdentificationSequence")
                if identification is None:
                    raise InputError(path, f"frame {index + 1} names no segment")
                number = int(identification.ReferencedSegmentNumber)
                threshold = MASK_THRESHOLD * largest if kind == "FRACTIONAL" else 0
                masks = {number: frame > threshold}
            for number, mask in masks.items():
                if number not in names:
                    raise InputError(
                        path, f"frame {index + 1} holds segment {number}, which is not described"
                    )
                if names[number] is None or not mask.any():
                    continue
                labels.paint(names[number], (k,), mask)
                painted.add(number)
        out: dict[str, list[tuple[str, str]]] = {}
        for number in sorted(painted):
            name, pairs = refs[number]
            out.setdefault(name, []).extend(pairs)
        return {name: tuple(pairs) for name, pairs in out.items()}

    @staticmethod
    def frame_slice(seg: Any, index: int, series: dicom.Series, path) -> int:
        """The series slice of one SEG frame: by its source instance, else by its position."""
        source = None
        derivation = functional_group(seg, index, "DerivationImageSequence")
        named = [
            dicom.text(item, "ReferencedSOPInstanceUID")
            for item in (derivation.get("SourceImageSequence", []) if derivation else [])
        ]
        if named:
            hits = [series.slice_of_sop[uid] for uid in named if uid in series.slice_of_sop]
            if not hits:
                raise InputError(
                    path,
                    f"frame {index + 1} references SOP instance {named[0]}, which is not a slice "
                    f"of series {series.uid}",
                )
            source = hits[0]
        position = functional_group(seg, index, "PlanePositionSequence")
        orientation = functional_group(seg, index, "PlaneOrientationSequence")
        placed = None
        if position is not None and orientation is not None:
            placed = series.geometry.slice_at(
                [float(v) for v in position.ImagePositionPatient],
                [float(v) for v in orientation.ImageOrientationPatient],
            )
        if source is not None and placed is not None and placed != source:
            raise InputError(
                path,
                f"frame {index + 1} references slice {source} ({series.files[source].name}) but "
                f"its plane position lies on slice {placed} ({series.files[placed].name})",
            )
        if source is None and placed is None:
            where = list(position.ImagePositionPatient) if position is not None else "none"
            raise InputError(
                path,
                f"frame {index + 1} references no source image and its plane position ({where}) "
                f"is on no slice of series {series.uid}",
            )
        return source if source is not None else placed
