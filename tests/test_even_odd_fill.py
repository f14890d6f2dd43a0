"""The RT contour rasteriser: pixel centres inside polygons by the even-odd rule."""

from __future__ import annotations

import numpy as np
from skimage.draw import polygon

from medground_hf.geometry import even_odd_fill


def square(r0: float, c0: float, r1: float, c1: float) -> np.ndarray:
    return np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], dtype=float)


def test_one_polygon_is_what_skimage_draws():
    """Random (often self-intersecting) polygons: the same pixels as skimage.draw.polygon, whose
    crossing test is the even-odd rule on pixel centres."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        points = rng.uniform(-5, 45, size=(int(rng.integers(3, 12)), 2))
        expected = np.zeros((40, 36), dtype=bool)
        expected[polygon(points[:, 0], points[:, 1], expected.shape)] = True
        assert np.array_equal(even_odd_fill([points], expected.shape), expected)


def test_a_contour_inside_another_is_a_hole():
    ring = even_odd_fill([square(1.5, 1.5, 9.5, 9.5), square(3.5, 3.5, 6.5, 6.5)], (12, 12))
    expected = np.zeros((12, 12), dtype=bool)
    expected[2:10, 2:10] = True
    expected[4:7, 4:7] = False
    assert np.array_equal(ring, expected)


def test_overlapping_contours_combine_by_parity():
    both = even_odd_fill([square(0.5, 0.5, 5.5, 5.5), square(3.5, 3.5, 8.5, 8.5)], (10, 10))
    a = np.zeros((10, 10), dtype=bool)
    a[1:6, 1:6] = True
    b = np.zeros((10, 10), dtype=bool)
    b[4:9, 4:9] = True
    assert np.array_equal(both, a ^ b)


def test_outside_the_image_and_degenerate_contours():
    shape = (6, 8)
    assert not even_odd_fill([], shape).any()
    assert not even_odd_fill([square(-9, -9, -2, -2)], shape).any()
    assert not even_odd_fill([np.array([[1.0, 1.0], [4.0, 4.0]])], shape).any()  # a line
    clipped = even_odd_fill([square(-3.5, -3.5, 2.5, 20)], shape)
    assert clipped[:3].all() and not clipped[3:].any()
