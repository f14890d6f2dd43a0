"""DICOM sources end to end: the same case from NIfTI, from DICOM + SEG and from DICOM + RTSTRUCT
gives the same targets, in every acquisition orientation.

The DICOM files are written by the tests (``dicom_writer``): the BraTS sample case as an MR
series (z-scored FLAIR stored as rescaled integers), its label map and brain mask as a DICOM-SEG
(highdicom) and as an RT structure set, acquired axially and sagittally; a CT phantom in HU
(rescale slope/intercept) acquired axially and obliquely.
"""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

pytest.importorskip(
    "highdicom", reason="the dicom extra is not installed: pip install -e '.[dicom]'"
)

import dicom_writer as w  # noqa: E402
import pydicom  # noqa: E402
from built_rows import build_rows  # noqa: E402

from medground_hf.dicom import SeriesGeometry  # noqa: E402
from medground_hf.geometry import decode_rle  # noqa: E402

BRATS_CASE = "brats_2013_pat0001_1"  # tumour on the patient's right
BRATS_OPTIONS = {
    "every_k": 10,
    "min_area_px": 100,
    "single_region_labels": ["edema"],
    "context_labels": ["brain"],
    "modality": "MRI FLAIR",  # the series says MR; the NIfTI builder names the sequence
}
BRATS_SEGMENTS = {
    "necrosis": 1,
    "edema": 2,
    "non-enhancing tumour": 3,
    "enhancing tumour": 4,
}
CT_NAMES = {1: "liver", 2: "lesion", 3: "kidney"}
CT_OPTIONS = {"every_k": 3, "min_area_px": 20, "min_gap": 2, "min_size": 8}
# fields that say where a record comes from, not what it shows
PROVENANCE_FIELDS = (
    "id",
    "image_id",
    "source",
    "source_license",
    "case_id",
    "group_id",
    "split",
    "volume_id",
    "label_id",
    "label_display",
    "body_part",
    "provenance",
    "queries",
    "image",
)


def by_target(records: list[dict]) -> dict[tuple, dict]:
    return {(r["case_id"], r["slice_index"], r["label"], r["instance"]): r for r in records}


def pixels(row: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])), dtype=np.int16)


def assert_close(got, want, where: tuple) -> None:
    """Equal, numbers within float32 noise (visual statistics of grey levels 1 apart)."""
    if isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for key in want:
            assert_close(got[key], want[key], (*where, key))
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for n, (g, v) in enumerate(zip(got, want, strict=True)):
            assert_close(g, v, (*where, n))
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-3, abs=1e-3), where
    else:
        assert got == want, where


def assert_same_targets(nifti: list[dict], other: list[dict], case: str, *, box_px: int = 0):
    """Same slices, labels and instances; boxes within ``box_px``, the same patient side and
    display; with ``box_px == 0`` every cue is identical."""
    ref = {k[1:]: r for k, r in by_target(nifti).items()}
    got = {k[1:]: r for k, r in by_target(other).items() if k[0] == case}
    assert got.keys() == ref.keys()
    for key, r in ref.items():
        g = got[key]
        assert np.abs(np.array(g["bbox_xyxy"]) - r["bbox_xyxy"]).max() <= box_px, key
        assert g["spatial"]["patient_side"] == r["spatial"]["patient_side"], key
        assert g["spatial"]["display_convention"] == "radiological"
        assert np.abs(pixels(g) - pixels(r)).max() <= 1, key  # rescaled integers vs floats
        if box_px == 0:
            assert g["mask"] == r["mask"], key
            shown = {k: v for k, v in r.items() if k not in PROVENANCE_FIELDS}
            assert_close({k: g[k] for k in shown}, shown, key)


# ---- the BraTS case -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def brats_nifti(brats_dir: Path, tmp_path_factory) -> list[dict]:
    """The NIfTI build of one BraTS case (files symlinked, never copied), FLAIR only like the
    DICOM series (every label then stays on the FLAIR image)."""
    data = tmp_path_factory.mktemp("brats_one")
    (data / BRATS_CASE).mkdir()
    for f in (brats_dir / BRATS_CASE).iterdir():
        (data / BRATS_CASE / f.name).symlink_to(f)
    out = tmp_path_factory.mktemp("out") / "nifti"
    return build_rows("brats", data, out, modalities=["flair"])


@pytest.fixture(scope="module")
def brats_dicom(brats_dir: Path, tmp_path_factory) -> Path:
    """The same case as DICOM, acquired axially and sagittally: a FLAIR series, a SEG and an
    RTSTRUCT per study (folder names ``axial`` and ``sagittal`` are the case keys)."""
    folder = brats_dir / BRATS_CASE
    flair = nib.load(folder / "Flair_subtrMeanDivStd.nii.gz")
    labels = np.asarray(nib.load(folder / "OTMultiClass.nii.gz").dataobj)
    brain = np.asarray(nib.load(folder / "brainmask.nii.gz").dataobj) > 0.5
    data = np.asarray(flair.dataobj, dtype=np.float32)
    root = tmp_path_factory.mktemp("brats_dicom")
    for name, axcodes in (("axial", ("L", "P", "S")), ("sagittal", ("P", "I", "L"))):
        study = w.Study.new(f"pat0001-{name}")
        volume, affine = w.acquire(data, flair.affine, axcodes)
        label_map, _ = w.acquire(labels, flair.affine, axcodes)
        masks = {n: label_map == v for n, v in BRATS_SEGMENTS.items()}
        masks["brain"] = w.acquire(brain, flair.affine, axcodes)[0]
        scale = float(np.abs(volume).max()) / 32000  # z-scores as 16-bit integers
        series = w.write_series(root / name / "FLAIR", study, volume, affine, slope=scale)
        w.write_seg(root / name / "SEG" / "seg.dcm", series, masks)
        w.write_rtstruct(
            root / name / "RTSTRUCT" / "rt.dcm", study, series, masks, kinds={"brain": "ORGAN"}
        )
    return root


@pytest.fixture(scope="module")
def brats_seg(brats_dicom: Path, tmp_path_factory) -> list[dict]:
    return build_rows(
        "dicom_seg", brats_dicom, tmp_path_factory.mktemp("out") / "seg", **BRATS_OPTIONS
    )


@pytest.fixture(scope="module")
def brats_rt(brats_dicom: Path, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("out") / "rt"
    return build_rows("dicom_rtstruct", brats_dicom, out, **BRATS_OPTIONS)


@pytest.mark.parametrize("acquisition", ["axial", "sagittal"])
def test_seg_gives_the_nifti_targets(brats_nifti, brats_seg, acquisition):
    assert len(brats_nifti) > 20
    assert_same_targets(brats_nifti, brats_seg, acquisition)


@pytest.mark.parametrize("acquisition", ["axial", "sagittal"])
def test_rtstruct_gives_the_nifti_targets(brats_nifti, brats_rt, acquisition):
    assert_same_targets(brats_nifti, brats_rt, acquisition, box_px=1)
    ref = {k[1:]: r for k, r in by_target(brats_nifti).items()}
    for key, r in by_target(brats_rt).items():
        if key[0] == acquisition:  # contours traced between pixel centres rasterise back exactly
            assert decode_rle(r["mask"]).sum() == decode_rle(ref[key[1:]]["mask"]).sum()


def test_tumour_on_the_patients_right_is_on_the_image_left(brats_nifti, brats_seg, brats_rt):
    for records in (brats_nifti, brats_seg, brats_rt):
        tumour = [r for r in records if r["label"] == "necrosis"]
        assert tumour
        for r in tumour:
            assert r["spatial"]["patient_side"] == "right"
            assert r["centroid_xy"][0] < r["width"] / 2
            assert r["spatial"]["image_side"] == "left"


def test_dicom_records_say_where_each_target_comes_from(brats_seg, brats_rt):
    seg = next(r for r in brats_seg if r["label"] == "necrosis")
    refs = {p["key"]: p["value"] for p in seg["provenance"]["source_refs"]}
    assert refs["segment_label"] == "necrosis" and refs["segment_number"] == "1"
    assert refs["segmented_property_type"] == "SCT:6574001 Necrosis"
    assert refs["segmented_property_category"] == "SCT:85756007 Tissue"
    assert refs["segment_algorithm_type"] == "MANUAL"
    assert refs["series_instance_uid"] and refs["seg_sop_instance_uid"]
    assert seg["modality"] == "MRI FLAIR" and seg["num_slices"] == 155
    assert seg["provenance"]["source_files"][-1].endswith("seg.dcm")
    assert "brain" in seg["relations"]["inside"]  # the brain segment is context, not a target
    rt = next(r for r in brats_rt if r["label"] == "non_enhancing_tumour")
    refs = {p["key"]: p["value"] for p in rt["provenance"]["source_refs"]}
    assert refs["roi_name"] == "non-enhancing tumour" and refs["rt_roi_interpreted_type"] == "ORGAN"
    assert rt["label_display"] == "non-enhancing tumour"


def test_one_patient_one_split(brats_seg):
    """Cases are grouped by PatientID: two studies of one patient never straddle splits."""
    assert {r["group_id"] for r in brats_seg} == {"pat0001-axial", "pat0001-sagittal"}


# ---- a CT phantom in HU -------------------------------------------------------------------------
def nifti_ct(root: Path, hu, labels, affine, **options) -> list[dict]:
    """The reference: a CT volume and its label map as NIfTI, built with ``nifti_labelmap``."""
    for sub, data in (("images", hu), ("labels", labels)):
        (root / "nifti" / sub).mkdir(parents=True)
        nib.save(nib.Nifti1Image(data, affine), root / "nifti" / sub / "ct.nii.gz")
    return build_rows(
        "nifti_labelmap",
        root / "nifti",
        root / "nifti-out",
        modality="CT",
        label_names=CT_NAMES,
        **{**CT_OPTIONS, **options},
    )


def ct_study(
    root: Path, hu, labels, affine, *, axcodes=("L", "P", "S"), rotate_deg=0.0, slope=1.0, **seg
):
    """The phantom as a CT series (stored as uint16, HU = slope * stored - 1024) with a SEG."""
    volume, acquired = w.acquire(hu, affine, axcodes, rotate_deg)
    label_map = w.acquire(labels, affine, axcodes)[0]
    study = w.Study.new("ct-patient")
    series = w.write_series(
        root / "CT",
        study,
        volume,
        acquired,
        modality="CT",
        slope=slope,
        intercept=-1024,
        dtype=np.uint16,
    )
    masks = {name: label_map == value for value, name in CT_NAMES.items()}
    w.write_seg(root / "SEG" / "seg.dcm", series, masks, **seg)
    return study, series, masks, acquired


@pytest.fixture(scope="module")
def phantom():
    return w.ct_phantom()


@pytest.fixture(scope="module")
def ct_nifti(phantom, tmp_path_factory) -> list[dict]:
    return nifti_ct(tmp_path_factory.mktemp("ct_nifti"), *phantom)


def test_ct_in_hounsfield_units_matches_nifti(phantom, ct_nifti, tmp_path):
    """Stored values 0..; slope 1 and intercept -1024 give HU, and the soft-tissue window."""
    hu, labels, affine = phantom
    ct_study(tmp_path / "data" / "ct", hu, labels, affine)
    got = build_rows("dicom_seg", tmp_path / "data", tmp_path / "out", **CT_OPTIONS)
    assert_same_targets(ct_nifti, got, "ct")
    assert {r["label"] for r in got} == {"liver", "lesion", "kidney"}
    assert all(r["modality"] == "CT" for r in got)
    liver = [r for r in got if r["label"] == "liver"]
    assert liver and all(r["spatial"]["patient_side"] == "right" for r in liver)
    assert all(r["centroid_xy"][0] < r["width"] / 2 for r in liver)


def test_rescale_slope_is_applied(phantom, ct_nifti, tmp_path):
    hu, labels, affine = phantom
    even = hu - (hu + 1024) % 2  # representable with slope 2
    study_dir = tmp_path / "data" / "ct"
    ct_study(study_dir, even, labels, affine, slope=2.0)
    stored = pydicom.dcmread(next((study_dir / "CT").iterdir()))
    assert float(stored.RescaleSlope) == 2.0
    got = build_rows("dicom_seg", tmp_path / "data", tmp_path / "out", **CT_OPTIONS)
    ref = nifti_ct(tmp_path, even, labels, affine)
    assert_same_targets(ref, got, "ct")


def test_oblique_acquisition_matches_nifti_of_the_same_grid(phantom, tmp_path):
    """A grid tilted 12 degrees: the NIfTI of that grid and its DICOM give the same slices."""
    hu, labels, affine = phantom
    volume, tilted = w.acquire(hu, affine, ("L", "P", "S"), rotate_deg=12)
    label_map = w.acquire(labels, affine, ("L", "P", "S"))[0]
    ref = nifti_ct(tmp_path, volume, label_map, tilted)
    ct_study(tmp_path / "data" / "ct", hu, labels, affine, rotate_deg=12)
    got = build_rows("dicom_seg", tmp_path / "data", tmp_path / "out", **CT_OPTIONS)
    assert_same_targets(ref, got, "ct")
    geometry_cosines = pydicom.dcmread(next((tmp_path / "data" / "ct" / "CT").iterdir()))
    assert not np.allclose(
        np.abs([float(v) for v in geometry_cosines.ImageOrientationPatient]), [1, 0, 0, 0, 1, 0]
    )


def test_overlapping_segments_each_keep_their_voxels(phantom, tmp_path):
    """A liver segment that includes the lesion, and the lesion: both targets, one inside the
    other, on the same slices."""
    hu, labels, affine = phantom
    volume, acquired = w.acquire(hu, affine, ("L", "P", "S"))
    study = w.Study.new()
    series = w.write_series(
        tmp_path / "data" / "ct" / "CT",
        study,
        volume,
        acquired,
        modality="CT",
        intercept=-1024,
        dtype=np.uint16,
    )
    masks = {"liver": np.isin(labels, (1, 2)), "lesion": labels == 2}
    w.write_seg(tmp_path / "data" / "ct" / "seg.dcm", series, masks)
    got = build_rows("dicom_seg", tmp_path / "data", tmp_path / "out", **CT_OPTIONS)
    by_slice: dict[int, dict[str, dict]] = {}
    for r in got:
        by_slice.setdefault(r["slice_index"], {})[r["label"]] = r
    both = [s for s in by_slice.values() if {"liver", "lesion"} <= set(s)]
    assert both
    for s in both:
        liver, lesion = decode_rle(s["liver"]["mask"]), decode_rle(s["lesion"]["mask"])
        assert (liver & lesion).sum() == lesion.sum()  # the lesion's voxels are the liver's too
        assert "lesion" in s["liver"]["relations"]["contains"]
        assert "liver" in s["lesion"]["relations"]["inside"]


@pytest.mark.parametrize("kind", ["FRACTIONAL", "LABELMAP"])
def test_fractional_and_labelmap_segs_read_like_binary(phantom, tmp_path, kind):
    """Fractional frames count where the fraction exceeds one half (0.4 of the kidney in the
    liver segment is not liver); a label-map SEG holds segment numbers."""
    hu, labels, affine = phantom
    if kind == "FRACTIONAL":
        fractions = {name: (labels == v) * 0.9 for v, name in CT_NAMES.items()}
        fractions["liver"] = np.where(labels == 3, 0.4, fractions["liver"])
        stored = {"fractional": fractions}
    else:
        stored = {"labelmap": True}
    ct_study(tmp_path / "kind" / "ct", hu, labels, affine, **stored)
    ct_study(tmp_path / "bin" / "ct", hu, labels, affine)
    seg = pydicom.dcmread(tmp_path / "kind" / "ct" / "SEG" / "seg.dcm", stop_before_pixels=True)
    assert seg.SegmentationType == kind
    got = build_rows("dicom_seg", tmp_path / "kind", tmp_path / "kout", **CT_OPTIONS)
    ref = build_rows("dicom_seg", tmp_path / "bin", tmp_path / "bout", **CT_OPTIONS)
    assert_same_targets(ref, got, "ct")


@pytest.mark.parametrize("axis", ["coronal", "sagittal"])
def test_every_slicing_axis_matches_nifti(phantom, tmp_path, axis):
    hu, labels, affine = phantom
    options = {**CT_OPTIONS, "axis": axis, "max_slices": 6}
    ref = nifti_ct(tmp_path, hu, labels, affine, **options)
    ct_study(tmp_path / "data" / "ct", hu, labels, affine, axcodes=("P", "I", "L"))
    got = build_rows("dicom_seg", tmp_path / "data", tmp_path / "out", **options)
    assert {r["slice_axis"] for r in got} == {axis}
    assert_same_targets(ref, got, "ct")


def test_rtstruct_label_map_merges_rois(phantom, tmp_path):
    hu, labels, affine = phantom
    study, series, masks, _ = ct_study(tmp_path / "data" / "ct", hu, labels, affine)
    w.write_rtstruct(tmp_path / "data" / "ct" / "RT" / "rt.dcm", study, series, masks)
    got = build_rows(
        "dicom_rtstruct",
        tmp_path / "data",
        tmp_path / "out",
        label_map={"liver": "organ", "kidney": "organ", "lesion": None},
        **CT_OPTIONS,
    )
    assert {r["label"] for r in got} == {"organ"}
    roi_names = {
        p["value"] for r in got for p in r["provenance"]["source_refs"] if p["key"] == "roi_name"
    }
    assert roi_names <= {"liver", "kidney"} and "liver" in roi_names
    sides = {r["spatial"]["patient_side"] for r in got}
    assert sides == {"right", "left"}  # the liver on the right, the kidney on the left


def test_seg_frames_without_source_references_are_placed_by_position(phantom, tmp_path):
    hu, labels, affine = phantom
    ct_study(tmp_path / "ref" / "ct", hu, labels, affine, axcodes=("P", "I", "L"))
    ref = build_rows("dicom_seg", tmp_path / "ref", tmp_path / "rout", **CT_OPTIONS)
    study = tmp_path / "pos" / "ct"
    ct_study(study, hu, labels, affine, axcodes=("P", "I", "L"))
    path = study / "SEG" / "seg.dcm"
    seg = pydicom.dcmread(path)
    for frame in seg.PerFrameFunctionalGroupsSequence:
        del frame.DerivationImageSequence
    seg.save_as(path)
    got = build_rows("dicom_seg", tmp_path / "pos", tmp_path / "pout", **CT_OPTIONS)
    assert_same_targets(ref, got, "ct")


def test_label_map_renames_merges_and_leaves_out(phantom, tmp_path):
    hu, labels, affine = phantom
    ct_study(tmp_path / "data" / "ct", hu, labels, affine)
    got = build_rows(
        "dicom_seg",
        tmp_path / "data",
        tmp_path / "out",
        label_map={"liver": "Hepatic tissue", "Lesion": "Hepatic tissue", "kidney": None},
        single_region_labels=["hepatic tissue"],
        **CT_OPTIONS,
    )
    assert {r["label"] for r in got} == {"hepatic_tissue"}
    assert {r["label_display"] for r in got} == {"hepatic tissue"}  # humanised for a query
    assert all(r["num_candidates"] == 1 for r in got)
    refs = [p for p in got[0]["provenance"]["source_refs"] if p["key"] == "segment_label"]
    assert {p["value"] for p in refs} <= {"liver", "lesion"}


def test_rle_compressed_series_reads_the_same(phantom, ct_nifti, tmp_path):
    hu, labels, affine = phantom
    study_dir = tmp_path / "data" / "ct"
    ct_study(study_dir, hu, labels, affine)
    for path in (study_dir / "CT").iterdir():
        ds = pydicom.dcmread(path)
        ds.compress(pydicom.uid.RLELossless, generate_instance_uid=False)
        ds.save_as(path)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    got = build_rows("dicom_seg", tmp_path / "data", tmp_path / "out", **CT_OPTIONS)
    assert_same_targets(ct_nifti, got, "ct")


# ---- geometry -----------------------------------------------------------------------------------
def test_lps_becomes_ras_once():
    """An ordinary axial slice: columns run to the patient's left (LPS +x), rows posterior. The
    first voxel at LPS (-100, -120, 30) is RAS (100, 120, 30): the patient's right, anterior."""
    geometry = SeriesGeometry(
        rows=4,
        columns=5,
        row_cosine=np.array([1.0, 0, 0]),
        column_cosine=np.array([0, 1.0, 0]),
        pixel_spacing=(0.5, 0.7),
        origin=np.array([-100.0, -120.0, 30.0]),
        step=np.array([0, 0, 2.0]),
        count=3,
    )
    assert np.allclose(geometry.ras_affine @ [0, 0, 0, 1], [100, 120, 30, 1])
    assert np.allclose(geometry.ras_affine @ [1, 0, 0, 1], [99.3, 120, 30, 1])  # to the left
    assert np.allclose(geometry.ras_affine @ [0, 1, 0, 1], [100, 119.5, 30, 1])  # posterior
    assert np.allclose(geometry.to_voxels(np.array([[-100 + 1.4, -120 + 1.0, 34.0]])), [[2, 2, 2]])
    assert geometry.slice_at([-100, -120, 32], [1, 0, 0, 0, 1, 0]) == 1
    assert geometry.slice_at([-100, -120, 33], [1, 0, 0, 0, 1, 0]) is None  # between slices
    assert geometry.slice_at([-100, -120, 32], [0, 1, 0, 0, 0, -1]) is None  # other plane
