"""COCO instance files as input: the project's own COCO exports of the samples build back into
the same records, hand-written polygon/RLE files decode as the COCO API decodes them, and bad
files name themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from built_rows import build_rows, rows
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from medground_hf.build import build
from medground_hf.errors import InputError
from medground_hf.formats.export import export
from medground_hf.geometry import decode_rle

# What a COCO file has no place for: physical spacing, the slice a volume image was cut from,
# the patient side and display convention of a volume slice, the source's wording of a label,
# and the context masks (e.g. the brain) that are no annotation.
NOT_IN_COCO = (
    "pixel_spacing_mm",
    "area_mm2",
    "volume_id",
    "slice_axis",
    "slice_index",
    "num_slices",
    "voxel_spacing_mm",
    "label_display",
    "body_part",
)
IDENTITY = ("id", "image_id", "source", "case_id", "group_id", "provenance", "queries")


def comparable(row: dict, context: set[str]) -> dict:
    """A record without identity and without what COCO cannot carry."""
    out = {k: v for k, v in row.items() if k not in (*IDENTITY, *NOT_IN_COCO)}
    out["spatial"] = {
        k: v for k, v in row["spatial"].items() if k not in ("patient_side", "display_convention")
    }
    out["relations"] = {
        k: [n for n in v if n not in context] if isinstance(v, list) else v
        for k, v in row["relations"].items()
    }
    # context structures the export leaves out (the brain mask) have no box coming back either
    out["context_boxes"] = [c for c in row["context_boxes"] if c["name"] not in context]
    return out


def assert_round_trip(built: Path, tmp_path: Path, context: set[str] = frozenset(), **options):
    original = rows(built)
    export(built, "coco", tmp_path / "coco")
    back = build_rows("coco_instances", tmp_path / "coco", tmp_path / "back", **options)
    assert len(back) == len(original)

    def key(r):
        return r["image"]["bytes"], r["label"], r["instance"]

    ours = {key(r): r for r in back}
    assert ours.keys() == {key(r) for r in original}
    for r in original:
        got = ours[key(r)]
        assert comparable(got, context) == comparable(r, context), r["id"]
        refs = {p["key"] for p in got["provenance"]["source_refs"]}
        assert refs == {"coco_image_id", "file_name", "coco_annotation_id", "coco_category_id"}
        assert got["spatial"]["patient_side"] is None
    return original, back


def test_kvasir_round_trip(built_kvasir, tmp_path):
    original, back = assert_round_trip(built_kvasir, tmp_path, min_size=32, modality="endoscopy")
    assert {r["source_license"] for r in back} == {"cc-by-4.0"}  # the one licence of the file
    assert max(r["num_candidates"] for r in back) >= 2  # several polyps: instances kept apart


def test_refer_layout_gives_the_same_targets(built_kvasir, tmp_path):
    """The export's ``refcoco/instances.json`` (every split, segmentation as a list of RLEs)
    gives the targets of its per-split files; with no split in its name, images split by group."""
    export(built_kvasir, "coco", tmp_path / "coco")
    options = {"min_size": 32, "modality": "endoscopy"}
    per_split = build_rows("coco_instances", tmp_path / "coco", tmp_path / "a", **options)
    refer = build_rows(
        "coco_instances",
        tmp_path / "coco",
        tmp_path / "b",
        annotation_files=["refcoco/instances.json"],
        **options,
    )

    def targets(records):
        return sorted(
            (r["case_id"], r["label"], r["instance"], r["mask"]["counts"], r["num_candidates"])
            for r in records
        )

    assert targets(refer) == targets(per_split) and len(refer) == 50


def test_hc18_round_trip(built_hc18, tmp_path):
    assert_round_trip(built_hc18, tmp_path, modality="ultrasound")


@pytest.fixture(scope="module")
def brats_all_targets(brats_dir: Path, tmp_path_factory) -> Path:
    """The BraTS samples with every target in ``grounding`` (no generator, so none rejected),
    all on FLAIR renderings: one modality, as the COCO round trip states it."""
    out = tmp_path_factory.mktemp("built") / "brats_all"
    options = {"modalities": ["flair"]}
    build("brats", brats_dir, out, generator="none", derived_configs=[], options=options)
    return out


def test_brats_round_trip(brats_all_targets, tmp_path):
    original, back = assert_round_trip(
        brats_all_targets,
        tmp_path,
        context={"brain"},
        modality="MRI FLAIR",
        group_pattern=r"(brats_2013_pat\d+)",
    )
    assert {r["split"] for r in back} == {r["split"] for r in original}
    assert {r["group_id"] for r in back} == {r["group_id"] for r in original}


# ---- hand-written files -----------------------------------------------------------------------
def square(x0, y0, x1, y1) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def write_image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = np.add.outer(np.arange(height), np.arange(width)) % 256
    Image.fromarray(ramp.astype(np.uint8)).save(path)


def polygon_file(root: Path, *, shuffle: bool = False) -> Path:
    """Two images: polygons, a two-part polygon annotation, uncompressed and compressed RLE, a
    crowd region; a third image has no annotation."""
    write_image(root / "images" / "a.png", 100, 80)
    write_image(root / "images" / "b.png", 60, 50)
    write_image(root / "images" / "empty.png", 20, 20)
    lesion = np.zeros((50, 60), dtype=np.uint8)
    lesion[10:30, 5:25] = 1
    compressed = mask_utils.encode(np.asfortranarray(lesion))
    ring = np.zeros((80, 100), dtype=np.uint8)
    ring[50:70, 60:90] = 1
    ring[55:65, 65:85] = 0  # a hole
    uncompressed = {"size": [80, 100], "counts": uncompressed_counts(ring)}
    annotations = [
        {"id": 11, "image_id": 1, "category_id": 1, "segmentation": [square(10, 10, 30, 25)]},
        {"id": 12, "image_id": 1, "category_id": 1, "segmentation": [square(40, 5, 55, 20)]},
        {
            "id": 13,
            "image_id": 1,
            "category_id": 2,
            "segmentation": [square(5, 40, 15, 50), square(25, 42, 35, 52)],  # one target
        },
        {"id": 14, "image_id": 1, "category_id": 3, "segmentation": uncompressed},
        {
            "id": 15,
            "image_id": 1,
            "category_id": 4,
            "iscrowd": 1,
            "segmentation": [square(2, 2, 60, 30)],
        },
        {
            "id": 21,
            "image_id": 2,
            "category_id": 2,
            "segmentation": {"size": [50, 60], "counts": compressed["counts"].decode("ascii")},
        },
    ]
    if shuffle:
        annotations = annotations[::-1]
    doc = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 100, "height": 80},
            {"id": 2, "file_name": "b.png", "width": 60, "height": 50},
            {"id": 3, "file_name": "empty.png", "width": 20, "height": 20},
        ],
        "annotations": annotations,
        "categories": [
            {"id": 1, "name": "polyp"},
            {"id": 2, "name": "lesion"},
            {"id": 3, "name": "ring_structure"},
            {"id": 4, "name": "mucosa"},
        ],
    }
    path = root / "annotations" / "instances_train.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def uncompressed_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts (column-major runs, starting with zeros)."""
    flat = mask.ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    return counts if flat[0] == 0 else [0, *counts]


def test_masks_are_what_the_coco_api_decodes(tmp_path, caplog):
    path = polygon_file(tmp_path / "data")
    got = build_rows("coco_instances", tmp_path / "data", tmp_path / "out", min_size=1)
    api = COCO(str(path))
    targets = [a for a in api.dataset["annotations"] if not a.get("iscrowd")]
    assert len(got) == len(targets) == 5
    by_ann = {
        int(
            next(
                p["value"]
                for p in r["provenance"]["source_refs"]
                if p["key"] == "coco_annotation_id"
            )
        ): r
        for r in got
    }
    for ann in targets:
        row = by_ann[ann["id"]]
        expected = api.annToMask(ann).astype(bool)
        assert np.array_equal(decode_rle(row["mask"]), expected), ann["id"]
        ys, xs = np.nonzero(expected)
        assert row["bbox_xyxy"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert by_ann[14]["area_px"] == 20 * 30 - 10 * 20  # the ring keeps its hole
    assert by_ann[21]["area_px"] == 20 * 20
    two_parts = by_ann[13]
    assert two_parts["label"] == "lesion" and two_parts["num_candidates"] == 1
    assert {r["label"] for r in got} == {"polyp", "lesion", "ring_structure"}  # crowd: context
    polyps = sorted((r for r in got if r["label"] == "polyp"), key=lambda r: r["instance"])
    assert [r["bbox_xyxy"][1] for r in polyps] == [5, 10]  # numbered by first pixel (raster)
    assert "mucosa" in by_ann[11]["relations"]["inside"]
    assert by_ann[21]["split"] == "train" and by_ann[21]["case_id"] == "b"
    assert "1 image(s) without annotations are not items" in caplog.text


def test_instances_do_not_depend_on_annotation_order(tmp_path):
    polygon_file(tmp_path / "one")
    polygon_file(tmp_path / "two", shuffle=True)
    first = build_rows("coco_instances", tmp_path / "one", tmp_path / "o1", min_size=1)
    second = build_rows("coco_instances", tmp_path / "two", tmp_path / "o2", min_size=1)
    assert sorted((r["id"], r["mask"]["counts"]) for r in first) == sorted(
        (r["id"], r["mask"]["counts"]) for r in second
    )


def test_label_map_renames_and_leaves_out(tmp_path):
    polygon_file(tmp_path / "data")
    got = build_rows(
        "coco_instances",
        tmp_path / "data",
        tmp_path / "out",
        min_size=1,
        label_map={"polyp": "Adenoma", "ring structure": None},
    )
    assert {r["label"] for r in got} == {"adenoma", "lesion"}
    # the source's wording, humanised for a query
    assert {r["label_display"] for r in got if r["label"] == "adenoma"} == {"adenoma"}


# ---- bad files ----------------------------------------------------------------------------------
def edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            lambda d: d["annotations"].append(dict(d["annotations"][0], id=99, image_id=7)),
            "refers to image 7",
        ),
        (lambda d: d.pop("categories"), "needs 'images', 'annotations' and 'categories'"),
        (lambda d: d["images"].append(dict(d["images"][0])), "two images share one id"),
    ],
)
def test_bad_file_stops_the_build_naming_it(tmp_path, change, words):
    path = polygon_file(tmp_path / "data")
    edit(path, change)
    with pytest.raises(InputError) as raised:
        build(
            "coco_instances", tmp_path / "data", tmp_path / "out", generator="none", on_error="skip"
        )
    assert raised.value.path == str(path) and words in raised.value.problem


def test_unreadable_json_names_the_file(tmp_path):
    path = polygon_file(tmp_path / "data")
    path.write_text(path.read_text()[:-10])
    with pytest.raises(InputError, match="unreadable JSON") as raised:
        build("coco_instances", tmp_path / "data", tmp_path / "out", generator="none")
    assert raised.value.path == str(path)


def _break_image_b(kind: str):
    def change(doc):
        ann = next(a for a in doc["annotations"] if a["image_id"] == 2)
        if kind == "category":
            ann["category_id"] = 42
        elif kind == "rle_size":
            ann["segmentation"]["size"] = [40, 60]
        elif kind == "polygon":
            ann["segmentation"] = [[1, 2, 3, 4, 5]]
        elif kind == "size":
            doc["images"][1]["width"] = 61
        elif kind == "missing":
            doc["images"][1]["file_name"] = "gone.png"

    return change


@pytest.mark.parametrize(
    ("kind", "words", "named"),
    [
        ("category", "annotation 21: category 42 is not in 'categories'", "json"),
        ("rle_size", "RLE size [40, 60] is not the image's", "json"),
        ("polygon", "a polygon needs at least three x, y pairs", "json"),
        ("size", "image is 60x50 but instances_train.json says 61x50", "image"),
        ("missing", "image gone.png not found", "json"),
    ],
)
def test_bad_image_is_one_line_and_skipped(tmp_path, kind, words, named):
    path = polygon_file(tmp_path / "data")
    edit(path, _break_image_b(kind))
    with pytest.raises(InputError) as raised:
        build(
            "coco_instances",
            tmp_path / "data",
            tmp_path / "raise",
            generator="none",
            options={"min_size": 1},
        )
    error = raised.value
    expected = path if named == "json" else tmp_path / "data" / "images" / "b.png"
    assert error.path == str(expected) and words in error.problem and "\n" not in str(error)
    manifest = build(
        "coco_instances",
        tmp_path / "data",
        tmp_path / "skip",
        generator="none",
        on_error="skip",
        options={"min_size": 1},
    )
    counts = manifest["counts"]
    assert (counts["items_read"], counts["items_built"], counts["items_skipped"]) == (2, 1, 1)
