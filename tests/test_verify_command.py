"""``medground verify``: queries from a JSONL file re-checked against a built or merged folder.

Real builds of the samples, the real verifier, the real SDKs against the fake VLM server for the
judge; bad lines and bad folders are reported, never a traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fake_vlm_server import FakeVLM, Fault
from medground_hf.generation.reverify import Index, verify_queries

from medground_hf.cli import main
from medground_hf.folder import iter_rows

KEY = "sk-fake-verify-DO-NOT-LEAK"


def stored_queries(folder: Path) -> list[dict]:
    """Every query a build verified, with the verdicts it stored (kept and rejected)."""
    out = []
    for config in ("grounding", "rejected"):
        for row in iter_rows(folder, config, columns=["id", "queries"]):
            for q in row["queries"]:
                out.append({"id": row["id"], "text": q["text"], "style": q["style"], **q})
    return out


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), "utf-8"
    )
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("fixture", ["generated_kvasir", "built_brats"])
def test_reverifying_a_build_gives_the_verdicts_it_stored(fixture, request):
    """The same queries through ``verify`` and through the build's pipeline: same verdicts,
    including the disambiguation among siblings (Kvasir images with 2-3 polyps, BraTS slices
    with several labels)."""
    folder = request.getfixturevalue(fixture)
    stored = stored_queries(folder)
    assert len(stored) > 100
    report = verify_queries(folder, [{k: q[k] for k in ("id", "text", "style")} for q in stored])
    assert [(r["id"], r["text"]) for r in report.verdicts] == [(q["id"], q["text"]) for q in stored]
    assert [r["kept"] for r in report.verdicts] == [q["kept"] for q in stored]
    assert [r["verdicts"] for r in report.verdicts] == [q["verdicts"] for q in stored]
    assert report.summary["checked"] == len(stored) and report.summary["not_checked"] == 0


def test_cli_reports_every_line_in_order(generated_kvasir, tmp_path, capsys):
    two = "kvasir_seg/cju2zjcvj9qma0801dk71hhi0/polyp/0"  # an image with two polyps
    one = "kvasir_seg/cju353d1eda8c07992afde611/polyp/0"  # a lone polyp
    lines = [
        {"id": two, "text": "the larger of the two polyps"},
        {"id": two, "text": "the polyp in this colonoscopy image"},  # ambiguous
        "not json {",
        "",
        {"id": "kvasir_seg/nope/polyp/0", "text": "the polyp"},
        {"id": 3},
        [1, 2],
        {"id": one, "text": "the only polyp in the image", "style": "clinical", "truth": True},
        {"id": one, "text": "the polyp", "style": "poetic"},
        {"id": one, "text": "the polyp in the stomach on this colonoscopy image"},
    ]
    queries = write_jsonl(tmp_path / "mine.jsonl", lines)
    assert main(["verify", str(generated_kvasir), "--queries", str(queries)]) == 0
    report = tmp_path / "mine-verify"
    verdicts = read_jsonl(report / "verdicts.jsonl")
    assert [v["line"] for v in verdicts] == list(range(1, len(lines) + 1))
    assert [v["kept"] for v in verdicts] == [True, False, False, False, False] + [False] * 2 + [
        True,
        False,
        False,
    ]
    first_failure = [next((x for x in v["verdicts"] if not x["passed"]), None) for v in verdicts]
    assert (first_failure[1]["stage"], first_failure[1]["check"]) == ("geometry", "unique")
    assert [f["check"] for f in first_failure[2:7]] == [
        "malformed",
        "malformed",
        "unknown_id",
        "malformed",
        "malformed",
    ]
    assert all(f["stage"] == "input" for f in first_failure[2:7])
    assert first_failure[2]["reason"].startswith("line 3: not JSON")
    assert first_failure[4]["reason"] == "line 5: no target 'kvasir_seg/nope/polyp/0' in the folder"
    assert "'style' must be one of" in first_failure[8]["reason"]
    assert (first_failure[9]["stage"], first_failure[9]["check"]) == ("medical_prior", "anatomy")
    summary = json.loads((report / "summary.json").read_text())
    assert summary["lines"] == 10 == summary["checked"] + summary["not_checked"]
    assert (summary["checked"], summary["kept"], summary["rejected"]) == (4, 2, 2)
    assert summary["problems_by_check"] == {"malformed": 5, "unknown_id": 1}
    assert summary["rejected_by"] == {"geometry/unique": 1, "medical_prior/anatomy": 1}
    assert [p["line"] for p in summary["problems"]] == [3, 4, 5, 6, 7, 9]
    assert summary["sources"]["kvasir_seg"]["queries"] == 4
    assert summary["sources"]["kvasir_seg"]["rejected by geometry/unique"] == 1
    box = next(c for c in summary["checks"] if c["check"] == "box")
    assert box == {"stage": "geometry", "check": "box", "checked": 4, "passed": 4}
    out = capsys.readouterr().out
    assert "checked 4 = kept 2 + rejected 2; not checked 6" in out
    assert "line 5: no target 'kvasir_seg/nope/polyp/0' in the folder" in out


def test_verify_a_merged_folder(merged_kvasir_brats, generated_kvasir, built_brats, tmp_path):
    """A merged folder answers as its parts do; counts per source."""
    picked = stored_queries(generated_kvasir)[:20] + stored_queries(built_brats)[:20]
    lines = [{"id": q["id"], "text": q["text"], "style": q["style"]} for q in picked]
    lines.append({"id": "hc18/000_HC/fetal_head/0", "text": "the fetal head"})  # not merged
    queries = write_jsonl(tmp_path / "q.jsonl", lines)
    report_dir = tmp_path / "report"
    args = ["verify", str(merged_kvasir_brats), "--queries", str(queries)]
    assert main([*args, "--report-dir", str(report_dir)]) == 0
    verdicts = read_jsonl(report_dir / "verdicts.jsonl")
    assert [v["verdicts"] for v in verdicts[:40]] == [q["verdicts"] for q in picked]
    assert verdicts[40]["verdicts"][0]["check"] == "unknown_id"
    summary = json.loads((report_dir / "summary.json").read_text())
    assert {s: c["queries"] for s, c in summary["sources"].items()} == {
        "brats2013": 20,
        "kvasir_seg": 20,
    }


def test_only_the_needed_records_are_held(built_brats):
    """The folder is streamed: the index holds the queried targets and the siblings of their
    images, not the folder."""
    rows = list(iter_rows(built_brats, "grounding", columns=["id", "image_id"]))
    image = next(r["image_id"] for r in rows if r["id"].endswith("/necrosis/1"))
    target = next(r["id"] for r in rows if r["image_id"] == image)
    index = Index.load(built_brats, {target}, images=False)
    assert list(index.records) == [target]
    assert "image" not in index.records[target]  # no image bytes without a judge
    assert set(index.siblings.by_image) == {image}
    assert {s["image_id"] for s in index.siblings.by_image[image]} == {image}
    assert len(index.siblings.by_image[image]) == sum(r["image_id"] == image for r in rows)


@pytest.mark.parametrize("backend", ["anthropic", "openai-compatible"])
def test_judge_runs_on_queries_that_passed_offline(
    generated_kvasir, tmp_path, backend, monkeypatch
):
    monkeypatch.setenv("FAKE_VLM_KEY", KEY)
    one = "kvasir_seg/cju353d1eda8c07992afde611/polyp/0"
    lines = [
        {"id": one, "text": "the only polyp in the image"},
        {"id": one, "text": "the polyp in the stomach"},  # rejected offline: never judged
        {"id": one, "text": "the lone polyp in this colonoscopy image"},
    ]
    queries = write_jsonl(tmp_path / "q.jsonl", lines)
    with FakeVLM() as server:
        server.faults = [Fault("deny")]  # the first judged query is denied
        base = server.url if backend == "anthropic" else f"{server.url}/v1"
        args = ["verify", str(generated_kvasir), "--queries", str(queries), "--judge", backend]
        args += ["--base-url", base, "--api-key-env", "FAKE_VLM_KEY"]
        args += ["--cache", str(tmp_path / "cache.sqlite"), "--judge-model", "judge-vlm"]
        args += ["--concurrency", "1"]  # requests in line order: the first one is denied
        assert main(args) == 0
        judged = sum(server.calls.values())
    verdicts = read_jsonl(tmp_path / "q-verify" / "verdicts.jsonl")
    assert judged == 2
    assert [v["kept"] for v in verdicts] == [False, False, True]
    checks = [[x["check"] for x in v["verdicts"] if x["stage"] == "visual"] for v in verdicts]
    assert checks[0][-1] == checks[2][-1] == "vlm_judge" and "vlm_judge" not in checks[1]
    assert "does not single out" in verdicts[0]["verdicts"][-1]["reason"]
    summary = (tmp_path / "q-verify" / "summary.json").read_text()
    assert json.loads(summary)["judge"]["usage"]["requests"] == 2
    assert KEY not in summary and KEY not in (tmp_path / "q-verify" / "verdicts.jsonl").read_text()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_folder", "not a medground dataset folder"),
        ("no_queries", "query file does not exist"),
        ("queries_dir", "is a folder, expected a JSONL query file"),
        ("binary", "not UTF-8 text"),
        ("no_shards", "listed in medground.json but missing"),
        ("edited_shard", "differs from the sha256 in medground.json"),
        ("judge_model", "--judge openai-compatible needs --judge-model"),
    ],
)
def test_bad_input_is_one_line_not_a_traceback(case, message, generated_kvasir, tmp_path, capsys):
    folder = generated_kvasir
    queries = write_jsonl(tmp_path / "q.jsonl", [{"id": "a", "text": "b"}])
    extra: list[str] = []
    if case == "no_folder":
        folder = tmp_path / "missing"
    elif case == "no_queries":
        queries = tmp_path / "missing.jsonl"
    elif case == "queries_dir":
        queries = tmp_path
    elif case == "binary":
        queries.write_bytes(b'{"id": "\xff\xfe"}\n')
    elif case in ("no_shards", "edited_shard"):  # a copy of the build, damaged
        folder = tmp_path / "copy"
        shutil.copytree(generated_kvasir, folder)
        shard = next((folder / "grounding").glob("*.parquet"))
        if case == "no_shards":
            shard.unlink()
        else:  # same size, same rows, one byte of a footer-free region changed
            data = bytearray(shard.read_bytes())
            data[len(data) // 2] ^= 0xFF
            shard.write_bytes(bytes(data))
    else:
        extra = ["--judge", "openai-compatible"]
    assert main(["verify", str(folder), "--queries", str(queries), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medground verify: error: ") and message in err
    assert "\n" not in err and "Traceback" not in err
