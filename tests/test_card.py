"""The dataset card: YAML that huggingface_hub parses back, and a body rendered from the data."""

from __future__ import annotations

import re
import shutil

import pytest
from huggingface_hub import DatasetCard, DatasetCardData

from medground_hf.build import write_card
from medground_hf.folder import config_splits, read_manifest, write_manifest

VERIFICATION = {
    "generator": "template",
    "model": None,
    "prompt_version": "t1",
    "queries_generated": 120,
    "queries_kept": 86,
    "queries_rejected": 34,
    "targets_total": 50,
    "targets_kept": 43,
    "targets_rejected": 7,
    "stages": [
        {"stage": "format", "source": "kvasir_seg", "checked": 120, "passed": 118},
        {"stage": "geometry", "source": "kvasir_seg", "checked": 118, "passed": 90},
    ],
    "reasons": [{"stage": "geometry", "reason": "spatial word disagrees", "count": 28}],
    "usage": {"requests": 0, "cached": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0},
}


def test_yaml_lists_every_config_and_split(kvasir_queries):
    card = DatasetCard.load(kvasir_queries / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0"
    assert set(data["task_categories"]) >= {"image-text-to-text", "object-detection"}
    assert data["size_categories"] == ["n<1K"]
    assert {"medical", "endoscopy"} <= set(data["tags"])
    declared = {c["config_name"]: [f["split"] for f in c["data_files"]] for c in data["configs"]}
    assert declared == config_splits(kvasir_queries)
    assert {"grounding", "coco", "chat-qwen2.5-vl", "chat-ms-swift"} <= set(declared)
    assert [c for c in data["configs"] if c.get("default")][0]["config_name"] == "grounding"


def test_body_has_sources_counts_schema_conventions_and_loading(kvasir_queries):
    body = DatasetCard.load(kvasir_queries / "README.md").text
    manifest = read_manifest(kvasir_queries)
    source = manifest["sources"][0]
    assert source["homepage"] in body and source["citation"].splitlines()[0] in body
    assert "Not for clinical decisions" in body
    stats = manifest["formats"]
    train = f"| train | kvasir_seg | polyp | {stats['targets']['train']} |"
    assert train in body
    rows = stats["rows"]["chat-llava"]
    assert f"| `chat-llava` | {rows['train']} | {rows['validation']} | {rows['test']} |" in body
    assert "| `bbox_xyxy` | list<int32>[4] |" in body
    assert "exclusive maxima" in body and "smart_resize" in body
    for config in config_splits(kvasir_queries):
        assert f'load_dataset("<repo-or-folder>", "{config}"' in body
    assert "no verification statistics" in body


def test_verification_pass_rates_are_rendered(kvasir_queries, tmp_path):
    out = tmp_path / "verified"
    shutil.copytree(kvasir_queries, out)
    manifest = read_manifest(out)
    manifest["verification"] = VERIFICATION
    write_manifest(out, manifest)
    write_card(out)
    body = (out / "README.md").read_text()
    assert "| format | kvasir_seg | 120 | 118 | 98.3 |" in body
    assert "| geometry | kvasir_seg | 118 | 90 | 76.3 |" in body
    assert "| geometry | spatial word disagrees | 28 |" in body
    assert "120 generated" in body and "86 kept" in body


@pytest.mark.parametrize("commercial", [True, False])
def test_non_commercial_sources_are_flagged(kvasir_queries, tmp_path, commercial):
    out = tmp_path / "flag"
    shutil.copytree(kvasir_queries, out)
    manifest = read_manifest(out)
    manifest["sources"][0]["commercial_use"] = commercial
    write_manifest(out, manifest)
    write_card(out)
    body = (out / "README.md").read_text()
    assert ("must not be used commercially" in body) is not commercial


@pytest.mark.parametrize(
    ("fixture", "licence"), [("built_brats", "cc-by-nc-sa-3.0"), ("merged_kvasir_brats", "other")]
)
def test_brats_and_merged_cards_round_trip_through_dataset_card_data(fixture, licence, request):
    """The YAML huggingface_hub writes parses back to the same card data; BraTS keeps its
    non-commercial licence, a Kvasir + BraTS merge is `other` with the per-source list."""
    folder = request.getfixturevalue(fixture)
    data = DatasetCard.load(folder / "README.md").data
    assert DatasetCardData(**data.to_dict()).to_dict() == data.to_dict()
    meta = data.to_dict()
    assert meta["license"] == licence
    declared = {c["config_name"]: [f["split"] for f in c["data_files"]] for c in meta["configs"]}
    assert declared == config_splits(folder) and "rejected" in declared
    assert {i["config_name"] for i in meta["dataset_info"]} == set(declared)
    body = (folder / "README.md").read_text()
    assert "must not be used commercially" in body and "MRI" in meta["tags"]
    if licence == "other":
        assert re.fullmatch(r"[a-z0-9.-]+", meta["license_name"])
        assert "Kvasir-SEG: cc-by-4.0" in meta["license_details"]
        assert "cc-by-nc-sa-3.0" in meta["license_details"]
