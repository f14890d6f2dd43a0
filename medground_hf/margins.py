"""What a viewer would agree with: position, comparison and size claims decided with margins.

One definition, shared by the template generator (which makes claims) and the verifier (which
checks them), so a claim is made and kept only when someone looking at the image would agree:
a target is "on the left" when it clearly lies there, "leftmost" when it is clearly left of every
other candidate, "larger" when the difference is visible, never by a one-pixel centroid
difference. The rules are stated in ``docs/viewer-rules.md``; every threshold
below is a share of the image extent on its axis unless it says otherwise.

Functions take records (mappings with ``bbox_xyxy``, ``centroid_xy``, ``width``, ``height``,
``area_px`` and ``pixel_spacing_mm``), so they work on built rows as well as on fresh records.
A negated claim ("not on the left") holds only when the opposite claim holds; in between, both
are unsupported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# P1 halves: the centroid this far from the midline, the far box edge at most this far past it.
HALF_CENTROID = 0.10
HALF_BOX_OVERRUN = 0.15
# P3 corners: the centroid in the outer third on both axes, the box inside the quadrant.
CORNER_CENTROID = 1 / 3
# P4 centre: the box straddles both midlines, the centroid within this of the centre.
CENTRE_CENTROID = 0.15
# P5 edges: the box within this of the edge, the centroid in the outer third on that axis.
EDGE_GAP = 0.05
# P6 clock face: the centroid at least this share of min(W, H) from the centre; a tolerance
# of CLOCK_TOLERANCE hours.
CLOCK_MIN_RADIUS = 0.15
CLOCK_TOLERANCE = 1.0
# S1 relative position: centroids at least this far apart, and the box not reaching past.
RELATIVE_GAP = 0.05
# S3 sizes: a visible difference in area.
SIZE_RATIO = 1.25
# S4 nearer the centre: centroid distances differ by this share of the image diagonal.
CENTRE_DISTANCE_GAP = 0.05
# Z2 image-relative size wording, as a share of the image area.
MOST_OF_IMAGE = 0.40
LARGE_PART_OF_IMAGE = 0.20
SMALL_PART_OF_IMAGE = 0.05

# A3 brain lobes on axial slices (anterior up): the centroid's depth along the brain mask's
# antero-posterior extent on the slice, from its anterior edge.
FRONTAL_MAX_DEPTH = 0.35
OCCIPITAL_MIN_DEPTH = 0.80

Record = Mapping

_AXIS = {"x": (0, "width"), "y": (1, "height")}
# direction -> (axis, +1 when the direction points towards larger coordinates)
_DIRECTIONS = {"left": ("x", -1), "right": ("x", 1), "up": ("y", -1), "down": ("y", 1)}
EDGES = ("left", "right", "top", "bottom")
_EDGE_DIRECTION = {"left": "left", "right": "right", "top": "up", "bottom": "down"}


def _extent(r: Record, axis: str) -> tuple[float, float, float, int]:
    """(centroid, box start, box end, image extent) of a record along ``axis``."""
    i, size = _AXIS[axis]
    box = r["bbox_xyxy"]
    return float(r["centroid_xy"][i]), float(box[i]), float(box[i + 2]), int(r[size])


def half(r: Record, axis: str) -> str | None:
    """P1: "low" (left / upper) or "high" (right / lower) half of the image, or None when the
    target is not clearly in either."""
    c, start, end, n = _extent(r, axis)
    if c <= (0.5 - HALF_CENTROID) * n and end <= (0.5 + HALF_BOX_OVERRUN) * n:
        return "low"
    if c >= (0.5 + HALF_CENTROID) * n and start >= (0.5 - HALF_BOX_OVERRUN) * n:
        return "high"
    return None


def image_half(r: Record) -> str | None:
    """ "left" / "right" of the image (image space, never the patient), or None."""
    return {"low": "left", "high": "right"}.get(half(r, "x") or "")


def image_level(r: Record) -> str | None:
    """ "upper" / "lower" part of the image, or None."""
    return {"low": "upper", "high": "lower"}.get(half(r, "y") or "")


def quadrant(r: Record) -> str | None:
    """P2: "upper left" ... when both halves hold, else None."""
    level, side = image_level(r), image_half(r)
    return f"{level} {side}" if level and side else None


def corner(r: Record) -> str | None:
    """P3: the corner ("upper left" ...) the target lies in, or None."""
    names = []
    for axis, (low, high) in (("y", ("upper", "lower")), ("x", ("left", "right"))):
        c, start, end, n = _extent(r, axis)
        if c < CORNER_CENTROID * n and end <= n / 2:
            names.append(low)
        elif c > (1 - CORNER_CENTROID) * n and start >= n / 2:
            names.append(high)
        else:
            return None
    return " ".join(names)


def central(r: Record) -> bool:
    """P4: the box straddles both midlines and the centroid is near the image centre."""
    for axis in ("x", "y"):
        c, start, end, n = _extent(r, axis)
        if not (start < n / 2 < end and abs(c - n / 2) <= CENTRE_CENTROID * n):
            return False
    return True


def near_edge(r: Record, edge: str) -> bool:
    """P5: the box reaches within :data:`EDGE_GAP` of the named edge and the centroid is in
    the outer third on that axis."""
    axis, sign = _DIRECTIONS[_EDGE_DIRECTION[edge]]
    c, start, end, n = _extent(r, axis)
    if sign < 0:
        return start <= EDGE_GAP * n and c < n / 3
    return end >= (1 - EDGE_GAP) * n and c > 2 * n / 3


def edges(r: Record) -> set[str]:
    """The image edges the target lies at (empty when it is at none: "periphery" is false)."""
    return {e for e in EDGES if near_edge(r, e)}


def clock_hour(r: Record) -> float | None:
    """P6: the centroid's clock position about the image centre (0-12, 12 o'clock up,
    clockwise, 12 written as 0), or None when it is too near the centre to have one."""
    dx = float(r["centroid_xy"][0]) - r["width"] / 2
    dy = float(r["centroid_xy"][1]) - r["height"] / 2
    if math.hypot(dx, dy) < CLOCK_MIN_RADIUS * min(r["width"], r["height"]):
        return None
    return (math.degrees(math.atan2(dx, -dy)) / 30.0) % 12.0


def at_clock(r: Record, hour: int) -> bool:
    """Whether the target is at ``hour`` o'clock (1-12) within :data:`CLOCK_TOLERANCE`."""
    actual = clock_hour(r)
    if actual is None:
        return False
    diff = abs(actual - hour % 12) % 12
    return min(diff, 12 - diff) <= CLOCK_TOLERANCE


def beyond(t: Record, o: Record, direction: str) -> bool:
    """S1: ``t`` lies clearly to the ``direction`` (left/right/up/down) of ``o``: centroids
    :data:`RELATIVE_GAP` apart and neither box edge of ``t`` reaching past ``o``'s."""
    axis, sign = _DIRECTIONS[direction]
    tc, t0, t1, n = _extent(t, axis)
    oc, o0, o1, _ = _extent(o, axis)
    if sign < 0:
        return tc <= oc - RELATIVE_GAP * n and t0 <= o0 and t1 <= o1
    return tc >= oc + RELATIVE_GAP * n and t0 >= o0 and t1 >= o1


def extremal(t: Record, others: Sequence[Record], direction: str) -> bool:
    """S2: ``t`` is clearly the farthest to ``direction`` of its candidates (False alone)."""
    return bool(others) and all(beyond(t, o, direction) for o in others)


def largest(t: Record, others: Sequence[Record]) -> bool:
    """S3: visibly larger than every other candidate."""
    return bool(others) and all(t["area_px"] >= SIZE_RATIO * o["area_px"] for o in others)


def smallest(t: Record, others: Sequence[Record]) -> bool:
    """S3: visibly smaller than every other candidate."""
    return bool(others) and all(t["area_px"] * SIZE_RATIO <= o["area_px"] for o in others)


def size_rank_clear(
    t: Record, others: Sequence[Record], *, from_largest: bool = True
) -> int | None:
    """S3 ordinals: the target's rank by area (1 = largest, or smallest with
    ``from_largest=False``) when every neighbouring pair up to and including it differs
    visibly, else None."""
    areas = sorted((float(o["area_px"]) for o in others), reverse=from_largest)
    area = float(t["area_px"])
    ahead = [a for a in areas if (a > area if from_largest else a < area)]
    chain = [*ahead, area]
    rank = len(chain)
    if rank < len(areas) + 1:
        behind = areas[len(ahead)]  # the next candidate after the target must be clearly apart
        chain.append(behind)
    for a, b in zip(chain, chain[1:], strict=False):
        big, small = (a, b) if from_largest else (b, a)
        if big < SIZE_RATIO * small:
            return None
    return rank


def _centre_distance(r: Record) -> float:
    return math.hypot(
        float(r["centroid_xy"][0]) - r["width"] / 2, float(r["centroid_xy"][1]) - r["height"] / 2
    )


def nearer_centre(t: Record, others: Sequence[Record]) -> bool:
    """S4: the centroid is clearly nearer the image centre than every other candidate's."""
    gap = CENTRE_DISTANCE_GAP * math.hypot(t["width"], t["height"])
    d = _centre_distance(t)
    return bool(others) and all(d <= _centre_distance(o) - gap for o in others)


def nearer_edge(t: Record, others: Sequence[Record]) -> bool:
    """S4 mirrored: clearly farther from the image centre than every other candidate."""
    gap = CENTRE_DISTANCE_GAP * math.hypot(t["width"], t["height"])
    d = _centre_distance(t)
    return bool(others) and all(d >= _centre_distance(o) + gap for o in others)


def largest_dimension_mm(r: Record) -> float | None:
    """Z1: the longer box side in millimetres, or None without pixel spacing. Spacing is
    stored as (row, column) millimetres per pixel, like a DICOM PixelSpacing."""
    spacing = r.get("pixel_spacing_mm")
    if not spacing:
        return None
    x0, y0, x1, y1 = r["bbox_xyxy"]
    return max((x1 - x0) * float(spacing[1]), (y1 - y0) * float(spacing[0]))


def image_share(r: Record) -> float:
    """Z2: the share of the image the target's mask covers."""
    return float(r["area_px"]) / (r["width"] * r["height"])


def lobe(r: Record, brain_box: Sequence[int]) -> str | None:
    """A3: "frontal" or "occipital" on an axial slice (anterior up) by the centroid's depth
    along the brain's box on that slice, or None (between them, or another region that needs
    an atlas)."""
    _, y0, _, y1 = brain_box
    if y1 <= y0:
        return None
    depth = (float(r["centroid_xy"][1]) - y0) / (y1 - y0)
    if depth <= FRONTAL_MAX_DEPTH:
        return "frontal"
    if depth >= OCCIPITAL_MIN_DEPTH:
        return "occipital"
    return None
