"""COCO instances + RefCOCO refs from built Kvasir-SEG / HC18 / BraTS folders, checked with
pycocotools and with the refer API's loading logic (``tests/refer_api.py``)."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from refer_api import Refer, ReferExit

from medground_hf.formats.coco import CocoIds, coco_images, sentence
from medground_hf.formats.export import ExportOptions, export


def grounding_rows(out: Path, split: str, images: bool = False, config="grounding") -> list[dict]:
    shards = sorted((out / config).glob(f"{split}-*.parquet"))
    if config == "grounding":
        assert shards, f"no {split} shards in {out}"
    tables = [pq.read_table(s) for s in shards]
    return [r for t in tables for r in (t if images else t.drop(["image"])).to_pylist()]


def all_targets(out: Path, split: str) -> dict[str, dict]:
    """Every target of a split by id, read here from both shard configs: the kept ones
    (``grounding``) and those verification rejected as a whole (in ``rejected`` only)."""
    targets = {r["id"]: {**r, "verified": True} for r in grounding_rows(out, split)}
    for row in grounding_rows(out, split, config="rejected"):
        targets.setdefault(row["id"], {**row, "verified": False})
    for row in targets.values():  # a build without a generator has no kept query anywhere
        row["verified"] = row["verified"] and any(q["kept"] for q in row["queries"] or [])
    return targets


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
    counts = export(out, "coco", to, ExportOptions(refs_pickle=True))
    return out, to, counts


def test_brats_has_rejected_targets_the_export_keeps(built_brats, tmp_path):
    """The BraTS sample is the case of the bug report: verification rejects 5 targets (3 specks
    by the visual check, 2 enhancing foci nothing visible singles out), which used to vanish
    from COCO."""
    to = tmp_path / "coco"
    counts = export(built_brats, "coco", to)
    rejected = kept = 0
    for split in counts:
        targets = all_targets(built_brats, split)
        doc = json.loads((to / f"instances_{split}.json").read_text())
        by_record = {a["record_id"]: a for a in doc["annotations"]}
        assert set(by_record) == set(targets)
        for record_id, target in targets.items():
            assert by_record[record_id]["verified"] is target["verified"]
        rejected += sum(not t["verified"] for t in targets.values())
        kept += sum(t["verified"] for t in targets.values())
    assert (kept, rejected) == (111, 5)
    # an image with kept and rejected targets (two specks of non-enhancing tumour on T1c a
    # viewer cannot make out): every one of its targets is an annotation
    doc = json.loads((to / "refcoco" / "instances.json").read_text())
    suffix = "pat0005_1/axial-069/t1c"
    image = next(i for i in doc["images"] if i["medground_image_id"].endswith(suffix))
    anns = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
    on_image = [
        t for split in counts for t in all_targets(built_brats, split).values()
        if t["image_id"].endswith(suffix)
    ]  # fmt: skip
    assert len(anns) == len(on_image) >= 3
    assert any(a["verified"] for a in anns) and not all(a["verified"] for a in anns)


@pytest.mark.parametrize("split", ["train", "validation"])
def test_self_evaluation_gives_ap_one(coco_export, split):
    out, to, _ = coco_export
    gt = quiet(COCO, str(to / f"instances_{split}.json"))
    detections = [{**a, "score": 1.0} for a in gt.dataset["annotations"]]
    assert detections, f"{out.name} {split}: no annotations"
    assert len(detections) == len(all_targets(out, split))  # rejected targets included
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
        rows = all_targets(out, split)
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
            assert ann["verified"] is row["verified"]
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
    refs = json.loads((to / "refcoco" / "refs(medground).json").read_text())
    with open(to / "refcoco" / "refs(medground).p", "rb") as fh:
        assert pickle.load(fh) == refs
    doc = json.loads((to / "refcoco" / "instances.json").read_text())
    anns = {a["id"]: a for a in doc["annotations"]}
    targets = {k: v for split in counts for k, v in all_targets(out, split).items()}
    verified = {i for i, r in targets.items() if r["verified"]}
    assert {ref["record_id"] for ref in refs} == verified
    assert len({ref["ref_id"] for ref in refs}) == len(refs)
    for ref in refs:
        assert anns[ref["ann_id"]]["record_id"] == ref["record_id"]
        assert anns[ref["ann_id"]]["verified"]
        assert ref["image_id"] == anns[ref["ann_id"]]["image_id"]
        split = targets[ref["record_id"]]["split"]
        assert ref["split"] == {"validation": "val"}.get(split, split)
        kept = [q["text"] for q in targets[ref["record_id"]]["queries"] if q["kept"]]
        assert [s["raw"] for s in ref["sentences"]] == kept
        assert ref["sent_ids"] == [s["sent_id"] for s in ref["sentences"]]
        for s in ref["sentences"]:  # RefCOCO refs(unc).p: sent is the joined tokens
            assert set(s) == {"sent_id", "sent", "raw", "tokens"}
            assert s["tokens"] and s["sent"] == " ".join(s["tokens"])
        assert {"ref_id", "ann_id", "image_id", "category_id", "file_name"} <= set(ref)


def test_ids_are_unique_across_splits(coco_export):
    out, to, counts = coco_export
    assert len(counts) >= 2, "the check needs two splits"
    seen: dict[str, set] = {"images": set(), "annotations": set()}
    for split in counts:
        doc = json.loads((to / f"instances_{split}.json").read_text())
        for key, ids in seen.items():
            new = {entry["id"] for entry in doc[key]}
            assert not new & ids, f"{key} ids of {split} repeat another split's"
            ids |= new
    every = json.loads((to / "refcoco" / "instances.json").read_text())
    for key, ids in seen.items():  # the all-splits file is exactly the per-split files
        assert [e["id"] for e in every[key]] == sorted(ids)
    refs = json.loads((to / "refcoco" / "refs(medground).json").read_text())
    sent_ids = [s["sent_id"] for r in refs for s in r["sentences"]]
    assert len(set(sent_ids)) == len(sent_ids)


def test_refer_api_loads_refs_by_val_with_boxes_and_masks(coco_export):
    out, to, counts = coco_export
    refer = Refer(to, "refcoco", "medground")
    targets = {k: v for split in counts for k, v in all_targets(out, split).items()}
    by_split = {s: refer.get_ref_ids(split=s) for s in ("train", "val", "test")}
    verified = Counter(t["split"] for t in targets.values() if t["verified"])
    assert {s: len(ids) for s, ids in by_split.items()} == {
        "train": verified["train"],
        "val": verified["validation"],
        "test": verified["test"],
    }
    assert by_split["val"], f"{out.name}: no val refs to check"
    # every ref id of every split is distinct: the refer API's index would overwrite duplicates
    assert len(refer.refs) == sum(len(ids) for ids in by_split.values())
    for ref_id in by_split["val"] + by_split["train"][:10]:
        ref = refer.refs[ref_id]
        target = targets[ref["record_id"]]
        x0, y0, x1, y1 = target["bbox_xyxy"]
        assert refer.get_ref_box(ref_id) == [x0, y0, x1 - x0, y1 - y0]
        got = refer.get_mask(ref)
        rle = {**target["mask"], "counts": target["mask"]["counts"].encode()}
        assert np.array_equal(got["mask"], mask_utils.decode(rle))
        assert got["area"] == target["area_px"]
    with pytest.raises(ReferExit, match="validation"):
        refer.get_ref_ids(split="validation")


def test_disambiguate_prompts_count_what_coco_holds(built_brats, tmp_path):
    """A disambiguate prompt says how many regions of its label the image has; COCO must hold
    that many annotations of the label in the image (rejected ones included)."""
    to = tmp_path / "coco"
    export(built_brats, "coco", to)
    doc = json.loads((to / "refcoco" / "instances.json").read_text())
    images = {i["id"]: i["medground_image_id"] for i in doc["images"]}
    labels = {c["id"]: c["name"] for c in doc["categories"]}
    in_coco = Counter((images[a["image_id"]], labels[a["category_id"]]) for a in doc["annotations"])
    grounding = {}
    for split in counts_of(built_brats):
        grounding.update({r["id"]: r for r in grounding_rows(built_brats, split)})
    checked = 0
    for path in sorted((built_brats / "chat-qwen2.5-vl").glob("*.parquet")):
        for row in pq.read_table(path, columns=["id", "task", "conversations"]).to_pylist():
            if row["task"] != "disambiguate":
                continue
            prompt = row["conversations"][0]["value"]
            n = int(re.search(r"contains (\d+) regions labelled", prompt).group(1))
            target = grounding[row["id"]]
            assert in_coco[(target["image_id"], target["label"])] == n, prompt
            checked += 1
    assert checked > 20


def counts_of(out: Path) -> list[str]:
    return sorted({p.name.split("-")[0] for p in (out / "grounding").glob("*.parquet")})


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
    for split in counts:  # same ids, annotations and refs as the export
        doc = json.loads((to / f"instances_{split}.json").read_text())
        rows = ds[split].remove_columns("image")
        assert [r["id"] for r in rows] == [i["id"] for i in doc["images"]]
        anns = [a for r in rows for a in r["annotations"]]
        assert [a["id"] for a in anns] == [a["id"] for a in doc["annotations"]]
        assert [a["verified"] for a in anns] == [a["verified"] for a in doc["annotations"]]
        assert [a["bbox"] for a in anns] == [a["bbox"] for a in doc["annotations"]]
    first = ds["train"][0]
    assert first["image"].size == (first["width"], first["height"])
    refs = json.loads((to / "refcoco" / "refs(medground).json").read_text())
    config_refs = [r for split in counts for row in ds[split] for r in row["refs"]]
    assert [r["ref_id"] for r in config_refs] == [r["ref_id"] for r in refs]
    assert [r["split"] for r in config_refs] == [r["split"] for r in refs]


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


def test_an_image_whose_every_target_was_rejected_is_still_annotated(built_brats, tmp_path):
    """Move every target of one image from ``grounding`` to ``rejected`` (one row per rejected
    query and one for the target, as verification writes them): COCO still holds the image
    with each target once, unverified and without refs."""
    import shutil

    import pyarrow as pa

    from medground_hf.folder import read_manifest, write_manifest
    from medground_hf.formats import write_format_configs

    out = tmp_path / "brats"
    shutil.copytree(built_brats, out)
    shard = sorted((out / "grounding").glob("train-*.parquet"))[0]
    table = pq.read_table(shard)
    rows = table.to_pylist()
    counts = Counter(r["image_id"] for r in rows)
    image_id = next(i for i, n in counts.items() if n >= 2)
    moved = [r for r in rows if r["image_id"] == image_id]
    pq.write_table(
        pa.Table.from_pylist([r for r in rows if r["image_id"] != image_id], table.schema), shard
    )
    rejected_shard = sorted((out / "rejected").glob("train-*.parquet"))[0]
    rejected = pq.read_table(rejected_shard)
    extra = []
    for row in moved:
        for query in row["queries"]:
            failed = {**query, "kept": False}
            extra.append({**row, "queries": [failed], "rejected_stage": "visual",
                          "rejected_reason": "test: judge said no"})  # fmt: skip
        extra.append({**row, "queries": [], "rejected_stage": "verification",
                      "rejected_reason": "all queries rejected"})  # fmt: skip
    pq.write_table(
        pa.concat_tables([rejected, pa.Table.from_pylist(extra, rejected.schema)]), rejected_shard
    )
    write_format_configs(out, read_manifest(out))
    write_manifest(out, read_manifest(out))  # records the edited shards, as a build would
    to = tmp_path / "coco"
    export(out, "coco", to)
    doc = json.loads((to / "instances_train.json").read_text())
    (image,) = [i for i in doc["images"] if i["medground_image_id"] == image_id]
    assert (to / image["file_name"]).is_file()
    anns = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
    assert sorted(a["record_id"] for a in anns) == sorted(r["id"] for r in moved)
    assert not any(a["verified"] for a in anns)
    refs = json.loads((to / "refcoco" / "refs(medground).json").read_text())
    assert not [r for r in refs if r["image_id"] == image["id"]]
    assert len(doc["annotations"]) == len(all_targets(out, "train"))
    config = [
        r for p in sorted((out / "coco").glob("train-*.parquet"))
        for r in pq.read_table(p, columns=["medground_image_id", "annotations"]).to_pylist()
    ]  # fmt: skip
    (row,) = [r for r in config if r["medground_image_id"] == image_id]
    assert len(row["annotations"]) == len(moved)
