"""Spatial cues, relations among the targets of one image, and visual-distinctness statistics.

Image-space words ("left of the image") come from pixel positions, decided with the viewer rules of
:mod:`medground_hf.margins` (clear margins, never a pixel's difference); the patient side comes only
from volume geometry (see :mod:`medground_hf.volumes`) and is stored separately so queries never mix
them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from . import margins
from .geometry import Component, fill_holes

# Centroids within this fraction of the width around the vertical midline are "center".
SIDE_DEAD_BAND = 0.05
# A target counts as inside another when this share of its pixels lies in the other's filled region.
INSIDE_FRACTION = 0.9
# Targets whose masks come within this many pixels of each other are adjacent.
ADJACENT_PX = 2
# Grey values at or below this count as padding / blank background.
BLANK_LEVEL = 8.0
# Widths of the bands either side of a target's outline, as shares of sqrt(area): a thin rim
# (a fetal skull in a small head) and a thick one.
EDGE_BANDS = (0.02, 0.05)
# Targets wider than this many pixels (sqrt of the area) have their outline bands measured on a
# grid of about this many pixels across.
EDGE_GRID = 100
# A region this distinct from its ring needs no outline measure (above any visibility bar).
EDGE_NEEDED = 0.5


def half(value: float, extent: int, names: tuple[str, str, str]) -> str:
    """Which half of an extent a position is in (``names[0]`` below the midline), or
    ``names[1]`` within :data:`SIDE_DEAD_BAND` of it."""
    offset = value / extent - 0.5
    if abs(offset) <= SIDE_DEAD_BAND:
        return names[1]
    return names[0] if offset < 0 else names[2]


def spatial_cues(
    bbox_xyxy: Sequence[int],
    centroid_xy: tuple[float, float],
    width: int,
    height: int,
    *,
    patient_side: str | None = None,
    display_convention: str = "as-acquired",
) -> dict:
    """Where the target clearly lies in the image, by the viewer rules of
    :mod:`medground_hf.margins`, and (volumes only) the patient side.

    ``grid_col`` / ``image_side`` are "left" / "right" when the target clearly lies in that half
    (rule P1), else "center"; ``grid_row`` is "upper" / "lower" likewise, else "middle";
    ``grid_cell`` names the corner it lies in (P3, e.g. "upper left"), or "center" when it lies
    around the image centre (P4), else None.
    """
    where = {"bbox_xyxy": bbox_xyxy, "centroid_xy": centroid_xy, "width": width, "height": height}
    col = margins.image_half(where) or "center"
    row = margins.image_level(where) or "middle"
    cell = margins.corner(where) or ("center" if margins.central(where) else None)
    return {
        "grid_row": row,
        "grid_col": col,
        "grid_cell": cell,
        "image_side": col,
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


def _share_inside(
    inner: Component, outer: Component, outer_filled: Callable[[], np.ndarray]
) -> float:
    """The share of ``inner`` in ``outer``'s filled region (filled only when ``inner``'s box
    lies in ``outer``'s: otherwise the share is below any bar that matters here)."""
    ox0, oy0, ox1, oy1 = outer.bbox_xyxy
    ix0, iy0, ix1, iy1 = inner.bbox_xyxy
    if ix0 < ox0 or iy0 < oy0 or ix1 > ox1 or iy1 > oy1:
        return 0.0
    window = (slice(iy0 - oy0, iy1 - oy0), slice(ix0 - ox0, ix1 - ox0))
    return float(np.count_nonzero(outer_filled()[window] & inner.crop)) / inner.area


def _overlaps(comp: Component, window: tuple[slice, slice]) -> bool:
    x0, y0, x1, y1 = comp.bbox_xyxy
    rows, cols = window
    return x0 < cols.stop and cols.start < x1 and y0 < rows.stop and rows.start < y1


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


def _geometry(comp: Component) -> dict:
    """What the viewer rules read of a component (a record's box, centroid, area, image size)."""
    height, width = comp.image_shape
    return {
        "bbox_xyxy": comp.bbox_xyxy,
        "centroid_xy": comp.centroid_xy,
        "area_px": comp.area,
        "width": width,
        "height": height,
    }


def relations(
    comps: Sequence[Component],
    labels: Sequence[str],
    context: dict[str, Component] | None = None,
) -> list[dict]:
    """Per target: whether it is clearly the extreme of its label by position or size, and
    adjacency/containment.

    Extremes follow the viewer rules of :mod:`medground_hf.margins`: "leftmost" only when the
    target is clearly left of every other candidate of its label (S2), "largest" only when it is
    visibly larger than each (S3); ``size_rank`` is its rank by area when every neighbouring pair
    up to it differs visibly, else None. Where no candidate is clearly the extreme, none is.

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
    filled_cache: dict[int, np.ndarray] = {}

    def filled(j: int) -> np.ndarray:  # filled on first need: most pairs never nest
        if j not in filled_cache:
            filled_cache[j] = _filled(all_comps[j])
        return filled_cache[j]

    def filled_area(j: int) -> int:
        return int(np.count_nonzero(filled(j)))

    geometry = [_geometry(c) for c in comps]
    out: list[dict] = []
    for i, (comp, label) in enumerate(zip(comps, labels, strict=True)):
        me = geometry[i]
        others = [geometry[j] for j, other in enumerate(labels) if other == label and j != i]
        grown_window = _grown_window(comp, ADJACENT_PX, comp.image_shape)
        grown: np.ndarray | None = None  # ADJACENT_PX 3x3 dilations, made on first need
        adjacent: set[str] = set()
        inside: set[str] = set()
        contains: set[str] = set()
        for j, (other, other_label) in enumerate(zip(all_comps, all_labels, strict=True)):
            if j == i:
                continue
            # Overlapping targets (a "whole tumour" over its parts) may coincide on a slice: then
            # neither lies inside the other, and they are not neighbours either.
            is_in = _share_inside(comp, other, partial(filled, j)) >= INSIDE_FRACTION
            holds = _share_inside(other, comp, partial(filled, i)) >= INSIDE_FRACTION
            if is_in and comp.area < filled_area(j):
                inside.add(other_label)
            elif holds and j < len(comps) and other.area < filled_area(i):
                contains.add(other_label)
            elif not (is_in or holds) and _overlaps(other, grown_window):
                if grown is None:
                    grown = _square_filter(comp.mask_in(grown_window), ADJACENT_PX, grow=True)
                if np.any(grown & other.mask_in(grown_window)):
                    adjacent.add(other_label)
        out.append(
            {
                "leftmost": margins.extremal(me, others, "left"),
                "rightmost": margins.extremal(me, others, "right"),
                "uppermost": margins.extremal(me, others, "up"),
                "lowermost": margins.extremal(me, others, "down"),
                "largest": margins.largest(me, others),
                "smallest": margins.smallest(me, others),
                "size_rank": margins.size_rank_clear(me, others),
                "adjacent_to": sorted(adjacent),
                "inside": sorted(inside),
                "contains": sorted(contains),
            }
        )
    return out


LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
# The same weights in thousandths: integer sums of 8-bit pixels give the luma moments exactly.
LUMA_MILLI = (299, 587, 114)


@dataclass
class _Moments:
    """Sums over a set of pixels, per channel: from these come every statistic of the set.

    For 8-bit pixels the float64 sums hold exact integers (up to 2^53), so the means and
    variances do not depend on the order of summation.
    """

    n: int
    total: np.ndarray  # (C,) sum of each channel
    squares: np.ndarray  # (C,) sum of each channel squared
    products: dict[tuple[int, int], float]  # sum of channel c times channel d, c < d (RGB)
    blank: int | None  # pixels whose luma is at most BLANK_LEVEL, when counted

    @classmethod
    def of(cls, crop: np.ndarray, where: np.ndarray, *, count_blank: bool = False) -> _Moments:
        """The moments of ``crop`` (H x W x C) under the bool mask ``where``. Each channel plane
        is selected on its own (a 3-byte pixel selection is several times slower) and only the
        selected pixels are converted to float64. Blank pixels are counted on request."""
        planes = min(crop.shape[2], 3)
        selected = [crop[..., c][where] for c in range(planes)]
        values = np.array(selected, dtype=np.float64)
        total = values.sum(axis=1)
        # plain einsum loops: BLAS dot products spin threads, which costs more than they save here
        squares = np.einsum("ij,ij->i", values, values)
        products = {}
        if planes == 3:
            red_green, green_blue = np.einsum("ij,ij->i", values[:2], values[1:])
            products = {
                (0, 1): red_green,
                (1, 2): green_blue,
                (0, 2): np.einsum("i,i->", values[0], values[2]),
            }
        blank = None
        if count_blank and planes == 1:
            blank = int(np.count_nonzero(selected[0] <= BLANK_LEVEL))
        elif count_blank:
            # luma >= 0.587 * green, so only pixels with little green can be blank
            dark = values[:, selected[1] <= BLANK_LEVEL / LUMA_WEIGHTS[1]]
            blank = int(np.count_nonzero(LUMA_WEIGHTS @ dark <= BLANK_LEVEL))
        return cls(values.shape[1], total, squares, products, blank)

    def mean_var(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.total / self.n
        return mean, np.maximum(self.squares / self.n - mean * mean, 0.0)

    def luma(self) -> tuple[float, float]:
        """Mean and standard deviation of the luma (the grey value of a grey image), from
        exact integer sums (so correctly rounded)."""
        if self.total.size == 1:
            weights: tuple[int, ...] = (1,)
            scale = 1
        else:
            weights, scale = LUMA_MILLI, 1000
        total = sum(w * int(t) for w, t in zip(weights, self.total, strict=True))
        square = sum(w * w * int(q) for w, q in zip(weights, self.squares, strict=True))
        square += sum(2 * weights[c] * weights[d] * int(v) for (c, d), v in self.products.items())
        n = self.n
        return total / (scale * n), math.sqrt((n * square - total * total) / (scale * n) ** 2)


def _separability(inner: _Moments, outer: _Moments) -> float:
    """Distance between the mean colours over the pooled per-channel standard deviation."""
    (mean_in, var_in), (mean_out, var_out) = inner.mean_var(), outer.mean_var()
    pooled = np.sqrt(((var_in + var_out) / 2.0).mean()) + 1.0
    return float(np.linalg.norm(mean_in - mean_out) / pooled)


def _square_filter(mask: np.ndarray, width: int, *, grow: bool) -> np.ndarray:
    """``mask`` grown (a square max filter) or shrunk (a square min filter, beyond the array is
    background) by ``width`` pixels in every direction.

    Separable, and along each axis a doubling table: OR (AND) with a copy shifted by 1, 2, 4,
    ... pixels covers 2^k pixels in k passes, and two such spans cover the whole window. Every
    pass is a vectorised bool operation, several times cheaper than a running max filter.
    """
    combine = np.logical_or if grow else np.logical_and
    size = 2 * width + 1

    def down_columns(values: np.ndarray) -> np.ndarray:
        length = values.shape[0]
        # beyond the array is background, for growing as for shrinking
        span_of = np.zeros((length + 2 * width, values.shape[1]), dtype=bool)
        span_of[width : width + length] = values
        span = 1
        while 2 * span <= size:
            span_of = combine(span_of[:-span], span_of[span:])
            span *= 2
        return combine(span_of[:length], span_of[size - span : size - span + length])

    return down_columns(down_columns(mask).T).T


def _edge_contrast(crop: np.ndarray, region: np.ndarray, width: int) -> float:
    """Separability of the bands ``width`` pixels wide just inside and just outside the
    region's outline."""
    outer = _square_filter(region, width, grow=True) & ~region
    # erosion of the region: pixels outside the window count as outside
    inner = region & ~_square_filter(region, width, grow=False)
    bands = _Moments.of(crop, inner), _Moments.of(crop, outer)
    if not (bands[0].n and bands[1].n):
        return 0.0
    return _separability(*bands)


def _outline_contrast(crop: np.ndarray, region: np.ndarray, area: int) -> float:
    """The larger edge contrast over the band widths of :data:`EDGE_BANDS`. A large target's
    bands are measured on every ``step``-th pixel: the statistic is a mean difference over
    thousands of pixels, and the filters are then cheap."""
    step = max(1, int(np.sqrt(area) // EDGE_GRID))
    coarse, coarse_crop = region[::step, ::step], crop[::step, ::step]
    side = np.sqrt(area) / step
    bands = sorted({max(2, int(round(share * side))) for share in EDGE_BANDS})
    return max(_edge_contrast(coarse_crop, coarse, band) for band in bands)


def visual_stats(image: np.ndarray, comp: Component) -> dict:
    """Region vs surrounding-ring statistics, the contrast across the outline, and the share of
    blank/padding pixels.

    The ring is ``max(3, 0.15 * sqrt(area))`` pixels wide. Means and deviations are of the luma;
    ``contrast`` is a d'-like separability of the region from its ring over all colour channels
    (a polyp often differs from the mucosa in hue, not brightness); 0 means indistinguishable.
    ``edge_contrast`` is the same separability between the bands just inside and just outside
    the outline, at the band widths of :data:`EDGE_BANDS` (shares of ``sqrt(area)``, at least 2
    px), the larger of the two: a structure seen by its boundary (a fetal skull: a bright rim,
    thin or thick, around a grey interior as grey as the outside) has a low ``contrast`` but a
    high ``edge_contrast``. Targets larger than :data:`EDGE_GRID` pixels across are measured on
    a regular subsample of their pixels. A region whose ``contrast`` reaches
    :data:`EDGE_NEEDED` is plainly distinct: its outline is not measured (``None``).
    """
    width = max(3, int(round(0.15 * np.sqrt(comp.area))))
    window = _grown_window(comp, width, image.shape[:2])
    region = comp.mask_in(window)
    # ``width`` 3x3 dilations = one square max filter; the ring is what it adds to the region
    ring = np.greater(_square_filter(region, width, grow=True), region)
    crop = image[window] if image.ndim == 3 else image[window][..., None]
    own = image[comp.window] if image.ndim == 3 else image[comp.window][..., None]
    inner = _Moments.of(own, comp.crop, count_blank=True)  # the box alone holds the region
    outer = _Moments.of(crop, ring)
    if outer.n == 0:  # the region fills its window: no ring to compare with
        outer = inner
    contrast = _separability(inner, outer)
    (region_mean, region_std), (ring_mean, ring_std) = inner.luma(), outer.luma()
    return {
        "region_mean": region_mean,
        "region_std": region_std,
        "ring_mean": ring_mean,
        "ring_std": ring_std,
        "contrast": contrast,
        "edge_contrast": _outline_contrast(crop, region, comp.area)
        if contrast < EDGE_NEEDED
        else None,
        "blank_fraction": inner.blank / inner.n,
    }
