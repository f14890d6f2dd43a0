"""End-to-end scoring on folders built from the samples, checked against values computed here
independently (plain-Python IoU over the ground truth read straight from the Parquet shards)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medground_hf import boxes
from medground_hf.cli import main
from medground_hf.errors import InputError
from medground_hf.evaluation import evaluate, write_baseline
from medground_hf.evaluation.answers import DIALECT_CONVENTIONS


def truth(folder: Path) -> list[dict]:
    columns = ["id", "split", "source", "modality", "label", "width", "height", "bbox_xyxy"]
    rows = []
    for path in sorted((folder / "grounding").glob("*.parquet")):
        rows += pq.read_table(path, columns=[*columns, "num_candidates"]).to_pylist()
    return rows


def ref_iou(a, b) -> float:
    if a is None:
        return 0.0
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def ref_summary(items: list[dict]) -> dict:
    n = len(items)
    answered = [i for i in items if i["status"] != "missing"]
    return {
        "n": n,
        "acc@0.3": sum(i["iou"] >= 0.3 for i in items) / n,
        "acc@0.5": sum(i["iou"] >= 0.5 for i in items) / n,
        "acc@0.7": sum(i["iou"] >= 0.7 for i in items) / n,
        "miou": sum(i["iou"] for i in items) / n,
        "parse_failures": sum(i["status"] == "parse_failure" for i in items),
        "parse_failure_rate": sum(i["status"] == "parse_failure" for i in answered) / len(answered),
        "missing": n - len(answered),
        "mirror_errors": sum(i["mirror"] >= 0.5 and i["iou"] < 0.5 for i in items),
    }


def assert_summary(got: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def write_jsonl(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), "utf-8")
    return path


def oracle_lines(rows: list[dict], dialect: str, write_answer) -> list[dict]:
    """One prediction line per target: its true box as ``dialect`` writes answers."""
    return [
        {
            "id": r["id"],
            "output": write_answer(
                dialect, r["bbox_xyxy"], r["width"], r["height"], "the region", r["label"]
            ),
        }
        for r in rows
    ]


@pytest.mark.parametrize("dialect", sorted(DIALECT_CONVENTIONS))
def test_oracle_scores_one_through_every_dialect(
    dialect, built_mixed, tmp_path, write_dialect_answer
):
    rows = truth(built_mixed)
    preds = write_jsonl(
        tmp_path / f"{dialect}.jsonl", oracle_lines(rows, dialect, write_dialect_answer)
    )
    code = main(
        ["eval", "--dataset", str(built_mixed), "--config", f"chat-{dialect}",
         "--predictions", str(preds), "--report-dir", str(tmp_path / "report")]
    )  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    overall = report["overall"]
    assert overall["n"] == len(rows) == 90
    assert overall["acc@0.5"] == overall["acc@0.7"] == 1.0
    assert overall["parse_failures"] == overall["missing"] == overall["mirror_errors"] == 0
    convention = DIALECT_CONVENTIONS[dialect]
    by_id = {r["id"]: r for r in rows}
    items = [json.loads(line) for line in (tmp_path / "report" / "items.jsonl").open()]
    for item in items:
        r = by_id[item["id"]]
        bound = boxes.max_error_px(
            "norm1000" if convention == "norm" else "coco" if convention == "real" else convention,
            r["width"],
            r["height"],
        )
        error = max(abs(a - b) for a, b in zip(item["pred_bbox_xyxy"], r["bbox_xyxy"], strict=True))
        assert error <= bound, item
        assert item["iou"] == pytest.approx(ref_iou(item["pred_bbox_xyxy"], r["bbox_xyxy"]))
    assert "## Per source" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.parametrize("fixture", ["built_kvasir", "built_hc18", "built_brats"])
def test_baselines_match_independent_values(fixture, request, tmp_path):
    folder = request.getfixturevalue(fixture)
    rows = truth(folder)
    train = [r for r in rows if r["split"] == "train"]
    prior = [
        sum(r["bbox_xyxy"][k] / (r["width"], r["height"])[k % 2] for r in train) / len(train)
        for k in range(4)
    ]
    expected_boxes = {
        "whole-image": {r["id"]: [0, 0, r["width"], r["height"]] for r in rows},
        "center-prior": {r["id"]: boxes.from_norm(prior, r["width"], r["height"]) for r in rows},
        "oracle": {r["id"]: r["bbox_xyxy"] for r in rows},
    }
    for kind, expected in expected_boxes.items():
        preds = tmp_path / f"{kind}.jsonl"
        assert write_baseline(folder, kind, preds) == len(rows)
        written = {d["id"]: d["bbox_xyxy"] for d in map(json.loads, preds.open())}
        assert written == expected
        report = evaluate(folder, "grounding", preds, report_dir=tmp_path / kind)
        items = [
            {
                "iou": ref_iou(expected[r["id"]], r["bbox_xyxy"]),
                "mirror": ref_iou(
                    expected[r["id"]],
                    [r["width"] - r["bbox_xyxy"][2], r["bbox_xyxy"][1],
                     r["width"] - r["bbox_xyxy"][0], r["bbox_xyxy"][3]],
                ),
                "status": "ok",
            }
            for r in rows
        ]  # fmt: skip
        assert_summary(report["overall"], ref_summary(items))
    assert report["overall"]["miou"] == 1.0  # the oracle, last


def test_breakdowns_failures_missing_and_mirror_errors(built_mixed, tmp_path):
    rows = truth(built_mixed)
    lines, items = [], {}
    for n, r in enumerate(rows):
        w, (x0, y0, x1, y1) = r["width"], r["bbox_xyxy"]
        mirrored = [w - x1, y0, w - x0, y1]
        if n % 7 == 0:  # missing
            items[r["id"]] = {"iou": 0.0, "mirror": 0.0, "status": "missing"}
            continue
        if n % 5 == 0:  # unparsable answer
            lines.append({"id": r["id"], "output": "I am not sure where it is."})
            items[r["id"]] = {"iou": 0.0, "mirror": 0.0, "status": "parse_failure"}
        elif n % 3 == 0:  # the left-right mirrored box, as pixels in text
            lines.append({"id": r["id"], "output": f"[{', '.join(map(str, mirrored))}]"})
            iou = ref_iou(mirrored, r["bbox_xyxy"])
            items[r["id"]] = {"iou": iou, "mirror": 1.0, "status": "ok"}
        else:  # the box shifted right by a quarter of its width
            shift = (x1 - x0) // 4
            box = [x0 + shift, y0, min(x1 + shift, w), y1]
            lines.append({"id": r["id"], "bbox_xyxy": box})
            iou = ref_iou(box, r["bbox_xyxy"])
            items[r["id"]] = {"iou": iou, "mirror": ref_iou(box, mirrored), "status": "ok"}
    preds = write_jsonl(tmp_path / "preds.jsonl", lines)
    report = evaluate(built_mixed, "chat-ms-swift", preds, report_dir=tmp_path / "r")
    assert_summary(report["overall"], ref_summary(list(items.values())))
    assert report["overall"]["mirror_errors"] > 0 and report["overall"]["missing"] == 13
    for group in ("source", "modality", "label", "split"):
        keys = sorted({r[group] for r in rows})
        assert list(report[f"by_{group}"]) == keys
        for key in keys:
            subset = [items[r["id"]] for r in rows if r[group] == key]
            assert_summary(report[f"by_{group}"][key], ref_summary(subset))
    multi = [items[r["id"]] for r in rows if r["num_candidates"] > 1]
    assert len(multi) == 19  # the Kvasir samples with two or more polyps
    assert_summary(report["by_candidates"]["multi"], ref_summary(multi))
    assert report["failure_reasons"] == {"no box found": report["overall"]["parse_failures"]}
    md = (tmp_path / "r" / "report.md").read_text()
    assert "`hc18`" in md and "`multi`" in md and "no box found" in md


def test_merged_folder_with_volume_slices(merged_kvasir_brats, tmp_path, write_dialect_answer):
    """A real ``medground merge`` output (Kvasir + BraTS slices): every dialect's oracle text
    scores 1.0, and BraTS answers mirrored across the image's vertical axis are mirror errors,
    per source and label exactly as computed here."""
    rows = truth(merged_kvasir_brats)
    assert {r["source"] for r in rows} == {"kvasir_seg", "brats2013"}
    for dialect in sorted(DIALECT_CONVENTIONS):
        lines = oracle_lines(rows, dialect, write_dialect_answer)
        preds = write_jsonl(tmp_path / f"{dialect}.jsonl", lines)
        report = evaluate(merged_kvasir_brats, f"chat-{dialect}", preds, report_dir=tmp_path / "o")
        assert report["overall"]["acc@0.7"] == 1.0 and report["overall"]["n"] == len(rows), dialect
    lines, items = [], {}
    for r in rows:
        w, (x0, y0, x1, y1) = r["width"], r["bbox_xyxy"]
        mirrored = [w - x1, y0, w - x0, y1]  # x -> width - x
        box = mirrored if r["source"] == "brats2013" else r["bbox_xyxy"]
        lines.append({"id": r["id"], "bbox_xyxy": box})
        items[r["id"]] = {
            "iou": ref_iou(box, r["bbox_xyxy"]),
            "mirror": ref_iou(box, mirrored),
            "status": "ok",
        }
    preds = write_jsonl(tmp_path / "mirrored.jsonl", lines)
    report = evaluate(merged_kvasir_brats, "grounding", preds, report_dir=tmp_path / "m")
    assert_summary(report["overall"], ref_summary(list(items.values())))
    brats = [items[r["id"]] for r in rows if r["source"] == "brats2013"]
    assert report["by_source"]["brats2013"]["mirror_errors"] > len(brats) / 2
    assert report["by_source"]["kvasir_seg"]["mirror_errors"] == 0
    for group in ("source", "modality", "label"):
        for key, got in report[f"by_{group}"].items():
            assert_summary(got, ref_summary([items[r["id"]] for r in rows if r[group] == key]))


def test_qwen25_answers_under_a_capped_resize(built_hc18, tmp_path, capsys):
    """A model trained with ``max_pixels`` capped answers on a smaller resized image: scored
    right with ``--max-pixels``, wrongly (boxes too small) without."""
    rows = truth(built_hc18)
    resize = boxes.SmartResize(max_pixels=200_704)
    lines = [
        {
            "id": r["id"],
            "output": json.dumps(
                [{"bbox_2d": boxes.to_qwen25(r["bbox_xyxy"], r["width"], r["height"], resize)}]
            ),
        }
        for r in rows
    ]
    preds = write_jsonl(tmp_path / "capped.jsonl", lines)
    cmd = ["eval", "--dataset", str(built_hc18), "--config", "chat-qwen2.5-vl"]
    cmd += ["--predictions", str(preds)]
    assert main([*cmd, "--max-pixels", "200704", "--report-dir", str(tmp_path / "a")]) == 0
    right = json.loads((tmp_path / "a" / "report.json").read_text())
    assert right["overall"]["acc@0.7"] == 1.0
    assert right["qwen25_resize"] == {"min_pixels": 3136, "max_pixels": 200_704}
    assert main([*cmd, "--report-dir", str(tmp_path / "b")]) == 0
    wrong = json.loads((tmp_path / "b" / "report.json").read_text())
    assert wrong["overall"]["miou"] < 0.6
    capsys.readouterr()
    assert main([*cmd[:4], "grounding", *cmd[5:], "--min-pixels", "100"]) == 2
    assert "only apply to qwen25" in capsys.readouterr().err


def test_split_selection_and_duplicates(built_kvasir, tmp_path):
    rows = truth(built_kvasir)
    test_rows = [r for r in rows if r["split"] == "test"]
    lines = [{"id": r["id"], "bbox_xyxy": r["bbox_xyxy"]} for r in rows]
    lines.append({"id": test_rows[0]["id"], "bbox_xyxy": None})  # second answers, both failed
    lines.append({"id": test_rows[1]["id"], "output": None})
    preds = write_jsonl(tmp_path / "p.jsonl", lines)
    report = evaluate(built_kvasir, "grounding", preds, split="test")
    assert report["report_dir"] == str(tmp_path / "p-eval")
    counts = report["counts"]
    assert counts["targets"] == len(test_rows)
    assert counts["other_split"] == len(rows) - len(test_rows)
    assert counts["duplicate_ids"] == 2 and counts["scored"] == len(test_rows) + 2
    assert report["overall"]["acc@0.5"] == pytest.approx(len(test_rows) / (len(test_rows) + 2))
    assert report["overall"]["parse_failures"] == 2
    assert report["failure_reasons"] == {"bbox_xyxy is not a list of numbers": 1, "empty answer": 1}
    with pytest.raises(ValueError, match="no targets in split 'nope'"):
        evaluate(built_kvasir, "grounding", preds, split="nope")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "kvasir_seg/nope/polyp/0", "bbox_xyxy": [0, 0, 1, 1]}\n', "line 1: 'kvasir_seg/"),
        ('{"id": "x", "output": "[1, 2, 3, 4]"\n', "line 1: not JSON"),
        ('\n{"id": "x", "output": "a", "bbox_xyxy": [1, 2, 3, 4]}\n', "line 2: needs exactly one"),
        ('{"output": "[1, 2, 3, 4]"}\n', "line 1: expected an object with a string 'id'"),
        ('{"id": "x", "output": 5}\n', "line 1: 'output' must be a string"),
    ],
)
def test_bad_prediction_files_name_file_and_line(content, message, built_kvasir, tmp_path):
    preds = tmp_path / "bad.jsonl"
    preds.write_text(content, "utf-8")
    with pytest.raises(InputError, match=message) as info:
        evaluate(built_kvasir, "grounding", preds)
    assert str(preds) in str(info.value)


def test_cli_reports_errors_and_baseline_round_trip(built_hc18, tmp_path, capsys):
    missing = tmp_path / "absent.jsonl"
    assert main(["eval", "--dataset", str(built_hc18), "--predictions", str(missing)]) == 2
    assert "predictions file not found" in capsys.readouterr().err
    preds = tmp_path / "whole.jsonl"
    assert main(["baseline", "--dataset", str(built_hc18), "--kind", "whole-image",
                 "--out", str(preds), "--split", "validation"]) == 0  # fmt: skip
    assert main(["eval", "--dataset", str(built_hc18), "--predictions", str(preds),
                 "--split", "validation"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "2 targets, 2 scored" in out and "report:" in out
    code = main(["baseline", "--dataset", str(built_hc18), "--kind", "center-prior",
                 "--out", str(preds), "--prior-split", "test"])  # fmt: skip
    assert code == 2
    assert "no targets in split 'test'" in capsys.readouterr().err


def test_low_coverage_warns_and_strict_fails(built_kvasir, tmp_path, capsys):
    """Predictions for a handful of the targets (or another split's) score near 0: that says
    more about the file than about the model, so ``eval`` warns, and ``--strict`` fails."""
    rows = truth(built_kvasir)
    few = write_jsonl(
        tmp_path / "few.jsonl", [{"id": r["id"], "bbox_xyxy": r["bbox_xyxy"]} for r in rows[:5]]
    )
    cmd = ["eval", "--dataset", str(built_kvasir), "--predictions", str(few)]
    assert main(cmd) == 0
    err = capsys.readouterr().err
    assert f"warning: predictions answer 5 of {len(rows)} targets (10.0%)" in err
    assert "Traceback" not in err
    report = json.loads((tmp_path / "few-eval" / "report.json").read_text())
    assert report["counts"]["coverage"] == pytest.approx(5 / len(rows))
    assert report["warnings"] and "under the minimum 90%" in report["warnings"][0]
    assert "**Warning:**" in (tmp_path / "few-eval" / "report.md").read_text()
    assert main([*cmd, "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(few) in err and "answer 5 of" in err
    # a lower bar accepts the file; full coverage never warns
    assert main([*cmd, "--strict", "--min-coverage", "0.05"]) == 0
    full = write_jsonl(
        tmp_path / "full.jsonl", [{"id": r["id"], "bbox_xyxy": r["bbox_xyxy"]} for r in rows]
    )
    report = evaluate(built_kvasir, "grounding", full, strict=True)
    assert report["warnings"] == [] and report["counts"]["coverage"] == 1.0
    # only another split's answers: the split asked for is not covered at all
    train = [r for r in rows if r["split"] == "train"]
    other = write_jsonl(
        tmp_path / "other.jsonl", [{"id": r["id"], "bbox_xyxy": r["bbox_xyxy"]} for r in train]
    )
    with pytest.raises(InputError, match=r"answer 0 of \d+ targets of split test .*other splits"):
        evaluate(built_kvasir, "grounding", other, split="test", strict=True)
