"""The template generator on the real samples, the generation+verification pipeline, the
grounding/rejected contract, the manifest entry and the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from datasets import concatenate_datasets, load_dataset
from medground_hf.generation import vocab
from medground_hf.generation.base import Generated, Generator
from medground_hf.generation.commands import GenerationOptions
from medground_hf.generation.pipeline import Siblings, Stage, labels_of, run
from medground_hf.generation.templates import TEMPLATE_VERSION, TemplateGenerator
from medground_hf.generation.verify import STAGES

from medground_hf.cli import main
from medground_hf.folder import read_manifest


def _splits(folder: Path) -> dict:
    return dict(load_dataset(str(folder), "grounding"))


def _rows(folder: Path, config: str) -> list[dict]:
    if not (folder / config).is_dir():  # e.g. no rejects at all
        return []
    # force_redownload: `medground generate` rewrites shards under the same names
    parts = load_dataset(str(folder), config, download_mode="force_redownload")
    return [r for ds in parts.values() for r in ds.remove_columns(["image"])]


def test_plain_build_writes_queries_rejects_and_manifest(generated_kvasir, built_kvasir):
    manifest = read_manifest(generated_kvasir)
    v = manifest["verification"]
    assert v["generator"] == "template" and v["prompt_version"] == TEMPLATE_VERSION
    assert v["queries_generated"] == v["queries_kept"] + v["queries_rejected"]
    assert v["targets_total"] == v["targets_kept"] + v["targets_rejected"]
    grounding, rejected = _rows(generated_kvasir, "grounding"), _rows(generated_kvasir, "rejected")
    all_ids = {r["id"] for r in _rows(built_kvasir, "grounding")}
    assert v["targets_total"] == len(all_ids) == 50
    assert len(grounding) == v["targets_kept"]
    whole = [r for r in rejected if r["id"] not in {g["id"] for g in grounding}]
    assert {r["id"] for r in grounding} | {r["id"] for r in whole} == all_ids  # nothing lost
    assert sum(len(r["queries"]) for r in grounding) == v["queries_kept"]
    assert sum(len(r["queries"]) for r in rejected) == v["queries_rejected"]
    for row in grounding:
        assert row["queries"] and all(q["kept"] for q in row["queries"])
        for q in row["queries"]:
            assert {x["stage"] for x in q["verdicts"]} == set(STAGES)
            assert all(x["passed"] for x in q["verdicts"])
            assert q["generator"] == "template" and q["prompt_version"] == TEMPLATE_VERSION
    for row in rejected:
        assert row["rejected_stage"] and row["rejected_reason"]
    stages = {(s["stage"], s["source"]): s for s in v["stages"]}
    assert set(stages) == {(stage, "kvasir_seg") for stage in STAGES}
    assert all(0 <= s["passed"] <= s["checked"] for s in stages.values())
    assert sum(r["count"] for r in v["reasons"]) == len(rejected)


@pytest.mark.parametrize("folder", ["generated_kvasir", "generated_hc18", "built_brats"])
def test_every_template_query_passes_verification(folder, request):
    """Only whole targets may be rejected (by the offline visual check, or as targets nothing
    visible singles out); no template query is ever rejected for what it says."""
    out = request.getfixturevalue(folder)
    rejected = _rows(out, "rejected")
    assert all(r["rejected_stage"] in ("visual", "generation") for r in rejected), [
        (r["id"], r["rejected_stage"], r["rejected_reason"], [q["text"] for q in r["queries"]])
        for r in rejected
    ]
    for row in rejected:
        assert not row["queries"]  # rejected as a whole, before any query was written


def test_template_queries_are_varied_and_multi_candidate_ones_disambiguate(generated_kvasir):
    grounding = _rows(generated_kvasir, "grounding")
    texts = [q["text"] for r in grounding for q in r["queries"]]
    assert len(set(texts)) >= 0.6 * len(texts)  # varied wording across targets too
    styles = {q["style"] for r in grounding for q in r["queries"]}
    assert styles == {"location", "morphology", "relational", "clinical"}
    for row in grounding:
        for q in row["queries"]:
            assert not any(ch.isdigit() for ch in q["text"])
            if "left" in q["text"] or "right" in q["text"]:
                assert "image" in q["text"] and "patient" not in q["text"]
        if row["num_candidates"] > 1:
            words = ("larg", "small", "most", "farthest", "second", "third", "nearer", "nearest",
                     "of the two", "above", "below", "to the left", "to the right", "higher",
                     "lower", "highest", "lowest", "half of", "side of", "part of", "next to",
                     "inside")  # fmt: skip
            assert all(any(w in q["text"] for w in words) for q in row["queries"]), row["id"]


def test_template_generator_is_deterministic_per_seed(built_kvasir):
    splits = _splits(built_kvasir)
    labels = labels_of(read_manifest(built_kvasir)["sources"])
    stage = Stage(TemplateGenerator(), None, labels, Siblings.scan(splits))
    records = list(splits["train"].select(range(12)))
    targets = [stage.target(r) for r in records]

    def texts(seed: int, order: list) -> dict:
        out = TemplateGenerator(seed=seed, queries_per_target=4).generate(order)
        return {
            t.record["id"]: [q["text"] for q in g.items] for t, g in zip(order, out, strict=True)
        }

    first = texts(7, targets)
    assert texts(7, list(reversed(targets))) == first  # independent of batch order
    assert texts(8, targets) != first
    assert all(len(v) == 4 for v in first.values())


class Planted(Generator):
    """A stand-in generator writing fixed (partly false) queries, to test the verifier."""

    name = "planted"
    prompt_version = "planted-v1"

    def __init__(self, texts: list[str]):
        super().__init__()
        self.texts = texts

    def generate(self, targets):
        return [Generated([{"text": t, "style": "location"} for t in self.texts]) for _ in targets]


def test_planted_false_queries_are_rejected_with_the_right_reason(built_kvasir):
    splits = _splits(built_kvasir)
    labels = labels_of(read_manifest(built_kvasir)["sources"])
    planted = ["the polyp on the left side of the image", "the larger of the two polyps"]
    outcome = run(splits, labels, Planted([*planted, "The larger of  the two polyps"]))
    kept = concatenate_datasets(list(outcome.grounding.values())).remove_columns(["image"])
    rejected = concatenate_datasets(list(outcome.rejected.values())).remove_columns(["image"])
    kept_texts = {(r["id"], q["text"]) for r in kept for q in r["queries"]}
    reasons = {
        (r["id"], r["queries"][0]["text"]): (r["rejected_stage"], r["rejected_reason"])
        for r in rejected
        if len(r["queries"]) == 1
    }
    records = {
        r["id"]: r for r in concatenate_datasets(list(splits.values())).remove_columns("image")
    }
    checked = 0
    for rid, record in records.items():
        if record["visual"]["contrast"] < 0.1:
            continue  # rejected as a whole by the visual check
        left, larger = (rid, planted[0]), (rid, planted[1])
        lefts = [r for r in records.values() if r["image_id"] == record["image_id"]]
        lefts = [r["id"] for r in lefts if vocab.horizontal(r) == "left"]
        if lefts == [rid]:  # on the left, and the only candidate there
            assert left in kept_texts
        else:
            stage, reason = reasons[left]
            assert stage == "geometry"
            assert "is right" in reason or "center" in reason or "ambiguous" in reason, reason
        if record["relations"]["largest"] and record["num_candidates"] == 2:
            assert larger in kept_texts
        else:
            stage, reason = reasons[larger]
            assert stage == "geometry", reason
            assert "not the largest" in reason or "has 3 polyp candidate" in reason, reason
        checked += 1
    assert checked >= 40
    v = outcome.verification
    invisible = sum(r["visual"]["contrast"] < 0.1 for r in records.values())
    duplicates = [r for r in rejected if r["rejected_reason"] == "repeats another query"]
    assert len(duplicates) == len(records) - invisible
    assert {r["rejected_stage"] for r in duplicates} == {"format"}
    # targets failing the visual check are rejected before generation: no query is asked
    assert v["queries_generated"] == 3 * (v["targets_total"] - invisible)
    assert v["queries_generated"] == v["queries_kept"] + v["queries_rejected"]


def test_cli_build_generate_and_no_generator(kvasir_dir, tmp_path, capsys):
    out = tmp_path / "k"
    code = main(
        ["build", "kvasir_seg", "--data-dir", str(kvasir_dir), "--out", str(out), "--seed", "3",
         "--queries-per-target", "2"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "queries by template" in printed and "visual" in printed
    first = {r["id"]: [q["text"] for q in r["queries"]] for r in _rows(out, "grounding")}
    assert all(1 <= len(v) <= 2 for v in first.values())
    assert main(["generate", str(out), "--seed", "4", "--queries-per-target", "4"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]  # no staging folder left
    second = {r["id"]: [q["text"] for q in r["queries"]] for r in _rows(out, "grounding")}
    assert set(second) == set(first) and first != second
    v = read_manifest(out)["verification"]
    visual = sum(r["count"] for r in v["reasons"] if r["stage"] == "visual")
    assert v["queries_generated"] == 4 * (v["targets_total"] - visual)
    card = (out / "README.md").read_text()
    rejects = v["queries_rejected"] + v["targets_rejected"]
    assert ("config_name: rejected" in card) == (rejects > 0)

    bare = tmp_path / "bare"
    assert main(["build", "kvasir_seg", "--data-dir", str(kvasir_dir), "--out", str(bare),
                 "--generator", "none"]) == 0  # fmt: skip
    assert "verification" not in read_manifest(bare)
    assert not (bare / "rejected").exists()
    assert all(not r["queries"] for r in _rows(bare, "grounding"))
    assert main(["generate", str(bare)]) == 0
    assert json.loads((bare / "medground.json").read_text())["verification"]["queries_kept"] > 0


def test_generation_options_are_validated(tmp_path, capsys):
    with pytest.raises(ValueError, match="--batch"):
        GenerationOptions(generator="template", batch=True)
    with pytest.raises(ValueError, match="--generator"):
        GenerationOptions(generator="gpt")
    assert main(["generate", str(tmp_path)]) == 2
    assert "medground.json missing" in capsys.readouterr().err


def test_templates_on_a_volume_slice_word_the_patient_side_and_pass(tmp_path):
    """A radiological axial slice with a brain context, edema (one region) around two enhancing
    lesions: the patient side is always "the patient's ...", relations and synonyms that would
    claim something by themselves are handled, and every query passes verification."""
    import io

    import numpy as np
    from datasets import Dataset
    from PIL import Image as PILImage

    from medground_hf.record import GROUNDING_FEATURES
    from medground_hf.sample import Sample, SliceInfo, sample_to_records
    from medground_hf.source import LabelSpec, SourceInfo

    shape = (240, 240)
    yy, xx = np.mgrid[: shape[0], : shape[1]]

    def disk(cy, cx, r):
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2

    mri = ("MRI", "MRI FLAIR")
    edema = LabelSpec(2, "edema", "peritumoral edema", synonyms=("oedema",), single_region=True,
                      modalities=mri)  # fmt: skip
    enhancing = LabelSpec(4, "enhancing_tumour", "enhancing tumour", modalities=mri,
                          synonyms=("tumour with surrounding edema",))  # fmt: skip
    source = SourceInfo("vol", "Vol", "cc-by-4.0", "", True, "", "", "MRI", "brain", "",
                        (edema, enhancing))  # fmt: skip
    lesions = disk(100, 70, 12) | disk(150, 80, 6)
    ring = (disk(100, 70, 25) | disk(150, 80, 15)) & ~lesions
    image = np.full(shape, 40, np.uint8)
    image[disk(120, 120, 100)] = 90
    image[ring] = 170
    image[lesions] = 250
    png = io.BytesIO()
    PILImage.fromarray(image).save(png, format="PNG")
    sample = Sample(
        case_id="c1", group_id="c1", image=image, image_bytes=png.getvalue(), source_files=[],
        masks=[(edema, ring), (enhancing, lesions)], modality="MRI FLAIR",
        pixel_spacing_mm=(1.0, 1.0), slice=SliceInfo("c1", "axial", 70, 155, (1.0, 1.0, 1.0)),
        context={"brain": disk(120, 120, 100)},
        patient_side=lambda m: "right" if np.argwhere(m)[:, 1].mean() < 120 else "left",
    )  # fmt: skip
    records, _ = sample_to_records(sample, source, builder="t", builder_version="1",
                                   config_name="d")  # fmt: skip
    ds = Dataset.from_list(records, features=GROUNDING_FEATURES)
    outcome = run(
        {"train": ds}, labels_of([source]), TemplateGenerator(seed=1, queries_per_target=4)
    )
    v = outcome.verification
    assert v["queries_kept"] == v["queries_generated"] == 4 * len(records), v["reasons"]
    texts = [q["text"] for r in outcome.grounding["train"] for q in r["queries"]]
    assert not any("surrounding" in t for t in texts)
    for text in texts:
        if "left" in text or "right" in text:
            assert "patient's" in text or "image" in text, text
    assert any("patient's right" in t for t in texts)


_SIZE_WORD = re.compile(r"\b(tiny|small|large|medium-sized|moderately sized)\b")
_COMPARED = re.compile(r"\b(larg|small)(est|er)\b")
_AWAY = {
    r"leftmost|farthest to the left": r"\bright\b",
    r"rightmost|farthest to the right": r"\bleft\b",
    r"uppermost": r"\b(lower|bottom)\b",
    r"lowermost": r"\b(upper|top)\b",
}


@pytest.mark.parametrize("folder", ["generated_kvasir", "generated_hc18", "built_brats"])
def test_template_wording_reads_as_a_clinician_would_write_it(folder, request):
    """What a reader checks by eye on every kept query of the three samples: "the larger" of
    two (not "the largest"), no "two necrosis", one spelling per query, no size said twice
    ("the largest polyp, which is large"), no phrase pointing away from a positional superlative
    ("the leftmost polyp toward the upper right"), a corner only where the cues put it."""
    rows = _rows(request.getfixturevalue(folder), "grounding")
    checked = 0
    for row in rows:
        for q in row["queries"]:
            text, n = q["text"], row["num_candidates"]
            assert not re.search(r"\b(\w+) \1\b", text), text  # "the the"
            assert vocab.in_dialect(text, vocab.dialect(text)) == text, text
            if n == 2:
                assert not re.search(r"\b(largest|smallest)\b", text), text
            if n > 1:  # "the larger necrosis" (a mass noun counted), not "the focus of necrosis"
                assert not re.search(
                    r"(?<!of )\b(necrosis|edema|oedema)\s+(of|seen|in|,|$)", text
                ), text
                assert not (_COMPARED.search(text) and _SIZE_WORD.search(text)), text
            for lead, away in _AWAY.items():
                if re.search(lead, text):
                    assert not re.search(away, text.replace("patient's", "")), text
            corner = re.search(r"in the (upper|lower) (left|right) corner", text)
            if corner:
                assert row["spatial"]["grid_cell"] == f"{corner[1]} {corner[2]}", text
            checked += 1
    assert checked >= 100


def test_volume_sides_in_template_queries_are_true_in_radiological_display(built_brats):
    """Independent of the verifier: every side word of a kept BraTS query is true, the
    patient's side against the recorded patient side, the image's against the centroid; in
    radiological display a patient-right target lies on the image's left."""
    rows = _rows(built_brats, "grounding")
    sides = {"patient": set(), "image": set()}
    for row in rows:
        x = row["centroid_xy"][0] / row["width"]
        image_side = "left" if x < 0.45 else "right" if x > 0.55 else "center"
        if row["spatial"]["patient_side"] in ("left", "right"):
            opposite = {"left": "right", "right": "left"}[row["spatial"]["patient_side"]]
            assert image_side in (opposite, "center"), row["id"]
        for q in row["queries"]:
            text = q["text"]
            for side in re.findall(r"patient's (left|right)", text):
                assert side == row["spatial"]["patient_side"], (row["id"], text)
                sides["patient"].add(side)
            for side in re.findall(r"\b(left|right) (?:side|half) of the image", text):
                assert side == image_side, (row["id"], text)
                sides["image"].add(side)
            unsaid = re.sub(r"patient's (left|right)", "", text)
            assert not re.search(r"\b(left|right)\b", unsaid) or re.search(r"image|slice", text)
    assert sides["patient"] == {"left", "right"} and sides["image"] == {"left", "right"}
