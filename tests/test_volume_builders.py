"""Volume builders end to end: the BraTS sample, constructed Decathlon and generic NIfTI layouts,
and every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import nibabel as nib
import numpy as np
import pytest

from medground_hf.build import build
from medground_hf.errors import InputError
from medground_hf.folder import read_manifest
from medground_hf.geometry import decode_rle

BRATS_LABEL_IDS = {"necrosis": 1, "edema": 2, "non_enhancing_tumour": 3, "enhancing_tumour": 4}


def records(out: Path) -> list[dict]:
    """All rows of a built folder. A private cache: ``datasets`` keys its cache of a local folder
    on the folder's name and card, not its content, so a rebuilt ``out`` would load stale rows."""
    dd = datasets.load_dataset(str(out), "grounding", cache_dir=f"{out}-hf-cache")
    return [row for split in dd.values() for row in split]


def grey(row: dict) -> np.ndarray:
    return np.asarray(row["image"].convert("L"), dtype=np.float64)


# ---- BraTS sample -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def brats_rows(built_brats: Path) -> list[dict]:
    return records(built_brats)


def test_brats_records(built_brats, brats_rows):
    manifest = read_manifest(built_brats)
    source = manifest["sources"][0]
    assert source["license"] == "cc-by-nc-sa-3.0" and source["commercial_use"] is False
    assert manifest["counts"]["items_read"] == manifest["counts"]["items_built"] == 3
    images = {r["image_id"] for r in brats_rows}
    assert 10 <= len(images) <= 60  # a few dozen slices, not hundreds
    assert {r["label"] for r in brats_rows} == set(BRATS_LABEL_IDS)
    splits_of_group: dict[str, set] = {}
    for r in brats_rows:
        splits_of_group.setdefault(r["group_id"], set()).add(r["split"])
        # each label on the sequence that shows it: edema on FLAIR, the tumour core on T1c
        variant, modality = ("flair", "MRI FLAIR") if r["label"] == "edema" else ("t1c", "MRI T1c")
        assert r["id"] == (
            f"brats2013/{r['case_id']}/axial-{r['slice_index']:03d}/{variant}/{r['label']}/"
            f"{r['instance']}"
        )
        assert r["source_license"] == "cc-by-nc-sa-3.0"
        assert r["modality"] == modality
        assert r["slice_axis"] == "axial" and r["num_slices"] == 155
        assert r["voxel_spacing_mm"] == [1.0, 1.0, 1.0] and r["pixel_spacing_mm"] == [1.0, 1.0]
        assert (r["width"], r["height"]) == (240, 240)
        assert r["spatial"]["display_convention"] == "radiological"
        assert r["spatial"]["patient_side"] in ("left", "right", "midline")
        assert r["area_mm2"] == pytest.approx(r["area_px"])
        assert "brain" in r["relations"]["inside"] + r["relations"]["adjacent_to"]
        assert len(r["provenance"]["source_files"]) == 4  # FLAIR, T1c, labels, brain mask
        if r["label"] == "edema":
            assert r["num_candidates"] == 1  # diffuse edema is kept as one region
    assert all(len(s) == 1 for s in splits_of_group.values())


def brats_case(brats_dir: Path, case: str) -> dict:
    folder = brats_dir / case
    labels = nib.load(folder / "OTMultiClass.nii.gz")
    return {
        "affine": labels.affine,
        "labels": np.asarray(labels.dataobj),
        "brain": np.asarray(nib.load(folder / "brainmask.nii.gz").dataobj) > 0.5,
        "flair": nib.load(folder / "Flair_subtrMeanDivStd.nii.gz"),
    }


def test_brats_patient_side_matches_label_map_and_affine(brats_dir, brats_rows):
    """Recomputed from the raw label map and affine: world x of the target's voxels in that
    slice against the world-x centroid of the brain mask (NIfTI RAS+: larger x = patient right)."""
    compared = {"left": 0, "right": 0}
    for case in sorted({r["case_id"] for r in brats_rows}):
        raw = brats_case(brats_dir, case)
        affine = raw["affine"]
        brain_x = nib.affines.apply_affine(affine, np.argwhere(raw["brain"]))[:, 0].mean()
        axial = int(np.argmax(np.abs(affine[2, :3])))  # the stored axis closest to world z
        assert axial == 2
        n = raw["labels"].shape[axial]
        for r in (r for r in brats_rows if r["case_id"] == case):
            if r["num_candidates"] != 1:
                continue
            k = r["slice_index"] if affine[2, axial] > 0 else n - 1 - r["slice_index"]
            voxels = np.argwhere(raw["labels"][:, :, k] == BRATS_LABEL_IDS[r["label"]])
            voxels = np.column_stack([voxels, np.full(len(voxels), k)])
            offset = nib.affines.apply_affine(affine, voxels)[:, 0].mean() - brain_x
            if abs(offset) < 15:  # only clearly lateral targets
                continue
            expected = "right" if offset > 0 else "left"
            assert r["spatial"]["patient_side"] == expected, r["id"]
            # radiological display: the patient's right is on the image's left (or, near the
            # middle, in neither half clearly)
            assert r["spatial"]["image_side"] in (
                {"right": "left", "left": "right"}[expected],
                "center",
            )
            compared[expected] += 1
    assert compared["left"] >= 3 and compared["right"] >= 10, compared


def test_brats_slices_are_radiological(brats_dir, brats_rows):
    """Rendered pixels against the stored arrays: the sample is stored L,P,S (index 0 towards the
    patient's left, index 1 posterior), which is already the radiological layout transposed."""
    for case in sorted({r["case_id"] for r in brats_rows}):
        raw = brats_case(brats_dir, case)
        assert nib.aff2axcodes(raw["affine"]) == ("L", "P", "S")
        flair = raw["flair"]
        stored = np.asarray(flair.dataobj)
        canonical = np.asarray(nib.as_closest_canonical(flair).dataobj)  # R, A, S
        rows = [r for r in brats_rows if r["case_id"] == case and r["label"] == "edema"]
        assert rows
        for r in rows[:3]:
            k = r["slice_index"]
            expected_mask = (raw["labels"][:, :, k] == 2).T
            np.testing.assert_array_equal(decode_rle(r["mask"]), expected_mask)
            image = grey(r)
            radiological = stored[:, :, k].T
            np.testing.assert_array_equal(radiological, canonical[::-1, ::-1, k].T)
            inside = raw["brain"][:, :, k].T
            same = np.corrcoef(image[inside], radiological[inside])[0, 1]
            mirrored = np.corrcoef(image[inside], radiological[:, ::-1][inside])[0, 1]
            assert same > 0.98 and mirrored < same - 0.1, (r["id"], same, mirrored)


def test_brats_later_names_without_brain_mask(brats_dir, brats_rows, tmp_path):
    """``<case>_flair`` / ``_t1ce`` / ``_seg`` names and no brain mask: the head (non-background
    voxels) is the midline reference, and lateral targets keep their side."""
    data = tmp_path / "brats19"
    names = {"Flair": "flair", "T1c": "t1ce", "OTMultiClass": "seg"}
    for case in sorted({r["case_id"] for r in brats_rows}):
        folder = data / f"BraTS19_{case}"
        folder.mkdir(parents=True)
        for prefix, suffix in names.items():
            (source,) = (brats_dir / case).glob(f"{prefix}*.nii.gz")
            (folder / f"BraTS19_{case}_{suffix}.nii.gz").symlink_to(source)
    out = tmp_path / "nomask"
    manifest = build("brats", data, out, options={"max_slices": 2})
    rows = records(out)
    assert manifest["counts"]["items_built"] == 3
    assert all(len(r["provenance"]["source_files"]) == 3 for r in rows)  # FLAIR, T1c, labels
    assert all("brain" not in r["relations"]["inside"] for r in rows)
    with_mask = {r["id"]: r["spatial"]["patient_side"] for r in brats_rows}
    shared = [
        (r["id"].replace("BraTS19_", ""), r["spatial"]["patient_side"])
        for r in rows
        if r["spatial"]["patient_side"] != "midline"
    ]
    shared = [(key, side) for key, side in shared if key in with_mask]
    assert len(shared) >= 5
    for key, side in shared:
        assert side == with_mask[key], key


def test_brats_whole_tumour_and_one_image_per_modality(brats_dir, tmp_path):
    """One image per sequence, each carrying the labels it shows: the FLAIR image edema and the
    whole tumour (which holds it), the T1c image the tumour core's parts."""
    out = tmp_path / "out"
    build("brats", brats_dir, out, config_name="whole_tumour", options={"max_slices": 1})
    rows = records(out)
    by_image: dict[str, list[dict]] = {}
    for r in rows:
        by_image.setdefault(r["image_id"], []).append(r)
    assert len(by_image) == 6  # 3 cases x 1 slice x 2 modalities
    shown = {"flair": {"edema", "whole_tumour"}, "t1c": {"necrosis", "non_enhancing_tumour",
                                                         "enhancing_tumour"}}  # fmt: skip
    for image_id, group in by_image.items():
        variant = image_id.rsplit("/", 1)[1]
        assert variant in ("flair", "t1c")
        assert {r["modality"] for r in group} == {"MRI FLAIR" if variant == "flair" else "MRI T1c"}
        assert {r["label"] for r in group} <= shown[variant]
        for r in group:
            assert r["id"].startswith(image_id + "/")
        if variant == "t1c":
            continue
        whole = [r for r in group if r["label"] == "whole_tumour"]
        assert len(whole) == 1 and whole[0]["label_id"] == 5
        for r in group:
            if r["label"] == "edema":
                assert np.count_nonzero(decode_rle(r["mask"]) & ~decode_rle(whole[0]["mask"])) == 0
        assert "whole_tumour" in read_manifest(out)["counts"]["splits"][whole[0]["split"]]["labels"]
    flair = grey(next(r for r in rows if r["image_id"].endswith("/flair")))
    t1c_id = next(r for r in rows if r["image_id"].endswith("/flair"))["image_id"][:-5] + "t1c"
    t1c = grey(next(r for r in rows if r["image_id"] == t1c_id))
    assert not np.array_equal(flair, t1c)


def test_brats_bad_case_is_skipped_and_counted(brats_dir, tmp_path):
    data = tmp_path / "brats"
    # both cases hash to one split: a split whose every item is skipped is not built yet
    for case in ("brats_2013_pat0002_1", "brats_2013_pat0005_1"):
        (data / case).mkdir(parents=True)
        for f in (brats_dir / case).iterdir():
            (data / case / f.name).symlink_to(f)
    bad = data / "brats_2013_pat0005_1"
    (bad / "OTMultiClass.nii.gz").unlink()
    label = np.zeros((240, 240, 150), np.float32)
    label[100:110, 100:110, 70] = 2.0
    nib.save(nib.Nifti1Image(label, np.diag([-1.0, -1.0, 1.0, 1.0])), bad / "OTMultiClass.nii.gz")
    with pytest.raises(InputError, match="grid .* differs") as err:
        build("brats", data, tmp_path / "raise", options={"max_slices": 1})
    assert "brats_2013_pat0005_1" in err.value.path
    manifest = build("brats", data, tmp_path / "skip", on_error="skip", options={"max_slices": 1})
    counts = manifest["counts"]
    assert (counts["items_read"], counts["items_built"], counts["items_skipped"]) == (2, 1, 1)
    skipped = [s for s in manifest["skipped"] if s["stage"] == "input"]
    assert skipped[0]["item"] == "brats_2013_pat0005_1"
    assert "differs" in skipped[0]["reason"]


PEAK_RSS_SCRIPT = """
import resource, sys
from medground_hf.build import build
build("brats", sys.argv[1], sys.argv[2], options={"max_slices": 1})
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_brats_peak_memory_does_not_grow_with_cases(brats_dir, tmp_path):
    """One case in memory at a time: 6 cases peak like 1 (a case's volumes are ~130 MiB)."""
    cases = sorted(p for p in brats_dir.iterdir() if p.is_dir())
    peaks = {}
    for count in (1, 6):
        data = tmp_path / f"cases{count}"
        for index in range(count):
            folder = data / f"{cases[index % len(cases)].name}_r{index}"
            folder.mkdir(parents=True)
            for f in cases[index % len(cases)].iterdir():
                (folder / f.name).symlink_to(f)
        proc = subprocess.run(
            [sys.executable, "-c", PEAK_RSS_SCRIPT, str(data), str(tmp_path / f"out{count}")],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks[count] = int(proc.stdout.split()[-1]) / 1024
    assert peaks[6] - peaks[1] < 40, peaks


# ---- constructed volumes ------------------------------------------------------------------------
SHAPE = (36, 30, 10)  # RAS truth: x towards patient right, y anterior, z superior
RAS_AFFINE = np.array([[1.2, 0, 0, -21.0], [0, 1.0, 0, -15.0], [0, 0, 2.5, 0], [0, 0, 0, 1]])
LPS_FLIP = np.array(
    [[-1, 0, 0, SHAPE[0] - 1], [0, -1, 0, SHAPE[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]], float
)


def phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A head (RAS truth) with label 1 on the patient's left and label 2 on the patient's right."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    head = ((x - 17.5) / 16) ** 2 + ((y - 14.5) / 13) ** 2 <= 1
    image = np.where(head, 100 + 10 * rng.standard_normal(SHAPE), 0).astype(np.float32)
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:10, 10:18, 3:7] = 1  # low x: patient left
    labels[26:32, 12:18, 4:8] = 2  # high x: patient right
    image[labels == 1] += 80
    image[labels == 2] += 40
    return image, labels


def save(path: Path, data: np.ndarray, affine: np.ndarray = RAS_AFFINE @ LPS_FLIP) -> Path:
    """Store RAS-truth ``data`` as an L,P,S file (the affine says so)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = data[::-1, ::-1] if affine is not None and affine[0, 0] < 0 else data
    nib.save(nib.Nifti1Image(np.ascontiguousarray(stored), affine), path)
    return path


def write_msd(root: Path, cases: int = 2) -> Path:
    meta = {
        "name": "BrainTumour",
        "licence": "CC-BY-SA 4.0",
        "tensorImageSize": "4D",
        "modality": {"0": "FLAIR", "1": "T1w"},
        "labels": {"0": "background", "1": "edema", "2": "enhancing tumour"},
        "training": [],
    }
    for index in range(cases):
        image, labels = phantom(index)
        four = np.stack([image, image * 0.5 + 7], axis=-1)
        save(root / "imagesTr" / f"BRATS_{index:03d}.nii.gz", four)
        save(root / "labelsTr" / f"BRATS_{index:03d}.nii.gz", labels)
        meta["training"].append(
            {
                "image": f"./imagesTr/BRATS_{index:03d}.nii.gz",
                "label": f"./labelsTr/BRATS_{index:03d}.nii.gz",
            }
        )
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def check_sides(rows: list[dict], panel_width: int = SHAPE[0]) -> None:
    """Phantom label 1 is on the patient's left, label 2 on the right; radiological display puts
    them on the right / left half of the (first) panel."""
    assert rows
    for r in rows:
        side = {"edema": "left", "enhancing_tumour": "right"}[r["label"]]
        assert r["spatial"]["patient_side"] == side
        on_image_right = r["centroid_xy"][0] > panel_width / 2
        assert on_image_right == (side == "left")


def test_msd_multimodal_side_by_side(tmp_path):
    task = write_msd(tmp_path / "Task01_BrainTumour")
    manifest = build("msd", task, tmp_path / "out")
    assert manifest["sources"][0]["name"] == "msd_braintumour"
    assert manifest["sources"][0]["license"] == "cc-by-sa-4.0"
    assert [lab["name"] for lab in manifest["sources"][0]["labels"]] == [
        "edema",
        "enhancing_tumour",
    ]
    rows = records(tmp_path / "out")
    check_sides(rows)
    for r in rows:
        assert r["modality"] == "MRI FLAIR | MRI T1w"
        assert (r["width"], r["height"]) == (2 * SHAPE[0], SHAPE[1])
        assert r["bbox_xyxy"][2] <= SHAPE[0]  # targets sit in the first panel
        assert r["pixel_spacing_mm"] == pytest.approx([1.0, 1.2])
        assert r["voxel_spacing_mm"] == pytest.approx([1.2, 1.0, 2.5])
    assert {r["case_id"] for r in rows} == {"BRATS_000", "BRATS_001"}


def test_msd_one_record_per_modality(tmp_path):
    task = write_msd(tmp_path / "task", cases=1)
    options = {"layout": "per_record", "modalities": ["t1w"]}
    build("msd", task, tmp_path / "one", options=options)
    rows = records(tmp_path / "one")
    assert {r["modality"] for r in rows} == {"MRI T1w"}
    assert all(r["image_id"].count("/") == 2 for r in rows)  # a single modality: no variant
    build("msd", task, tmp_path / "two", options={"layout": "per_record"})
    rows = records(tmp_path / "two")
    assert {r["image_id"].rsplit("/", 1)[1] for r in rows} == {"flair", "t1w"}
    assert len({r["id"] for r in rows}) == len(rows)
    check_sides(rows)


def test_msd_ct_uses_hu_preset(tmp_path):
    root = tmp_path / "Task06_Lung"
    image = np.full(SHAPE, -2000.0, np.float32)  # outside the scanner's field of view
    image[2:34, 2:28] = -750.0  # lung parenchyma
    labels = np.zeros(SHAPE, np.uint8)
    labels[24:30, 10:16, 4:6] = 1
    image[labels == 1] = 150.0  # nodule
    save(root / "imagesTr" / "lung_001.nii.gz", image)
    save(root / "labelsTr" / "lung_001.nii.gz", labels)
    meta = {
        "name": "Lung",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "cancer"},
        "training": [{"image": "imagesTr/lung_001.nii.gz", "label": "labelsTr/lung_001.nii.gz"}],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    build("msd", root, tmp_path / "out")
    (row,) = records(tmp_path / "out")
    pixels = grey(row)
    assert row["modality"] == "CT"
    assert set(np.unique(pixels)) == {0, 102, 255}  # lung window: -1350..150 HU
    assert row["spatial"]["patient_side"] == "right"
    build("msd", root, tmp_path / "bone", options={"ct_preset": "bone"})
    (row,) = records(tmp_path / "bone")
    assert set(np.unique(grey(row))) == {0, 92}  # bone window -500..1300 HU: only the nodule


def test_nifti_labelmap_two_modalities_names_from_csv(tmp_path):
    root = tmp_path / "corpus"
    for case in ("case01", "case02"):
        image, labels = phantom(int(case[-1]))
        save(root / "images" / f"{case}_t1.nii.gz", image)
        save(root / "images" / f"{case}_t2.nii.gz", 300 - image)
        save(root / "labels" / f"{case}.nii.gz", labels.astype(np.float32))  # whole floats
    (root / "names.csv").write_text("value,name\n1,edema\n2,enhancing tumour\n")
    options = {
        "modalities": ["t1", "t2"],
        "layout": "per_record",
        "label_names_file": "names.csv",
        "source_name": "phantoms",
    }
    manifest = build("nifti_labelmap", root, tmp_path / "out", options=options)
    assert manifest["counts"]["items_built"] == 2
    rows = records(tmp_path / "out")
    check_sides(rows)
    assert {r["modality"] for r in rows} == {"MRI t1", "MRI t2"}
    assert {r["image_id"].split("/")[-1] for r in rows} == {"t1", "t2"}
    assert all(r["id"].startswith("phantoms/case0") for r in rows)


def test_nifti_labelmap_single_modality_json_names_coronal(tmp_path):
    root = tmp_path / "corpus"
    image, labels = phantom()
    save(root / "images" / "c1.nii.gz", image)
    save(root / "labels" / "c1.nii.gz", labels)
    (root / "names.json").write_text(json.dumps({"labels": {"0": "bg", "1": "edema", "2": "cyst"}}))
    options = {"label_names_file": "names.json", "axis": "coronal", "every_k": 2}
    build("nifti_labelmap", root, tmp_path / "out", options=options)
    rows = records(tmp_path / "out")
    assert {r["label"] for r in rows} == {"edema", "cyst"}
    assert {r["slice_axis"] for r in rows} == {"coronal"}
    assert all((r["width"], r["height"]) == (SHAPE[0], SHAPE[2]) for r in rows)
    assert all(r["pixel_spacing_mm"] == pytest.approx([2.5, 1.2]) for r in rows)
    for r in rows:
        side = {"edema": "left", "cyst": "right"}[r["label"]]
        assert r["spatial"]["patient_side"] == side


# ---- bad input ----------------------------------------------------------------------------------
def labelmap_case(root: Path, image=None, labels=None, label_affine=None) -> Path:
    good_image, good_labels = phantom()
    save(root / "images" / "c1.nii.gz", good_image if image is None else image)
    lab_affine = RAS_AFFINE @ LPS_FLIP if label_affine is None else label_affine
    save(root / "labels" / "c1.nii.gz", good_labels if labels is None else labels, lab_affine)
    return root


def fractional_labels() -> np.ndarray:
    labels = phantom()[1].astype(np.float32)
    labels[5, 12, 4] = 1.5
    return labels


def nan_image() -> np.ndarray:
    image = phantom()[0]
    image[3, 3, 3] = np.nan
    return image


def inf_image() -> np.ndarray:
    image = phantom()[0]
    image[4, 5, 6] = np.inf
    image[4, 5, 7] = -np.inf
    return image


def nan_labels() -> np.ndarray:
    labels = phantom()[1].astype(np.float32)
    labels[2, 2, 2] = np.nan
    return labels


BAD_LABELMAP_CASES = {
    "grid shape": (
        {"labels": np.zeros((36, 30, 9), np.uint8)},
        "images/c1.nii.gz",
        r"grid \(36, 30, 10\) differs from labels/c1.nii.gz \(36, 30, 9\)",
    ),
    "affine": (
        {"label_affine": RAS_AFFINE @ LPS_FLIP + np.diag([0, 0, 0.1, 0])},
        "images/c1.nii.gz",
        "affine differs",
    ),
    "flipped label map": ({"label_affine": RAS_AFFINE}, "images/c1.nii.gz", "affine differs"),
    "fractional labels": ({"labels": fractional_labels()}, "labels/c1.nii.gz", "not integer"),
    "nan voxels": ({"image": nan_image()}, "images/c1.nii.gz", "1 voxels are NaN or infinite"),
    "inf voxels": ({"image": inf_image()}, "images/c1.nii.gz", "2 voxels are NaN or infinite"),
    "nan label voxels": (
        {"labels": nan_labels()},
        "labels/c1.nii.gz",
        "1 voxels are NaN or infinite",
    ),
    "4D image": (
        {"image": np.zeros((*SHAPE, 2), np.float32)},
        "images/c1.nii.gz",
        "4D image .* where a 3D volume is expected",
    ),
    "4D label map": (
        {"labels": np.zeros((*SHAPE, 2), np.uint8)},
        "labels/c1.nii.gz",
        "4D image .* where a 3D volume is expected",
    ),
    "2D label map": (
        {"labels": phantom()[1][:, :, 4]},
        "labels/c1.nii.gz",
        r"expected a 3D volume, got 2D shape \(36, 30\)",
    ),
    "empty label map": (
        {"labels": np.zeros(SHAPE, np.uint8)},
        "labels/c1.nii.gz",
        "label map is empty",
    ),
    "undeclared label": (
        {"labels": phantom()[1] * 3},
        "labels/c1.nii.gz",
        r"label values \[3, 6\] are not declared",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_LABELMAP_CASES))
def test_bad_volume_input_names_file_and_problem(tmp_path, case):
    kwargs, bad_file, problem = BAD_LABELMAP_CASES[case]
    root = labelmap_case(tmp_path / "corpus", **kwargs)
    options = {"label_names": {"1": "edema", "2": "enhancing tumour"}}
    with pytest.raises(InputError, match=problem) as err:
        build("nifti_labelmap", root, tmp_path / "out", options=options)
    assert err.value.path == str(root / bad_file)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda data: data[: len(data) // 2], "cannot read voxel data"),
        (lambda data: b"not a nifti file at all", "not a readable NIfTI file"),
    ],
)
def test_truncated_or_foreign_file(tmp_path, damage, problem):
    root = labelmap_case(tmp_path / "corpus")
    image = root / "images" / "c1.nii.gz"
    image.write_bytes(damage(image.read_bytes()))
    with pytest.raises(InputError, match=problem) as err:
        build(
            "nifti_labelmap",
            root,
            tmp_path / "out",
            options={"label_names": {"1": "cyst", "2": "lesion"}},
        )
    assert err.value.path == str(image)


def test_bad_case_skipped_with_on_error_skip(tmp_path):
    root = labelmap_case(tmp_path / "corpus", labels=fractional_labels())
    image, labels = phantom(1)
    # c5 hashes to c1's split: a split whose every item is skipped is not built yet
    save(root / "images" / "c5.nii.gz", image)
    save(root / "labels" / "c5.nii.gz", labels)
    options = {"label_names": {"1": "edema", "2": "enhancing tumour"}}
    manifest = build("nifti_labelmap", root, tmp_path / "out", on_error="skip", options=options)
    assert manifest["counts"]["items_skipped"] == 1
    (skip,) = [s for s in manifest["skipped"] if s["stage"] == "input"]
    assert skip["item"] == "c1" and skip["path"] == str(root / "labels" / "c1.nii.gz")
    assert "not integer-valued" in skip["reason"]
    assert {r["case_id"] for r in records(tmp_path / "out")} == {"c5"}


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        (
            {"labels": {"0": "bg", "1": "cyst"}, "modality": {"0": "CT"}},
            r"missing key\(s\) \['training'\]",
        ),
        ({"training": []}, r"missing key\(s\) \['labels', 'modality'\]"),
        ({"labels": {"x": "a"}, "modality": {"0": "CT"}, "training": []}, "integer keys"),
        ({"labels": {"0": "bg"}, "modality": {"0": "CT"}, "training": []}, "no foreground"),
    ],
)
def test_msd_bad_dataset_json(tmp_path, meta, problem):
    root = tmp_path / "task"
    root.mkdir()
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=problem) as err:
        build("msd", root, tmp_path / "out")
    assert err.value.path == str(root / "dataset.json")


def test_msd_image_with_fewer_channels_than_declared(tmp_path):
    task = write_msd(tmp_path / "task", cases=1)
    meta = json.loads((task / "dataset.json").read_text())
    meta["modality"]["2"] = "T2w"
    (task / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"channel 2 \(t2w\) missing") as err:
        build("msd", task, tmp_path / "out")
    assert err.value.path == str(task / "imagesTr" / "BRATS_000.nii.gz")


def test_bad_options_are_refused(tmp_path):
    root = labelmap_case(tmp_path / "corpus")
    from medground_hf.build import BuildError

    with pytest.raises(BuildError, match="axis must be one of"):
        build(
            "nifti_labelmap",
            root,
            tmp_path / "o1",
            options={"axis": "oblique", "label_names": {"1": "cyst"}},
        )
    with pytest.raises(BuildError, match="label names"):
        build("nifti_labelmap", root, tmp_path / "o2")
    with pytest.raises(BuildError, match="modalities must be among"):
        build("brats", root, tmp_path / "o3", options={"modalities": ["dwi"]})


def test_nifti_labelmap_varied_cases_count_up_with_two_processes(tmp_path):
    """Big and int16 label values, a label absent from a case, ``.nii`` next to ``.nii.gz``, an
    oblique (20 degree) affine, and a case with no label at all (skipped): ids and counts stay the
    same with two processes."""
    root = tmp_path / "corpus"
    image, labels = phantom()
    big = np.where(labels == 1, 70_000, np.where(labels == 2, 1_000, 0)).astype(np.int32)
    save(root / "images" / "big.nii.gz", image)
    save(root / "labels" / "big.nii.gz", big)
    save(root / "images" / "int16.nii", image)
    only_1000 = np.where(big == 1_000, 1_000, 0).astype(np.int16)  # label 70000 absent
    save(root / "labels" / "int16.nii", only_1000)
    angle = np.deg2rad(20)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    save(root / "images" / "oblique.nii.gz", image, rotation @ RAS_AFFINE)
    save(root / "labels" / "oblique.nii.gz", big, rotation @ RAS_AFFINE)
    save(root / "images" / "nolabel.nii.gz", image)
    save(root / "labels" / "nolabel.nii.gz", np.zeros(SHAPE, np.int16))
    options = {"label_names": {"70000": "edema", "1000": "enhancing tumour"}}
    ids = {}
    for num_proc in (None, 2):
        out = tmp_path / f"out-{num_proc}"
        manifest = build(
            "nifti_labelmap", root, out, options=options, on_error="skip", num_proc=num_proc
        )
        counts = manifest["counts"]
        assert (counts["items_read"], counts["items_built"], counts["items_skipped"]) == (4, 3, 1)
        assert manifest["skipped"][0]["item"] == "nolabel"
        assert "label map is empty" in manifest["skipped"][0]["reason"]
        rows = records(out)
        check_sides(rows)
        by_case = {}
        for r in rows:
            by_case.setdefault(r["case_id"], set()).add(r["label"])
        assert by_case == {
            "big": {"edema", "enhancing_tumour"},
            "int16": {"enhancing_tumour"},
            "oblique": {"edema", "enhancing_tumour"},
        }
        assert {r["label_id"] for r in rows} == {70_000, 1_000}
        ids[num_proc] = sorted(r["id"] for r in rows)
    assert ids[None] == ids[2]


def test_hidden_files_and_glob_characters_in_case_names(tmp_path):
    """macOS ``._`` forks next to the real files are ignored; a case named ``c[1]`` is found."""
    root = tmp_path / "corpus"
    image, labels = phantom()
    save(root / "images" / "c[1].nii.gz", image)
    save(root / "labels" / "c[1].nii.gz", labels)
    for fork in ("images/._c[1].nii.gz", "labels/._c[1].nii.gz"):
        (root / fork).write_bytes(b"\0\5\26\7")
    options = {"label_names": {"1": "edema", "2": "enhancing tumour"}}
    manifest = build("nifti_labelmap", root, tmp_path / "out", options=options)
    assert manifest["counts"]["items_read"] == manifest["counts"]["items_built"] == 1
    check_sides(records(tmp_path / "out"))


def test_brats_ignores_macos_forks(brats_dir, tmp_path):
    corpus = tmp_path / "brats"
    case = sorted(p for p in brats_dir.iterdir() if p.is_dir())[0]
    (corpus / case.name).mkdir(parents=True)
    for f in case.iterdir():
        (corpus / case.name / f.name).symlink_to(f)
        (corpus / case.name / f"._{f.name}").write_bytes(b"\0\5\26\7")
    manifest = build("brats", corpus, tmp_path / "out", generator="none")
    assert manifest["counts"]["items_read"] == manifest["counts"]["items_built"] == 1
