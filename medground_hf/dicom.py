"""DICOM image series as volumes: find the studies, sort and check the slices, read the voxels.

Conventions (see ``docs/dicom.md``):

* **Sorting**: slices are ordered by their position along the slice normal (the cross product of
  the two ImageOrientationPatient cosines), never by file name or InstanceNumber.
* **Checks** before any pixel is decoded, each naming a file: one orientation, grid and pixel
  spacing per series (else "mixed series"); no two slices at one position; steps between
  slices equal within :data:`STEP_TOLERANCE` (a step of 1.5 or more times the usual one is
  "missing slices", anything else uneven is "inconsistent spacing"); single-frame images only
  (multi-frame enhanced CT/MR is refused); a decoder for the transfer syntax.
* **Values**: RescaleSlope/RescaleIntercept of each slice applied (CT in HU), as float32.
* **Array and space**: a series is an array ``[column, row, slice]`` with an affine from
  ImageOrientationPatient, ImagePositionPatient and PixelSpacing. DICOM patient space is LPS+
  (x to the patient's left, y posterior); the project's volumes, like NIfTI, are RAS+. The one
  conversion is :meth:`SeriesGeometry.ras_affine`; the volume pipeline only ever sees that.
  RT contour points, which are LPS as well, are mapped to voxels with the LPS affine of the same
  geometry (:meth:`SeriesGeometry.to_voxels`), so they never pass through a second conversion.

pydicom is an optional dependency (the ``dicom`` extra): :func:`pydicom_module` says how to
install it when it is missing.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .errors import InputError, MissingExtra

logger = logging.getLogger("medground_hf")

DICOM_EXTRA = ("pydicom", "highdicom")
# Image Orientation (Patient) cosines and in-plane spacings agree within these.
ORIENTATION_ATOL = 1e-4
SPACING_RTOL = 1e-3
# Slice steps may differ from the usual (median) step by this share (rounded positions) ...
STEP_TOLERANCE = 0.05
# ... a step this many times the usual one means slices are missing.
GAP_FACTOR = 1.5
# Slices this close (mm) along the normal are at one position: duplicates or two series mixed.
SAME_POSITION_MM = 1e-3
# In-plane drift of slice origins off their line, as a share of the pixel spacing.
ORIGIN_TOLERANCE = 0.1
# Frames and contours lie on a slice when within this share of a slice step of it.
ON_SLICE_TOLERANCE = 0.1

IMAGE_KEYWORDS = ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows")
SCAN_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "PatientID",
    "FrameOfReferenceUID",
    "Rows",
    # what the builders read about their objects: segments, ROIs and the series they reference
    "SegmentSequence",
    "ReferencedSeriesSequence",
    "StructureSetROISequence",
    "ReferencedFrameOfReferenceSequence",
]
# Large elements (pixel data, RT contour data) stay on disk until used.
DEFER_SIZE = "64 KB"
# pydicom names decoder packages by their import names; pip knows some under another name.
PIP_NAMES = {"gdcm": "python-gdcm"}


def pydicom_module(what: str = "DICOM input") -> ModuleType:
    """``pydicom``, or a one-line error saying which extra to install."""
    return optional_module("pydicom", what)


def optional_module(name: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingExtra(what, "dicom", DICOM_EXTRA) from exc


def text(ds: Any, keyword: str, default: str = "") -> str:
    """A DICOM attribute as a stripped string ('' when absent or empty)."""
    value = getattr(ds, keyword, None)
    return default if value is None else str(value).strip()


# ---- finding files ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DicomFile:
    """What the scan learns of one DICOM file; ``header`` only for non-image objects (SEG,
    RTSTRUCT: the descriptive sequences the builders read, without pixels or contours)."""

    path: Path
    sop_class: str
    sop_uid: str
    study_uid: str
    series_uid: str
    modality: str
    patient_id: str
    frame_of_reference: str
    is_image: bool
    header: Any = None


def read_header(path: Path) -> DicomFile | None:
    """The scan's view of one file, or None when it is not a DICOM file."""
    pydicom = pydicom_module()
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=SCAN_TAGS)
    except pydicom.errors.InvalidDicomError:
        return None
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(path, f"unreadable DICOM file: {exc}") from exc
    missing = [
        k for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID") if k not in ds
    ]
    if missing:
        if text(ds, "SOPClassUID") == pydicom.uid.MediaStorageDirectoryStorage:
            return None  # a DICOMDIR index, not an instance
        raise InputError(path, f"DICOM file without {', '.join(missing)} (truncated?)")
    is_image = "Rows" in ds and text(ds, "Modality").upper() not in ("SEG", "RTSTRUCT")
    return DicomFile(
        path=path,
        sop_class=text(ds, "SOPClassUID"),
        sop_uid=text(ds, "SOPInstanceUID"),
        study_uid=text(ds, "StudyInstanceUID"),
        series_uid=text(ds, "SeriesInstanceUID"),
        modality=text(ds, "Modality").upper(),
        patient_id=text(ds, "PatientID"),
        frame_of_reference=text(ds, "FrameOfReferenceUID"),
        is_image=is_image,
        header=None if is_image else ds,
    )


def scan(root: Path, unreadable: Callable[[InputError], None] | None = None) -> list[DicomFile]:
    """Every DICOM file under ``root`` (any nesting), headers only; other files are logged.

    A file that looks like DICOM but cannot be read raises, or, given ``unreadable``, is handed
    to it (to report and go on: its study then fails on its own, e.g. with a missing slice).
    """
    found: list[DicomFile] = []
    other = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            try:
                header = read_header(Path(folder) / name)
            except InputError as error:
                if unreadable is None:
                    raise
                unreadable(error)
                continue
            if header is None:
                other += 1
            else:
                found.append(header)
    if other:
        logger.info("%s: %d file(s) are not DICOM instances and were not read", root, other)
    return found


@dataclass
class Study:
    """The DICOM files of one study (StudyInstanceUID), wherever they lie under the data dir."""

    uid: str
    files: list[DicomFile]

    @cached_property
    def folder(self) -> Path:
        """The deepest folder holding every file of the study."""
        return Path(os.path.commonpath([str(f.path.parent) for f in self.files]))

    @property
    def patient_id(self) -> str:
        return next((f.patient_id for f in self.files if f.patient_id), "")

    def series(self, uid: str) -> list[DicomFile]:
        return [f for f in self.files if f.series_uid == uid and f.is_image]

    def image_series(self) -> dict[str, list[DicomFile]]:
        out: dict[str, list[DicomFile]] = {}
        for f in self.files:
            if f.is_image:
                out.setdefault(f.series_uid, []).append(f)
        return out

    def objects(self, modality: str) -> list[DicomFile]:
        """The study's non-image objects of one modality (``SEG``, ``RTSTRUCT``)."""
        return [f for f in self.files if f.modality == modality and not f.is_image]


def studies(files: Iterable[DicomFile]) -> list[Study]:
    """Files grouped by StudyInstanceUID, in the order of their first file."""
    grouped: dict[str, list[DicomFile]] = {}
    for f in files:
        grouped.setdefault(f.study_uid, []).append(f)
    return [Study(uid, fs) for uid, fs in grouped.items()]


# ---- geometry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesGeometry:
    """Where the voxels ``[column, row, slice]`` of a sorted series lie in patient space."""

    rows: int
    columns: int
    row_cosine: np.ndarray  # direction of increasing column index (LPS)
    column_cosine: np.ndarray  # direction of increasing row index (LPS)
    pixel_spacing: tuple[float, float]  # (between rows, between columns) in mm
    origin: np.ndarray  # ImagePositionPatient of the first slice (LPS)
    step: np.ndarray  # from one slice's origin to the next (LPS mm)
    count: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.columns, self.rows, self.count

    @cached_property
    def lps_affine(self) -> np.ndarray:
        affine = np.eye(4)
        affine[:3, 0] = self.row_cosine * self.pixel_spacing[1]
        affine[:3, 1] = self.column_cosine * self.pixel_spacing[0]
        affine[:3, 2] = self.step
        affine[:3, 3] = self.origin
        return affine

    @cached_property
    def ras_affine(self) -> np.ndarray:
        """The affine in RAS+ world coordinates: DICOM's LPS with x and y negated.

        The only place the project converts LPS to RAS (see the module docstring).
        """
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.lps_affine

    @cached_property
    def voxels_from_lps(self) -> np.ndarray:
        return np.linalg.inv(self.lps_affine)

    def to_voxels(self, points_lps: np.ndarray) -> np.ndarray:
        """Voxel coordinates ``(column, row, slice)`` of LPS points, shape (N, 3)."""
        inverse = self.voxels_from_lps
        return np.asarray(points_lps, dtype=np.float64) @ inverse[:3, :3].T + inverse[:3, 3]

    def slice_at(self, position: Sequence[float], orientation: Sequence[float]) -> int | None:
        """The slice whose origin is ``position`` with the series' orientation, else None."""
        cosines = np.asarray(orientation, dtype=np.float64)
        own = np.concatenate([self.row_cosine, self.column_cosine])
        if cosines.shape != (6,) or not np.allclose(cosines, own, atol=ORIENTATION_ATOL):
            return None
        col, row, index = self.to_voxels(np.asarray(position, dtype=np.float64)[None])[0]
        k = int(round(index))
        on_grid = abs(col) < ON_SLICE_TOLERANCE and abs(row) < ON_SLICE_TOLERANCE
        if on_grid and abs(index - k) < ON_SLICE_TOLERANCE and 0 <= k < self.count:
            return k
        return None


def _floats(ds: Any, keyword: str, count: int, path: Path) -> np.ndarray:
    value = getattr(ds, keyword, None)
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"{keyword} missing or not numeric: {value!r}") from exc
    if out.shape != (count,) or not np.all(np.isfinite(out)):
        raise InputError(path, f"{keyword} must hold {count} numbers, got {value!r}")
    return out


def _mixed(path: Path, other: Path, what: str, mine: object, theirs: object) -> InputError:
    return InputError(
        path,
        f"mixed series: {what} {mine} here but {theirs} in {other.name} of the same series "
        "(two series under one SeriesInstanceUID, or files copied in from another series)",
    )


def series_geometry(
    headers: Sequence[tuple[Path, Any]],
) -> tuple[SeriesGeometry, list[int]]:
    """Check the slices of one series and sort them along the normal; returns the geometry and
    the order (indices into ``headers``). Every problem names a file."""
    first_path, first = headers[0]
    for path, ds in headers:
        missing = [k for k in (*IMAGE_KEYWORDS, "Columns") if k not in ds]
        if missing:
            raise InputError(path, f"not a cross-sectional slice: no {', '.join(missing)}")
    orientation = _floats(first, "ImageOrientationPatient", 6, first_path)
    spacing = _floats(first, "PixelSpacing", 2, first_path)
    grid = (int(first.Rows), int(first.Columns))
    positions = np.empty((len(headers), 3))
    for n, (path, ds) in enumerate(headers):
        own = _floats(ds, "ImageOrientationPatient", 6, path)
        if not np.allclose(own, orientation, atol=ORIENTATION_ATOL):
            raise _mixed(path, first_path, "orientation", own.round(4), orientation.round(4))
        if (int(ds.Rows), int(ds.Columns)) != grid:
            raise _mixed(path, first_path, "grid", (int(ds.Rows), int(ds.Columns)), grid)
        own_spacing = _floats(ds, "PixelSpacing", 2, path)
        if not np.allclose(own_spacing, spacing, rtol=SPACING_RTOL, atol=0):
            raise InputError(
                path,
                f"inconsistent spacing: pixel spacing {own_spacing.tolist()} here but "
                f"{spacing.tolist()} in {first_path.name} of the same series",
            )
        positions[n] = _floats(ds, "ImagePositionPatient", 3, path)
    if np.any(spacing <= 0):
        raise InputError(first_path, f"PixelSpacing must be positive, got {spacing.tolist()}")
    row_cosine, column_cosine = orientation[:3], orientation[3:]
    if not (
        np.isclose(np.linalg.norm(row_cosine), 1, atol=1e-3)
        and np.isclose(np.linalg.norm(column_cosine), 1, atol=1e-3)
        and abs(float(row_cosine @ column_cosine)) < 1e-3
    ):
        raise InputError(
            first_path,
            f"ImageOrientationPatient {orientation.tolist()} is not two unit vectors "
            "at right angles",
        )
    normal = np.cross(row_cosine, column_cosine)
    depth = positions @ normal
    order = [int(i) for i in np.argsort(depth, kind="stable")]
    paths = [headers[i][0] for i in order]
    depth = depth[order]
    positions = positions[order]
    steps = np.diff(depth)
    if steps.size:
        usual = float(np.median(steps))
        checks = (
            (
                steps < SAME_POSITION_MM,
                lambda i: (
                    f"mixed series: at the same position ({depth[i]:.3f} mm along the "
                    f"slice normal) as {paths[i].name}: a duplicate file, or two acquisitions "
                    "in one series"
                ),
            ),
            (
                steps >= GAP_FACTOR * usual,
                lambda i: (
                    f"missing slices: {steps[i]:.3g} mm from {paths[i].name} to this slice "
                    f"where the series steps {usual:.3g} mm (about {round(steps[i] / usual) - 1} "
                    "slice(s) missing)"
                ),
            ),
            (
                np.abs(steps - usual) > STEP_TOLERANCE * usual,
                lambda i: (
                    f"inconsistent spacing: {steps[i]:.4g} mm from {paths[i].name} to this "
                    f"slice where the series steps {usual:.4g} mm"
                ),
            ),
        )
        for bad, problem in checks:  # in this order: a duplicate is no gap, a gap no unevenness
            hits = np.flatnonzero(bad)
            if hits.size:
                raise InputError(paths[int(hits[0]) + 1], problem(int(hits[0])))
        step = (positions[-1] - positions[0]) / (len(positions) - 1)
        drift = positions - (positions[0] + np.arange(len(positions))[:, None] * step)
        off = np.abs(drift).max(axis=1)
        worst = int(np.argmax(off))
        if off[worst] > ORIGIN_TOLERANCE * float(spacing.min()):
            raise InputError(
                paths[worst],
                f"mixed series: slice origin {off[worst]:.3g} mm off the line of the other "
                "slices' origins",
            )
    else:
        thickness = float(getattr(first, "SpacingBetweenSlices", 0) or 0) or float(
            getattr(first, "SliceThickness", 0) or 0
        )
        if thickness <= 0:
            raise InputError(first_path, "a one-slice series without SliceThickness")
        step = normal * thickness
    geometry = SeriesGeometry(
        rows=grid[0],
        columns=grid[1],
        row_cosine=row_cosine,
        column_cosine=column_cosine,
        pixel_spacing=(float(spacing[0]), float(spacing[1])),
        origin=positions[0],
        step=step,
        count=len(headers),
    )
    return geometry, order


# ---- pixels -----------------------------------------------------------------------------------
def _decoder_packages(missing: Iterable[str]) -> str:
    """pydicom's "pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1" lines as
    pip arguments: ``pip install pylibjpeg pylibjpeg-libjpeg`` (or ...)."""
    options = []
    for line in missing:
        wanted = re.findall(r"([A-Za-z][\w.-]*?)(?:[<>=!~]=?[\d.]+)", line.partition("requires")[2])
        if wanted:
            options.append("pip install " + " ".join(PIP_NAMES.get(w, w) for w in wanted))
    return " or ".join(options) or "a pydicom pixel data plugin"


def check_decodable(path: Path, ds: Any) -> None:
    """A compressed transfer syntax needs a decoder plugin: say which package to add."""
    pydicom = pydicom_module()
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        return
    try:
        decoder = pydicom.pixels.get_decoder(syntax)
    except NotImplementedError as exc:
        raise InputError(path, f"no pixel decoder exists for {syntax.name} ({syntax})") from exc
    if not decoder.is_available:
        raise InputError(
            path,
            f"pixel data is compressed as {syntax.name} ({syntax}) and no decoder for it is "
            f"installed: {_decoder_packages(decoder.missing_dependencies)}",
        )


def check_single_frame(path: Path, ds: Any) -> None:
    """Enhanced (multi-frame) CT/MR keep a whole series in one file: not read as a series."""
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    sop_class = getattr(ds, "SOPClassUID", None)
    name = getattr(sop_class, "name", str(sop_class))
    if frames > 1 or "Enhanced" in name:
        raise InputError(
            path,
            f"multi-frame {name} ({frames} frames) is not supported: export the series as "
            "single-frame CT/MR images (one file per slice)",
        )


@dataclass
class Series:
    """One image series read as a volume ``[column, row, slice]`` (values rescaled)."""

    uid: str
    modality: str
    volume: np.ndarray
    geometry: SeriesGeometry
    files: list[Path]  # sorted along the slice normal
    sop_uids: list[str]  # same order

    @cached_property
    def slice_of_sop(self) -> dict[str, int]:
        return {uid: k for k, uid in enumerate(self.sop_uids)}


def read_dataset(path: Path, **options: Any) -> Any:
    """A whole DICOM file (``pydicom.dcmread`` options, e.g. ``defer_size``); problems name it."""
    pydicom = pydicom_module()
    try:
        return pydicom.dcmread(path, **options)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise InputError(path, f"unreadable DICOM file: {exc}") from exc


def read_series(uid: str, paths: Sequence[Path]) -> Series:
    """Read, check and sort one series; pixels are decoded once, after every check passed."""
    headers = []
    for path in paths:
        ds = read_dataset(path, defer_size=DEFER_SIZE)
        check_single_frame(path, ds)
        headers.append((path, ds))
    geometry, order = series_geometry(headers)
    modality = text(headers[0][1], "Modality").upper()
    sop_uids = [text(headers[i][1], "SOPInstanceUID") for i in order]
    # slices as decoded, (slice, row, column); its transpose is the [column, row, slice] volume,
    # column-fastest in memory like a NIfTI array, and each slice is one contiguous write
    slabs = np.empty((geometry.count, geometry.rows, geometry.columns), dtype=np.float32)
    for k, index in enumerate(order):
        path, ds = headers[index]
        photometric = text(ds, "PhotometricInterpretation")
        if photometric != "MONOCHROME2" or int(getattr(ds, "SamplesPerPixel", 1)) != 1:
            raise InputError(
                path,
                f"photometric interpretation {photometric!r}: a greyscale (MONOCHROME2) "
                "CT/MR/PET series is expected",
            )
        check_decodable(path, ds)
        try:
            pixels = ds.pixel_array
        except Exception as exc:  # whatever the decoder raises, it is this file's problem
            raise InputError(path, f"cannot decode pixel data: {exc}") from exc
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        slab = slabs[k]
        slab[...] = pixels
        if slope != 1:
            slab *= np.float32(slope)
        if intercept:
            slab += np.float32(intercept)
        headers[index] = (path, None)  # the decoded file is not needed any more
    return Series(
        uid=uid,
        modality=modality,
        volume=slabs.transpose(2, 1, 0),
        geometry=geometry,
        files=[paths[i] for i in order],
        sop_uids=sop_uids,
    )
