"""Write volumes as DICOM the way scanners and planning systems store them, for tests and the
benchmark: an image series (one file per slice, rescaled integers), its label map as a DICOM-SEG
(highdicom) and as an RT structure set (contours traced with scikit-image).

A volume is given as an array with its NIfTI-style RAS affine; ``axcodes`` chooses the
acquisition: the array is reoriented so that its axes run along those patient directions (the
third is the slice direction), e.g. ``("L", "P", "S")`` an ordinary axial series and
``("P", "I", "L")`` a sagittal one. ``rotate_deg`` tilts the whole grid (an oblique acquisition).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    RTStructureSetStorage,
    generate_uid,
)
from skimage.measure import find_contours

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (its own inverse)
SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}
CODES = {
    "brain": codes.SCT.Brain,
    "edema": codes.SCT.Edema,
    "necrosis": codes.SCT.Necrosis,
    "liver": codes.SCT.Liver,
    "kidney": codes.SCT.Kidney,
}


def rotation(axis: int, degrees: float) -> np.ndarray:
    """A 4x4 rotation about world axis ``axis`` (0 x, 1 y, 2 z)."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    p, q = [i for i in range(3) if i != axis]
    out = np.eye(4)
    out[p, p], out[p, q], out[q, p], out[q, q] = c, -s, s, c
    return out


def acquire(
    data: np.ndarray, affine: np.ndarray, axcodes: Sequence[str], rotate_deg: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """The array reoriented to ``axcodes`` (no resampling) and its affine, optionally tilted."""
    transform = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(axcodes)))
    out = apply_orientation(data, transform)
    new_affine = affine @ inv_ornt_aff(transform, data.shape)
    if rotate_deg:
        centre = new_affine @ np.array([*(np.array(out.shape[:3]) - 1) / 2, 1.0])
        shift, back = np.eye(4), np.eye(4)
        shift[:3, 3], back[:3, 3] = -centre[:3], centre[:3]
        tilt = rotation(0, rotate_deg) @ rotation(2, rotate_deg / 2)
        new_affine = back @ tilt @ shift @ new_affine
    return out, new_affine


@dataclass
class Study:
    """UIDs shared by the objects of one written study."""

    study_uid: str
    patient_id: str
    frame_of_reference: str

    @classmethod
    def new(cls, patient_id: str = "patient-1") -> Study:
        return cls(generate_uid(), patient_id, generate_uid())


def _base(study: Study, sop_class: str, modality: str, series_uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.PatientID = study.patient_id
    ds.PatientName = "Test^Patient"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyID = "1"
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = "A1"
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = "medground tests"
    return ds


def write_series(
    folder: Path,
    study: Study,
    data: np.ndarray,
    affine: np.ndarray,
    *,
    modality: str = "MR",
    slope: float = 1.0,
    intercept: float = 0.0,
    dtype=np.int16,
    series_number: int = 1,
) -> list[Dataset]:
    """One file per slice along the array's third axis; ``affine`` is RAS (as NIfTI's).

    Stored values are ``round((value - intercept) / slope)`` of ``dtype``; the files are written
    in a shuffled order of names, so a reader that sorts by name or InstanceNumber goes wrong.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lps = LPS @ affine
    col_step, row_step = lps[:3, 0], lps[:3, 1]
    spacing = [float(np.linalg.norm(row_step)), float(np.linalg.norm(col_step))]
    orientation = [*(col_step / spacing[1]), *(row_step / spacing[0])]
    series_uid = generate_uid()
    stored = np.rint((data - intercept) / slope)
    info = np.iinfo(dtype)
    assert stored.min() >= info.min and stored.max() <= info.max, "values do not fit the type"
    stored = stored.astype(dtype)
    count = data.shape[2]
    names = np.random.default_rng(count).permutation(count)
    out = []
    for k in range(count):
        ds = _base(study, SOP_CLASSES[modality], modality, series_uid)
        ds.SeriesNumber = series_number
        ds.InstanceNumber = int(names[k]) + 1  # deliberately not the slice order
        ds.FrameOfReferenceUID = study.frame_of_reference
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [round(float(v), 8) for v in orientation]
        ds.ImagePositionPatient = [round(float(v), 6) for v in lps @ np.array([0, 0, k, 1.0])][:3]
        ds.PixelSpacing = [round(v, 8) for v in spacing]
        ds.SliceThickness = round(float(np.linalg.norm(lps[:3, 2])), 6)
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = int(np.issubdtype(dtype, np.signedinteger))
        ds.RescaleSlope = f"{slope:.10g}"
        ds.RescaleIntercept = f"{intercept:.10g}"
        if modality == "CT":
            ds.RescaleType = "HU"
            ds.KVP = "120"
        else:
            ds.ScanningSequence = "SE"
            ds.SequenceVariant = "NONE"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "2D"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        ds.save_as(folder / f"IM{int(names[k]):05d}.dcm", enforce_file_format=True)
        out.append(ds)
    return out


def _description(number: int, name: str) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name,
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=CODES.get(name, codes.SCT.Neoplasm),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )


def write_seg(
    path: Path,
    series: Sequence[Dataset],
    masks: Mapping[str, np.ndarray],
    *,
    fractional: Mapping[str, np.ndarray] | None = None,
    labelmap: bool = False,
) -> hd.seg.Segmentation:
    """A SEG over ``series`` with one segment per mask (masks ``[column, row, slice]`` on the
    series' grid; they may overlap). ``fractional`` gives values in [0, 1] instead (FRACTIONAL);
    ``labelmap`` stores non-overlapping masks as one label map (LABELMAP, segment numbers)."""
    arrays = fractional if fractional is not None else masks
    names = list(arrays)
    stack = np.stack([np.transpose(arrays[n], (2, 1, 0)) for n in names], axis=-1)
    if fractional is not None:
        kind, stack = hd.seg.SegmentationTypeValues.FRACTIONAL, stack.astype(np.float32)
    elif labelmap:
        assert stack.sum(axis=-1).max() <= 1, "a label map cannot hold overlapping masks"
        numbers = np.arange(1, len(names) + 1, dtype=np.uint8)
        kind, stack = hd.seg.SegmentationTypeValues.LABELMAP, (stack * numbers).sum(axis=-1)
        stack = stack.astype(np.uint8)
    else:
        kind, stack = hd.seg.SegmentationTypeValues.BINARY, stack.astype(bool)
    seg = hd.seg.Segmentation(
        source_images=list(series),
        pixel_array=stack,
        segmentation_type=kind,
        segment_descriptions=[_description(i + 1, n) for i, n in enumerate(names)],
        series_instance_uid=generate_uid(),
        series_number=100,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="medground tests",
        manufacturer_model_name="dicom_writer",
        software_versions="1",
        device_serial_number="1",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return seg


def slice_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed contours (row, column) around a 2D mask's pixels, holes included: the level-0.5
    lines between pixel centres, so a pixel-centre rasteriser gives the mask back."""
    padded = np.pad(mask.astype(np.float32), 1)
    return [c[:-1] - 1 for c in find_contours(padded, 0.5) if len(c) > 3]


def write_rtstruct(
    path: Path,
    study: Study,
    series: Sequence[Dataset],
    masks: Mapping[str, np.ndarray],
    *,
    kinds: Mapping[str, str] | None = None,
    reference_series: bool = True,
) -> Dataset:
    """An RT structure set with one ROI per mask, contours traced slice by slice."""
    first = series[0]
    series_uid = first.SeriesInstanceUID
    ds = _base(study, RTStructureSetStorage, "RTSTRUCT", generate_uid())
    ds.StructureSetLabel = "medground"
    ds.StructureSetDate, ds.StructureSetTime = "20240101", "120000"
    ref = Dataset()
    ref.FrameOfReferenceUID = study.frame_of_reference
    if reference_series:
        ref_study = Dataset()
        ref_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        ref_study.ReferencedSOPInstanceUID = study.study_uid
        ref_series = Dataset()
        ref_series.SeriesInstanceUID = series_uid
        ref_series.ContourImageSequence = []
        ref_study.RTReferencedSeriesSequence = [ref_series]
        ref.RTReferencedStudySequence = [ref_study]
    ds.ReferencedFrameOfReferenceSequence = [ref]
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    for number, (name, mask) in enumerate(masks.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        roi.ReferencedFrameOfReferenceUID = study.frame_of_reference
        roi.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(roi)
        contours = Dataset()
        contours.ReferencedROINumber = number
        contours.ROIDisplayColor = [255, 0, 0]
        contours.ContourSequence = []
        for k, image in enumerate(series):
            origin = np.array([float(v) for v in image.ImagePositionPatient])
            cosines = np.array([float(v) for v in image.ImageOrientationPatient])
            row_spacing, col_spacing = (float(v) for v in image.PixelSpacing)
            for line in slice_contours(mask[:, :, k].T):
                points = (
                    origin
                    + line[:, 1:2] * col_spacing * cosines[:3]
                    + line[:, 0:1] * row_spacing * cosines[3:]
                )
                contour = Dataset()
                contour.ContourGeometricType = "CLOSED_PLANAR"
                contour.NumberOfContourPoints = len(points)
                contour.ContourData = [f"{v:.4f}" for v in points.ravel()]
                item = Dataset()
                item.ReferencedSOPClassUID = image.SOPClassUID
                item.ReferencedSOPInstanceUID = image.SOPInstanceUID
                contour.ContourImageSequence = [item]
                contours.ContourSequence.append(contour)
        ds.ROIContourSequence.append(contours)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = (kinds or {}).get(name, "ORGAN")
        observation.ROIInterpreter = ""
        ds.RTROIObservationsSequence.append(observation)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds


def ct_phantom(
    shape: tuple[int, int, int] = (64, 56, 24),
    spacing: tuple[float, float, float] = (0.8, 0.8, 2.5),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An abdomen-like CT in HU, its label map and its RAS affine (axes L, P, S like a scanner's
    axial series): the liver (1) on the patient's right with a lesion (2) inside it, a kidney
    (3) on the left, a vertebra behind them, air around the body."""
    rng = np.random.default_rng(seed)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [spacing[0] * shape[0] / 2, spacing[1] * shape[1] / 2, -20.0]
    grid = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij", sparse=True)
    x, y, z = grid  # x grows towards the patient's left (axis L), y posterior

    def ellipsoid(cx, cy, cz, rx, ry, rz):
        return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1

    body = (x / 0.9) ** 2 + (y / 0.8) ** 2 <= 1
    liver = ellipsoid(-0.45, -0.1, 0.0, 0.35, 0.4, 0.8) & body
    lesion = ellipsoid(-0.5, -0.1, 0.1, 0.12, 0.14, 0.35)
    kidney = ellipsoid(0.5, 0.35, -0.1, 0.14, 0.2, 0.6)
    bone = ellipsoid(0.0, 0.55, 0.0, 0.12, 0.12, 2.0)
    hu = np.where(body, np.int16(40), np.int16(-1000)) + rng.integers(-15, 16, shape, np.int16)
    hu = np.where(liver, 60, hu)
    hu = np.where(lesion, 15, hu)
    hu = np.where(kidney, 30, hu)
    hu = np.where(bone, 700, hu).astype(np.int16)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[np.broadcast_to(liver, shape)] = 1
    labels[np.broadcast_to(lesion, shape)] = 2
    labels[np.broadcast_to(kidney, shape)] = 3
    return hu, labels, affine
