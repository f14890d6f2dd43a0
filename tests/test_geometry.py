"""Box convention, instances, RLE and shape cues pinned on constructed masks."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from medground_hf.geometry import (
    bbox_from_mask,
    components,
    convex_area,
    crofton_perimeter,
    decode_rle,
    encode_rle,
    fill_holes,
    shape_cues,
    size_category,
)


def disk(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2


def test_single_pixel_box_is_exclusive_max():
    m = np.zeros((10, 12), bool)
    m[5, 3] = True  # row 5, column 3
    assert bbox_from_mask(m) == (3, 5, 4, 6)


def test_box_touching_image_edges():
    m = np.zeros((7, 9), bool)
    m[:, -1] = True
    assert bbox_from_mask(m) == (8, 0, 9, 7)
    m[:] = True
    assert bbox_from_mask(m) == (0, 0, 9, 7)


def test_rectangle_box_and_area():
    m = np.zeros((50, 60), bool)
    m[10:20, 30:45] = True
    (comp,), dropped = components(m)
    assert comp.bbox_xyxy == (30, 10, 45, 20)
    assert comp.area == 150 and dropped == []
    assert comp.centroid_xy == pytest.approx((37.5, 15.0))


def test_empty_mask_has_no_box_and_no_components():
    m = np.zeros((5, 5), bool)
    with pytest.raises(ValueError):
        bbox_from_mask(m)
    assert components(m) == ([], [])


def test_components_are_8_connected_and_in_raster_order():
    m = np.zeros((20, 20), bool)
    m[15:18, 1:4] = True  # lower-left blob: first pixel at row 15
    m[2, 10] = m[3, 11] = True  # diagonal neighbours: one component, first pixel at row 2
    comps, _ = components(m)
    assert [c.bbox_xyxy for c in comps] == [(10, 2, 12, 4), (1, 15, 4, 18)]


def test_min_size_drops_and_reports_small_components():
    m = np.zeros((30, 30), bool)
    m[0:10, 0:10] = True
    m[20:22, 20:22] = True
    kept, dropped = components(m, min_size=5)
    assert [c.area for c in kept] == [100]
    assert dropped == [4]


def test_single_region_keeps_disconnected_parts_together():
    m = np.zeros((30, 30), bool)
    m[0:5, 0:5] = True
    m[20:25, 20:30] = True
    kept, _ = components(m, single_region=True)
    assert len(kept) == 1
    assert kept[0].bbox_xyxy == (0, 0, 30, 25)
    assert kept[0].area == 75


def test_rle_round_trip_and_pycocotools_agreement():
    rng = np.random.default_rng(0)
    m = rng.random((37, 53)) > 0.6
    rle = encode_rle(m)
    assert rle["size"] == [37, 53] and isinstance(rle["counts"], str)
    assert np.array_equal(decode_rle(rle), m)
    coco = {"size": rle["size"], "counts": rle["counts"].encode()}
    assert mask_utils.area(coco) == m.sum()
    x, y, w, h = mask_utils.toBbox(coco)
    x0, y0, x1, y1 = bbox_from_mask(m)
    assert (x, y, w, h) == (x0, y0, x1 - x0, y1 - y0)


def cues_of(mask):
    (comp,), _ = components(mask)
    return shape_cues(comp, mask.size)


def test_disk_is_round_solid_and_circular():
    c = cues_of(disk((200, 200), (100, 100), 40))
    assert c["elongation"] < 0.02
    assert c["solidity"] > 0.97
    assert c["circularity"] > 0.9
    assert c["orientation"] == "none"
    assert c["aspect_ratio"] == pytest.approx(1.0)


def test_horizontal_and_vertical_bars():
    m = np.zeros((100, 100), bool)
    m[45:55, 10:90] = True
    h = cues_of(m)
    assert h["orientation"] == "horizontal" and h["elongation"] > 0.8
    assert h["aspect_ratio"] == pytest.approx(8.0)
    assert h["circularity"] < 0.5
    v = cues_of(m.T.copy())
    assert v["orientation"] == "vertical"
    assert v["orientation_deg"] == pytest.approx(90.0, abs=1.0)


def test_diagonal_bar_rising_to_the_right_is_oblique_at_45_degrees():
    m = np.zeros((100, 100), bool)
    for i in range(10, 90):  # from lower left to upper right as displayed
        m[99 - i - 2 : 99 - i + 2, i] = True
    c = cues_of(m)
    assert c["orientation"] == "oblique"
    assert c["orientation_deg"] == pytest.approx(45.0, abs=3.0)


def test_l_shape_solidity_is_area_over_convex_hull():
    m = np.zeros((100, 100), bool)
    m[10:90, 10:30] = True
    m[70:90, 10:90] = True
    # area 2800; hull = 80x80 square minus a 60x60 half-square = 4600
    assert cues_of(m)["solidity"] == pytest.approx(2800 / 4600, abs=0.01)


@pytest.mark.parametrize(
    ("fraction", "name"),
    [
        (0.001, "tiny"),
        (0.0099, "tiny"),
        (0.01, "small"),
        (0.049, "small"),
        (0.05, "medium"),
        (0.19, "medium"),
        (0.2, "large"),
        (0.9, "large"),
    ],
)
def test_size_categories(fraction, name):
    assert size_category(fraction) == name


def test_relative_area_and_size_category_from_mask():
    m = np.zeros((100, 100), bool)
    m[0:30, 0:30] = True  # 9 % of the image
    c = cues_of(m)
    assert c["relative_area"] == pytest.approx(0.09)
    assert c["size_category"] == "medium"


def test_fill_holes_fills_outlines_and_keeps_open_shapes():
    ring = disk((60, 60), (30, 30), 20) & ~disk((60, 60), (30, 30), 17)
    filled = fill_holes(ring)
    assert np.array_equal(filled, disk((60, 60), (30, 30), 20))
    open_c = ring.copy()
    open_c[28:33, 45:] = False  # cut the ring: nothing is enclosed any more
    assert np.array_equal(fill_holes(open_c), open_c)
    # a hole touching a diagonal gap stays enclosed: background is 4-connected
    m = np.zeros((5, 5), bool)
    m[1, 2] = m[2, 1] = m[2, 3] = m[3, 2] = True
    assert fill_holes(m)[2, 2]


@pytest.mark.parametrize(("radius", "tolerance"), [(10, 0.05), (40, 0.01), (100, 0.005)])
def test_crofton_perimeter_of_a_disk(radius, tolerance):
    m = np.pad(disk((2 * radius + 9, 2 * radius + 9), (radius + 4, radius + 4), radius), 1)
    assert crofton_perimeter(m) == pytest.approx(2 * np.pi * radius, rel=tolerance)


def test_convex_area_of_pixel_squares():
    m = np.zeros((12, 30), bool)
    m[2:6, 3:25] = True
    assert convex_area(m) == 4 * 22
    m[2:6, 3:25] = False
    m[5, 3:25] = True  # a single row: degenerate for qhull, still its box
    assert convex_area(m) == 22


@pytest.mark.parametrize(
    ("angle", "word"),
    [(0, "horizontal"), (30, "oblique"), (60, "oblique"), (90, "vertical"), (150, "oblique")],
)
def test_rotated_ellipse_orientation_and_rotation_invariant_cues(angle, word):
    """An ellipse turned counter-clockwise (as displayed) by ``angle``: the angle comes back and
    the other shape cues do not depend on it."""
    yy, xx = np.mgrid[:200, :200]
    t = np.deg2rad(angle)
    u = (xx - 100) * np.cos(t) - (yy - 100) * np.sin(t)  # image rows grow downwards
    v = (xx - 100) * np.sin(t) + (yy - 100) * np.cos(t)
    c = cues_of((u / 60) ** 2 + (v / 15) ** 2 <= 1)
    assert c["orientation"] == word
    assert c["orientation_deg"] == pytest.approx(angle, abs=1.0)
    assert c["elongation"] == pytest.approx(0.75, abs=0.02)
    assert c["solidity"] > 0.94 and c["circularity"] < 0.7


def test_components_keep_only_their_box_and_rebuild_the_full_mask():
    """Memory follows the targets' boxes, not (targets x image): a big image with many specks."""
    mask = np.zeros((2000, 3000), bool)
    mask[10:20:2, 10:2990:4] = True  # 5 rows x 745 single-pixel components
    kept, _ = components(mask, min_size=1)
    assert len(kept) == 5 * 745
    assert sum(c.crop.nbytes for c in kept) == len(kept)  # one byte each
    first = kept[0]
    assert first.image_shape == (2000, 3000) and first.bbox_xyxy == (10, 10, 11, 11)
    np.testing.assert_array_equal(
        first.mask, (np.arange(2000)[:, None] == 10) & (np.arange(3000) == 10)
    )
    grown = first.mask_in((slice(8, 13), slice(0, 12)))  # a window reaching past the box
    assert grown.shape == (5, 12) and grown.sum() == 1 and grown[2, 10]
