"""Bad DICOM input: each problem is one line naming the file; ``--on-error skip`` skips the study
and builds the others, and the counts add up. Studies are small CT phantoms written by the test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "highdicom", reason="the dicom extra is not installed: pip install -e '.[dicom]'"
)

import dicom_writer as w  # noqa: E402
import highdicom as hd  # noqa: E402
import pydicom  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from medground_hf.build import build  # noqa: E402
from medground_hf.cli import main  # noqa: E402
from medground_hf.errors import InputError  # noqa: E402
from medground_hf.folder import read_manifest  # noqa: E402

OPTIONS = {"min_area_px": 10, "min_size": 4}
NAMES = {1: "liver", 2: "lesion", 3: "kidney"}


def slice_file(folder: Path, ds) -> Path:
    """The file of one written slice (``write_series`` names files by InstanceNumber)."""
    return folder / f"IM{int(ds.InstanceNumber) - 1:05d}.dcm"


def study(root: Path, name: str, *, kind: str = "seg", patient: str | None = None):
    """A small CT study (series, SEG or RTSTRUCT) in ``root/name``; returns its parts."""
    hu, labels, affine = w.ct_phantom(shape=(32, 28, 10))
    uids = w.Study.new(patient or name)
    folder = root / name
    series = w.write_series(
        folder / "CT", uids, hu, affine, modality="CT", intercept=-1024, dtype=np.uint16
    )
    masks = {n: labels == v for v, n in NAMES.items()}
    if kind == "seg":
        w.write_seg(folder / "SEG" / "seg.dcm", series, masks)
    else:
        w.write_rtstruct(
            folder / "RT" / "rt.dcm", uids, series, masks, reference_series=kind == "rt"
        )
    return uids, series, folder, masks


def check(root: Path, tmp_path: Path, bad_file: Path, words: str, source: str = "dicom_seg"):
    """Raise names ``bad_file`` and ``words`` in one line; skip builds the good study only."""
    with pytest.raises(InputError) as raised:
        build(
            source, root, tmp_path / "raise", generator="none", derived_configs=[], options=OPTIONS
        )
    error = raised.value
    assert error.path == str(bad_file), str(error)
    assert words in error.problem, str(error)
    assert "\n" not in str(error)
    manifest = build(
        source,
        root,
        tmp_path / "skip",
        generator="none",
        derived_configs=[],
        on_error="skip",
        options=OPTIONS,
    )
    counts = manifest["counts"]
    assert (counts["items_read"], counts["items_built"], counts["items_skipped"]) == (2, 1, 1)
    skipped = [s for s in manifest["skipped"] if s["stage"] == "input"]
    assert skipped[0]["item"] == "bad" and skipped[0]["path"] == str(bad_file)
    return error


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A data dir holding one good study, ``good``; each test adds a broken one, ``bad``."""
    data = tmp_path / "data"
    study(data, "good")
    return data


def test_missing_slices(root, tmp_path):
    _, series, folder, _ = study(root, "bad")
    gone = slice_file(folder / "CT", series[4])
    gone.unlink()
    error = check(root, tmp_path, slice_file(folder / "CT", series[5]), "missing slices")
    assert slice_file(folder / "CT", series[3]).name in error.problem
    assert "about 1 slice(s) missing" in error.problem


def test_two_files_at_one_position_are_a_mixed_series(root, tmp_path):
    _, series, folder, _ = study(root, "bad")
    copy = pydicom.dcmread(slice_file(folder / "CT", series[2]))
    copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    copy.save_as(folder / "CT" / "ZZ_copy.dcm")
    error = check(root, tmp_path, folder / "CT" / "ZZ_copy.dcm", "mixed series")
    assert "same position" in error.problem


def test_a_slice_of_another_orientation_is_a_mixed_series(root, tmp_path):
    _, series, folder, _ = study(root, "bad")
    path = slice_file(folder / "CT", series[6])
    ds = pydicom.dcmread(path)
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(path)
    check(root, tmp_path, path, "mixed series: orientation")


def test_two_series_in_one_folder_without_a_reference(tmp_path):
    """An RT structure set that names no series, beside two image series of its frame of
    reference in one folder: which one it was drawn on cannot be told."""
    root = tmp_path / "data"
    study(root, "good", kind="rt")
    uids, _, folder, _ = study(root, "bad", kind="rt-unreferenced")
    hu, _, affine = w.ct_phantom(shape=(32, 28, 10), seed=1)
    w.write_series(
        tmp_path / "CT", uids, hu, affine, modality="CT", intercept=-1024, dtype=np.uint16
    )
    for path in (tmp_path / "CT").iterdir():
        path.rename(folder / "CT" / f"second-{path.name}")
    error = check(root, tmp_path, folder / "RT" / "rt.dcm", "mixed series", "dicom_rtstruct")
    assert "2 image series share its frame of reference" in error.problem


def test_seg_referencing_a_series_not_present(root, tmp_path):
    _, _, folder, _ = study(root, "bad")
    path = folder / "SEG" / "seg.dcm"
    seg = pydicom.dcmread(path)
    missing = generate_uid()
    seg.ReferencedSeriesSequence[0].SeriesInstanceUID = missing
    seg.save_as(path)
    check(root, tmp_path, path, f"references series {missing}, which is not among")


def test_frame_placed_on_two_slices_is_refused(root, tmp_path):
    """A frame whose source reference and plane position disagree."""
    _, series, folder, _ = study(root, "bad")
    path = folder / "SEG" / "seg.dcm"
    seg = pydicom.dcmread(path)
    frame = seg.PerFrameFunctionalGroupsSequence[0]
    named = frame.DerivationImageSequence[0].SourceImageSequence[0]
    here = next(
        k for k, s in enumerate(series) if s.SOPInstanceUID == named.ReferencedSOPInstanceUID
    )
    named.ReferencedSOPInstanceUID = series[(here + 3) % len(series)].SOPInstanceUID
    seg.save_as(path)
    check(root, tmp_path, path, "frame 1 references slice")


def test_uneven_slice_steps_are_inconsistent_spacing(root, tmp_path):
    _, series, folder, _ = study(root, "bad")
    path = slice_file(folder / "CT", series[5])
    ds = pydicom.dcmread(path)
    position = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [position[0], position[1], position[2] + 0.8]  # a third of a step
    ds.save_as(path)
    error = check(root, tmp_path, path, "inconsistent spacing")
    assert "2.5 mm" in error.problem


def test_other_pixel_spacing_is_inconsistent_spacing(root, tmp_path):
    _, series, folder, _ = study(root, "bad")
    path = slice_file(folder / "CT", series[3])
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = [0.9, 0.9]
    ds.save_as(path)
    check(root, tmp_path, path, "inconsistent spacing: pixel spacing")


def undecodable_syntax():
    """A compressed transfer syntax this environment has no decoder for."""
    from pydicom.pixels import get_decoder

    for uid in (
        pydicom.uid.JPEGLosslessSV1,
        pydicom.uid.HTJ2KLossless,
        pydicom.uid.JPEGLossless,
        pydicom.uid.JPEG2000Lossless,
    ):
        if not get_decoder(uid).is_available:
            return uid
    pytest.skip("every compressed transfer syntax has a decoder here")


def test_compressed_without_decoder_names_the_package(root, tmp_path):
    syntax = undecodable_syntax()
    _, series, folder, _ = study(root, "bad")
    path = slice_file(folder / "CT", series[2])
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([b"\xff\xd8 compressed bytes \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    error = check(root, tmp_path, path, "no decoder for it is installed")
    assert "pip install pylibjpeg" in error.problem


def test_multi_frame_enhanced_ct_is_refused(root, tmp_path):
    """A real Legacy Converted Enhanced CT (highdicom) with a SEG on it."""
    uids, series, folder, masks = study(root, "bad")
    shutil.rmtree(folder)
    hu, _, affine = w.ct_phantom(shape=(32, 28, 10))
    single = w.write_series(
        tmp_path / "single", uids, hu, affine, modality="CT", intercept=-1024, dtype=np.uint16
    )
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        single,
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    (folder / "CT").mkdir(parents=True)
    enhanced.save_as(folder / "CT" / "enhanced.dcm")
    seg = pydicom.dcmread(next((root / "good" / "SEG").iterdir()))
    seg.StudyInstanceUID = uids.study_uid
    seg.ReferencedSeriesSequence[0].SeriesInstanceUID = enhanced.SeriesInstanceUID
    (folder / "SEG").mkdir()
    seg.save_as(folder / "SEG" / "seg.dcm")
    error = check(root, tmp_path, folder / "CT" / "enhanced.dcm", "multi-frame")
    assert "Enhanced CT" in error.problem and "10 frames" in error.problem


def test_contour_off_the_slices_is_refused(tmp_path):
    root = tmp_path / "data"
    study(root, "good", kind="rt")
    _, _, folder, _ = study(root, "bad", kind="rt")
    path = folder / "RT" / "rt.dcm"
    rt = pydicom.dcmread(path)
    contour = rt.ROIContourSequence[0].ContourSequence[0]
    points = np.array([float(v) for v in contour.ContourData]).reshape(-1, 3)
    points[:, 2] += 1.1  # between two slices 2.5 mm apart
    contour.ContourData = [f"{v:.4f}" for v in points.ravel()]
    rt.save_as(path)
    error = check(
        root, tmp_path, path, "ROI 'liver', contour 1 lies off the slices", "dicom_rtstruct"
    )
    assert "slice coordinate" in error.problem


def test_cli_one_line_error_and_skip(root, tmp_path, capsys):
    _, series, folder, _ = study(root, "bad")
    slice_file(folder / "CT", series[4]).unlink()
    args = ["build", "dicom_seg", "--data-dir", str(root), "--generator", "none"]
    code = main([*args, "--out", str(tmp_path / "a"), "--configs", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("medground build: error: ") and "missing slices" in err[-1]
    code = main([*args, "--out", str(tmp_path / "b"), "--configs", "none", "--on-error", "skip"])
    out = capsys.readouterr().out
    assert code == 0
    assert "skipped bad:" in out and "missing slices" in out
    assert read_manifest(tmp_path / "b")["counts"]["items_built"] == 1


def test_missing_extra_is_one_line(tmp_path):
    """Without pydicom, building a DICOM source says which extra to install; listing the
    sources still works."""
    script = (
        "import sys; sys.modules['pydicom'] = None\n"
        "from medground_hf.cli import main\n"
        "assert main(['sources']) == 0\n"
        f"sys.exit(main(['build', 'dicom_seg', '--data-dir', {str(tmp_path)!r}, "
        f"'--out', {str(tmp_path / 'out')!r}]))\n"
    )
    (tmp_path / "a_file").write_text("x")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "dicom_seg" in done.stdout and "coco_instances" in done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("medground build: error: dicom_seg needs the optional 'dicom'")
    assert "pip install -e '.[dicom]'" in last


def test_unreadable_file_is_reported_and_its_study_fails_alone(root, tmp_path):
    _, series, folder, _ = study(root, "bad")
    path = slice_file(folder / "CT", series[4])
    path.write_bytes(path.read_bytes()[:300])  # cut inside the header
    with pytest.raises(InputError) as raised:
        build("dicom_seg", root, tmp_path / "raise", generator="none", options=OPTIONS)
    assert raised.value.path == str(path)
    assert "DICOM file without SOPInstanceUID" in raised.value.problem
    manifest = build(
        "dicom_seg", root, tmp_path / "skip", generator="none", on_error="skip", options=OPTIONS
    )
    counts = manifest["counts"]
    assert (counts["items_read"], counts["items_built"], counts["items_skipped"]) == (2, 1, 1)
    stages = {(s["stage"], s["path"]) for s in manifest["skipped"]}
    assert ("scan", str(path)) in stages  # the file, reported where it was found
    assert ("input", str(slice_file(folder / "CT", series[5]))) in stages  # then a gap there
