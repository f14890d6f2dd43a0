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
from skimage.measure import regionprops

# 8-connectivity: diagonal pixels of a lesion belong to the same lesion.
_STRUCTURE = np.ones((3, 3), dtype=bool)

SIZE_CATEGORIES = ((0.01, "tiny"), (0.05, "small"), (0.20, "medium"), (math.inf, "large"))


@dataclass
class Component:
    """One connected region of a label: its full-image mask plus cheap summaries."""

    mask: np.ndarray  # bool, image-sized
    bbox_xyxy: tuple[int, int, int, int]
    area: int
    centroid_xy: tuple[float, float]

    @property
    def window(self) -> tuple[slice, slice]:
        x0, y0, x1, y1 = self.bbox_xyxy
        return slice(y0, y1), slice(x0, x1)


def bbox_from_mask(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight canonical box of a non-empty mask, exclusive max (see module docstring)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask has no box")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _component(mask: np.ndarray, window: tuple[slice, slice], area: int) -> Component:
    ys, xs = np.nonzero(mask[window])
    rows, cols = window
    x0 = cols.start + int(xs.min())
    y0 = rows.start + int(ys.min())
    bbox = (x0, y0, cols.start + int(xs.max()) + 1, rows.start + int(ys.max()) + 1)
    centroid = (float(xs.mean()) + cols.start + 0.5, float(ys.mean()) + rows.start + 0.5)
    return Component(mask=mask, bbox_xyxy=bbox, area=area, centroid_xy=centroid)


def components(
    mask: np.ndarray, *, single_region: bool = False, min_size: int = 1
) -> tuple[list[Component], list[int]]:
    """Split a binary mask into instances (8-connected), dropping those below ``min_size``.

    Returns the kept components in raster order of their first pixel (stable, so instance indices
    are content-derived) and the pixel sizes of the dropped ones, so callers can report them.
    ``single_region`` keeps the whole label as one target regardless of connectivity.
    """
    mask = np.asarray(mask, dtype=bool)
    if single_region:
        area = int(mask.sum())
        if area == 0:
            return [], []
        if area < min_size:
            return [], [area]
        x0, y0, x1, y1 = bbox_from_mask(mask)
        return [_component(mask, (slice(y0, y1), slice(x0, x1)), area)], []
    labelled, n = ndimage.label(mask, structure=_STRUCTURE)
    if n == 0:
        return [], []
    sizes = np.bincount(labelled.ravel(), minlength=n + 1)
    kept: list[Component] = []
    dropped: list[int] = []
    for index, window in enumerate(ndimage.find_objects(labelled), start=1):
        size = int(sizes[index])
        if size < min_size:
            dropped.append(size)
            continue
        kept.append(_component(labelled == index, window, size))
    return kept, dropped


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a binary mask, ``counts`` as a UTF-8 string (JSON/Parquet safe)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """Inverse of :func:`encode_rle`: a bool mask of the recorded size."""
    coco = {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(coco).astype(bool)


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


def shape_cues(component: Component, image_area: int) -> dict:
    """Size, aspect, elongation, solidity, circularity and orientation of one instance.

    Computed on the instance's box window only, so cost follows the target, not the image.
    ``orientation_deg`` is the major axis angle counter-clockwise from the image's x axis as
    displayed (y up), in [0, 180).
    """
    crop = np.pad(component.mask[component.window], 1)
    props = regionprops(crop.astype(np.uint8))[0]
    x0, y0, x1, y1 = component.bbox_xyxy
    major = float(props.axis_major_length)
    minor = float(props.axis_minor_length)
    elongation = 1.0 - minor / major if major > 0 else 0.0
    theta = float(props.orientation)  # angle between the row axis and the major axis
    angle = math.degrees(math.atan2(-math.cos(theta), math.sin(theta))) % 180.0
    perimeter = float(props.perimeter)
    circularity = min(1.0, 4 * math.pi * component.area / perimeter**2) if perimeter > 0 else 1.0
    relative = component.area / image_area
    return {
        "relative_area": relative,
        "size_category": size_category(relative),
        "aspect_ratio": (x1 - x0) / (y1 - y0),
        "elongation": elongation,
        "solidity": float(props.solidity),
        "circularity": circularity,
        "orientation_deg": angle,
        "orientation": orientation_word(angle, elongation),
        "major_axis_px": major,
        "minor_axis_px": minor,
    }
