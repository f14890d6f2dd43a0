"""RT Structure Sets: ROI contours drawn on an image series in a treatment planning system.

ROIs become labels by their ROIName (renamed, merged or left out with ``label_map``; the body
contour is a good ``context_labels`` entry). Closed planar contours are rasterised on the slices
of the referenced series: a pixel belongs to an ROI when its centre lies inside its contours by
the even-odd rule (:func:`~medground_hf.geometry.even_odd_fill`), so a contour inside another
of the same ROI on the same slice is a hole. Point and open contours enclose no area: they are
counted in a warning, not drawn. A contour off the series' slice planes is refused, naming the ROI.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from medground_hf import dicom
from medground_hf.errors import InputError
from medground_hf.geometry import even_odd_fill
from medground_hf.overlaps import OverlapLabels

from .dicom_base import DicomBuilder, DicomConfig, Refs

logger = logging.getLogger("medground_hf")


@dataclass
class DicomRtstructConfig(DicomConfig):
    source_name: str = "dicom_rtstruct"
    source_title: str = "DICOM series with RT structure sets"


class DicomRtstruct(DicomBuilder):
    """DICOM image series with RTSTRUCT contours: one case per study and referenced series."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = DicomRtstructConfig
    BUILDER_CONFIGS = [DicomRtstructConfig(name="default", version=VERSION)]
    OBJECT_MODALITY = "RTSTRUCT"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point --data-dir at a folder holding your studies (one folder per study, any nesting) "
        "as exported from a planning system or archive: each image series as single-frame CT/MR "
        "files and the RTSTRUCT drawn on it. Needs pip install -e '.[dicom]'."
    )

    def structure_names(self, obj: dicom.DicomFile) -> list[str]:
        return [dicom.text(roi, "ROIName") for roi in obj.header.get("StructureSetROISequence", [])]

    def references(self, obj: dicom.DicomFile) -> tuple[set[str], set[str]]:
        series, frames = set(), set()
        for ref in obj.header.get("ReferencedFrameOfReferenceSequence", []):
            frames.add(dicom.text(ref, "FrameOfReferenceUID"))
            for study in ref.get("RTReferencedStudySequence", []):
                for s in study.get("RTReferencedSeriesSequence", []):
                    series.add(dicom.text(s, "SeriesInstanceUID"))
        for roi in obj.header.get("StructureSetROISequence", []):
            frames.add(dicom.text(roi, "ReferencedFrameOfReferenceUID"))
        return series - {""}, frames - {""}

    def paint(
        self, obj: dicom.DicomFile, series: dicom.Series, labels: OverlapLabels
    ) -> dict[str, Refs]:
        path = obj.path
        ds = dicom.read_dataset(path)
        names = {
            int(r.ROINumber): dicom.text(r, "ROIName")
            for r in ds.get("StructureSetROISequence", [])
        }
        kinds = {
            int(o.ReferencedROINumber): dicom.text(o, "RTROIInterpretedType")
            for o in ds.get("RTROIObservationsSequence", [])
        }
        out: dict[str, list[tuple[str, str]]] = {}
        for roi in ds.get("ROIContourSequence", []):
            number = int(roi.ReferencedROINumber)
            if number not in names:
                raise InputError(
                    path, f"contours of ROI number {number}, which StructureSetROISequence lacks"
                )
            label = self.label_name(names[number])
            if label is None:
                continue
            slices = self.rasterise(roi, names[number], series, path)
            for k, mask in slices.items():
                labels.paint(label, (k,), mask)
            if any(mask.any() for mask in slices.values()):
                out.setdefault(label, []).extend(
                    [
                        ("rtstruct_sop_instance_uid", obj.sop_uid),
                        ("roi_number", str(number)),
                        ("roi_name", names[number]),
                        ("rt_roi_interpreted_type", kinds.get(number, "")),
                    ]
                )
        return {label: tuple(pairs) for label, pairs in out.items()}

    @staticmethod
    def rasterise(roi: Any, name: str, series: dicom.Series, path: Path) -> dict[int, np.ndarray]:
        """One ROI's closed contours as a (rows, columns) mask per slice, even-odd combined."""
        geometry = series.geometry
        polygons: dict[int, list[np.ndarray]] = {}
        not_areas = 0
        for n, contour in enumerate(roi.get("ContourSequence", []), start=1):
            if dicom.text(contour, "ContourGeometricType") != "CLOSED_PLANAR":
                not_areas += 1
                continue
            try:
                data = contour_points(contour)
            except ValueError as exc:
                raise InputError(path, f"ROI {name!r}, contour {n}: not numeric: {exc}") from exc
            if data.size < 9 or data.size % 3:
                raise InputError(
                    path, f"ROI {name!r}, contour {n}: {data.size} coordinates, not 3 per point"
                )
            voxels = geometry.to_voxels(data.reshape(-1, 3))
            k = int(round(float(voxels[:, 2].mean())))
            off = float(np.abs(voxels[:, 2] - k).max())
            if off > dicom.ON_SLICE_TOLERANCE or not 0 <= k < geometry.count:
                raise InputError(
                    path,
                    f"ROI {name!r}, contour {n} lies off the slices of series {series.uid} "
                    f"(slice coordinate {voxels[:, 2].min():.2f} to {voxels[:, 2].max():.2f} of "
                    f"0..{geometry.count - 1})",
                )
            polygons.setdefault(k, []).append(voxels[:, [1, 0]])  # (row, column)
        if not_areas:
            logger.warning(
                "%s: ROI %r: %d point or open contour(s) enclose no area and were not drawn",
                path,
                name,
                not_areas,
            )
        shape = (geometry.rows, geometry.columns)
        return {k: even_odd_fill(lines, shape) for k, lines in polygons.items()}


def contour_points(contour: Any) -> np.ndarray:
    """ContourData as floats, parsed from the raw bytes (pydicom's DS objects are slow)."""
    element = contour.get_item("ContourData")
    if element is None:
        return np.empty(0)
    value = element.value
    if isinstance(value, bytes):
        return np.array(value.split(b"\\"), dtype=np.float64) if value.strip() else np.empty(0)
    return np.array([float(v) for v in value], dtype=np.float64)
