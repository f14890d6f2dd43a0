"""The 2D builders on the real samples: boxes, spacing, splits, loading, stable ids."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset
from PIL import Image
from scipy.optimize import linear_sum_assignment

from medground_hf.build import build
from medground_hf.geometry import bbox_from_mask, decode_rle

# In this image the official annotation has a second, small box (x 231-297, y 506-528 of 622x528)
# lying inside the first one; at the 256x256 copy the two regions of the JPEG mask touch, so the
# mask holds one connected polyp. Every other image must agree in count.
MERGED_AT_256 = {"cju7ddtz729960801uazp1knc"}


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def all_rows(out: Path, columns: list[str]) -> list[dict]:
    ds = load_dataset(str(out), "grounding")
    return [row for split in ds for row in ds[split].select_columns(columns)]


def test_kvasir_boxes_agree_with_official_annotations(built_kvasir, kvasir_dir):
    official = json.loads((kvasir_dir / "kavsir_bboxes.json").read_text())
    ours = defaultdict(list)
    for row in all_rows(built_kvasir, ["case_id", "bbox_xyxy", "width", "height"]):
        assert (row["width"], row["height"]) == (256, 256)
        ours[row["case_id"]].append(row["bbox_xyxy"])
    assert set(ours) == set(official)
    ious = []
    for case, entry in official.items():
        sx, sy = 256 / entry["width"], 256 / entry["height"]
        theirs = [
            [b["xmin"] * sx, b["ymin"] * sy, b["xmax"] * sx, b["ymax"] * sy] for b in entry["bbox"]
        ]
        if case not in MERGED_AT_256:
            assert len(ours[case]) == len(theirs), case
        matrix = np.array([[iou(a, b) for b in theirs] for a in ours[case]])
        rows, cols = linear_sum_assignment(-matrix)
        ious.extend(matrix[rows, cols])
    assert np.mean(ious) >= 0.9
    multi = [c for c, e in official.items() if len(e["bbox"]) > 1]
    assert len(multi) == 10


def test_kvasir_multi_polyp_images_record_their_candidates(built_kvasir):
    rows = all_rows(built_kvasir, ["image_id", "num_candidates", "instance", "relations"])
    by_image = defaultdict(list)
    for row in rows:
        by_image[row["image_id"]].append(row)
    for group in by_image.values():
        assert {r["num_candidates"] for r in group} == {len(group)}
        assert sorted(r["instance"] for r in group) == list(range(len(group)))
        if len(group) > 1:  # at most one extreme, and only when clearly so (viewer rules)
            for flag in ("largest", "smallest", "leftmost", "rightmost", "uppermost", "lowermost"):
                assert sum(r["relations"][flag] for r in group) <= 1
    flags = [r["relations"]["leftmost"] or r["relations"]["largest"] for r in rows]
    assert sum(flags) >= 5


def test_boxes_match_the_stored_masks_and_images(built_kvasir):
    ds = load_dataset(str(built_kvasir), "grounding", split="train")
    for row in ds.select(range(8)):
        mask = decode_rle(row["mask"])
        assert mask.shape == (row["height"], row["width"])
        assert list(bbox_from_mask(mask)) == row["bbox_xyxy"]
        assert mask.sum() == row["area_px"]
        assert row["image"].size == (row["width"], row["height"])


def test_images_are_embedded_bytes_not_paths(built_kvasir, kvasir_dir):
    shard = next((built_kvasir / "grounding").glob("train-*.parquet"))
    images = pq.read_table(shard, columns=["image", "case_id"]).to_pylist()
    for row in images[:5]:
        assert row["image"]["path"] is None
        original = (kvasir_dir / "images" / f"{row['case_id']}.jpg").read_bytes()
        assert row["image"]["bytes"] == original  # embedded as-is, never re-encoded


def test_hc18_one_head_per_image_with_mm_spacing(built_hc18, hc18_dir):
    sizes = {}
    for line in (hc18_dir / "training_set_pixel_size_and_HC.csv").read_text().splitlines()[1:]:
        name, px, _ = line.split(",")
        sizes[name.removesuffix(".png")] = float(px)
    rows = all_rows(
        built_hc18,
        ["case_id", "label", "pixel_spacing_mm", "area_px", "area_mm2", "bbox_xyxy", "shape"],
    )
    assert sorted(r["case_id"] for r in rows) == sorted(sizes)  # exactly one head per image
    for row in rows:
        px = sizes[row["case_id"]]
        assert row["label"] == "fetal_head"
        assert row["pixel_spacing_mm"] == pytest.approx([px, px])
        assert row["area_mm2"] == pytest.approx(row["area_px"] * px * px, rel=1e-5)
        # a filled ellipse: round-ish, solid, not a thin outline
        assert row["shape"]["solidity"] > 0.95
        assert row["shape"]["circularity"] > 0.8


def test_hc18_head_area_matches_the_official_circumference(built_hc18, hc18_dir):
    """Ramanujan's perimeter of the ellipse fitted to our mask agrees with the official HC."""
    official = {}
    for line in (hc18_dir / "training_set_pixel_size_and_HC.csv").read_text().splitlines()[1:]:
        name, px, hc = line.split(",")
        official[name.removesuffix(".png")] = float(hc)
    rows = all_rows(built_hc18, ["case_id", "shape", "pixel_spacing_mm"])
    errors = []
    for row in rows:
        a = row["shape"]["major_axis_px"] / 2 * row["pixel_spacing_mm"][0]
        b = row["shape"]["minor_axis_px"] / 2 * row["pixel_spacing_mm"][0]
        h = ((a - b) / (a + b)) ** 2
        perimeter = np.pi * (a + b) * (1 + 3 * h / (10 + np.sqrt(4 - 3 * h)))
        errors.append(abs(perimeter - official[row["case_id"]]) / official[row["case_id"]])
    assert np.median(errors) < 0.03


def test_groups_never_cross_splits(built_hc18):
    ds = load_dataset(str(built_hc18), "grounding")
    split_of_group = defaultdict(set)
    for split in ds:
        for row in ds[split].select_columns(["group_id", "case_id", "split"]):
            assert row["split"] == split
            split_of_group[row["group_id"]].add(split)
            assert row["case_id"].startswith(row["group_id"])
    assert all(len(s) == 1 for s in split_of_group.values())
    # repeat scans of one subject (010_HC, 010_2HC) share a group
    assert any(g == "010" for g in split_of_group)


def test_rebuild_gives_the_same_ids_and_splits(kvasir_dir, built_kvasir, tmp_path):
    again = tmp_path / "again"
    build(
        "kvasir_seg", kvasir_dir, again, split_ratios={"train": 0.8, "validation": 0.1, "test": 0.1}
    )
    first = {r["id"]: r["split"] for r in all_rows(built_kvasir, ["id", "split"])}
    second = {r["id"]: r["split"] for r in all_rows(again, ["id", "split"])}
    assert first == second
    assert len(first) == 50  # 40 images, 10 of them with two or more polyps


def test_card_lists_every_split_config(built_kvasir):
    card = (built_kvasir / "README.md").read_text()
    assert card.startswith("---\n")
    for split in load_dataset(str(built_kvasir), "grounding"):
        assert f"grounding/{split}-*.parquet" in card
    manifest = json.loads((built_kvasir / "medground.json").read_text())
    assert manifest["counts"]["items_read"] == 40
    assert manifest["counts"]["items_built"] == 40


def test_jpeg_mask_threshold_matters(tmp_path):
    """JPEG masks carry ringing: thresholding keeps the polyp and drops the noise."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    img = np.full((64, 64, 3), 90, np.uint8)
    Image.fromarray(img).save(tmp_path / "images" / "a.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 10:30] = 255
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="JPEG", quality=60)
    (tmp_path / "masks" / "a.jpg").write_bytes(buf.getvalue())
    out = tmp_path / "out"
    build(
        "image_mask_folder", tmp_path, out, generator="none", options={"mask_pattern": "{stem}.jpg"}
    )
    (row,) = all_rows(out, ["bbox_xyxy", "area_px"])
    assert row["bbox_xyxy"] == [10, 20, 30, 40]
    assert row["area_px"] == pytest.approx(400, abs=8)


def test_num_proc_gives_the_same_records(hc18_dir, built_hc18, tmp_path):
    parallel = tmp_path / "parallel"
    build("hc18", hc18_dir, parallel, num_proc=2)
    columns = ["id", "split", "bbox_xyxy", "area_px", "mask"]
    key = lambda r: r["id"]  # noqa: E731
    assert sorted(all_rows(parallel, columns), key=key) == sorted(
        all_rows(built_hc18, columns), key=key
    )
