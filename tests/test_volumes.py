"""Orientation, radiological rendering, patient side, intensity windows and slice selection on
volumes constructed with known affines (RAS, LAS, LPS, permuted axes)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medground_hf.errors import InputError
from medground_hf.intensity import (
    CT_PRESETS,
    background_value,
    ct_window,
    percentile_window,
    window_for,
)
from medground_hf.slices import SlicePolicy, area_profiles, select_slices
from medground_hf.volumes import (
    PatientSide,
    SliceGeometry,
    body_mask,
    canonical_transform,
    check_same_grid,
    display_slice,
    label_values,
    load_data,
    midline_x,
    pixel_spacing,
    reorient,
    side_of,
    spatial_shape,
    voxel_spacing,
)

SHAPE = (12, 10, 8)  # x (towards patient right), y (anterior), z (superior) in the RAS truth
SPACING = (0.8, 1.5, 3.0)
RAS_AFFINE = np.array(
    [
        [SPACING[0], 0, 0, -20.0],
        [0, SPACING[1], 0, 7.0],
        [0, 0, SPACING[2], -12.0],
        [0, 0, 0, 1],
    ]
)


def flip(axis_len: int, axis: int) -> np.ndarray:
    """Voxel map new -> old for an array flipped along ``axis``."""
    m = np.eye(4)
    m[axis, axis] = -1
    m[axis, 3] = axis_len - 1
    return m


def ras_truth() -> np.ndarray:
    """Distinct value per voxel, so any wrong flip or permutation is caught."""
    return np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)


def stored(variant: str, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same anatomy as a file would store it in another voxel order, with its true affine."""
    if variant == "RAS":
        return truth, RAS_AFFINE
    if variant == "LAS":
        return truth[::-1], RAS_AFFINE @ flip(SHAPE[0], 0)
    if variant == "LPS":
        both = flip(SHAPE[0], 0) @ flip(SHAPE[1], 1)
        return truth[::-1, ::-1], RAS_AFFINE @ both
    if variant == "ASR":  # permuted: stored axes are (y, z, x)
        perm = np.zeros((4, 4))
        perm[0, 2] = perm[1, 0] = perm[2, 1] = perm[3, 3] = 1  # new (a, b, c) -> old (c, a, b)
        return truth.transpose(1, 2, 0), RAS_AFFINE @ perm
    if variant == "PIL":  # permuted and flipped: stored axes are (-y, -z, -x)
        data = truth.transpose(1, 2, 0)[::-1, ::-1, ::-1]
        perm = np.zeros((4, 4))
        perm[0, 2] = perm[1, 0] = perm[2, 1] = perm[3, 3] = 1
        flips = flip(SHAPE[1], 0) @ flip(SHAPE[2], 1) @ flip(SHAPE[0], 2)
        return data, RAS_AFFINE @ perm @ flips
    raise AssertionError(variant)


VARIANTS = ("RAS", "LAS", "LPS", "ASR", "PIL")


@pytest.mark.parametrize("variant", VARIANTS)
def test_reorient_recovers_ras_truth(variant):
    truth = ras_truth()
    data, affine = stored(variant, truth)
    assert "".join(nib.aff2axcodes(affine)) == variant
    out, new_affine = reorient(data, affine, canonical_transform(affine))
    np.testing.assert_array_equal(out, truth)
    np.testing.assert_allclose(new_affine, RAS_AFFINE)
    np.testing.assert_allclose(voxel_spacing(new_affine), SPACING)


def marker_volume() -> np.ndarray:
    """Markers in patient space: right-anterior-superior corner = 1, left-posterior-inferior = 2."""
    vol = np.zeros(SHAPE, dtype=np.uint8)
    vol[-3:, -3:, -2:] = 1  # high x = right, high y = anterior, high z = superior
    vol[:3, :3, :2] = 2
    return vol


@pytest.mark.parametrize("variant", VARIANTS)
def test_axial_display_is_radiological(variant):
    data, affine = stored(variant, marker_volume())
    canon, _ = reorient(data, affine, canonical_transform(affine))
    top = display_slice(canon, "axial", SHAPE[2] - 1)  # a superior slice holds marker 1
    rows, cols = np.nonzero(top == 1)
    assert top.shape == (SHAPE[1], SHAPE[0])
    assert cols.max() < SHAPE[0] / 2, "patient right must be on the image's left"
    assert rows.max() < SHAPE[1] / 2, "patient anterior must be at the top"
    bottom = display_slice(canon, "axial", 0)
    rows, cols = np.nonzero(bottom == 2)
    assert cols.min() >= SHAPE[0] / 2 and rows.min() >= SHAPE[1] / 2


def test_coronal_and_sagittal_display():
    canon = marker_volume()
    coronal = display_slice(canon, "coronal", SHAPE[1] - 1)  # anterior slice: marker 1
    rows, cols = np.nonzero(coronal == 1)
    assert coronal.shape == (SHAPE[2], SHAPE[0])
    assert rows.max() < SHAPE[2] / 2 and cols.max() < SHAPE[0] / 2  # superior up, right on left
    sagittal = display_slice(canon, "sagittal", SHAPE[0] - 1)  # right-most slice: marker 1
    rows, cols = np.nonzero(sagittal == 1)
    assert sagittal.shape == (SHAPE[2], SHAPE[1])
    assert rows.max() < SHAPE[2] / 2 and cols.max() < SHAPE[1] / 2  # superior up, anterior left


def test_pixel_spacing_follows_the_displayed_axes():
    assert pixel_spacing(SPACING, "axial") == (SPACING[1], SPACING[0])
    assert pixel_spacing(SPACING, "coronal") == (SPACING[2], SPACING[0])
    assert pixel_spacing(SPACING, "sagittal") == (SPACING[2], SPACING[1])


@pytest.mark.parametrize("variant", VARIANTS)
def test_patient_side_from_world_coordinates(variant):
    """Targets placed by world x are named by side whatever the stored voxel order."""
    truth = np.zeros(SHAPE, dtype=np.uint8)
    truth[9:11, 4:6, 3] = 1  # high x: patient right
    truth[1:3, 4:6, 3] = 2  # low x: patient left
    truth[5:7, 4:6, 3] = 3  # centre columns 5-6 of 0-11: on the midline
    data, affine = stored(variant, truth)
    canon, canon_affine = reorient(data, affine, canonical_transform(affine))
    head = np.ones(SHAPE, dtype=bool)
    mid = midline_x(head, canon_affine)
    assert mid == pytest.approx(RAS_AFFINE[0, 3] + SPACING[0] * (SHAPE[0] - 1) / 2)
    shown = display_slice(canon, "axial", 3)
    side = PatientSide(SliceGeometry("axial", 3, SHAPE, canon_affine), mid, band_mm=1.0)
    assert side(shown == 1) == "right"
    assert side(shown == 2) == "left"
    assert side(shown == 3) == "midline"
    # the radiological display puts the patient's right target on the image's left
    assert np.nonzero(shown == 1)[1].mean() < np.nonzero(shown == 2)[1].mean()


def test_midline_follows_an_off_centre_brain():
    brain = np.zeros(SHAPE, dtype=bool)
    brain[6:12] = True  # the brain fills only the right half of the field of view
    target = np.zeros(SHAPE, dtype=bool)
    target[7, 4, 3] = True  # right of the volume centre but left of this brain's centre
    mid = midline_x(brain, RAS_AFFINE)
    side = PatientSide(SliceGeometry("axial", 3, SHAPE, RAS_AFFINE), mid, band_mm=0.1)
    assert side(display_slice(target, "axial", 3)) == "left"


def test_body_mask_for_noisy_air_and_for_constant_background():
    rng = np.random.default_rng(1)
    ct = rng.normal(-1000, 20, SHAPE)  # air with noise: no constant background
    ct[2:8, 2:9] = rng.normal(40, 20, (6, 7, SHAPE[2]))
    expected = np.zeros(SHAPE, bool)
    expected[2:8, 2:9] = True
    np.testing.assert_array_equal(body_mask(ct), expected)
    mr = np.zeros(SHAPE, np.float32)  # z-scored brain on a zero background: half of it negative
    mr[2:8, 2:9] = rng.normal(0, 1, (6, 7, SHAPE[2]))
    np.testing.assert_array_equal(body_mask(mr), expected)


def test_side_of_band():
    assert side_of(4.9, 5.0) == "midline"
    assert side_of(-5.1, 5.0) == "left"
    assert side_of(5.1, 5.0) == "right"


def test_sagittal_slice_side_is_the_slice_side():
    geometry = SliceGeometry("sagittal", SHAPE[0] - 1, SHAPE, RAS_AFFINE)
    mask = np.zeros((SHAPE[2], SHAPE[1]), dtype=bool)
    mask[2, 2] = True
    assert PatientSide(geometry, RAS_AFFINE[0, 3])(mask) == "right"  # x index 11 vs 0


# ---- checks on loaded data ----------------------------------------------------------------------
def nifti(data: np.ndarray, affine: np.ndarray = RAS_AFFINE) -> nib.Nifti1Image:
    return nib.Nifti1Image(data, affine)


def test_grid_check(tmp_path):
    ref = nifti(np.zeros(SHAPE, np.float32))
    check_same_grid(tmp_path / "a", ref, tmp_path / "b", nifti(np.zeros(SHAPE, np.uint8)))
    noisy = RAS_AFFINE + 1e-5
    check_same_grid(tmp_path / "a", ref, tmp_path / "b", nifti(np.zeros(SHAPE), noisy))
    with pytest.raises(InputError, match="grid"):
        check_same_grid(tmp_path / "a", ref, tmp_path / "b", nifti(np.zeros((12, 10, 9))))
    shifted = RAS_AFFINE.copy()
    shifted[0, 3] += 0.8
    with pytest.raises(InputError, match="affine differs") as err:
        check_same_grid(tmp_path / "a", ref, tmp_path / "b", nifti(np.zeros(SHAPE), shifted))
    assert err.value.path == str(tmp_path / "b")
    flipped = RAS_AFFINE @ flip(SHAPE[0], 0)
    with pytest.raises(InputError, match="affine differs"):
        check_same_grid(tmp_path / "a", ref, tmp_path / "b", nifti(np.zeros(SHAPE), flipped))


def test_label_values_accepts_whole_floats_and_refuses_fractions(tmp_path):
    whole = np.zeros(SHAPE, np.float32)
    whole[1, 1, 1] = 4.0
    out = label_values(whole, tmp_path / "l.nii.gz")
    assert out.dtype == np.uint8 and out.max() == 4
    whole[2, 2, 2] = 1.5
    with pytest.raises(InputError, match="not integer-valued.*1 voxels, e.g. value 1.5"):
        label_values(whole, tmp_path / "l.nii.gz")
    with pytest.raises(InputError, match="empty"):
        label_values(np.zeros(SHAPE, np.float32), tmp_path / "l.nii.gz")
    with pytest.raises(InputError, match="negative"):
        label_values(-np.ones(SHAPE, np.int16), tmp_path / "l.nii.gz")


def test_load_data_refuses_nan_and_4d(tmp_path):
    data = np.zeros(SHAPE, np.float32)
    data[0, 0, 0] = np.nan
    data[0, 0, 1] = np.inf
    with pytest.raises(InputError, match="2 voxels are NaN or infinite"):
        load_data(nifti(data), tmp_path / "x.nii.gz")
    four = nifti(np.zeros((*SHAPE, 2), np.float32))
    with pytest.raises(InputError, match="4D image of shape .* where a 3D volume is expected"):
        load_data(four, tmp_path / "x.nii.gz")
    assert load_data(four, tmp_path / "x.nii.gz", allow_4d=True).shape == (*SHAPE, 2)
    assert spatial_shape(nifti(np.zeros((*SHAPE, 1))), tmp_path / "x") == SHAPE


# ---- intensity ----------------------------------------------------------------------------------
def test_percentile_window_ignores_constant_background_of_z_scored_mr():
    rng = np.random.default_rng(0)
    vol = np.zeros((40, 40, 40), np.float32)  # background 0: 87% of the voxels
    tissue = rng.normal(0.0, 1.0, size=(20, 20, 20)).astype(np.float32)
    vol[10:30, 10:30, 10:30] = tissue  # z-scored: half the tissue is negative
    window = percentile_window(vol, (1, 99))
    assert window.low == pytest.approx(np.percentile(tissue, 1), abs=0.05)
    assert window.high == pytest.approx(np.percentile(tissue, 99), abs=0.05)
    assert window.low < -2
    grey = window.apply(tissue)
    assert grey.min() == 0 and grey.max() == 255
    assert 100 < np.median(grey) < 155  # mid-grey for the tissue mean, not crushed to white
    # a given foreground mask wins over background detection
    mask = np.zeros(vol.shape, bool)
    mask[10:30, 10:30, 10:30] = True
    assert percentile_window(vol, (1, 99), foreground=mask).low == pytest.approx(window.low, 0.05)


def test_background_value_only_when_dominant():
    assert background_value(np.array([0.0] * 10 + list(range(1, 91)), np.float32)) == 0.0
    assert background_value(np.arange(1000, dtype=np.float32)) is None


def test_constant_volume_renders_without_error():
    window = percentile_window(np.full((5, 5, 5), 3.0, np.float32))
    assert window.high > window.low
    assert window.apply(np.full((5, 5), 3.0)).max() == 0


def test_ct_presets():
    lung = ct_window("lung")
    assert (lung.low, lung.high) == (-1350.0, 150.0)
    hu = np.array([-2000.0, -1350.0, -600.0, 150.0, 3000.0])
    np.testing.assert_array_equal(lung.apply(hu), [0, 0, 128, 255, 255])
    for name, (level, width) in CT_PRESETS.items():
        w = ct_window(name)
        assert w.high - w.low == width and (w.high + w.low) / 2 == level
    brain = window_for(np.zeros((2, 2, 2)), ct_preset="brain")
    assert brain.method == "ct:brain" and brain.apply(np.array([40.0]))[0] == 128
    with pytest.raises(ValueError, match="unknown CT window preset"):
        ct_window("abdomen")


# ---- slice selection ----------------------------------------------------------------------------
def profile(n: int, peak: int, half_width: int, height: int) -> np.ndarray:
    """A triangular area profile: ``height`` at ``peak``, zero beyond ``half_width``."""
    idx = np.arange(n)
    return np.clip(height - np.abs(idx - peak) * height // half_width, 0, None)


def test_largest_slice_per_structure_without_near_duplicates():
    profiles = {
        "a": profile(60, 20, 10, 500),
        "b": profile(60, 21, 5, 100),
        "c": profile(60, 45, 3, 50),
    }
    assert select_slices(profiles, SlicePolicy(min_gap=3)) == [20, 45]  # b's 21 is too close
    assert select_slices(profiles, SlicePolicy(min_gap=1)) == [20, 21, 45]  # neighbours asked for


def test_a_structure_missing_from_the_nearby_slice_gets_its_own():
    a = profile(60, 20, 10, 500)
    b = np.zeros(60, int)
    b[21:25] = 80  # largest at 21, next to a's 20, but absent from slice 20
    assert select_slices({"a": a, "b": b}, SlicePolicy(min_gap=3)) == [20, 23]
    b[20] = 30  # shown at 20, but with less than half its largest area
    assert select_slices({"a": a, "b": b}, SlicePolicy(min_gap=3)) == [20, 23]
    b[20] = 40  # half its largest area: slice 20 stands in for it
    assert select_slices({"a": a, "b": b}, SlicePolicy(min_gap=3)) == [20]


def test_every_kth_slice_with_min_area():
    profiles = {"a": profile(60, 20, 10, 500)}
    # 20 ± 4k where area >= 150: 12 (area 100) is too small, 16/24 and 28 (area 100) not
    got = select_slices(profiles, SlicePolicy(every_k=4, min_area_px=150))
    assert got == [16, 20, 24]
    assert select_slices(profiles, SlicePolicy(every_k=4, min_area_px=1)) == [12, 16, 20, 24, 28]
    capped = select_slices(profiles, SlicePolicy(every_k=4, min_area_px=1, max_slices=2))
    assert 20 in capped and len(capped) == 2


def test_area_profiles_and_empty_structures():
    labels = np.zeros((4, 4, 6), np.uint8)
    labels[:2, :2, 1] = 1
    labels[:, :, 4] = 2
    got = area_profiles(labels, {"one": (1,), "both": (1, 2), "none": (3,)}, axis=2)
    np.testing.assert_array_equal(got["one"], [0, 4, 0, 0, 0, 0])
    np.testing.assert_array_equal(got["both"], [0, 4, 0, 0, 16, 0])
    assert select_slices(got, SlicePolicy(min_gap=1)) == [1, 4]
    assert select_slices({"none": got["none"]}, SlicePolicy()) == []


def test_policy_validation():
    with pytest.raises(ValueError):
        SlicePolicy(min_gap=0)
    with pytest.raises(ValueError):
        SlicePolicy(every_k=-1)


def test_large_label_values_are_profiled_without_a_huge_histogram():
    """Instance-id style label maps (values past 2**16) give the same profiles as small ones."""
    small = np.zeros((4, 4, 6), np.uint8)
    small[:2, :2, 1] = 1
    small[:, :, 4] = 2
    big = np.where(small == 1, 3_000_000_000, np.where(small == 2, 70_000, 0)).astype(np.int64)
    structures = {"one": (3_000_000_000,), "both": (3_000_000_000, 70_000), "none": (5,)}
    got = area_profiles(big, structures, axis=2)
    expected = area_profiles(small, {"one": (1,), "both": (1, 2), "none": (3,)}, axis=2)
    for name in structures:
        np.testing.assert_array_equal(got[name], expected[name])


def test_label_values_keeps_large_and_unsigned_values_exact(tmp_path):
    labels = np.zeros(SHAPE, np.uint32)
    labels[1, 1, 1] = 3_000_000_000  # past int32
    labels[2, 2, 2] = 300
    out = label_values(labels, tmp_path / "l.nii.gz")
    assert sorted(np.unique(out).tolist()) == [0, 300, 3_000_000_000]
    as_int16 = label_values(labels.clip(0, 300).astype(np.int16), tmp_path / "l.nii.gz")
    assert as_int16.dtype == np.uint16 and as_int16.max() == 300
