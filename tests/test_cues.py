"""Spatial cues, relations and visual statistics on constructed images."""

from __future__ import annotations

import numpy as np
import pytest

from medground_hf.cues import relations, spatial_cues, visual_stats
from medground_hf.geometry import components


def comp_of(mask):
    (c,), _ = components(mask, single_region=True)
    return c


def box_mask(shape, x0, y0, x1, y1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.mark.parametrize(
    ("box", "row", "side", "cell"),
    [
        ((0, 0, 20, 20), "upper", "left", "upper left"),  # a corner (rule P3)
        ((140, 0, 160, 20), "upper", "center", None),
        ((280, 0, 300, 20), "upper", "right", "upper right"),
        ((140, 90, 160, 110), "middle", "center", "center"),  # around the centre (P4)
        ((0, 180, 20, 200), "lower", "left", "lower left"),
        ((280, 90, 300, 110), "middle", "right", None),
        ((105, 90, 135, 110), "middle", "left", None),  # centroid at 0.40 of the width: left
        ((110, 90, 140, 110), "middle", "center", None),  # 0.417: not clearly in either half
        ((20, 20, 200, 60), "upper", "center", None),  # centroid left, box reaching past 0.65
        ((60, 40, 160, 100), "upper", "left", None),  # upper left quadrant, not the corner
    ],
)
def test_position_cues_follow_the_viewer_rules(box, row, side, cell):
    x0, y0, x1, y1 = box
    cues = spatial_cues(box, ((x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2), 300, 200)
    assert (cues["grid_row"], cues["image_side"], cues["grid_cell"]) == (row, side, cell)
    assert cues["grid_col"] == cues["image_side"]
    assert cues["patient_side"] is None
    assert cues["display_convention"] == "as-acquired"


def test_patient_side_is_kept_apart_from_image_side():
    cues = spatial_cues(
        (10, 90, 30, 110),
        (20, 100),
        300,
        200,
        patient_side="right",
        display_convention="radiological",
    )
    assert cues["image_side"] == "left" and cues["patient_side"] == "right"


def test_extremes_and_size_rank_among_same_label():
    shape = (100, 200)
    small_left = comp_of(box_mask(shape, 10, 10, 20, 20))
    big_right = comp_of(box_mask(shape, 120, 50, 180, 90))
    other = comp_of(box_mask(shape, 60, 60, 70, 70))
    rel = relations([small_left, big_right, other], ["polyp", "polyp", "vessel"])
    assert rel[0]["leftmost"] and rel[0]["uppermost"] and rel[0]["smallest"]
    assert not rel[0]["largest"] and rel[0]["size_rank"] == 2
    assert rel[1]["rightmost"] and rel[1]["lowermost"] and rel[1]["largest"]
    assert rel[1]["size_rank"] == 1
    # a lone target of its label is never "leftmost" or "largest": there is nothing to compare
    assert not any(rel[2][k] for k in ("leftmost", "rightmost", "largest", "smallest"))


def test_extremes_need_a_margin_a_viewer_sees():
    """A fragment inside the ring of a larger piece is not "leftmost" by a few pixels of
    centroid (the issue's BraTS case), equal pieces in a row have no extreme and no size rank,
    and a size difference under the visible factor names neither the largest nor the smallest."""
    shape = (240, 240)
    ring = box_mask(shape, 60, 60, 140, 140) & ~box_mask(shape, 70, 70, 130, 130)
    fragment = box_mask(shape, 72, 95, 78, 100)  # inside the ring, centroid a few px left
    rel = relations([comp_of(ring), comp_of(fragment)], ["enhancing"] * 2)
    assert not rel[1]["leftmost"] and not rel[0]["leftmost"]
    assert rel[0]["largest"] and rel[1]["smallest"]
    row = [comp_of(box_mask(shape, 100 + 8 * i, 100, 104 + 8 * i, 104)) for i in range(5)]
    rel = relations(row, ["necrosis"] * 5)
    assert not any(r[k] for r in rel for k in ("leftmost", "rightmost", "largest", "smallest"))
    assert {r["size_rank"] for r in rel} == {None}
    close = [comp_of(box_mask(shape, 10, 10, 30, 30)), comp_of(box_mask(shape, 150, 10, 171, 31))]
    rel = relations(close, ["polyp"] * 2)  # 400 vs 441 px: within the factor 1.25
    assert rel[0]["leftmost"] and rel[1]["rightmost"]
    assert not (rel[0]["smallest"] or rel[1]["largest"])


def test_inside_contains_and_adjacent():
    shape = (100, 100)
    ring = box_mask(shape, 20, 20, 80, 80) & ~box_mask(shape, 30, 30, 70, 70)
    core = box_mask(shape, 35, 35, 65, 65)
    neighbour = box_mask(shape, 81, 40, 90, 50)  # 1 px gap to the ring
    far = box_mask(shape, 0, 90, 5, 95)
    comps = [comp_of(m) for m in (ring, core, neighbour, far)]
    rel = relations(comps, ["enhancing", "necrosis", "edema", "edema"])
    assert rel[1]["inside"] == ["enhancing"]
    assert rel[0]["contains"] == ["necrosis"]
    assert rel[0]["adjacent_to"] == ["edema"]
    assert rel[2]["adjacent_to"] == ["enhancing"]
    assert rel[3]["adjacent_to"] == [] and rel[3]["inside"] == []


def test_context_structures_take_part_in_relations():
    shape = (100, 100)
    brain = comp_of(box_mask(shape, 10, 10, 90, 90))
    lesion = comp_of(box_mask(shape, 40, 40, 50, 50))
    (rel,) = relations([lesion], ["tumour"], {"brain": brain})
    assert rel["inside"] == ["brain"]


def test_visual_stats_separate_bright_target_from_dark_surroundings():
    image = np.full((100, 100), 40.0, np.float32)
    target = box_mask(image.shape, 40, 40, 60, 60)
    image[target] = 200.0
    stats = visual_stats(image, comp_of(target))
    assert stats["region_mean"] == pytest.approx(200.0)
    assert stats["ring_mean"] == pytest.approx(40.0)
    assert stats["contrast"] > 100
    assert stats["edge_contrast"] is None  # plainly distinct: the outline is not measured
    assert stats["blank_fraction"] == 0.0


def test_visual_stats_flag_a_target_in_blank_padding():
    image = np.zeros((100, 100), np.float32)
    image[:, 50:] = 120.0
    target = box_mask(image.shape, 5, 5, 25, 25)
    stats = visual_stats(image, comp_of(target))
    assert stats["blank_fraction"] == 1.0
    assert stats["contrast"] == pytest.approx(0.0)


def test_contrast_sees_hue_differences_at_equal_brightness():
    image = np.zeros((100, 100, 3), np.float32)
    image[...] = (150, 100, 100)  # reddish mucosa
    target = box_mask(image.shape[:2], 40, 40, 60, 60)
    image[target] = (100, 125.5, 100)  # greener, same luma to within a grey level
    stats = visual_stats(image, comp_of(target))
    assert stats["region_mean"] == pytest.approx(stats["ring_mean"], abs=1.0)
    assert stats["contrast"] > 10


def test_uniform_image_has_no_contrast():
    image = np.full((80, 80, 3), 90, np.uint8)
    stats = visual_stats(image, comp_of(box_mask((80, 80), 30, 30, 50, 50)))
    assert stats["contrast"] == 0.0 and stats["edge_contrast"] == 0.0


def test_overlapping_targets_whole_tumour_over_its_parts():
    """A "whole tumour" target overlaps its parts: parts are inside it, it contains them, and
    where it coincides with a single part neither is inside the other nor "next to" it. Counts
    and extremes stay within each label."""
    shape = (100, 100)
    necrosis = box_mask(shape, 20, 20, 40, 40)
    edema = box_mask(shape, 50, 50, 80, 70)
    lone = box_mask(shape, 5, 80, 15, 90)  # a necrosis with no other part around it
    whole_a = necrosis | box_mask(shape, 15, 15, 45, 45)
    whole_b = edema | box_mask(shape, 60, 45, 85, 75)
    comps = [comp_of(m) for m in (necrosis, lone, edema, whole_a, whole_b, lone)]
    labels = ["necrosis", "necrosis", "edema", "whole", "whole", "whole"]
    rel = relations(comps, labels)
    assert rel[0]["inside"] == ["whole"] and rel[2]["inside"] == ["whole"]
    assert rel[3]["contains"] == ["necrosis"] and rel[4]["contains"] == ["edema"]
    assert rel[3]["inside"] == [] and rel[4]["inside"] == []
    # the lone necrosis and its whole tumour coincide
    for i in (1, 5):
        assert rel[i]["inside"] == rel[i]["contains"] == rel[i]["adjacent_to"] == []
    assert rel[1]["lowermost"] and rel[1]["smallest"] and not rel[0]["lowermost"]
    # the two whole tumours (900 and 950 px) differ by less than a viewer sees: no rank at all
    assert [r["size_rank"] for r in rel] == [1, 2, 1, None, None, None]
