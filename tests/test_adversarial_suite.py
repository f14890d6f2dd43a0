"""The adversarial verification suite (``tests/data/adversarial/queries.jsonl``) and its score.

The suite is test data written by ``benchmarks/adversarial/make_suite.py`` from the raw sample
masks and NIfTI affines with its own geometry (``benchmarks/adversarial/truth.py``), never from
the project's cues. These tests check that the committed file is exactly what that code writes
from the samples, that the suite's own rules behave on constructed masks, and that the verifier
meets issue 9's targets on it (the last is expected to fail until the fail-closed verifier lands).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "benchmarks" / "adversarial")]

import bench_verifier  # noqa: E402
import make_suite  # noqa: E402
import truth  # noqa: E402

SUITE = REPO / "tests" / "data" / "adversarial" / "queries.jsonl"
CLAIM_TYPES = {
    "plain", "half", "quadrant", "corner", "centre", "edge", "clock", "relation", "extremal",
    "size_compare", "nearer_centre", "adjacency", "count", "patient_side", "direction", "lobe",
    "organ", "modality", "size_bare", "size_image", "shape", "needs_judge", "unverifiable",
    "unanchored_side", "ambiguous",
}  # fmt: skip


@pytest.fixture(scope="module")
def suite() -> list[dict]:
    return bench_verifier.read_suite(SUITE)


@pytest.fixture(scope="module")
def folders(generated_kvasir: Path, generated_hc18: Path, built_brats: Path) -> dict[str, Path]:
    """The default builds (template queries) of the three samples, as the suite names them."""
    return {"kvasir_seg": generated_kvasir, "hc18": generated_hc18, "brats2013": built_brats}


def test_the_committed_suite_is_what_the_generator_writes_from_the_raw_masks(
    shared_data, folders, suite
):
    scenes, skipped = truth.load_scenes(shared_data, folders)
    assert skipped == []  # every built target matched one own component, mask for mask
    assert {s.source for s in scenes} == {"kvasir_seg", "hc18", "brats2013"}
    written = [item.line() for item in make_suite.suite(scenes, seed=0)]
    assert written == SUITE.read_text(encoding="utf-8").splitlines(), (
        "regenerate: python benchmarks/adversarial/make_suite.py"
    )


def test_suite_composition(suite):
    assert len(suite) >= 2000
    assert all(
        set(item) == {"id", "text", "truth", "claim_type", "negated", "note"} for item in suite
    )
    assert len({(i["id"], i["text"]) for i in suite}) == len(suite)
    assert {i["id"].split("/")[0] for i in suite} == {"kvasir_seg", "hc18", "brats2013"}
    assert {i["claim_type"] for i in suite} == CLAIM_TYPES
    texts: dict[tuple[str, bool], set[str]] = {}
    for i in suite:
        texts.setdefault((i["claim_type"], i["truth"]), set()).add(i["text"].lower())
    always_false = {"needs_judge", "unverifiable", "unanchored_side", "ambiguous", "size_bare"}
    for kind in CLAIM_TYPES:
        assert len(texts.get((kind, False), ())) >= (0 if kind == "plain" else 20), kind
        if kind not in always_false:
            assert len(texts.get((kind, True), ())) >= 9, kind  # true ones too, paraphrased
    negated = Counter(i["truth"] for i in suite if i["negated"])
    assert negated[True] >= 100 and negated[False] >= 100
    assert sum(i["truth"] for i in suite) >= 1000
    # the words the issue names are in it
    joined = "\n".join(i["text"].lower() for i in suite)
    for words in (
        "large bowel", "o'clock", "one of several", "other than", "rather than", "except",
        "neither", "without", "left cerebral hemisphere", "-sided", "frontal", "spinal cord",
        "gadolinium", "diffusion-weighted", "mammogram", "histology", "pedunculated",
        "crescent", "higher up",
    ):  # fmt: skip
        assert words in joined, words


def _disk(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def test_suite_rules_on_constructed_masks():
    """The suite's own rules, on masks whose answers are known by construction."""
    shape = (200, 300)
    left = truth.Region("polyp", _disk(shape, 60, 50, 20))  # upper left, near the left edge
    right = truth.Region("polyp", _disk(shape, 150, 230, 30))  # lower right, larger
    scene = truth.Scene("t", "t/img", "endoscopy", 300, 200, [left, right])
    assert truth.half("left")(left, scene) is True and truth.half("right")(left, scene) is False
    assert truth.half("upper")(left, scene) is True and truth.half("lower")(right, scene) is True
    assert truth.corner("upper", "left")(left, scene) is True
    assert truth.central(left, scene) is False
    assert truth.extremal("left")(left, scene) is True
    assert truth.extremal("left")(right, scene) is False
    assert truth.largest(right, scene) is True and truth.smallest(left, scene) is True
    assert truth.count(lambda n: n == 2)(left, scene) is True
    assert truth.adjacent(left, right) is False
    assert round(truth.clock_hour(left, scene)) == 10  # up and to the left: ten o'clock
    assert truth.clock(10)(left, scene) is True and truth.clock(4)(left, scene) is False
    lone = truth.Scene("t", "t/x", "endoscopy", 300, 200, [left])
    assert truth.extremal("left")(left, lone) is False  # no other candidate: never "leftmost"
    assert truth.largest(left, lone) is None  # not defined, so never claimed
    # a centroid within EPS_PX of a threshold is not decided either way
    edge = truth.Region("polyp", np.pad(np.ones((10, 10), bool), ((95, 95), (115, 175))))
    near = truth.Scene("t", "t/y", "endoscopy", 300, 200, [edge])
    assert abs(edge.cx - 0.40 * 300) < truth.EPS_PX
    assert truth.half("left")(edge, near) is None


def test_brats_display_and_patient_side_from_the_affine(brats_dir):
    """Row 0 is anterior, column 0 the patient's right, read from the file's affine
    (the sample is stored L,P,S); a target drawn on the image's left is on the patient's
    right."""
    case = truth.BratsCase.load(brats_dir / "brats_2013_pat0001_1")
    k = int(np.argmax(np.count_nonzero(case.labels == 2, axis=(0, 1))))
    case.check_display(k)
    scene = truth.brats_scene(case, "brats_2013_pat0001_1", k)
    (edema,) = [r for r in scene.regions if r.label == "edema"]
    assert truth.half("left")(edema, scene) is True  # drawn on the image's left ...
    assert truth.patient_side("right")(edema, scene) is True  # ... in the right hemisphere
    assert truth.patient_side("left")(edema, scene) is False
    assert truth.lobe("temporal")(edema, scene) is False  # no atlas: never supported


def test_verifier_meets_the_targets_on_the_suite(suite, folders):
    """Issue 9: >= 99 % of false claims rejected in every claim type, >= 95 % of true queries
    kept, no negated claim answered as its positive."""
    verdicts = bench_verifier.run_suite(suite, folders)
    score = bench_verifier.score(suite, verdicts, bench_verifier.rejected_as_whole(folders))
    assert score.unscored < 100  # queries about targets a target-level check rejects
    report = bench_verifier.table(score) + "\n" + bench_verifier.examples(score.wrong, 2)
    assert not score.failing_types(), report
    assert not score.negation_errors(), report


def test_suite_lines_are_valid_verify_input(suite):
    """The suite file is a ``medground verify`` query file as it is (extra keys ignored)."""
    from medground_hf.generation.reverify import read_lines

    lines = list(read_lines(SUITE))
    assert [line.problem for line in lines] == [None] * len(suite)
    assert [(line.id, line.text) for line in lines] == [(i["id"], i["text"]) for i in suite]
