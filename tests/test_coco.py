"""COCO instances + RefCOCO refs from built Kvasir-SEG / HC18 / BraTS folders, checked with
pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from medground_hf.formats.coco import CocoIds, coco_images, sentence
from medground_hf.formats.export import export


def grounding_rows(out: Path, split: str, images: bool = False) -> list[dict]:
    shards = sorted((out / "grounding").glob(f"{split}-*.parquet"))
    assert shards, f"no {split} shards in {out}"
    tables = [pq.read_table(s) for s in shards]
    return [r for t in tables for r in (t if images else t.drop(["image"])).to_pylist()]


def quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


@pytest.fixture(
    scope="module",
    params=["kvasir_queries", "hc18_queries", "built_brats", "brats_whole_tumour"],
)
def coco_export(request, tmp_path_factory):
    out = request.getfixturevalue(request.param)
    to = tmp_path_factory.mktemp("coco")
    counts = export(out, "coco", to)
    return out, to, counts


@pytest.mark.parametrize("split", ["train", "validation"])
def test_self_evaluation_gives_ap_one(coco_export, split):
    out, to, _ = coco_export
    gt = quiet(COCO, str(to / f"instances_{split}.json"))
    detections = [{**a, "score": 1.0} for a in gt.dataset["annotations"]]
    assert detections, f"{out.name} {split}: no annotations"
    for kind in ("bbox", "segm"):
        dt = quiet(gt.loadRes, [{k: v for k, v in d.items() if k != "id"} for d in detections])
        ev = COCOeval(gt, dt, kind)
        quiet(ev.evaluate)
        quiet(ev.accumulate)
        quiet(ev.summarize)
        assert ev.stats[0] == pytest.approx(1.0), kind  # AP@[.5:.95]
        assert ev.stats[1] == pytest.approx(1.0), kind  # AP@.5
    # a shifted prediction must not also score 1.0 (the check can fail)
    shifted = [{**d, "bbox": [d["bbox"][0] + d["bbox"][2] / 2, *d["bbox"][1:]]} for d in detections]
    dt = quiet(
        gt.loadRes,
        [{k: v for k, v in d.items() if k not in ("id", "segmentation")} for d in shifted],
    )
    ev = COCOeval(gt, dt, "bbox")
    quiet(ev.evaluate)
    quiet(ev.accumulate)
    quiet(ev.summarize)
    assert ev.stats[0] < 0.5


def test_annotations_match_the_canonical_records(coco_export):
    out, to, counts = coco_export
    for split, n_images in counts.items():
        rows = {r["id"]: r for r in grounding_rows(out, split)}
        doc = json.loads((to / f"instances_{split}.json").read_text())
        assert {"info", "licenses", "images", "annotations", "categories"} <= set(doc)
        assert len(doc["images"]) == n_images == len({r["image_id"] for r in rows.values()})
        assert len(doc["annotations"]) == len(rows)
        images = {i["id"]: i for i in doc["images"]}
        for ann in doc["annotations"]:
            row = rows[ann["record_id"]]
            x0, y0, x1, y1 = row["bbox_xyxy"]
            assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0]
            assert ann["iscrowd"] == 0
            # the RLE decodes to the mask whose tight box and area are the published ones
            rle = {**ann["segmentation"], "counts": ann["segmentation"]["counts"].encode()}
            assert mask_utils.area(rle) == ann["area"] == row["area_px"]
            assert np.allclose(mask_utils.toBbox(rle), ann["bbox"])
            image = images[ann["image_id"]]
            assert image["medground_image_id"] == row["image_id"]
            assert (image["width"], image["height"]) == (row["width"], row["height"])
            assert (to / image["file_name"]).is_file()


def test_refs_hold_exactly_the_kept_queries(coco_export):
    out, to, counts = coco_export
    for split in counts:
        rows = {r["id"]: r for r in grounding_rows(out, split)}
        doc = json.loads((to / f"instances_{split}.json").read_text())
        refs = json.loads((to / f"refs_{split}.json").read_text())
        anns = {a["id"]: a for a in doc["annotations"]}
        with_queries = {i for i, r in rows.items() if any(q["kept"] for q in r["queries"])}
        assert {ref["record_id"] for ref in refs} == with_queries
        assert len({ref["ref_id"] for ref in refs}) == len(refs)
        for ref in refs:
            assert anns[ref["ann_id"]]["record_id"] == ref["record_id"]
            assert ref["image_id"] == anns[ref["ann_id"]]["image_id"]
            assert ref["split"] == split
            kept = [q["text"] for q in rows[ref["record_id"]]["queries"] if q["kept"]]
            assert [s["raw"] for s in ref["sentences"]] == kept
            assert ref["sent_ids"] == [s["sent_id"] for s in ref["sentences"]]
            for s in ref["sentences"]:  # RefCOCO refs(unc).p: sent is the joined tokens
                assert set(s) == {"sent_id", "sent", "raw", "tokens"}
                assert s["tokens"] and s["sent"] == " ".join(s["tokens"])
            assert {"ref_id", "ann_id", "image_id", "category_id", "file_name"} <= set(ref)


def test_sentence_tokens_follow_refcoco():
    s = sentence(7, "The LARGER polyp, left of the image's centre (2nd one).")
    assert s["tokens"] == [
        "the", "larger", "polyp", "left", "of", "the", "image's", "centre", "2nd", "one"
    ]  # fmt: skip
    assert s["sent"] == "the larger polyp left of the image's centre 2nd one"
    assert s["raw"] == "The LARGER polyp, left of the image's centre (2nd one)."
    assert s["sent_id"] == 7


def test_coco_config_loads_and_matches_the_export(coco_export, tmp_path):
    out, to, counts = coco_export
    ds = load_dataset(str(out), "coco", cache_dir=str(tmp_path))
    assert {split: len(ds[split]) for split in ds} == counts
    doc = json.loads((to / "instances_train.json").read_text())
    first = ds["train"][0]
    assert first["image"].size == (first["width"], first["height"])
    by_image = [a for a in doc["annotations"] if a["image_id"] == first["id"]]
    assert [a["record_id"] for a in first["annotations"]] == [a["record_id"] for a in by_image]
    assert [a["bbox"] for a in first["annotations"]] == [a["bbox"] for a in by_image]


def test_non_adjacent_image_rows_are_refused(built_kvasir):
    rows = grounding_rows(built_kvasir, "train", images=True)
    first = next(r for r in rows if r["num_targets_in_image"] > 1)
    two = [r for r in rows if r["image_id"] == first["image_id"]]
    single = next(r for r in rows if r["num_targets_in_image"] == 1)
    assert len(two) >= 2
    shuffled = [two[0], single, two[1]]
    ids = CocoIds.from_manifest(json.loads((built_kvasir / "medground.json").read_text()))
    with pytest.raises(ValueError, match="not adjacent"):
        list(coco_images(shuffled, "train", ids))


def test_undeclared_label_is_refused(built_kvasir):
    row = grounding_rows(built_kvasir, "train", images=True)[0]
    ids = CocoIds.from_manifest(json.loads((built_kvasir / "medground.json").read_text()))
    bad = {**row, "label": "tumour"}
    with pytest.raises(ValueError, match="not declared in the manifest"):
        list(coco_images([bad], "train", ids))
