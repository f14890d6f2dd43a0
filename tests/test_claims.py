"""Every claim type the verifier reads, true and false, with its negations, on records the core
makes from constructed masks (docs/viewer-rules.md gives the rules, docs/verification.md the
wording). A query is kept only when every claim holds and every other word is neutral.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from medground_hf.generation import claims, vocab
from medground_hf.generation.pipeline import verifier_terms
from synthetic_records import LESION, POLYP, SHAPE, box, disk, failed, kept, records, run

from medground_hf import margins
from medground_hf.sample import SliceInfo
from medground_hf.source import POLYP_SIZE_CLASSES


@pytest.fixture(scope="module")
def scene():
    """One polyp per image, placed where each position claim is clearly true or false
    (200 x 300 images)."""
    return {
        # centroid (0.20 W, 0.25 H): left, upper, upper left corner, at no edge
        "upper_left": records([disk(SHAPE, 50, 60, 25)])[0],
        # centroid at the centre, box across both midlines
        "centre": records([disk(SHAPE, 100, 150, 30)])[0],
        # centroid (0.80 W, 0.75 H): right, lower, lower right corner
        "lower_right": records([disk(SHAPE, 150, 240, 20)])[0],
        # a bar along the right edge, halfway down: at 3 o'clock, at the right edge
        "right_edge": records([box(SHAPE, 80, 265, 120, 300)])[0],
        # centroid (0.43 W, 0.42 H): clearly in no half, no corner, at no edge, not central
        "between": records([disk(SHAPE, 84, 130, 12)])[0],
    }


def check(record, text, siblings=None, **kwargs) -> bool:
    return kept(run(record, text, siblings or [record], **kwargs))


POSITIONS = [
    # P1 halves (image space), with paraphrases
    ("upper_left", "the polyp on the left side of the image", True),
    ("upper_left", "the polyp in the left half of the frame", True),
    ("upper_left", "the polyp on the right side of the image", False),
    ("upper_left", "the polyp higher up in the image", True),
    ("upper_left", "the polyp in the top half of the view", True),
    ("upper_left", "the polyp further down in the image", False),
    ("upper_left", "the polyp in the bottom part of the image", False),
    ("lower_right", "the polyp located further down in the frame", True),
    ("between", "the polyp in the upper half of the image", False),
    ("between", "the polyp on the left side of the image", False),
    # P2 quadrants
    ("upper_left", "the polyp in the upper left of the image", True),
    ("upper_left", "the polyp in the top-left quadrant of the image", True),
    ("upper_left", "the polyp toward the lower right of the image", False),
    ("lower_right", "the polyp in the bottom right part of the image", True),
    # P3 corners
    ("upper_left", "the polyp in the upper left corner of the image", True),
    ("upper_left", "the polyp tucked into the top-left corner of the view", True),
    ("upper_left", "the polyp in the lower left corner of the image", False),
    ("centre", "the polyp in a corner of the image", False),
    ("lower_right", "the polyp in a corner of the image", True),
    # P4 centre
    ("centre", "the polyp in the center of the image", True),
    ("centre", "the centrally located polyp in the image", True),
    ("centre", "the polyp in the middle of the frame", True),
    ("upper_left", "the polyp in the centre of the image", False),
    ("between", "the polyp in the center of the image", False),
    # P5 edges and periphery
    ("right_edge", "the polyp near the right edge of the image", True),
    ("right_edge", "the polyp at the periphery of the image", True),
    ("right_edge", "the polyp near the left edge of the image", False),
    ("upper_left", "the polyp at the periphery of the image", False),
    ("centre", "the polyp away from the edges of the image", True),
    ("right_edge", "the polyp away from the borders of the image", False),
    ("upper_left", "the polyp away from the edges of the image", False),
    # "at/near the top": the half and the edge together
    ("upper_left", "the polyp near the top of the image", False),
    ("right_edge", "the polyp near the bottom of the image", False),
]


@pytest.mark.parametrize(("where", "text", "truth"), POSITIONS)
def test_position_claims(scene, where, text, truth):
    verdicts = run(scene[where], text, [scene[where]])
    assert kept(verdicts) is truth, failed(verdicts)
    if not truth:
        reason = " ".join(failed(verdicts).values())
        assert "geometry" in " ".join(failed(verdicts)), reason


@pytest.mark.parametrize(
    ("where", "text", "truth"),
    [
        ("right_edge", "the polyp at three o'clock", True),
        ("right_edge", "the polyp at 3 o'clock", True),
        ("right_edge", "the polyp at about two o'clock in the endoscopic view", True),
        ("right_edge", "the polyp in the four o'clock position", True),
        ("right_edge", "the polyp at 5 o'clock", False),
        ("right_edge", "the polyp at nine o'clock", False),
        ("lower_right", "the polyp at four o'clock", True),
        ("upper_left", "the polyp at ten o'clock", True),
        ("upper_left", "the polyp at seven o'clock", False),
        ("centre", "the polyp at twelve o'clock", False),  # too near the centre for an hour
    ],
)
def test_clock_face_positions_on_endoscopy(scene, where, text, truth):
    """P6: the centroid's angle about the image centre, one hour of tolerance."""
    assert check(scene[where], text) is truth


def test_clock_positions_only_on_endoscopy():
    record = records([box(SHAPE, 80, 265, 120, 300)], spec=LESION, modality="ultrasound")[0]
    reason = failed(run(record, "the lesion at three o'clock", [record], spec=LESION))
    assert "only checked on endoscopy" in reason["geometry.spatial"]


@pytest.mark.parametrize(
    ("where", "text", "truth"),
    [
        # a negated position holds only when the opposite holds (docs/viewer-rules.md)
        ("upper_left", "the polyp that is not on the right side of the image", True),
        ("upper_left", "the polyp not on the left side of the image", False),
        ("upper_left", "the polyp, not in the lower half of the image", True),
        ("lower_right", "the polyp that is not in the upper half of the image", True),
        ("between", "the polyp that is not on the right side of the image", False),
        ("between", "the polyp not in the lower half of the image", False),
        ("lower_right", "the polyp not in the upper left of the image", True),
        ("lower_right", "the polyp not in the lower right corner of the image", False),
        ("right_edge", "the polyp not in the center of the image", True),
        ("upper_left", "the polyp not in the center of the image", False),  # at no edge
        ("upper_left", "the off-center polyp in the image", False),
        ("right_edge", "the off-center polyp", True),
        ("centre", "the polyp not near any edge of the image", True),
        ("right_edge", "the polyp not near the left edge of the image", True),
        ("upper_left", "the polyp that lies neither in the upper nor in the lower half", False),
        ("lower_right", "the polyp in the lower rather than the upper half of the image", True),
        ("upper_left", "the polyp in the lower rather than the upper half of the image", False),
        ("upper_left", "the polyp on the left rather than the right side of the image", True),
        ("upper_left", "the polyp in any part of the image except the lower half", True),
        ("lower_right", "the polyp in any part of the image except the lower half", False),
    ],
)
def test_negated_positions(scene, where, text, truth):
    assert check(scene[where], text) is truth


def test_negation_is_never_read_as_the_positive_claim(scene):
    """The issue's first example: "not on the left side" about a polyp on the left is false,
    and the same words without "not" are true; the reason names the negation."""
    left = scene["upper_left"]
    assert check(left, "the polyp on the left side of the image")
    reason = failed(run(left, "the polyp that is not on the left side of the image", [left]))
    assert "not ... on the left side" in reason["geometry.spatial"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # a claim whose negation has no rule, and a negation with nothing to negate
        ("the polyp that is not round", "negation of this claim cannot be checked"),
        ("the polyp not at three o'clock", "negation of this claim cannot be checked"),
        ("the polyp that is not visible in the image", "negates nothing"),
        ("the polyp without doubt", "negates nothing"),
    ],
)
def test_negations_the_verifier_cannot_check_are_rejected(scene, text, problem):
    record = scene["right_edge"]
    assert problem in " ".join(failed(run(record, text, [record])).values())


def test_negation_scope_ends_at_the_next_phrase():
    """ "not in the left hemisphere on this axial slice": "not" negates the hemisphere, never
    the slice's plane; "and" ends a negation's scope."""
    parsed = claims.parse(
        "the lesion that is not in the left hemisphere on this axial slice and in the upper half",
        {"lesion": "lesion"},
    )
    by_kind = {c.kind: c.negated for c in parsed.claims}
    assert by_kind == {"patient_side": True, "view": False, "half": False}
    parsed = claims.parse("neither the largest nor the smallest lesion", {"lesion": "lesion"})
    assert [c.negated for c in parsed.claims] == [True, True]


@pytest.fixture(scope="module")
def pair():
    """Two polyps: a large one in the upper left, a small one in the lower right corner."""
    big = disk(SHAPE, 60, 70, 40)
    small = disk(SHAPE, 170, 270, 15)
    found = records([big, small])
    by_size = sorted(found, key=lambda r: -r["area_px"])
    return by_size[0], by_size[1], found


@pytest.mark.parametrize(
    ("who", "text", "truth"),
    [
        # S1 relations between the two targets
        ("big", "the polyp to the left of the other polyp in the image", True),
        ("small", "the polyp to the left of the other polyp in the image", False),
        ("big", "the polyp above the other one", True),
        ("small", "the polyp above the other one", False),
        ("small", "the polyp below the other polyp", True),
        ("small", "the polyp further down than the other colorectal polyp", True),
        ("big", "the polyp higher up than the other polyp", True),
        ("small", "the polyp to the right of the larger polyp in the image", True),
        ("big", "the polyp to the right of the smaller polyp in the image", False),
        ("small", "the polyp not to the left of the other polyp in this image", True),
        ("big", "the polyp larger than the other one", True),
        ("small", "the polyp bigger than the other polyp", False),
        ("small", "the polyp that is not larger than the other polyp", True),
        # S2 extremes, S3 sizes, S4 centrality
        ("big", "the leftmost polyp in the image", True),
        ("small", "the leftmost polyp in the image", False),
        ("small", "the polyp farthest to the right in the image", True),
        ("big", "the upper one of the two polyps", True),
        ("small", "the lower of the two polyps", True),
        ("big", "the lower of the two polyps", False),
        ("big", "the larger of the two polyps", True),
        ("small", "the bigger polyp", False),
        ("small", "the smaller polyp", True),
        ("small", "the polyp that is not the larger one", True),
        ("big", "the polyp other than the larger one", False),
        ("small", "the polyp rather than the uppermost one", True),
        ("big", "the polyp nearer the center of the image", True),
        ("small", "the more peripheral polyp", True),
        ("big", "the more peripheral polyp", False),
        # S6 counts
        ("big", "one of the two polyps, the upper one", True),
        ("big", "the larger of three polyps", False),
        ("big", "the larger one of several polyps", False),
        ("big", "the larger of multiple polyps", True),
        ("big", "the larger of the polyps", True),
        ("big", "the only polyp in the image", False),
        ("big", "the larger polyp, with no other polyp in the image", False),
    ],
)
def test_relations_comparisons_and_counts(pair, who, text, truth):
    big, small, both = pair
    record = big if who == "big" else small
    verdicts = run(record, text, both)
    assert kept(verdicts) is truth, failed(verdicts)


def test_the_object_of_a_relation_is_not_a_claim_about_the_target(pair):
    """ "to the right of the smaller polyp": "smaller" describes the other polyp; when it names
    the target itself the relation has no object, and it is rejected as such."""
    big, small, both = pair
    assert kept(run(small, "the polyp to the right of the larger polyp in the image", both))
    reason = failed(run(small, "the polyp to the right of the smaller polyp in the image", both))
    assert "is the target itself" in reason["geometry.relational"]


def test_single_candidate_counts(scene):
    one = scene["centre"]
    for text in (
        "the only polyp in the image",
        "the single polyp visible in the image",
        "the solitary polyp",
        "the lone polyp in this frame",
        "the polyp, with no other polyp in the image",
        "the polyp without any other polyp in this endoscopic view",
    ):
        assert check(one, text), text
    for text in (
        "one of several polyps",
        "one of two polyps in the image",
        "the larger of the two polyps",
        "the polyp that is not the only one in the image",
    ):
        assert not check(one, text), text


def test_ordinal_ranks_need_a_visible_size_order():
    masks = [disk(SHAPE, 50, 50, 30), disk(SHAPE, 150, 150, 20), disk(SHAPE, 60, 250, 10)]
    found = records(masks)
    middle = next(r for r in found if 1000 < r["area_px"] < 2000)
    assert kept(run(middle, "the second largest of the three polyps", found))
    assert not kept(run(middle, "the third largest of the three polyps", found))
    assert kept(run(middle, "the second smallest of the three polyps", found))
    close = records([disk(SHAPE, 50, 50, 20), disk(SHAPE, 150, 150, 19), disk(SHAPE, 60, 250, 5)])
    second = sorted(close, key=lambda r: -r["area_px"])[1]
    reason = failed(run(second, "the second largest of the three polyps", close))
    assert "not visibly clear" in reason["geometry.relational"]


def test_adjacency_and_containment():
    """S5 from the record's relations: a polyp inside the brain (a context structure)."""
    brain = disk(SHAPE, 100, 150, 90)
    inside = records([disk(SHAPE, 100, 150, 15)], context={"brain": brain})[0]
    outside = records([disk(SHAPE, 10, 10, 6)], context={"brain": brain})[0]
    terms = verifier_terms({"polyp": POLYP}, {"brain"})
    for record, truth in ((inside, True), (outside, False)):
        verdicts = run(record, "the polyp inside the brain", [record], structures=terms)
        assert kept(verdicts) is truth
        verdicts = run(record, "the polyp not inside the brain", [record], structures=terms)
        assert kept(verdicts) is not truth


def test_next_to_the_other_one():
    touching = records([box(SHAPE, 80, 60, 120, 100), box(SHAPE, 80, 101, 120, 140)])
    apart = records([box(SHAPE, 80, 60, 120, 100), box(SHAPE, 80, 200, 120, 240)])
    for found, truth in ((touching, True), (apart, False)):
        record = found[0]  # both fit each query: only the relation's verdict is of interest
        said = failed(run(record, "the polyp next to the other polyp", found))
        assert ("geometry.relational" not in said) is truth
        said = failed(run(record, "the polyp not touching the other polyp", found))
        assert ("geometry.relational" in said) is truth


@pytest.mark.parametrize(
    ("share", "text", "truth"),
    [
        ("big", "the polyp filling most of the image", True),
        ("big", "the polyp occupying a large part of the frame", True),
        ("big", "the polyp covering a small part of the image", False),
        ("small", "the polyp taking up only a small portion of the frame", True),
        ("small", "the polyp occupying a large part of the image", False),
        ("small", "the polyp not filling most of the image", True),
        ("mid", "the polyp occupying a large part of the image", False),
        ("mid", "the polyp in a small part of the image", False),
    ],
)
def test_image_relative_sizes(share, text, truth):
    """Z2: always checkable, as a share of the image area."""
    masks = {
        "big": box(SHAPE, 10, 10, 190, 190),  # 57 %
        "small": disk(SHAPE, 100, 150, 15),  # 1 %
        "mid": box(SHAPE, 50, 50, 110, 150),  # 10 %
    }
    record = records([masks[share]])[0]
    assert check(record, text) is truth, margins.image_share(record)


def test_bare_size_words_are_physical_classes_or_unverifiable():
    """Z1/Z3: without pixel spacing, or without the label's clinical classes, or for a
    biometric label, a bare size word is rejected whatever its truth; "large bowel" is no size
    word."""
    plain = records([disk(SHAPE, 100, 150, 15)])[0]
    for word in ("small", "diminutive", "large", "tiny", "big", "medium-sized"):
        reason = failed(run(plain, f"the {word} polyp", [plain]))["geometry.morphology"]
        assert "unverifiable" in reason, word
    spaced = records([disk(SHAPE, 100, 150, 15)], spec=LESION, pixel_spacing_mm=(0.5, 0.5))[0]
    reason = failed(run(spaced, "the small lesion", [spaced], spec=LESION))
    assert "not a size class of lesion" in reason["geometry.morphology"]
    assert check(plain, "the polyp in the large bowel")


@pytest.mark.parametrize(
    ("mask", "text", "truth"),
    [
        ("disk", "the round polyp", True),
        ("disk", "the circular polyp in the image", True),
        ("disk", "the spherical polyp", True),
        ("disk", "the polyp with a round shape", True),
        ("disk", "the crescent-shaped polyp", False),
        ("disk", "the elongated polyp", False),
        ("disk", "the long and thin polyp", False),
        ("bar", "the long and thin polyp", True),
        ("bar", "the elongated polyp oriented horizontally", True),
        ("bar", "the polyp oriented vertically", False),
        ("bar", "the round polyp", False),
        ("crescent", "the crescent-shaped polyp", True),
        ("crescent", "the crescentic polyp", True),
        ("crescent", "the round polyp", False),
    ],
)
def test_shape_words_and_synonyms(mask, text, truth):
    masks = {
        "disk": disk(SHAPE, 100, 150, 30),
        "bar": box(SHAPE, 90, 40, 110, 260),
        "crescent": disk(SHAPE, 100, 150, 50) & ~disk(SHAPE, 100, 175, 45),
    }
    record = records([masks[mask]])[0]
    assert check(record, text) is truth, record["shape"]


@pytest.mark.parametrize("word", ["lobulated", "pedunculated", "hyperintense", "reddish"])
def test_appearance_words_need_the_judge(scene, word):
    """No rule checks them: rejected without a VLM judge, left to it (and said so) with one."""
    record = scene["centre"]
    reason = failed(run(record, f"the {word} polyp", [record]))["visual.appearance"]
    assert word in reason and "judge" in reason
    verdicts = run(record, f"the {word} polyp", [record], judge=True)
    assert kept(verdicts)
    (appearance,) = [v for v in verdicts if v.check == "appearance"]
    assert appearance.reason == f"left to the VLM judge: '{word}'"


def test_unknown_words_are_named_and_rejected(scene):
    """Fail closed: a word no lexicon knows rejects the query at geometry/unverifiable."""
    record = scene["centre"]
    reason = failed(run(record, "the polyp near the splenic flexure", [record]))
    assert reason["geometry.unverifiable"] == "words no rule can check: 'near the splenic flexure'"
    reason = failed(run(record, "the polyp slightly wobbly in the image", [record]))
    assert reason["geometry.unverifiable"] == "words no rule can check: 'slightly', 'wobbly'"


def test_a_source_extends_the_lexicons(scene):
    """LabelSpec.neutral_words and appearance_words: a source's own words."""
    record = scene["centre"]
    assert not check(record, "the sessile-serrated polyp in the image")
    spec = replace(POLYP, neutral_words=("adenomatous",), appearance_words=("sessile-serrated",))
    assert check(record, "the adenomatous polyp in the image", spec=spec)
    verdicts = run(record, "the sessile-serrated polyp in the image", [record], spec=spec)
    assert "judge" in failed(verdicts)["visual.appearance"]


@pytest.fixture(scope="module")
def axial():
    """An axial slice (radiological display): a lesion on the image's left, upper part, which
    is the patient's right, anterior, and frontal along a brain spanning rows 20-180."""
    brain = disk(SHAPE, 100, 150, 80)
    return records(
        [disk(SHAPE, 45, 100, 12)],
        spec=LESION,
        modality="MRI FLAIR",
        body_part="brain",
        pixel_spacing_mm=(1.0, 1.0),
        slice=SliceInfo("vol", "axial", 40, 155, (1.0, 1.0, 1.0)),
        patient_side=lambda m: "right",
        context={"brain": brain},
    )[0]


@pytest.mark.parametrize(
    ("text", "truth"),
    [
        # A1: a side attached to an anatomical structure is the patient's
        ("the lesion in the right hemisphere", True),
        ("the lesion in the right cerebral hemisphere", True),
        ("the lesion in the right half of the brain", True),
        ("the lesion on the right side of the brain", True),
        ("the right-sided lesion", True),
        ("the lesion on the patient's right", True),
        ("the lesion in the left hemisphere", False),
        ("the lesion in the left cerebral hemisphere on this slice", False),
        ("the lesion not in the left hemisphere", True),
        ("the lesion in the right rather than the left hemisphere", True),
        # the picture's side must name the picture
        ("the lesion on the left side of the image", True),
        ("the lesion on the left", False),
        # A2 directions on an axial slice, A3 lobes along the brain's extent
        ("the anterior lesion", True),
        ("the lesion in the posterior half of the brain", False),
        ("the lesion not in the posterior part of the brain", True),
        ("the lesion in the frontal lobe", True),
        ("the lesion in the frontal region", True),
        ("the lesion in the occipital region", False),
        ("the lesion in the temporal lobe", False),
        ("the lesion on this axial slice", True),
        ("the lesion on this sagittal slice", False),
    ],
)
def test_anatomy_on_a_volume_slice(axial, text, truth):
    terms = verifier_terms({"lesion": LESION}, {"brain"})
    verdicts = run(axial, text, [axial], spec=LESION, structures=terms)
    assert kept(verdicts) is truth, failed(verdicts)


def test_lobes_need_the_brain_box_and_other_regions_an_atlas(axial):
    terms = verifier_terms({"lesion": LESION}, {"brain"})
    bare = {**axial, "context_boxes": []}
    reason = failed(
        run(bare, "the lesion in the frontal lobe", [bare], spec=LESION, structures=terms)
    )
    assert "brain mask" in reason["geometry.spatial"]
    reason = failed(run(axial, "the lesion in the parietal lobe", [axial], spec=LESION))
    assert "needs an atlas" in reason["geometry.unverifiable"]


def test_sides_of_structures_are_unverifiable_on_2d_images(scene):
    record = scene["upper_left"]
    for text in (
        "the polyp in the left colon",
        "the left-sided polyp",
        "the polyp in the left hemisphere",
    ):
        assert "2D" in failed(run(record, text, [record]))["geometry.spatial"], text


@pytest.mark.parametrize(
    ("text", "check", "reason"),
    [
        ("locate the polyp in the image", "noun_phrase", "'locate'"),
        ("Find the polyp on the left side of the image", "noun_phrase", "'Find'"),
        ("show me the polyp in the image", "noun_phrase", "'show'"),
        ("can you point to the polyp in the image", "noun_phrase", "'can you'"),
        ("where is the polyp in the image", "noun_phrase", "'where is'"),
        ("the polyp in the image?", "noun_phrase", "question"),
        ("there is a polyp in the image", "noun_phrase", "'there is'"),
    ],
)
def test_queries_are_noun_phrases(scene, text, check, reason):
    verdicts = run(scene["centre"], text, [scene["centre"]])
    assert reason in failed(verdicts)[f"format.{check}"]


def test_lexicon_files_are_versioned_and_disjoint():
    """Every lexicon file carries its version; a word is neutral, an appearance word or an
    organ/modality word, never two of them (a word cannot both claim and not claim)."""
    assert vocab.lexicon_versions() == [f"{n}-{vocab.LEXICON_VERSION}" for n in vocab.LEXICONS]
    neutral = vocab.neutral_words()
    assert "on" in neutral and "no" not in neutral  # YAML 1.1 booleans stay words
    assert not neutral & vocab.appearance_words()
    assert not neutral & set(vocab.organ_words())
    assert not neutral & set(vocab.modality_words())
    assert not vocab.appearance_words() & set(vocab.modality_words())


def test_the_size_wording_given_to_a_vlm_is_what_the_verifier_keeps():
    """vocab.size_phrases (the VLM's facts): a share of the image when one holds; no bare size
    word without pixel spacing."""
    for mask, expected in (
        (box(SHAPE, 10, 10, 190, 190), ["filling most of the image"]),
        (box(SHAPE, 20, 20, 120, 220), ["occupying a large part of the image"]),
        (disk(SHAPE, 100, 150, 15), ["occupying a small part of the image"]),
        (box(SHAPE, 50, 50, 110, 150), []),
    ):
        record = records([mask])[0]
        assert vocab.size_phrases(record, POLYP) == expected
        for phrase in expected:
            assert check(record, f"the polyp {phrase}"), phrase


@pytest.mark.parametrize(
    ("radius", "word", "truth"),
    [
        # 0.2 mm per pixel: a disk of radius r spans (2r + 1) * 0.2 mm
        (10, "diminutive", True),  # 4.2 mm
        (10, "small", True),
        (10, "large", False),
        (20, "diminutive", False),  # 8.2 mm
        (20, "small", True),
        (30, "large", True),  # 12.2 mm
        (30, "small", False),
        (30, "tiny", False),  # no such class: unverifiable
    ],
)
def test_physical_size_classes_where_the_spacing_is_known(radius, word, truth):
    """Z1: polyp classes by the largest dimension in mm; negation is the other class."""
    spec = replace(POLYP, size_classes=POLYP_SIZE_CLASSES)
    record = records([disk(SHAPE, 100, 150, radius)], spec=spec, pixel_spacing_mm=(0.2, 0.2))[0]
    assert kept(run(record, f"the {word} polyp", [record], spec=spec)) is truth
    if word != "tiny":
        negated = run(record, f"the polyp that is not {word}", [record], spec=spec)
        assert kept(negated) is not truth


def test_a_biometric_label_takes_no_size_word():
    spec = replace(LESION, biometric=True, size_classes=POLYP_SIZE_CLASSES)
    record = records([disk(SHAPE, 100, 150, 30)], spec=spec, pixel_spacing_mm=(0.2, 0.2))[0]
    reason = failed(run(record, "the large lesion", [record], spec=spec))
    assert "takes no size word" in reason["geometry.morphology"]
    assert check(record, "the lesion occupying a small part of the image", spec=spec)


def test_a_count_naming_the_compared_set_stays_asserted_under_negation(pair):
    """ "not the larger of the two": only the comparison is negated, the count still holds."""
    big, small, both = pair
    assert kept(run(small, "the polyp that is not the larger of the two polyps", both))
    assert not kept(run(big, "the polyp that is not the larger of the two polyps", both))
    three = records([disk(SHAPE, 50, 50, 30), disk(SHAPE, 150, 150, 20), disk(SHAPE, 60, 250, 10)])
    smallest = min(three, key=lambda r: r["area_px"])
    said = failed(run(smallest, "the polyp that is not the larger of the two polyps", three))
    assert "has 3 polyp candidate" in said["geometry.relational"]
