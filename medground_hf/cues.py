"""Spatial cues, relations among the targets of one image, and visual-distinctness statistics.

Image-space words ("left of the image") come from pixel positions; the patient side comes only from
volume geometry (see :mod:`medground_hf.volumes`) and is stored separately so queries never mix
them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .geometry import Component, fill_holes

# Centroids within this fraction of the width around the vertical midline are "center".
SIDE_DEAD_BAND = 0.05
# A target counts as inside another when this share of its pixels lies in the other's filled region.
INSIDE_FRACTION = 0.9
# Targets whose masks come within this many pixels of each other are adjacent.
ADJACENT_PX = 2
# Grey values at or below this count as padding / blank background.
BLANK_LEVEL = 8.0


def _third(value: float, extent: int, names: tuple[str, str, str]) -> str:
    position = value / extent
    if position < 1 / 3:
        return names[0]
    if position < 2 / 3:
        return names[1]
    return names[2]


def half(value: float, extent: int, names: tuple[str, str, str]) -> str:
    """Which half of an extent a position is in (``names[0]`` below the midline), or
    ``names[1]`` within :data:`SIDE_DEAD_BAND` of it."""
    offset = value / extent - 0.5
    if abs(offset) <= SIDE_DEAD_BAND:
        return names[1]
    return names[0] if offset < 0 else names[2]


def spatial_cues(
    centroid_xy: tuple[float, float],
    width: int,
    height: int,
    *,
    patient_side: str | None = None,
    display_convention: str = "as-acquired",
) -> dict:
    """Position on a 3x3 grid of the image, the image side, and (volumes only) the patient side."""
    x, y = centroid_xy
    row = _third(y, height, ("upper", "middle", "lower"))
    col = _third(x, width, ("left", "center", "right"))
    cell = "center" if (row, col) == ("middle", "center") else f"{row} {col}"
    side = half(x, width, ("left", "center", "right"))
    return {
        "grid_row": row,
        "grid_col": col,
        "grid_cell": cell,
        "image_side": side,
        "patient_side": patient_side,
        "display_convention": display_convention,
    }


def _grown_window(comp: Component, margin: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    x0, y0, x1, y1 = comp.bbox_xyxy
    return (
        slice(max(0, y0 - margin), min(shape[0], y1 + margin)),
        slice(max(0, x0 - margin), min(shape[1], x1 + margin)),
    )


def _filled(comp: Component) -> np.ndarray:
    """The component with its holes filled, in its own box window."""
    return fill_holes(comp.crop)


def _share_inside(inner: Component, outer: Component, outer_filled: np.ndarray) -> float:
    ox0, oy0, ox1, oy1 = outer.bbox_xyxy
    ix0, iy0, ix1, iy1 = inner.bbox_xyxy
    if ix0 < ox0 or iy0 < oy0 or ix1 > ox1 or iy1 > oy1:
        return 0.0
    window = (slice(iy0 - oy0, iy1 - oy0), slice(ix0 - ox0, ix1 - ox0))
    return float(np.count_nonzero(outer_filled[window] & inner.crop)) / inner.area


def _lone_relations() -> dict:
    return {
        "leftmost": False,
        "rightmost": False,
        "uppermost": False,
        "lowermost": False,
        "largest": False,
        "smallest": False,
        "size_rank": 1,
        "adjacent_to": [],
        "inside": [],
        "contains": [],
    }


def relations(
    comps: Sequence[Component],
    labels: Sequence[str],
    context: dict[str, Component] | None = None,
) -> list[dict]:
    """Per target: extreme position/size among its own label, and adjacency/containment.

    ``context`` holds named structures that are not targets (e.g. the brain mask) but take part in
    "inside" and "next to" relations. A target is inside another when at least
    :data:`INSIDE_FRACTION` of it lies in the other's filled region and it is smaller than that
    region; two targets that coincide (each inside the other) are neither inside nor adjacent.
    """
    context = context or {}
    if len(comps) == 1 and not context:  # a lone target has no neighbours and no extremes
        return [_lone_relations()]
    all_comps = list(comps) + list(context.values())
    all_labels = list(labels) + list(context)
    filled = [_filled(c) for c in all_comps]
    filled_area = [int(np.count_nonzero(f)) for f in filled]
    out: list[dict] = []
    for i, (comp, label) in enumerate(zip(comps, labels, strict=True)):
        same = [j for j, other in enumerate(labels) if other == label]
        xs = {j: comps[j].centroid_xy[0] for j in same}
        ys = {j: comps[j].centroid_xy[1] for j in same}
        areas = {j: comps[j].area for j in same}
        many = len(same) > 1
        rank = 1 + sum(1 for j in same if areas[j] > comp.area)
        grown_window = _grown_window(comp, ADJACENT_PX, comp.image_shape)
        grown = ndimage.binary_dilation(
            comp.mask_in(grown_window), structure=np.ones((3, 3), bool), iterations=ADJACENT_PX
        )
        adjacent: set[str] = set()
        inside: set[str] = set()
        contains: set[str] = set()
        for j, (other, other_label) in enumerate(zip(all_comps, all_labels, strict=True)):
            if j == i:
                continue
            # Overlapping targets (a "whole tumour" over its parts) may coincide on a slice: then
            # neither lies inside the other, and they are not neighbours either.
            is_in = _share_inside(comp, other, filled[j]) >= INSIDE_FRACTION
            holds = _share_inside(other, comp, filled[i]) >= INSIDE_FRACTION
            if is_in and comp.area < filled_area[j]:
                inside.add(other_label)
            elif holds and j < len(comps) and other.area < filled_area[i]:
                contains.add(other_label)
            elif not (is_in or holds) and np.any(grown & other.mask_in(grown_window)):
                adjacent.add(other_label)
        out.append(
            {
                "leftmost": many and xs[i] == min(xs.values()),
                "rightmost": many and xs[i] == max(xs.values()),
                "uppermost": many and ys[i] == min(ys.values()),
                "lowermost": many and ys[i] == max(ys.values()),
                "largest": many and rank == 1,
                "smallest": many and comp.area == min(areas.values()),
                "size_rank": rank,
                "adjacent_to": sorted(adjacent),
                "inside": sorted(inside),
                "contains": sorted(contains),
            }
        )
    return out


LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


def _separability(inner: np.ndarray, outer: np.ndarray) -> float:
    """Distance between the mean colours over the pooled per-channel standard deviation.

    ``inner`` and ``outer`` are channel-major (C x N), so every reduction runs along contiguous
    memory.
    """
    (mean_in, var_in), (mean_out, var_out) = (_moments(v) for v in (inner, outer))
    pooled = np.sqrt(((var_in + var_out) / 2.0).mean()) + 1.0
    return float(np.linalg.norm(mean_in - mean_out) / pooled)


def _moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean and variance from one pass of sums (callers pass float64: no cancellation)."""
    n = values.shape[1]
    total = values.sum(axis=1)
    squares = np.einsum("ij,ij->i", values, values)
    mean = total / n
    return mean, np.maximum(squares / n - mean * mean, 0.0)


def visual_stats(image: np.ndarray, comp: Component) -> dict:
    """Region vs surrounding-ring statistics, and the share of blank/padding pixels.

    The ring is ``max(3, 0.15 * sqrt(area))`` pixels wide. Means and deviations are of the luma;
    ``contrast`` is a d'-like separability of the region from its ring over all colour channels
    (a polyp often differs from the mucosa in hue, not brightness); 0 means indistinguishable.
    """
    width = max(3, int(round(0.15 * np.sqrt(comp.area))))
    window = _grown_window(comp, width, image.shape[:2])
    region = comp.mask_in(window)
    # ``width`` 3x3 dilations = one square max filter, which runs as separable 1D passes
    ring = ndimage.maximum_filter(region.view(np.uint8), size=2 * width + 1).view(bool)
    ring &= ~region
    crop = image[window]
    if crop.ndim == 2:
        crop = crop[..., None]
    # select the pixels first, then convert: contiguous channel-major rows (C x N) in float64
    inner = np.ascontiguousarray(crop[region][:, :3].T, dtype=np.float64)
    outer = np.ascontiguousarray(crop[ring][:, :3].T, dtype=np.float64) if ring.any() else inner
    luma, luma_out = (v[0] if v.shape[0] == 1 else LUMA_WEIGHTS @ v for v in (inner, outer))
    return {
        "region_mean": float(luma.mean()),
        "region_std": float(luma.std()),
        "ring_mean": float(luma_out.mean()),
        "ring_std": float(luma_out.std()),
        "contrast": _separability(inner, outer),
        "blank_fraction": float(np.count_nonzero(luma <= BLANK_LEVEL)) / luma.size,
    }
