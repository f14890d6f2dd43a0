"""The viewer rules: claims hold only with a visible margin, and a claim and its opposite are
never both true."""

from __future__ import annotations

import itertools

import pytest

from medground_hf import margins


def rec(box, *, size=(100, 100), centroid=None, area=None, spacing=None) -> dict:
    x0, y0, x1, y1 = box
    if centroid is None:
        centroid = ((x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2)
    return {
        "bbox_xyxy": list(box),
        "centroid_xy": list(centroid),
        "width": size[0],
        "height": size[1],
        "area_px": area if area is not None else (x1 - x0) * (y1 - y0),
        "pixel_spacing_mm": spacing,
    }


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((5, 40, 30, 60), "left"),
        ((70, 40, 95, 60), "right"),
        ((30, 40, 55, 60), None),  # centroid at 42: within the margin of the midline
        ((10, 40, 70, 60), None),  # centroid left, but the box reaches far past the midline
        ((45, 40, 55, 60), None),
    ],
)
def test_image_half_needs_a_margin(box, expected):
    assert margins.image_half(rec(box)) == expected


def test_upper_at_44_percent_of_the_height_is_not_upper():
    # the example: "upper part" for a target centred at 44 % of the height
    r = rec((40, 30, 60, 59))
    assert r["centroid_xy"][1] == pytest.approx(44)
    assert margins.image_level(r) is None


def test_centre_needs_a_box_around_the_centre():
    assert margins.central(rec((35, 35, 65, 65)))
    # Kvasir cju76lsehyia10987u54vn8rb: x 142-204 of 256 lies entirely in the right half
    assert not margins.central(rec((142, 100, 204, 160), size=(256, 256)))
    # HC18 025_HC: a head spanning 48-84 % of the width is not "near the middle"
    assert not margins.central(rec((384, 100, 672, 440), size=(800, 540)))


def test_corner_only_in_the_corner():
    assert margins.corner(rec((2, 2, 20, 20))) == "upper left"
    assert margins.corner(rec((80, 85, 98, 99))) == "lower right"
    # lower right quadrant but reaching towards the centre: not "toward the lower right corner"
    assert margins.corner(rec((45, 55, 98, 99))) is None
    assert margins.quadrant(rec((62, 62, 98, 99))) == "lower right"


def test_edges_and_periphery():
    assert margins.edges(rec((0, 40, 20, 60))) == {"left"}
    assert margins.edges(rec((80, 0, 100, 20))) == {"right", "top"}
    assert margins.edges(rec((35, 35, 65, 65))) == set()
    # a box touching the edge but centred inwards is not "at the edge"
    assert not margins.near_edge(rec((0, 40, 80, 60)), "left")


def test_clock_face():
    assert margins.at_clock(rec((80, 45, 95, 55)), 3)
    assert margins.at_clock(rec((45, 2, 55, 12)), 12)
    assert margins.at_clock(rec((5, 80, 15, 90)), 8)  # lower left, 7:30
    assert not margins.at_clock(rec((80, 45, 95, 55)), 9)
    assert margins.clock_hour(rec((45, 45, 55, 55))) is None  # at the centre: no hour
    assert not margins.at_clock(rec((45, 45, 55, 55)), 12)


def test_relative_position_needs_a_gap_and_no_overreach():
    left, right = rec((5, 40, 25, 60)), rec((60, 40, 80, 60))
    assert margins.beyond(left, right, "left") and margins.beyond(right, left, "right")
    assert not margins.beyond(left, right, "right")
    # a small fragment inside the ring of a large lesion: its centroid is a few px left of the
    # lesion's, but the lesion reaches much further left (the BraTS example)
    ring = rec((20, 20, 80, 80))
    fragment = rec((30, 45, 36, 51))
    assert not margins.beyond(fragment, ring, "left")
    assert not margins.extremal(fragment, [ring], "left")
    # one pixel apart is no relation at all
    a, b = rec((40, 40, 50, 50)), rec((41, 40, 51, 50))
    assert not margins.beyond(a, b, "left") and not margins.beyond(b, a, "right")


def test_extremal_against_every_candidate_and_never_alone():
    a, b, c = rec((5, 40, 15, 50)), rec((40, 40, 50, 50)), rec((80, 40, 90, 50))
    assert margins.extremal(a, [b, c], "left")
    assert margins.extremal(c, [a, b], "right")
    assert not margins.extremal(b, [a, c], "left")
    assert not margins.extremal(a, [], "left")


def test_size_comparisons_need_a_visible_difference():
    big, mid, small = rec((0, 0, 30, 30)), rec((0, 0, 20, 20)), rec((0, 0, 10, 10))
    twin = rec((0, 0, 19, 21))  # 399 px against 400 px
    assert margins.largest(big, [mid, small]) and margins.smallest(small, [big, mid])
    assert not margins.largest(mid, [twin]) and not margins.smallest(twin, [mid])
    assert margins.size_rank_clear(mid, [big, small]) == 2
    assert margins.size_rank_clear(mid, [big, small], from_largest=False) == 2
    assert margins.size_rank_clear(big, [mid, small]) == 1
    assert margins.size_rank_clear(mid, [big, twin]) is None  # 2nd and 3rd indistinguishable


def test_nearer_the_centre():
    centre, edge = rec((45, 45, 55, 55)), rec((0, 0, 10, 10))
    assert margins.nearer_centre(centre, [edge]) and margins.nearer_edge(edge, [centre])
    assert not margins.nearer_centre(edge, [centre])
    assert not margins.nearer_centre(centre, [rec((44, 46, 54, 56))])


def test_physical_size_uses_row_column_spacing():
    r = rec((0, 0, 10, 20), spacing=[0.5, 2.0])  # rows 0.5 mm, columns 2 mm
    assert margins.largest_dimension_mm(r) == pytest.approx(20.0)
    assert margins.largest_dimension_mm(rec((0, 0, 10, 20))) is None
    assert margins.image_share(rec((0, 0, 50, 50))) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "box", [b for b in itertools.product(range(0, 100, 9), repeat=2) if b[0] < b[1]]
)
def test_opposites_are_never_both_true(box):
    x0, x1 = box
    r = rec((x0, x0 // 2, x1, x1 // 2 + 3))
    assert not (margins.image_half(r) and margins.central(r))
    assert not (margins.near_edge(r, "left") and margins.near_edge(r, "right"))
    assert not (margins.corner(r) and margins.central(r))
