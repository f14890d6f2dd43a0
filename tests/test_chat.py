"""Chat dialects: configs load, answers follow the dialect contract, boxes convert back to the
canonical box within ``max_error_px``, exports are what the trainers read."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from medground_hf import boxes
from medground_hf.cli import main
from medground_hf.evaluation.answers import parse_answer
from medground_hf.folder import config_splits
from medground_hf.formats import DIALECTS, get_dialect

ANSWER = {  # the answer text of the referring task, per the README's chat dialect table
    "llava": r"\[\d\.\d{3}, \d\.\d{3}, \d\.\d{3}, \d\.\d{3}\]",
    "sharegpt": r"\[\d+, \d+, \d+, \d+\]",
    "trl": r"\[\d+, \d+, \d+, \d+\]",
    "qwen2-vl": r"<\|object_ref_start\|>{q}<\|object_ref_end\|>"
    r"<\|box_start\|>\(\d+,\d+\),\(\d+,\d+\)<\|box_end\|>",
    "qwen2.5-vl": r'```json\n\[\{"bbox_2d": \[\d+, \d+, \d+, \d+\], "label": "{label}"\}\]\n```',
    "qwen3-vl": r'```json\n\[\{"bbox_2d": \[\d+, \d+, \d+, \d+\], "label": "{label}"\}\]\n```',
    "internvl": r"<ref>{q}</ref><box>\[\[\d+, \d+, \d+, \d+\]\]</box>",
    "florence-2": r"{q}<loc_\d+><loc_\d+><loc_\d+><loc_\d+>",
    "ms-swift": r"<bbox>",
}


def canonical(out: Path) -> dict[str, dict]:
    rows = {}
    for shard in sorted((out / "grounding").glob("*.parquet")):
        for row in pq.read_table(shard).drop(["image"]).to_pylist():
            rows[row["id"]] = row
    return rows


def prompt_and_answer(dialect_name: str, row: dict) -> tuple[str, str]:
    """User text and assistant text of a loaded chat row, whatever its layout."""
    if "conversations" in row:
        return row["conversations"][0]["value"], row["conversations"][1]["value"]
    if "prefix" in row:
        return row["prefix"], row["suffix"]
    user, assistant = row["messages"]
    if dialect_name == "trl":
        return user["content"][1]["text"], assistant["content"][0]["text"]
    return user["content"], assistant["content"]


# the three samples: 2D with fixture queries, BraTS volume slices with template queries
FOLDERS = {"kvasir": "kvasir_queries", "hc18": "hc18_queries", "brats": "built_brats"}


@pytest.fixture(scope="module")
def loaded(request, tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf-cache")
    return {
        (source, name): load_dataset(
            str(request.getfixturevalue(fixture)), get_dialect(name).config, cache_dir=str(cache)
        )
        for source, fixture in FOLDERS.items()
        for name in DIALECTS
    }


@pytest.mark.parametrize("name", list(DIALECTS))
@pytest.mark.parametrize("source", list(FOLDERS))
def test_dialect_rows_round_trip_to_the_canonical_box(name, source, loaded, request):
    out = request.getfixturevalue(FOLDERS[source])
    rows = canonical(out)
    dialect = get_dialect(name)
    ds = loaded[(source, name)]
    kept = {i: [q["text"] for q in r["queries"] if q["kept"]] for i, r in rows.items()}
    for split in ds:
        split_ids = [i for i, r in rows.items() if r["split"] == split]
        assert len(ds[split]) == 2 * sum(len(kept[i]) for i in split_ids)
        tasks = {"ground": 0, "disambiguate": 0, "describe": 0}
        for row in ds[split]:
            record = rows[row["id"]]  # every row traces back to its canonical record
            tasks[row["task"]] += 1
            assert (row["width"], row["height"]) == (record["width"], record["height"])
            image = row["images"][0] if "images" in row else row["image"]
            assert image.size == (record["width"], record["height"])
            prompt, answer = prompt_and_answer(name, row)
            box = record["bbox_xyxy"]
            bound = dialect.max_error_px(record["width"], record["height"])
            objects = row.get("objects")
            if row["task"] == "describe":
                assert (_ref(objects) or answer) in kept[row["id"]]
                shown = shown_box(dialect, prompt, objects, *box_size(record))
            else:
                # the longest kept query in the prompt: one query may be the start of another
                shown_queries = [q for q in kept[row["id"]] if q in prompt or _ref(objects) == q]
                query = max(shown_queries, key=len)
                label = record["label_display"]
                pattern = ANSWER[name].replace("{q}", re.escape(query))
                pattern = pattern.replace("{label}", re.escape(label))
                assert re.fullmatch(pattern, answer), (answer, pattern)
                shown = shown_box(dialect, answer, objects, *box_size(record))
                assert (row["task"] == "disambiguate") == (record["num_candidates"] > 1)
                if row["task"] == "disambiguate" and name != "florence-2":  # florence: task token
                    assert f"contains {record['num_candidates']} regions" in prompt
            err = max(abs(a - b) for a, b in zip(shown, box, strict=True))
            assert err <= bound, (name, row["id"], shown, box)
        assert tasks["describe"] == tasks["ground"] + tasks["disambiguate"]


def box_size(record: dict) -> tuple[int, int]:
    return record["width"], record["height"]


def shown_box(dialect, text: str, objects: dict | None, width: int, height: int) -> list[int]:
    """The canonical box a written text (answer or describe prompt) stands for, read as the
    evaluation reads answers; ms-swift keeps it in ``objects`` behind its ``<bbox>`` placeholder."""
    if objects is not None and "<bbox>" in text:
        return boxes.to_canonical(
            objects["bbox"][0], dialect.convention, width, height, dialect.resize
        )
    return parse_answer(text, dialect.convention, width, height, dialect.resize).box


def _ref(objects: dict | None) -> str | None:
    return objects["ref"][0] if objects else None


def test_multi_candidate_images_get_disambiguation_prompts(loaded, kvasir_queries):
    rows = canonical(kvasir_queries)
    multi = {i for i, r in rows.items() if r["num_candidates"] > 1 and r["queries"]}
    assert multi, "the Kvasir samples hold images with several polyps"
    ds = loaded[("kvasir", "qwen2.5-vl")]["train"]
    found = {r["id"] for r in ds if r["task"] == "disambiguate"}
    assert found == {i for i in multi if rows[i]["split"] == "train"}


def test_qwen25_boxes_are_on_the_smart_resized_image(loaded, hc18_queries):
    rows = canonical(hc18_queries)
    row = next(r for r in loaded[("hc18", "qwen2.5-vl")]["train"] if r["task"] == "ground")
    record = rows[row["id"]]
    coords = json.loads(row["conversations"][1]["value"].split("\n")[1])[0]["bbox_2d"]
    assert boxes.SmartResize()(540, 800) == (532, 812)
    assert coords == boxes.to_qwen25(record["bbox_xyxy"], 800, 540)
    assert coords != record["bbox_xyxy"]


def test_rejected_queries_never_reach_a_dialect(loaded):
    for ds in loaded.values():
        for split in ds:
            for row in ds[split]:
                assert "top left corner" not in json.dumps(row, default=str)


def test_build_without_queries_writes_no_chat_configs(built_kvasir):
    manifest = json.loads((built_kvasir / "medground.json").read_text())
    stats = manifest["formats"]
    assert stats["targets_without_kept_queries"] == stats["targets"]
    assert sum(stats["targets"].values()) == 50
    configs = config_splits(built_kvasir)
    assert set(configs) == {"grounding", "coco"}
    assert all(n == 0 for c, split in stats["rows"].items() if c != "coco" for n in split.values())


@pytest.mark.parametrize("name", list(DIALECTS))
def test_export_writes_what_the_trainer_reads(name, kvasir_queries, tmp_path, capsys):
    assert main(["export", str(kvasir_queries), "--format", name, "--to", str(tmp_path)]) == 0
    assert f"Wrote {name}" in capsys.readouterr().out
    dialect = get_dialect(name)
    rows = canonical(kvasir_queries)
    referenced = set()
    for split in ("train", "validation", "test"):
        path = tmp_path / f"{split}.{dialect.json_ext}"
        text = path.read_text()
        items = (
            [json.loads(x) for x in text.splitlines()]
            if path.suffix == ".jsonl"
            else json.loads(text)
        )
        assert items and all(item["id"] in rows for item in items)
        for item in items:
            images = item.get("images") or [item["image"]]
            assert all((tmp_path / p).is_file() for p in images)
            referenced.update(images)
            CONSUMER[dialect.layout.name](item)
    written = {str(p.relative_to(tmp_path)) for p in (tmp_path / "images").rglob("*.*")}
    assert written == referenced  # each image once, none without rows
    if name == "sharegpt":  # LLaMA-Factory's dataset_info.json entry for multimodal sharegpt
        info = json.loads((tmp_path / "dataset_info.json").read_text())
        assert set(info) == {"medground_train", "medground_validation", "medground_test"}
        assert info["medground_train"] == {
            "file_name": "train.json",
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "images": "images"},
            "tags": {
                "role_tag": "from",
                "content_tag": "value",
                "user_tag": "human",
                "assistant_tag": "gpt",
            },
        }
    if name == "internvl":  # InternVL's meta file: root + annotation + augment, repeat, length
        meta = json.loads((tmp_path / "meta.json").read_text())
        entry = meta["medground_train"]
        assert set(entry) == {"root", "annotation", "data_augment", "repeat_time", "length"}
        lines = Path(entry["annotation"]).read_text().splitlines()
        assert entry["length"] == len(lines) and entry["repeat_time"] == 1
        assert (Path(entry["root"]) / json.loads(lines[0])["image"]).is_file()


def _conversations(item: dict) -> None:
    """LLaVA / Qwen-VL / InternVL fine-tuning rows: one ``image`` path, human/gpt turns, the
    ``<image>`` token once, at the start of the first human turn followed by a newline."""
    assert isinstance(item["image"], str)
    turns = item["conversations"]
    assert [t["from"] for t in turns] == ["human", "gpt"]
    assert turns[0]["value"].startswith("<image>\n")
    assert sum(t["value"].count("<image>") for t in turns) == 1


def _sharegpt(item: dict) -> None:
    """LLaMA-Factory sharegpt: as many ``<image>`` tokens as ``images``."""
    turns = item["conversations"]
    assert [t["from"] for t in turns] == ["human", "gpt"]
    assert sum(t["value"].count("<image>") for t in turns) == len(item["images"]) == 1


def _trl(item: dict) -> None:
    """TRL vision messages: ``{"type": "image"}`` then ``{"type": "text", "text": ...}``."""
    user, assistant = item["messages"]
    assert (user["role"], assistant["role"]) == ("user", "assistant")
    assert user["content"][0] == {"type": "image"}
    assert user["content"][1]["type"] == "text" and user["content"][1]["text"]
    assert assistant["content"] == [{"type": "text", "text": assistant["content"][0]["text"]}]
    assert len(item["images"]) == 1


def _prefix_suffix(item: dict) -> None:
    """Florence-2 fine-tuning: a task token opens the prefix; the suffix ends in 4 locations."""
    assert re.match(r"<(CAPTION_TO_PHRASE_GROUNDING|REGION_TO_DESCRIPTION)>", item["prefix"])
    assert isinstance(item["image"], str) and item["suffix"]


def _swift(item: dict) -> None:
    """ms-swift grounding: every placeholder has its entry in ``objects``."""
    user, assistant = item["messages"]
    assert (user["role"], assistant["role"]) == ("user", "assistant")
    assert user["content"].startswith("<image>") and len(item["images"]) == 1
    text = user["content"] + assistant["content"]
    objects = item["objects"]
    assert text.count("<ref-object>") == len(objects["ref"]) == 1
    assert text.count("<bbox>") == len(objects["bbox"]) == 1
    assert len(objects["bbox"][0]) == 4 and objects["bbox_type"] in ("real", "norm1")


CONSUMER = {
    "conversations": _conversations,
    "sharegpt": _sharegpt,
    "trl": _trl,
    "prefix-suffix": _prefix_suffix,
    "ms-swift": _swift,
}


def test_convert_from_a_folder_matches_export(kvasir_queries, tmp_path):
    assert (
        main(["export", str(kvasir_queries), "--format", "internvl", "--to", str(tmp_path / "a")])
        == 0
    )
    assert (
        main(["convert", str(kvasir_queries), "--format", "internvl", "--to", str(tmp_path / "b")])
        == 0
    )
    assert (tmp_path / "a" / "train.jsonl").read_text() == (
        tmp_path / "b" / "train.jsonl"
    ).read_text()


def test_unknown_format_and_missing_folder_are_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path), "--format", "yolo", "--to", str(tmp_path / "x")])
    assert main(["export", str(tmp_path), "--format", "llava", "--to", str(tmp_path / "x")]) == 2
    assert "not a medground dataset folder (medground.json missing)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "text", "values"),
    [
        ("llava", "The box is [0.1, 0.2, 0.3, 0.4].", [0.1, 0.2, 0.3, 0.4]),
        ("sharegpt", "[100, 200, 300, 400]", [100, 200, 300, 400]),
        ("qwen2-vl", "<|box_start|>(100,200),(300,400)<|box_end|>", [100, 200, 300, 400]),
        ("qwen2.5-vl", '[{"bbox_2d": [10, 20, 30, 40], "label": "polyp"}]', [10, 20, 30, 40]),
        ("qwen3-vl", '```json\n[{"label": "a", "bbox_2d": [1, 2, 3, 4]}]\n```', [1, 2, 3, 4]),
        ("internvl", "<ref>q</ref><box>[[100, 200, 300, 400]]</box>", [100, 200, 300, 400]),
        ("florence-2", "q<loc_100><loc_200><loc_300><loc_400>", [100, 200, 300, 400]),
        ("ms-swift", "(10,20),(30,40)", [10, 20, 30, 40]),
        ("ms-swift", "[10, 20, 30, 40]", [10, 20, 30, 40]),
    ],
)
def test_raw_model_answers_parse_to_canonical_boxes(name, text, values):
    dialect = get_dialect(name)
    expected = boxes.to_canonical(values, dialect.convention, 800, 540)
    assert parse_answer(text, dialect.convention, 800, 540).box == expected


@pytest.mark.parametrize("name", list(DIALECTS))
def test_answers_without_a_box_are_refused(name):
    with pytest.raises(ValueError, match="no box|four <loc_N>"):
        parse_answer("I cannot see any polyp.", get_dialect(name).convention, 256, 256)


def test_a_corrupt_shard_is_named(kvasir_queries, tmp_path, capsys):
    out = tmp_path / "corrupt"
    shutil.copytree(kvasir_queries, out)
    (out / "grounding" / "train-00000-of-00001.parquet").write_bytes(b"not parquet")
    assert main(["export", str(out), "--format", "trl", "--to", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "grounding/train-00000-of-00001.parquet: 11 bytes where medground.json says" in err
    assert not (tmp_path / "x").exists()


def test_qwen25_export_follows_a_capped_resize(hc18_queries, tmp_path, capsys):
    """``--max-pixels`` (a training run's cap) changes the resized size the boxes refer to."""
    resize = boxes.SmartResize(max_pixels=200_704)
    assert resize(540, 800) == (364, 532) != boxes.QWEN25_RESIZE(540, 800)
    to = tmp_path / "capped"
    cmd = ["export", str(hc18_queries), "--format", "qwen2.5-vl", "--to", str(to)]
    assert main([*cmd, "--max-pixels", "200704"]) == 0
    rows = canonical(hc18_queries)
    grounds = [i for i in json.loads((to / "train.json").read_text()) if i["task"] == "ground"]
    assert grounds
    dialect = get_dialect("qwen2.5-vl", resize)
    for item in grounds:
        record = rows[item["id"]]
        answer = item["conversations"][1]["value"]
        coords = json.loads(answer.split("\n")[1])[0]["bbox_2d"]
        assert coords == boxes.to_qwen25(record["bbox_xyxy"], 800, 540, resize)
        assert coords[2] <= 532 and coords[3] <= 364
        parsed = parse_answer(answer, dialect.convention, 800, 540, resize).box
        error = max(abs(a - b) for a, b in zip(parsed, record["bbox_xyxy"], strict=True))
        assert error <= dialect.max_error_px(800, 540)
    capsys.readouterr()
    assert main([*cmd[:3], "llava", "--to", str(tmp_path / "x"), "--max-pixels", "200704"]) == 2
    assert "only apply to qwen2.5-vl" in capsys.readouterr().err
