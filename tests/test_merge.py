"""Merging per-source builds into one multi-source dataset."""

from __future__ import annotations

import json

import pytest
from datasets import load_dataset
from huggingface_hub import DatasetCard
from pycocotools.coco import COCO

from medground_hf.build import BuildError
from medground_hf.cli import main
from medground_hf.folder import read_manifest


def ids_of(folder, config="grounding") -> dict[str, set[str]]:
    ds = load_dataset(str(folder), config)
    return {split: set(ds[split]["id"]) for split in ds}


def test_merge_keeps_every_row_in_its_split_and_adds_counts_up(
    generated_kvasir, generated_hc18, tmp_path, capsys
):
    out = tmp_path / "merged"
    assert main(["merge", str(generated_kvasir), str(generated_hc18), "--out", str(out)]) == 0
    assert "items read 80 = built 80 + skipped 0" in capsys.readouterr().out
    merged, kvasir, hc18 = ids_of(out), ids_of(generated_kvasir), ids_of(generated_hc18)
    for split in set(kvasir) | set(hc18):
        assert merged[split] == kvasir.get(split, set()) | hc18.get(split, set())
    manifest = read_manifest(out)
    parts = [read_manifest(generated_kvasir), read_manifest(generated_hc18)]
    assert [s["name"] for s in manifest["sources"]] == ["kvasir_seg", "hc18"]
    v = manifest["verification"]
    for key in ("queries_generated", "queries_kept", "targets_total", "targets_kept"):
        assert v[key] == sum(p["verification"][key] for p in parts)
    assert {s["source"] for s in v["stages"]} == {"kvasir_seg", "hc18"}
    records = sum(c["records"] for c in manifest["counts"]["splits"].values())
    assert records == sum(len(s) for s in merged.values())


def test_merged_coco_and_chat_configs_cover_both_sources(
    generated_kvasir, generated_hc18, tmp_path
):
    out = tmp_path / "merged"
    main(["merge", str(generated_kvasir), str(generated_hc18), "--out", str(out)])
    assert main(["export", str(out), "--format", "coco", "--to", str(tmp_path / "coco")]) == 0
    coco = COCO(str(tmp_path / "coco" / "instances_train.json"))
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"polyp", "fetal_head"}
    # chat dialects are not configs of a default build: exported as the trainer's files
    to = tmp_path / "qwen"
    assert main(["export", str(out), "--format", "qwen2.5-vl", "--to", str(to)]) == 0
    chat = json.loads((to / "train.json").read_text())
    assert {row["id"].split("/")[0] for row in chat} == {"kvasir_seg", "hc18"}


def test_mixed_licences_become_other_with_the_list(generated_kvasir, built_brats, tmp_path):
    out = tmp_path / "mixed"
    main(["merge", str(generated_kvasir), str(built_brats), "--out", str(out)])
    card = DatasetCard.load(out / "README.md")
    assert card.data.license == "other"
    assert "cc-by-nc-sa-3.0" in card.content and "cc-by-4.0" in card.content


def test_a_source_given_twice_is_refused(generated_kvasir, tmp_path):
    with pytest.raises(BuildError, match="kvasir_seg"):
        from medground_hf.merge import merge

        merge([generated_kvasir, generated_kvasir], tmp_path / "twice")


def test_generated_and_bare_builds_do_not_mix(generated_kvasir, built_hc18, tmp_path, capsys):
    code = main(["merge", str(generated_kvasir), str(built_hc18), "--out", str(tmp_path / "x")])
    assert code == 2
    assert "with a generator and folders built without" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before anything is written
