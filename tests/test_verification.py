"""Each verification rule with queries that must pass and queries that must fail.

Records are made by the core from constructed images and masks (real cues, real relations), or
come from the real Kvasir-SEG / HC18 samples.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import synthetic_records
from datasets import load_dataset
from medground_hf.generation import verify
from medground_hf.generation.pipeline import Siblings, verifier_terms

from medground_hf.folder import iter_rows
from medground_hf.sample import Sample, SliceInfo, sample_to_records
from medground_hf.source import LabelSpec

POLYP, LESION = synthetic_records.POLYP, synthetic_records.LESION
_source = synthetic_records.source
_disk = synthetic_records.disk
_records = synthetic_records.records
_run = synthetic_records.run
_failed = synthetic_records.failed
_kept = synthetic_records.kept


@pytest.fixture(scope="module")
def two_polyps():
    """A large polyp in the upper left and a small one in the lower right."""
    big = _disk((200, 300), 60, 70, 40)
    small = _disk((200, 300), 150, 240, 15)
    records = _records([big, small])
    by_size = sorted(records, key=lambda r: -r["area_px"])
    return by_size[0], by_size[1], records


# ---- format ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "style", "check"),
    [
        ("the polyp at (34, 50) in the image", "location", "no_coordinates"),
        ("the polyp in box 12 40 80 99", "location", "no_coordinates"),
        ("the polyp measured in pixels", "location", "no_coordinates"),
        ("<ref>the polyp</ref> in the image", "location", "no_markup"),
        ("the **large** polyp in the image", "location", "no_markup"),
        ("As an AI, I think the polyp is in the image", "clinical", "no_meta"),
        ("the polyp inside the bounding box of the image", "location", "no_meta"),
        ("the outlined polyp in the image", "location", "no_meta"),
        ("der grosse Polyp links im Bild", "location", "english"),
        ("le polype à gauche de l'image", "location", "english"),
        ("polyp", "location", "length"),
        ("a oval polyp in the upper part of the image", "morphology", "grammar"),
        ("an small polyp in the upper part of the image", "morphology", "grammar"),
        ("the the larger polyp in the image", "relational", "grammar"),
        ("the polyp " * 30, "location", "length"),
        ("the polyp in the image", "poem", "schema"),
        (None, "location", "schema"),
    ],
)
def test_format_rejects(two_polyps, text, style, check):
    big, _, records = two_polyps
    verdicts = _run(big, text, records, style=style)
    assert f"format.{check}" in _failed(verdicts)
    assert {v.stage for v in verdicts} == {"format"}  # later stages are not run


def test_format_accepts_a_plain_english_query(two_polyps):
    big, _, records = two_polyps
    for text in ("an oval polyp, the larger one in the image", "a large polyp seen on an MRI"):
        assert "format.grammar" not in _failed(_run(big, text, records)), text
    verdicts = _run(
        big, "the larger of the two polyps in the upper left part of the image", records
    )
    assert not _failed(verdicts)
    assert _kept(verdicts)


# ---- geometry: box ----------------------------------------------------------------------------
def test_box_sane_on_real_records_and_insane_boxes_fail(two_polyps):
    big, _, _ = two_polyps
    assert verify.box_check(big).passed
    w, h = big["width"], big["height"]
    cases = {
        "outside": [10, 10, w + 5, 50],
        "degenerate": [10, 10, 11, 40],
        "whole image": [0, 0, w, h],
        "not tight": [big["bbox_xyxy"][0] + 3, *big["bbox_xyxy"][1:]],
    }
    for name, box in cases.items():
        verdict = verify.box_check({**big, "bbox_xyxy": box})
        assert not verdict.passed, name


def test_box_failure_rejects_the_whole_target(two_polyps):
    big, _, records = two_polyps
    broken = {**big, "bbox_xyxy": [0, 0, big["width"], big["height"]]}
    verdicts = _run(broken, "the larger of the two polyps in the image", records)
    assert "geometry.box" in _failed(verdicts)


# ---- geometry: spatial words --------------------------------------------------------------------
def test_image_side_must_agree(two_polyps):
    big, small, records = two_polyps
    assert _kept(_run(small, "the smaller polyp on the right side of the image", records))
    failed = _failed(_run(small, "the smaller polyp on the left side of the image", records))
    assert "left" in failed["geometry.spatial"] and "right" in failed["geometry.spatial"]
    assert _kept(_run(big, "the larger polyp in the upper left part of the image", records))
    failed = _failed(_run(big, "the larger polyp in the lower left part of the image", records))
    assert "geometry.spatial" in failed


def test_bare_left_right_must_say_whose(two_polyps):
    _, small, records = two_polyps
    failed = _failed(_run(small, "the smaller polyp on the right", records))
    assert "whose" in failed["geometry.spatial"]
    failed = _failed(_run(small, "the rightmost polyp", records))
    assert "whose" in failed["geometry.spatial"]
    assert _kept(_run(small, "the rightmost polyp in the image", records))


def test_center_claim(two_polyps):
    big, _, records = two_polyps
    failed = _failed(_run(big, "the larger polyp in the center of the image", records))
    assert "center" in failed["geometry.spatial"]
    centred = _records([_disk((200, 300), 100, 150, 20)])[0]
    assert _kept(_run(centred, "the only polyp, in the center of the image", [centred]))


def test_patient_side_on_a_2d_image_is_unsupported(two_polyps):
    big, _, records = two_polyps
    failed = _failed(_run(big, "the larger polyp on the patient's left", records))
    assert "2D" in failed["geometry.spatial"]


@pytest.fixture(scope="module")
def volume_slice():
    """An axial slice in radiological display: the lesion on the image's left is on the
    patient's right."""
    mask = _disk((200, 300), 100, 60, 20)
    return _records(
        [mask],
        spec=LESION,
        modality="MRI",
        pixel_spacing_mm=(1.0, 1.0),
        slice=SliceInfo("vol", "axial", 40, 155, (1.0, 1.0, 1.0)),
        patient_side=lambda m: "right" if np.argwhere(m)[:, 1].mean() < 150 else "left",
    )[0]


def test_patient_side_is_checked_against_the_patient_field(volume_slice):
    rec = volume_slice
    assert rec["spatial"]["image_side"] == "left" and rec["spatial"]["patient_side"] == "right"
    ok = _run(rec, "the lesion on the patient's right side", [rec], spec=LESION)
    assert _kept(ok)
    assert _kept(_run(rec, "the lesion on the left side of the image", [rec], spec=LESION))
    mirrored = _failed(_run(rec, "the lesion on the patient's left", [rec], spec=LESION))
    assert "patient's right" in mirrored["geometry.spatial"]
    mixed = _failed(_run(rec, "the lesion on the right side of the image", [rec], spec=LESION))
    assert "geometry.spatial" in mixed


# ---- geometry: relational claims and uniqueness ----------------------------------------------
def test_larger_and_smaller_claims(two_polyps):
    big, small, records = two_polyps
    assert _kept(_run(big, "the larger of the two polyps", records, style="relational"))
    failed = _failed(_run(small, "the larger of the two polyps", records, style="relational"))
    assert "largest" in failed["geometry.relational"]
    assert _kept(_run(small, "the smallest polyp", records, style="relational"))
    failed = _failed(_run(big, "the smallest polyp", records, style="relational"))
    assert "geometry.relational" in failed


def test_higher_and_lower_of_the_two(two_polyps):
    big, small, records = two_polyps
    assert _kept(_run(small, "the lower of the two polyps", records, style="relational"))
    failed = _failed(_run(big, "the lower of the two polyps", records, style="relational"))
    assert "farthest down" in failed["geometry.relational"]
    assert _kept(_run(big, "the upper one of the two polyps", records, style="relational"))


def test_count_claims(two_polyps):
    big, _, records = two_polyps
    failed = _failed(_run(big, "the only polyp in the image", records, style="relational"))
    assert "2 polyp candidate" in failed["geometry.relational"]
    failed = _failed(_run(big, "the largest of the three polyps", records, style="relational"))
    assert "geometry.relational" in failed
    single = _records([_disk((200, 300), 60, 70, 30)])[0]
    assert _kept(_run(single, "the only polyp in the image", [single], style="relational"))
    failed = _failed(_run(single, "the larger of the two polyps", [single], style="relational"))
    assert "geometry.relational" in failed


def test_ambiguous_query_with_two_polyps(two_polyps):
    big, small, records = two_polyps
    for target in (big, small):
        failed = _failed(_run(target, "the polyp seen on this endoscopic image", records))
        assert "ambiguous" in failed["geometry.unique"]
    # a true location word that fits only one of them singles it out
    assert _kept(_run(big, "the polyp in the upper part of the image", records))


def test_ordinal_rank_claims():
    masks = [_disk((200, 300), 50, 50, 30), _disk((200, 300), 150, 150, 20)]
    masks.append(_disk((200, 300), 60, 250, 10))
    records = _records(masks)
    middle = next(r for r in records if r["relations"]["size_rank"] == 2)
    text = "the second largest of the three polyps"
    assert _kept(_run(middle, text, records, style="relational"))
    largest = next(r for r in records if r["relations"]["size_rank"] == 1)
    assert "geometry.relational" in _failed(_run(largest, text, records, style="relational"))


def test_ambiguity_on_real_kvasir_images_with_several_polyps(built_kvasir):
    """Kvasir samples have images with 2+ polyps: a query that does not disambiguate fails for
    every one of them, a true superlative passes."""
    rows = []
    for config in ("grounding", "rejected"):
        if not (built_kvasir / config).is_dir():  # a bare build has every target in grounding
            continue
        for split in load_dataset(str(built_kvasir), config).values():
            rows += [r for r in split.remove_columns(["image"]) if r["num_candidates"] > 1]
    unique = {r["id"]: r for r in rows}
    siblings = Siblings()
    for r in unique.values():
        siblings.by_image[r["image_id"]].append(r)
    assert len(siblings.by_image) >= 9
    for record in unique.values():
        others = siblings.by_image[record["image_id"]]
        failed = _failed(_run(record, "the polyp seen on this endoscopic image", others))
        assert "ambiguous" in failed.get("geometry.unique", ""), record["id"]
        flag = "largest" if record["relations"]["largest"] else "smallest"
        if record["relations"][flag]:
            verdicts = _run(record, f"the {flag} polyp on this endoscopic image", others)
            assert "geometry.unique" not in _failed(verdicts)


# ---- geometry: morphology ---------------------------------------------------------------------
def test_size_and_shape_words(two_polyps):
    """Without pixel spacing a bare size word is unverifiable (true or not); shape words are
    checked against the shape cues."""
    big, small, records = two_polyps
    for text in ("the large polyp", "the small polyp", "the tiny polyp", "the big polyp"):
        failed = _failed(_run(small, f"{text} on the right side of the image", records))
        assert "unverifiable" in failed["geometry.morphology"], text
    assert _kept(_run(small, "the round polyp on the right side of the image", records))
    failed = _failed(_run(small, "the elongated polyp on the right side of the image", records))
    assert "elongation" in failed["geometry.morphology"]
    bar = np.zeros((200, 300), bool)
    bar[90:110, 40:260] = True
    elongated = _records([bar])[0]
    assert _kept(_run(elongated, "the elongated polyp oriented horizontally", [elongated]))
    failed = _failed(_run(elongated, "the round polyp", [elongated]))
    assert "geometry.morphology" in failed
    failed = _failed(_run(elongated, "the polyp oriented vertically", [elongated]))
    assert "horizontal" in failed["geometry.morphology"]


def test_inside_and_next_to_structures():
    brain = _disk((200, 300), 100, 150, 90)
    inside = _records([_disk((200, 300), 100, 150, 15)], context={"brain": brain})[0]
    outside = _records([_disk((200, 300), 20, 20, 10)], context={"brain": brain})[0]
    terms = verifier_terms({"polyp": POLYP}, {"brain"})
    text = "the polyp inside the brain"
    assert _kept(_run(inside, text, [inside], style="relational", structures=terms))
    failed = _failed(_run(outside, text, [outside], style="relational", structures=terms))
    assert "inside relations" in failed["geometry.relational"]


# ---- medical priors ---------------------------------------------------------------------------
def test_label_modality_compatibility(two_polyps):
    big, _, records = two_polyps
    wrong = {**big, "modality": "ultrasound"}
    failed = _failed(_run(wrong, "the larger of the two polyps", records, style="relational"))
    assert "not expected in ultrasound" in failed["medical_prior.modality"]


def test_laterality_prior(volume_slice):
    rec = volume_slice
    right_only = replace(LESION, laterality="right")
    assert _kept(_run(rec, "the lesion seen on this MRI slice", [rec], spec=right_only))
    left_only = replace(LESION, laterality="left")
    failed = _failed(_run(rec, "the lesion seen on this MRI slice", [rec], spec=left_only))
    assert "patient's left" in failed["medical_prior.laterality"]


def test_physical_size_range(volume_slice):
    rec = volume_slice
    assert rec["area_mm2"] == pytest.approx(rec["area_px"])
    assert _kept(_run(rec, "the only lesion in the image", [rec], spec=LESION))
    tiny_range = replace(LESION, area_mm2_range=(1.0, 50.0))
    failed = _failed(_run(rec, "the only lesion in the image", [rec], spec=tiny_range))
    assert "outside the plausible" in failed["medical_prior.size_range"]


def test_size_range_on_real_hc18(built_hc18):
    row = next(iter(load_dataset(str(built_hc18), "grounding", split="train")))
    spec = LabelSpec(1, "fetal_head", "fetal head", area_mm2_range=(100.0, 15000.0))
    assert verify.prior_target_checks(row, spec)[2].passed
    too_small = replace(spec, area_mm2_range=(1.0, 10.0))
    assert not verify.prior_target_checks(row, too_small)[2].passed


def test_terminology_and_modality_words(two_polyps):
    big, _, records = two_polyps
    failed = _failed(_run(big, "the larger fetal head", records, style="relational"))
    assert "medical_prior.terminology" in failed
    assert _kept(_run(big, "the larger of the two lesions", records, style="relational"))
    failed = _failed(_run(big, "the larger polyp on this MRI slice", records, style="clinical"))
    assert "mri" in failed["medical_prior.modality_words"]


# ---- visual (offline) ---------------------------------------------------------------------------
def test_visual_distinctness_and_blank_area():
    flat = np.full((200, 300), 120, np.uint8)
    invisible = _records([_disk((200, 300), 60, 70, 30)], image=flat)[0]
    failed = _failed(_run(invisible, "the only polyp in the image", [invisible]))
    assert "contrast" in failed["visual.distinct"]
    black = np.zeros((200, 300), np.uint8)
    black[:, 150:] = 120
    padded = _records([_disk((200, 300), 100, 135, 40)], image=black)[0]
    failed = _failed(_run(padded, "the only polyp in the image", [padded]))
    assert "padding" in failed["visual.not_blank"]


@pytest.mark.parametrize(
    ("modality", "allowed", "passes"),
    [
        ("MRI t1", ("MRI",), True),
        ("MRI FLAIR | MRI T1c", ("MRI",), True),
        ("MRI FLAIR | CT", ("MRI",), False),
        ("MRIX", ("MRI",), False),
        ("ultrasound", ("ultrasound",), True),
        ("endoscopy", ("ultrasound",), False),
    ],
)
def test_modality_prior_matches_families_and_every_panel(modality, allowed, passes):
    from dataclasses import replace

    from medground_hf.generation.verify import prior_target_checks

    from medground_hf.source import LabelSpec

    spec = replace(LabelSpec(id=1, name="lesion", display="lesion"), modalities=allowed)
    record = {"modality": modality, "spatial": {"patient_side": None}, "area_mm2": None}
    (verdict,) = [v for v in prior_target_checks(record, spec) if v.check == "modality"]
    assert verdict.passed is passes


# ---- whose left/right, edges and corners, other labels, spelling, foreign text ------------------
def test_left_right_must_be_bound_to_the_image_in_its_phrase_on_a_volume(volume_slice):
    """Radiologists say "left" for the patient's left: on a volume slice a bare side, or a side
    with "image" only in another phrase, is ambiguous; a side named with a body part is the
    patient's (the lesion is on the image's left = the patient's right)."""
    rec = {**volume_slice, "body_part": "brain"}

    def failed(text):
        return _failed(_run(rec, text, [rec], spec=LESION))

    for text in ("the lesion on the left", "the lesion on the left, seen on this MRI slice"):
        assert "does not say whose" in failed(text)["geometry.spatial"], text
    for text in (
        "the lesion on the left of this MRI slice",
        "the lesion in the left half of the image",
        "the lesion in the right hemisphere",
        "the right-sided lesion",
        "the lesion on the right side of the brain",
    ):
        assert not failed(text), text
    mirrored = failed("the lesion in the left hemisphere on this MRI slice")
    assert "patient's right" in mirrored["geometry.spatial"]
    assert "patient's right" in failed("the left-sided lesion")["geometry.spatial"]


def test_bare_left_right_on_2d_images_must_name_the_image_too(two_polyps):
    """Decided for 2D (endoscopy, ultrasound) as for volumes: the side must name the image in
    its phrase, so every kept query reads the same way whatever the source."""
    _, small, records = two_polyps
    failed = _failed(_run(small, "the smaller polyp on the right, seen on this image", records))
    assert "does not say whose" in failed["geometry.spatial"]
    assert _kept(_run(small, "the smaller polyp on the right of this endoscopic image", records))
    failed = _failed(_run(small, "the smaller polyp in the right colon", records))
    assert "2D" in failed["geometry.spatial"]  # an anatomical side is the patient's: unknown


def test_positions_need_a_margin_a_viewer_would_see():
    """Just above-left of the centre (centroid at 0.43 W, 0.42 H): neither clearly left nor
    clearly upper (viewer rule P1), so "upper half", "left side" and their negations are all
    rejected, as are a corner and an edge; a target in the upper left corner is all of them."""
    near = _records([_disk((200, 300), 84, 130, 12)])[0]
    for text in (
        "in the upper half of the image",
        "on the left side of the image",
        "not in the lower half of the image",
        "not on the right side of the image",
        "in the upper left corner of the image",
        "near the top of the image",
        "near the left edge of the image",
    ):
        assert "geometry.spatial" in _failed(_run(near, f"the polyp {text}", [near])), text
    corner = _records([_disk((200, 300), 18, 22, 15)])[0]
    for text in (
        "in the upper left corner of the image",
        "in the upper left of the image",
        "near the top of the image",
        "near the left edge of the image",
        "at the periphery of the image",
        "not in the lower half of the image",
        "not in the center of the image",
    ):
        assert _kept(_run(corner, f"the polyp {text}", [corner])), text
    failed = _failed(_run(corner, "the polyp in the lower right corner of the image", [corner]))
    assert "upper left" in failed["geometry.spatial"]


MRI = ("MRI",)
EDEMA = LabelSpec(2, "edema", "peritumoral edema", synonyms=("oedema",), modalities=MRI)
ENHANCING = LabelSpec(4, "enhancing_tumour", "enhancing tumour", modalities=MRI)
NON_ENHANCING = LabelSpec(3, "non_enhancing_tumour", "non-enhancing tumour", modalities=MRI)


@pytest.fixture(scope="module")
def tumour_parts():
    """An enhancing tumour with edema around it on an MRI slice; three labels in the source."""
    core = _disk((200, 300), 100, 150, 15)
    ring = _disk((200, 300), 100, 150, 35) & ~core
    image = np.full((200, 300), 70, np.uint8)
    image[ring], image[core] = 160, 240
    sample = Sample(
        case_id="case",
        group_id="case",
        image=image,
        image_bytes=b"",
        masks=[(EDEMA, ring), (ENHANCING, core)],
        source_files=[],
        modality="MRI FLAIR",
    )
    source = _source(EDEMA, ENHANCING, NON_ENHANCING, modality="MRI")
    records, _ = sample_to_records(
        sample, source, builder="t", builder_version="1", config_name="d"
    )
    labels = {s.name: s for s in (EDEMA, ENHANCING, NON_ENHANCING)}
    verifier = verify.Verifier(labels, verifier_terms(labels, {"edema", "enhancing_tumour"}))
    return {r["label"]: r for r in records}, verifier


def _check(verifier, record, text, siblings=()):
    target = verifier.target_checks(record)
    return _failed(verifier.query_checks(record, text, "clinical", target, list(siblings)))


def test_a_query_naming_another_label_or_modality_is_rejected(tumour_parts):
    records, verifier = tumour_parts
    enhancing = records["enhancing_tumour"]
    assert not _check(verifier, enhancing, "the enhancing tumour seen on this MR image")
    both = list(records.values())
    for text, name in (
        ("the non-enhancing tumour seen on this MRI slice", "non-enhancing tumor"),
        ("the oedema region in the image", "edema"),
    ):
        failed = _check(verifier, enhancing, text, both)
        assert name in failed["medical_prior.terminology"], text
    # another label as the object of a checked relation is fine, and is checked
    assert not _check(verifier, enhancing, "the enhancing tumour surrounded by the edema", both)
    for text in ("the enhancing tumour on this CT", "the enhancing tumour on this CT slice"):
        assert (
            "another modality (ct"
            in _check(verifier, enhancing, text)["medical_prior.modality_words"]
        )


def test_british_and_american_spellings_are_the_same_words(tumour_parts):
    records, verifier = tumour_parts
    enhancing, edema = records["enhancing_tumour"], records["edema"]
    both = [enhancing, edema]
    assert not _check(
        verifier, enhancing, "the enhancing tumor inside the peritumoral oedema", both
    )
    assert not _check(verifier, edema, "the edema containing the enhancing tumor", both)
    # the relation is read (and found false) whatever the spelling
    failed = _check(verifier, edema, "the oedema inside the enhancing tumor", both)
    assert "inside relations" in failed["geometry.relational"]
    failed = _check(verifier, edema, "the edema in the centre of the image", both)
    assert "geometry.spatial" not in failed  # centre == center, and the edema is centred


@pytest.mark.parametrize(
    "text",
    ["il polipo nella immagine a sinistra", "el polipo en la imagen", "der Polyp im Bild links"],
)
def test_foreign_text_without_accents_is_not_english(two_polyps, text):
    big, _, records = two_polyps
    assert "format.english" in _failed(_run(big, text, records))


def test_count_claims_on_real_images_with_three_polyps(built_kvasir):
    """ "the largest of the two polyps" on an image with three polyps is a false count."""
    rows = [r for r in load_dataset(str(built_kvasir), "grounding", split="train")]
    rows = [{k: v for k, v in r.items() if k != "image"} for r in rows]
    threes = [r for r in rows if r["num_candidates"] == 3]
    ends = [r for r in threes if r["relations"]["largest"] or r["relations"]["smallest"]]
    assert len(ends) >= 2
    for record in ends:
        siblings = [r for r in rows if r["image_id"] == record["image_id"]]
        flag = "largest" if record["relations"]["largest"] else "smallest"
        assert _kept(_run(record, f"the {flag} of the three polyps", siblings))
        failed = _failed(_run(record, f"the {flag} of the two polyps", siblings))
        assert "has 3 polyp candidate" in failed["geometry.relational"]


def test_visual_contrast_sees_colour_and_rejects_blank_targets():
    """The separability is over the colour channels: a reddish polyp on pink mucosa of the same
    brightness is distinct; a target on black padding, or half on it, is not usable."""
    shape = (200, 300)
    polyp = _disk(shape, 100, 150, 30)
    rng = np.random.default_rng(1)
    rgb = np.empty((*shape, 3), np.uint8)
    rgb[...] = (180, 120, 120)
    rgb[polyp] = (150, 132, 128)  # about the same luma, another hue
    rgb = np.clip(rgb + rng.integers(-6, 7, size=rgb.shape), 0, 255).astype(np.uint8)
    record = _records([polyp], image=rgb)[0]
    luma_gap = abs(record["visual"]["region_mean"] - record["visual"]["ring_mean"])
    assert luma_gap < 10 and record["visual"]["contrast"] >= verify.MIN_CONTRAST
    assert _kept(_run(record, "the only polyp in the image", [record]))
    padding = np.zeros(shape, np.uint8)
    blank = _records([polyp], image=padding)[0]
    failed = _failed(_run(blank, "the only polyp in the image", [blank]))
    assert "contrast 0.00" in failed["visual.distinct"]
    half = np.zeros((*shape, 3), np.uint8)
    half[:, 150:] = (200, 90, 80)
    edge = _records([_disk(shape, 100, 140, 30)], image=half)[0]
    failed = _failed(_run(edge, "the only polyp in the image", [edge]))
    assert "padding" in failed["visual.not_blank"]


def test_every_expert_target_of_the_2d_samples_passes_the_offline_visual_check(
    built_kvasir, built_hc18
):
    for folder in (built_kvasir, built_hc18):
        for split in load_dataset(str(folder), "grounding").values():
            for row in split.remove_columns(["image"]):
                spec = LabelSpec(0, row["label"], row["label"])  # visible on every rendering
                verdicts = verify.visual_target_checks(row, spec)
                assert all(v.passed for v in verdicts), (row["id"], verdicts)


@pytest.mark.parametrize(
    ("axis", "true", "false"),
    [
        ("axial", "the anterior lesion", "the posterior lesion"),
        ("coronal", "the lesion in the superior part", "the inferior lesion"),
        ("sagittal", "the lesion located superiorly", "the lesion located inferiorly"),
    ],
)
def test_anatomical_directions_on_slices(axis, true, false):
    """A lesion in the upper part of a slice is anterior on an axial slice and superior on a
    coronal or sagittal one (radiological display); on a 2D image no direction is checkable."""
    record = _records(
        [_disk((200, 300), 40, 100, 15)],
        spec=LESION,
        modality="MRI",
        pixel_spacing_mm=(1.0, 1.0),
        slice=SliceInfo("vol", axis, 40, 155, (1.0, 1.0, 1.0)),
        patient_side=lambda m: "right",
    )[0]
    assert _kept(_run(record, true, [record], spec=LESION)), true
    failed = _failed(_run(record, false, [record], spec=LESION))["geometry.spatial"]
    assert "vertical position upper" in failed and "the lower part" in failed
    if axis == "axial":
        failed = _failed(_run(record, "the superior lesion", [record], spec=LESION))
        assert "not a direction within an axial slice" in failed["geometry.spatial"]
    if axis == "sagittal":  # anterior is on the image's left, where the lesion is
        assert _kept(_run(record, "the anterior lesion", [record], spec=LESION))
        failed = _failed(_run(record, "the posterior lesion", [record], spec=LESION))
        assert "posterior is the right part" in failed["geometry.spatial"]


def test_anatomical_direction_on_a_2d_image_is_unsupported(two_polyps):
    big, _, records = two_polyps
    failed = _failed(_run(big, "the larger polyp on the anterior wall", records))
    assert "2D image" in failed["geometry.spatial"]


def test_an_organ_the_image_does_not_show_is_rejected(two_polyps, volume_slice):
    """The synthetic source shows the colon: "in the stomach" is a wrong organ, "on the colonic
    wall" and "in the large bowel" are the colon, "in the rectum" is a part of it that the
    image cannot tell (unverifiable); a lesion "in the liver" on a brain slice is wrong too, and
    with an unknown body part every organ word is unverifiable."""
    big, _, records = two_polyps
    failed = _failed(_run(big, "the larger polyp in the stomach", records))
    assert "names the stomach, but this image shows the colon" in failed["medical_prior.anatomy"]
    assert _kept(_run(big, "the larger polyp on the colonic wall", records))
    assert _kept(_run(big, "the larger polyp in the large bowel", records))
    failed = _failed(_run(big, "the larger polyp in the rectum", records))
    assert "unverifiable" in failed["medical_prior.anatomy"]
    brain = {**volume_slice, "body_part": "brain"}
    assert _kept(_run(brain, "the lesion inside the brain", [brain], spec=LESION))
    failed = _failed(_run(brain, "the lesion in the liver", [brain], spec=LESION))
    assert "liver" in failed["medical_prior.anatomy"]
    unknown = {**volume_slice, "body_part": "various"}  # no organ known: nothing is checkable
    failed = _failed(_run(unknown, "the lesion in the liver", [unknown], spec=LESION))
    assert "unverifiable" in failed["medical_prior.anatomy"]
    assert _kept(_run(unknown, "the lesion on this MRI slice", [unknown], spec=LESION))


def test_a_generic_noun_must_single_out_the_target_among_every_label(tumour_parts):
    """Edema around an enhancing core, both centred: "the lesion in the center of the image"
    fits both, so it is ambiguous although each is the only candidate of its label; naming the
    label (or a claim true of one only) singles it out."""
    records, verifier = tumour_parts
    enhancing, edema = records["enhancing_tumour"], records["edema"]
    both = [enhancing, edema]
    assert enhancing["num_candidates"] == 1 and enhancing["num_targets_in_image"] == 2
    failed = _check(verifier, enhancing, "the lesion in the center of the image", both)
    assert "other target(s) of 2" in failed["geometry.unique"]
    assert not _check(verifier, enhancing, "the enhancing tumour in the center of the image", both)
    assert not _check(verifier, enhancing, "the lesion surrounded by the edema", both)


def test_appearance_words_are_left_to_the_judge_which_decides(built_kvasir, tmp_path, monkeypatch):
    """ "the reddish polyp": rejected offline (no rule sees colour); with a VLM judge (the real
    openai SDK against the fake server) the appearance check passes saying so, and the judge's
    own verdict keeps or rejects the query."""
    from fake_vlm_server import FakeVLM, Fault
    from medground_hf.generation.commands import GenerationOptions, make_judge
    from medground_hf.generation.reverify import verify_queries

    one = next(
        r["id"]
        for r in iter_rows(built_kvasir, "grounding", columns=["id", "num_candidates"])
        if r["num_candidates"] == 1
    )
    lines = [
        {"id": one, "text": f"the {w} polyp in the image"} for w in ("reddish", "pedunculated")
    ]
    offline = verify_queries(built_kvasir, lines).verdicts
    for line in offline:
        (failed,) = [v for v in line["verdicts"] if not v["passed"]]
        assert failed["check"] == "appearance" and "judge" in failed["reason"]
    monkeypatch.setenv("FAKE_VLM_KEY", "sk-fake")
    with FakeVLM() as server:
        server.faults = [Fault("deny")]  # the first judged query is denied
        options = GenerationOptions(
            judge="openai-compatible",
            judge_model="judge-vlm",
            base_url=f"{server.url}/v1",
            api_key_env="FAKE_VLM_KEY",
            cache=str(tmp_path / "cache.sqlite"),
            concurrency=1,
        )
        judge = make_judge(options)
        try:
            judged = verify_queries(built_kvasir, lines, judge=judge).verdicts
        finally:
            judge.close()
    assert [line["kept"] for line in judged] == [False, True]
    for line in judged:
        checks = {v["check"]: v for v in line["verdicts"]}
        assert checks["appearance"]["passed"]
        assert checks["appearance"]["reason"].startswith("left to the VLM judge")
        assert "vlm_judge" in checks


def test_a_folder_built_before_context_boxes_is_regenerated_and_reverified(built_kvasir, tmp_path):
    """Folders from before the record carried ``context_boxes`` still work with ``medground
    generate`` (the column is added empty) and ``medground verify``."""
    import shutil

    import pyarrow.parquet as pq
    from medground_hf.generation.reverify import verify_queries

    from medground_hf.cli import main
    from medground_hf.folder import read_manifest, write_manifest

    old = tmp_path / "old"
    shutil.copytree(built_kvasir, old)
    for shard in (old / "grounding").glob("*.parquet"):
        table = pq.read_table(shard)
        pq.write_table(table.drop_columns(["context_boxes"]), shard)
    write_manifest(old, read_manifest(old))  # records the edited shards, as a build would
    one = next(
        r["id"]
        for r in iter_rows(old, "grounding", columns=["id", "num_candidates"])
        if r["num_candidates"] == 1
    )
    report = verify_queries(old, [{"id": one, "text": "the polyp in this colonoscopy frame"}])
    assert report.verdicts[0]["kept"]
    assert main(["generate", str(old)]) == 0
    rows = list(iter_rows(old, "grounding", columns=["id", "context_boxes", "queries"]))
    assert rows and all(r["context_boxes"] is None and r["queries"] for r in rows)
