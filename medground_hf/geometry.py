"""Mask geometry: instances as connected components, the canonical box, RLE and shape cues.

Box convention (the only one stored): ``bbox_xyxy = [x_min, y_min, x_max, y_max]`` in pixels of
the original image, ``x_min`` the first mask column and ``x_max`` one past the last (exclusive),
same for rows. Every other convention is derived in :mod:`medground_hf.boxes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage

# 8-connectivity: diagonal pixels of a lesion belong to the same lesion.
_STRUCTURE = np.ones((3, 3), dtype=bool)
# Up to this many kept instances, each box is found by its own reduction (cheaper than
# find_objects over the whole labelling, which is slow per pixel).
_FEW = 4

SIZE_CATEGORIES = ((0.01, "tiny"), (0.05, "small"), (0.20, "medium"), (math.inf, "large"))


@dataclass
class Component:
    """One connected region of a label: its pixels within its box, plus cheap summaries.

    Only the box window is stored, so an image with many targets costs the sum of their boxes,
    not one full-image mask per target; :attr:`mask` rebuilds the full mask when asked.
    """

    crop: np.ndarray  # bool, the box window of the image
    bbox_xyxy: tuple[int, int, int, int]
    area: int
    centroid_xy: tuple[float, float]
    image_shape: tuple[int, int]
    # exact count, x, y, x*x, y*y and x*y sums over the pixels, x and y within the box
    sums: tuple[int, int, int, int, int, int]

    @property
    def window(self) -> tuple[slice, slice]:
        x0, y0, x1, y1 = self.bbox_xyxy
        return slice(y0, y1), slice(x0, x1)

    @property
    def mask(self) -> np.ndarray:
        """The full image-sized bool mask (allocated on each call)."""
        return self.mask_in((slice(0, self.image_shape[0]), slice(0, self.image_shape[1])))

    def mask_in(self, window: tuple[slice, slice]) -> np.ndarray:
        """The mask over any window of the image (e.g. the box grown by a margin)."""
        rows, cols = window
        out = np.zeros((rows.stop - rows.start, cols.stop - cols.start), dtype=bool)
        x0, y0, x1, y1 = self.bbox_xyxy
        top, left = max(y0, rows.start), max(x0, cols.start)
        bottom, right = min(y1, rows.stop), min(x1, cols.stop)
        if top < bottom and left < right:
            out[top - rows.start : bottom - rows.start, left - cols.start : right - cols.start] = (
                self.crop[top - y0 : bottom - y0, left - x0 : right - x0]
            )
        return out


def bbox_from_mask(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight canonical box of a non-empty mask, exclusive max (see module docstring)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask has no box")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def pixel_sums(crop: np.ndarray) -> tuple[int, int, int, int, int, int]:
    """Count, sum of x, y, x*x, y*y and x*y over the pixels of a bool mask (x the column, y the
    row), exact.

    Per-row counts and x sums and per-column counts (plain einsum loops over one float copy of
    the mask; BLAS matrix-vector products spin threads and cost more here) give every sum with
    no coordinate arrays. float32 holds them exactly while a row is under 5,793 pixels (its x
    sum under 2^24, the terms being non-negative); wider masks use float64.
    """
    height, width = crop.shape
    kind = np.float32 if width < 5793 and height < 2**24 else np.float64
    pixels = crop.astype(kind)
    xs = np.arange(width, dtype=kind)
    count_y = np.einsum("ij->i", pixels).astype(np.int64)
    sum_x_y = np.einsum("ij,j->i", pixels, xs).astype(np.int64)
    count_x = np.einsum("ij->j", pixels).astype(np.int64)
    ys, xs = np.arange(height, dtype=np.int64), xs.astype(np.int64)
    return (
        int(count_y.sum()),
        int(count_x @ xs),
        int(count_y @ ys),
        int(count_x @ (xs * xs)),
        int(count_y @ (ys * ys)),
        int(sum_x_y @ ys),
    )


def _component(
    crop: np.ndarray, window: tuple[slice, slice], area: int, shape: tuple[int, int]
) -> Component:
    """A component from its pixels in ``window``, its tight box (every edge row and column of
    ``crop`` holds a pixel); the centroid comes from exact coordinate sums."""
    rows, cols = window
    sums = pixel_sums(crop)
    _, sum_x, sum_y, *_ = sums
    bbox = (cols.start, rows.start, cols.stop, rows.stop)
    centroid = (sum_x / area + cols.start + 0.5, sum_y / area + rows.start + 0.5)
    return Component(crop, bbox, area, centroid, shape, sums)


def _box_or_none(mask: np.ndarray) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def components(
    mask: np.ndarray, *, single_region: bool = False, min_size: int = 1
) -> tuple[list[Component], list[int]]:
    """Split a binary mask into instances (8-connected), dropping those below ``min_size``.

    Returns the kept components in raster order of their first pixel (stable, so instance indices
    are content-derived) and the pixel sizes of the dropped ones, so callers can report them.
    ``single_region`` keeps the whole label as one target regardless of connectivity. Only the
    mask's box is labelled: two cheap reductions find it, and a lesion covering a fraction of
    the image costs that fraction.
    """
    mask = np.asarray(mask, dtype=bool)
    box = _box_or_none(mask)
    if box is None:
        return [], []
    rows, cols = box
    sub = mask[box]
    if single_region:
        area = int(np.count_nonzero(sub))
        if area < min_size:
            return [], [area]
        return [_component(sub, box, area, mask.shape)], []
    # at most one component per 2x2 pixels: 16-bit labels suffice for boxes under 2^18 pixels
    depth = np.uint16 if sub.size < 4 * np.iinfo(np.uint16).max else np.int32
    labelled, n = ndimage.label(sub, structure=_STRUCTURE, output=depth)
    if n == 1:  # the usual case: the box is the component's own box
        area = int(np.count_nonzero(sub))
        if area < min_size:
            return [], [area]
        return [_component(sub, box, area, mask.shape)], []
    sizes = np.bincount(labelled.ravel(), minlength=n + 1)[1:]
    dropped = [int(size) for size in sizes if size < min_size]
    indices = np.flatnonzero(sizes >= min_size) + 1
    if indices.size > _FEW:  # many instances (cells, nuclei): every box in one pass
        boxes = ndimage.find_objects(labelled)
        windows = [boxes[index - 1] for index in indices]
    else:  # a lesion and some specks: only the kept instances' boxes, one reduction each
        windows = [_box_or_none(labelled == index) for index in indices]
    kept: list[Component] = []
    for index, (r, c) in zip(indices, windows, strict=True):
        window = (
            slice(rows.start + r.start, rows.start + r.stop),
            slice(cols.start + c.start, cols.start + c.stop),
        )
        own = labelled[r, c] == index
        kept.append(_component(own, window, int(sizes[index - 1]), mask.shape))
    return kept, dropped


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed background (e.g. an outline annotation becomes a filled region).

    One labelling of the background inside the mask's box (4-connected, the dual of 8-connected
    foreground): every background region not touching the box's padded border is a hole. Linear
    in the box area, unlike iterative reconstruction over the whole image.
    """
    box = _box_or_none(mask)
    if box is None:
        return mask.copy()
    rows, cols = box
    crop = np.ones((rows.stop - rows.start + 2, cols.stop - cols.start + 2), dtype=bool)
    np.logical_not(mask[box], out=crop[1:-1, 1:-1])  # the background, in a background frame
    depth = np.uint16 if crop.size < 2 * np.iinfo(np.uint16).max else np.int32
    background, _ = ndimage.label(crop, output=depth)
    # everything but the frame's region (one region: the frame is connected) is the mask or
    # one of its holes; the mask's own pixels are labelled 0
    filled = mask.copy()
    filled[box] = background[1:-1, 1:-1] != background[0, 0]
    return filled


def even_odd_fill(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside polygons combined by the even-odd rule.

    ``polygons`` are (N, 2) arrays of (row, column) vertices in pixel-centre coordinates (pixel
    ``(r, c)`` has its centre at ``(r, c)``), each implicitly closed. A centre is inside when a ray
    from it crosses the edges of all polygons an odd number of times, so a polygon inside another
    is a hole, as in RT structure sets. One scanline pass over every edge at once: each edge
    contributes its crossings with the pixel-centre rows it spans (half-open, so a vertex on a
    row counts once), crossings are sorted per row and paired, and each pair fills the centres
    from the first crossing up to (not including) the second.
    """
    height, width = shape
    out = np.zeros(shape, dtype=bool)
    edges = [np.stack([p, np.roll(p, -1, axis=0)], axis=1) for p in polygons if len(p) >= 3]
    if not edges:
        return out
    seg = np.concatenate(edges).astype(np.float64)  # (E, 2 ends, (row, col))
    y0, x0, y1, x1 = seg[:, 0, 0], seg[:, 0, 1], seg[:, 1, 0], seg[:, 1, 1]
    first = np.clip(np.ceil(np.minimum(y0, y1)), 0, height).astype(np.int64)
    stop = np.clip(np.ceil(np.maximum(y0, y1)), 0, height).astype(np.int64)
    spans = np.maximum(stop - first, 0)
    if not spans.sum():
        return out
    edge = np.repeat(np.arange(len(seg)), spans)
    rows = first[edge] + (np.arange(spans.sum()) - np.repeat(np.cumsum(spans) - spans, spans))
    t = (rows - y0[edge]) / (y1[edge] - y0[edge])
    xs = x0[edge] + t * (x1[edge] - x0[edge])
    order = np.lexsort((xs, rows))
    rows, xs = rows[order], xs[order]
    starts = np.clip(np.ceil(xs[0::2]), 0, width).astype(np.int64)
    ends = np.clip(np.ceil(xs[1::2]), 0, width).astype(np.int64)
    inside = ends > starts
    change = np.zeros((height, width + 1), dtype=np.int32)
    np.add.at(change, (rows[0::2][inside], starts[inside]), 1)
    np.add.at(change, (rows[0::2][inside], ends[inside]), -1)
    return np.cumsum(change[:, :width], axis=1) > 0


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a binary mask, ``counts`` as a UTF-8 string (JSON/Parquet safe)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def component_rle(component: Component) -> dict:
    """:func:`encode_rle` of a component's full-image mask, made from its box alone.

    COCO RLE counts runs down the columns of the whole image. Inside the box those runs are the
    box's own (counted on the box padded with one background row above and below); a background
    run that goes from one column of the box to the next also covers the rows above and below
    the box, and the first and last runs the columns left and right of it. pycocotools then
    compresses the counts, so the result is byte for byte that of the full mask.
    """
    height, width = component.image_shape
    x0, y0, x1, y1 = component.bbox_xyxy
    rows = y1 - y0 + 2
    columns = np.zeros((x1 - x0, rows), dtype=bool)
    columns[:, 1:-1] = component.crop.T
    flat = columns.ravel()
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], edges])
    counts = np.diff(np.concatenate([starts, [flat.size]]))
    # a background run also covers the rows outside the box at each column boundary it crosses
    # (the box's first and last columns hold a pixel, so the first and last runs cross none)
    counts += (height - rows) * ((starts + counts - 1) // rows - starts // rows)
    counts[0] += height * x0 + y0 - 1
    counts[-1] += (height - y1) - 1 + height * (width - x1)
    if y1 - y0 == height:  # a full-height box: runs meeting across columns are one run
        ends = np.cumsum(counts)
        empty = np.flatnonzero(counts[1:] == 0) + 1
        ends = np.delete(ends, np.concatenate([empty - 1, empty]))
        counts = np.diff(np.concatenate([[0], ends, [height * width]]))
    if counts[-1] == 0:  # the mask reaches the last pixel: no trailing background run
        counts = counts[:-1]
    rle = mask_utils.frPyObjects(
        {"size": [height, width], "counts": counts.tolist()}, height, width
    )
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def coco_rle(rle: dict) -> dict:
    """A stored RLE (``counts`` as text) in the form pycocotools takes (``counts`` as bytes)."""
    return {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """Inverse of :func:`encode_rle`: a bool mask of the recorded size."""
    return mask_utils.decode(coco_rle(rle)).astype(bool)


def size_category(relative_area: float) -> str:
    for limit, name in SIZE_CATEGORIES:
        if relative_area < limit:
            return name
    raise AssertionError("unreachable: the last limit is infinite")


def orientation_word(angle_deg: float, elongation: float) -> str:
    """Name the major-axis direction; shapes that are nearly round have none."""
    if elongation < 0.25:
        return "none"
    if angle_deg < 22.5 or angle_deg >= 157.5:
        return "horizontal"
    if 67.5 <= angle_deg < 112.5:
        return "vertical"
    return "oblique"


def convex_area(crop: np.ndarray) -> float:
    """Area of the convex hull of the mask's pixel squares (not their centres), exact.

    Only each row's first and last pixel can be hull vertices, so the hull is taken over their
    square corners: exact for pixel-aligned shapes (a filled rectangle has solidity 1) and far
    cheaper than rasterising the hull image. Those corners, down the left side and up the
    right, bound a simple polygon whose convex vertices include every hull vertex; a reflex or
    straight vertex never is one, so all of them are dropped at once, again until none is left.
    The polygon left is convex, so it is the hull, and the shoelace formula gives its area in
    integers.
    """
    rows = np.flatnonzero(crop.any(axis=1))
    sub = crop if rows.size == crop.shape[0] else crop[rows]
    first = sub.argmax(axis=1)
    # exclusive; argmax runs fast on a contiguous copy, slowly on a reversed view
    last = sub.shape[1] - np.ascontiguousarray(sub[:, ::-1]).argmax(axis=1)
    ys = np.repeat(rows, 2).astype(np.int64)
    ys[1::2] += 1
    xs = np.concatenate([np.repeat(first, 2), np.repeat(last, 2)[::-1]]).astype(np.int64)
    ys = np.concatenate([ys, ys[::-1]])
    while True:
        # the turn at each vertex from the edge arriving to the edge leaving
        x_in, y_in = (
            xs - np.concatenate((xs[-1:], xs[:-1])),
            ys - np.concatenate((ys[-1:], ys[:-1])),
        )
        x_out, y_out = np.concatenate((xs[1:], xs[:1])) - xs, np.concatenate((ys[1:], ys[:1])) - ys
        turn = x_out * y_in - y_out * x_in
        keep = turn > 0  # down the left side and up the right, convex vertices turn this way
        if keep.all():
            break
        xs, ys = xs[keep], ys[keep]
    return (
        abs(int(xs @ np.concatenate((ys[1:], ys[:1]))) - int(ys @ np.concatenate((xs[1:], xs[:1]))))
        / 2
    )


def crofton_perimeter(crop: np.ndarray) -> float:
    """Perimeter by the Cauchy-Crofton formula over four line directions.

    Counts foreground/background transitions along rows, columns and both diagonals (the mask
    is padded with background first); unbiased for smooth shapes (a digital disk is within
    ~2 %), unlike counting pixel edges (+27 %).
    """
    c = np.pad(np.asarray(crop, dtype=bool), 1)
    n0 = np.count_nonzero(c[:, 1:] != c[:, :-1])
    n90 = np.count_nonzero(c[1:] != c[:-1])
    n45 = np.count_nonzero(c[1:, 1:] != c[:-1, :-1])
    n135 = np.count_nonzero(c[1:, :-1] != c[:-1, 1:])
    return math.pi / 8 * (n0 + n90 + (n45 + n135) / math.sqrt(2))


def shape_cues(component: Component, image_area: int) -> dict:
    """Size, aspect, elongation, solidity, circularity and orientation of one instance.

    Computed on the instance's box window only, so cost follows the target, not the image. Axes
    are those of the ellipse with the same second moments (4 * sqrt(eigenvalue), as in
    scikit-image), the central moments taken from exact integer sums; ``orientation_deg`` is the
    major axis angle counter-clockwise from the image's x axis as displayed (y up), in [0, 180).
    """
    n, sum_x, sum_y, sum_xx, sum_yy, sum_xy = component.sums
    mu20 = (n * sum_xx - sum_x * sum_x) / (n * n)
    mu02 = (n * sum_yy - sum_y * sum_y) / (n * n)
    mu11 = (n * sum_xy - sum_x * sum_y) / (n * n)
    spread = math.hypot((mu20 - mu02) / 2, mu11)
    major = 4 * math.sqrt((mu20 + mu02) / 2 + spread)
    minor = 4 * math.sqrt(max((mu20 + mu02) / 2 - spread, 0.0))
    elongation = 1.0 - minor / major if major > 0 else 0.0
    angle = -math.degrees(0.5 * math.atan2(2 * mu11, mu20 - mu02)) % 180.0
    perimeter = crofton_perimeter(component.crop)
    circularity = min(1.0, 4 * math.pi * component.area / perimeter**2) if perimeter > 0 else 1.0
    x0, y0, x1, y1 = component.bbox_xyxy
    relative = component.area / image_area
    return {
        "relative_area": relative,
        "size_category": size_category(relative),
        "aspect_ratio": (x1 - x0) / (y1 - y0),
        "elongation": elongation,
        "solidity": min(1.0, component.area / convex_area(component.crop)),
        "circularity": circularity,
        "orientation_deg": angle,
        "orientation": orientation_word(angle, elongation),
        "major_axis_px": major,
        "minor_axis_px": minor,
    }
