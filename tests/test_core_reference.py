"""The fast record-making core against plain reference implementations.

The core labels only a mask's box, takes moments from exact integer sums, peels a polygon for the
convex hull, grows rings with a doubling-table filter and writes RLE from a target's box alone.
Each is checked here against the straightforward way (whole-image labelling, coordinate arrays,
Qhull over every pixel corner, scipy's running filters, pycocotools on the full mask) on the
shared Kvasir-SEG and HC18 samples and on random masks, including ragged, disconnected and
edge-touching ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from medground_hf.builders import get_builder_class
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from medground_hf import cues
from medground_hf.geometry import (
    component_rle,
    components,
    convex_area,
    crofton_perimeter,
    encode_rle,
    fill_holes,
    pixel_sums,
    shape_cues,
)

LUMA = np.array([0.299, 0.587, 0.114])


def sample_targets(
    name: str, folder: Path, cache: Path
) -> list[tuple[np.ndarray, np.ndarray, object]]:
    """(image, mask, spec) of every sample image of a 2D source, decoded by its builder."""
    builder = get_builder_class(name)(data_dir=str(folder), cache_dir=str(cache))
    out = []
    for item in builder.list_items(folder):
        for sample in builder.load_item(item):
            for spec, mask in sample.masks:
                out.append((sample.image, mask, spec))
    return out


@pytest.fixture(scope="module")
def samples(
    kvasir_dir: Path, hc18_dir: Path, tmp_path_factory
) -> list[tuple[np.ndarray, np.ndarray, object]]:
    cache = tmp_path_factory.mktemp("cache")
    return sample_targets("kvasir_seg", kvasir_dir, cache) + sample_targets("hc18", hc18_dir, cache)


def random_masks(count: int, seed: int = 0) -> list[np.ndarray]:
    """Noise, blobs and boxes of every density, some touching the image edges."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :56]
    out = []
    for k in range(count):
        if k % 3 == 0:
            mask = rng.random(tuple(rng.integers(1, 30, 2))) < rng.random()
        elif k % 3 == 1:
            cy, cx = rng.uniform(-5, 53, 2)
            ry, rx = rng.uniform(0.5, 30, 2)
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            mask = np.zeros((int(rng.integers(1, 20)), int(rng.integers(1, 20))), bool)
            y0, x0 = rng.integers(0, mask.shape[0]), rng.integers(0, mask.shape[1])
            mask[y0:, x0:] = rng.random(mask[y0:, x0:].shape) < 0.7
        out.append(mask)
    return out


def reference_components(mask: np.ndarray, single_region: bool, min_size: int):
    """Whole-image labelling, boxes and centroids from every pixel's coordinates."""
    if single_region:
        parts = [mask] if mask.any() else []
    else:
        labelled, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
        parts = [labelled == i for i in range(1, labelled.max() + 1)]
    kept, dropped = [], []
    for part in parts:
        ys, xs = np.nonzero(part)
        if ys.size < min_size:
            dropped.append(int(ys.size))
            continue
        x0, y0 = int(xs.min()), int(ys.min())
        box = (x0, y0, int(xs.max()) + 1, int(ys.max()) + 1)
        # the centroid within the box, then placed in the image (as records always had it)
        kept.append((box, int(ys.size), ((xs - x0).mean() + x0 + 0.5, (ys - y0).mean() + y0 + 0.5)))
    return kept, dropped


def test_components_match_whole_image_labelling(samples):
    cases = [(m, s.single_region, s.min_size) for _, m, s in samples]
    cases += [(m, k % 2 == 1, 1 + k % 5) for k, m in enumerate(random_masks(300))]
    for mask, single_region, min_size in cases:
        kept, dropped = components(mask, single_region=single_region, min_size=min_size)
        ref_kept, ref_dropped = reference_components(mask, single_region, min_size)
        assert dropped == ref_dropped
        assert [(c.bbox_xyxy, c.area, c.centroid_xy) for c in kept] == ref_kept
        for comp in kept:
            x0, y0, x1, y1 = comp.bbox_xyxy
            assert comp.crop.shape == (y1 - y0, x1 - x0)
            assert comp.mask.sum() == comp.area and not (comp.mask & ~mask).any()


def corner_hull_area(crop: np.ndarray) -> float:
    """Qhull over all four corners of every outline pixel (an inner pixel's corners are
    shared with its neighbours')."""
    ys, xs = np.nonzero(crop & ~ndimage.binary_erosion(crop))
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    try:
        return ConvexHull(corners.astype(float)).volume
    except QhullError:  # one row or column of pixels
        return float(np.ptp(corners[:, 0]) * np.ptp(corners[:, 1]))


def test_shape_sums_hull_and_perimeter_match_references(samples):
    masks = [m for _, m, s in samples] + random_masks(300, seed=1)
    for mask in masks:
        for comp in components(mask, single_region=True)[0]:
            ys, xs = np.nonzero(comp.crop)
            assert pixel_sums(comp.crop) == (
                xs.size,
                xs.sum(),
                ys.sum(),
                (xs * xs).sum(),
                (ys * ys).sum(),
                (xs * ys).sum(),
            )
            assert convex_area(comp.crop) == pytest.approx(corner_hull_area(comp.crop), rel=1e-9)
            c = np.pad(comp.crop, 1).astype(np.int8)
            transitions = (
                np.count_nonzero(np.diff(c, axis=1)) + np.count_nonzero(np.diff(c, axis=0)),
                np.count_nonzero(c[1:, 1:] != c[:-1, :-1])
                + np.count_nonzero(c[1:, :-1] != c[:-1, 1:]),
            )
            assert crofton_perimeter(comp.crop) == pytest.approx(
                np.pi / 8 * (transitions[0] + transitions[1] / np.sqrt(2)), rel=1e-12
            )
            cues = shape_cues(comp, mask.size)
            dx, dy = xs - xs.mean(), ys - ys.mean()
            mu20, mu02, mu11 = (dx * dx).mean(), (dy * dy).mean(), (dx * dy).mean()
            spread = np.hypot((mu20 - mu02) / 2, mu11)
            assert cues["major_axis_px"] == pytest.approx(4 * np.sqrt((mu20 + mu02) / 2 + spread))
            assert cues["minor_axis_px"] == pytest.approx(
                4 * np.sqrt(max((mu20 + mu02) / 2 - spread, 0)), abs=1e-9
            )


def test_rle_from_the_box_is_byte_for_byte_pycocotools_on_the_full_mask(samples):
    masks = [m for _, m, s in samples] + random_masks(600, seed=2)
    full_height = np.zeros((6, 7), bool)
    full_height[:, 2] = full_height[:, 4] = True  # full-height box with an empty column
    masks.append(full_height)
    checked = 0
    for k, mask in enumerate(masks):
        for comp in components(mask, single_region=k % 2 == 0)[0]:
            assert component_rle(comp) == encode_rle(comp.mask)
            checked += 1
    assert checked > 600


def test_square_filter_matches_scipy_running_filters():
    for k, mask in enumerate(random_masks(300, seed=3)):
        width = 1 + k % 9
        grown = ndimage.maximum_filter(mask.view(np.uint8), size=2 * width + 1).view(bool)
        shrunk = ndimage.minimum_filter(
            mask.view(np.uint8), size=2 * width + 1, mode="constant"
        ).view(bool)
        assert np.array_equal(cues._square_filter(mask, width, grow=True), grown)
        assert np.array_equal(cues._square_filter(mask, width, grow=False), shrunk)


def test_fill_holes_matches_scipy():
    for mask in random_masks(300, seed=4):
        assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))


def reference_separability(inner: np.ndarray, outer: np.ndarray) -> float:
    mean_in, mean_out = inner.mean(axis=1), outer.mean(axis=1)
    pooled = np.sqrt(((inner.var(axis=1) + outer.var(axis=1)) / 2).mean()) + 1.0
    return float(np.linalg.norm(mean_in - mean_out) / pooled)


def reference_visual(image: np.ndarray, comp) -> dict:
    """Boolean selection of whole pixels, float64 statistics, scipy's max filter for the ring."""
    width = max(3, int(round(0.15 * np.sqrt(comp.area))))
    window = cues._grown_window(comp, width, image.shape[:2])
    region = comp.mask_in(window)
    ring = ndimage.maximum_filter(region.view(np.uint8), size=2 * width + 1).view(bool) & ~region
    crop = image[window] if image.ndim == 3 else image[window][..., None]
    inner = crop[region].T.astype(np.float64)
    outer = crop[ring].T.astype(np.float64) if ring.any() else inner
    luma_in = inner[0] if len(inner) == 1 else LUMA @ inner
    luma_out = outer[0] if len(outer) == 1 else LUMA @ outer
    return {
        "region_mean": luma_in.mean(),
        "region_std": luma_in.std(),
        "ring_mean": luma_out.mean(),
        "ring_std": luma_out.std(),
        "contrast": reference_separability(inner, outer),
        "blank_fraction": np.count_nonzero(luma_in <= cues.BLANK_LEVEL) / luma_in.size,
    }


def test_visual_stats_match_whole_pixel_selection(samples):
    checked = 0
    for image, mask, spec in samples:
        for comp in components(mask, single_region=spec.single_region, min_size=spec.min_size)[0]:
            got, want = cues.visual_stats(image, comp), reference_visual(image, comp)
            for key, value in want.items():
                # luma moments now come from exact integer sums: equal up to float rounding
                assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
            checked += 1
    assert checked >= 80


def test_blank_pixels_counted_as_the_float_luma_rule_says():
    """The blank count prefilters on green; every 8-bit colour gives the float rule's answer."""
    # every red and blue with the greens up to well past 8 / 0.587 (beyond, luma exceeds 8)
    r, g, b = np.meshgrid(np.arange(256), np.arange(24), np.arange(256), indexing="ij")
    image = np.stack([r, g, b], axis=-1).reshape(256, -1, 3).astype(np.uint8)
    (comp,), _ = components(np.ones(image.shape[:2], bool), single_region=True)
    stats = cues.visual_stats(image, comp)
    expected = np.count_nonzero(LUMA @ image.reshape(-1, 3).T.astype(np.float64) <= 8.0)
    assert expected > 0
    assert stats["blank_fraction"] == expected / (image.shape[0] * image.shape[1])
