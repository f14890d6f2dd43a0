"""Parse a model's grounding answer into a canonical pixel box.

Two steps, kept apart: *find* the four numbers of the first box in the text (whatever form the
model wrote it in), then *convert* them to canonical pixels by the box convention of the dialect,
using only the inverses in :mod:`medground_hf.boxes`.

Forms recognised, most specific first (the first box found wins):

- Florence-2 ``<loc_N>`` tokens (always Florence bins, whatever the dialect),
- Qwen2-VL ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``, InternVL ``<box>[[x1, y1, x2, y2]]</box>``
  (the first of ``<box>[[...], [...]]</box>`` when it lists several),
- JSON, fenced or bare: ``bbox_2d`` / ``bbox`` / ``box`` / ``bbox_xyxy`` keys or a list of four
  numbers (Qwen2.5-VL, Qwen3-VL, ms-swift ``objects``),
- free text ``(x1,y1),(x2,y2)`` and ``[x1, y1, x2, y2]``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .. import boxes
from ..formats.chat import DIALECTS

# dialect (config ``chat-<dialect>``) -> box convention of its answers: the formats' own table
DIALECT_CONVENTIONS = {name: dialect.convention for name, dialect in DIALECTS.items()}
BOX_FORMATS = boxes.CONVENTIONS
_PIXELS = ("real", "coco")  # unquantized: a box of zero width is empty, not a tiny box
_PIXEL_SCALES = (*_PIXELS, "qwen25")  # conventions whose numbers are pixels of some image

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_SEP = r"\s*,\s*"
_FOUR = rf"({_NUM}){_SEP}({_NUM}){_SEP}({_NUM}){_SEP}({_NUM})"
_PAIRS = rf"\(\s*({_NUM}){_SEP}({_NUM})\s*\)\s*,?\s*\(\s*({_NUM}){_SEP}({_NUM})\s*\)"
_LOC = re.compile(r"<loc_(\d+)>")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)
# (form name, pattern), each capturing exactly four numbers: model tags, tried before JSON ...
_TAGGED = (
    ("qwen2-vl", re.compile(rf"<\|box_start\|>\s*{_PAIRS}\s*<\|box_end\|>")),
    ("internvl", re.compile(rf"<box>\s*\[\s*\[\s*{_FOUR}\s*\]")),
)
# ... and free forms, tried after it (they also catch truncated or invalid JSON)
_FREE = (
    ("bbox_2d", re.compile(rf"[\"']?bbox(?:_2d|_xyxy)?[\"']?\s*:\s*\[\s*\[?\s*{_FOUR}")),
    ("pairs", re.compile(_PAIRS)),
    ("list", re.compile(rf"\[\s*{_FOUR}\s*\]")),
)
_BOX_KEYS = ("bbox_2d", "bbox", "box", "bbox_xyxy")


class ParseFailure(ValueError):
    """The answer holds no usable box; the message says why (it goes into the report)."""


@dataclass(frozen=True)
class Parsed:
    """The box in canonical pixels, the form it was found in, whether it was out of range and
    whether its numbers look like 0-1 fractions where pixels were expected."""

    box: boxes.Box
    form: str
    out_of_range: bool
    relative_suspected: bool = False


def convention_for(config: str, box_format: str | None = None) -> str:
    """The box convention of a dataset config (``grounding``, ``coco``, ``chat-<dialect>``)."""
    if box_format is not None:
        if box_format not in BOX_FORMATS:
            raise ValueError(f"unknown box format {box_format!r}; choose from {BOX_FORMATS}")
        return box_format
    if config == "grounding":
        return "real"
    if config == "coco":
        return "coco"
    dialect = config.removeprefix("chat-")
    if config.startswith("chat-") and dialect in DIALECT_CONVENTIONS:
        return DIALECT_CONVENTIONS[dialect]
    known = ["grounding", "coco"] + [f"chat-{d}" for d in DIALECT_CONVENTIONS]
    raise ValueError(f"unknown config {config!r} for evaluation; choose from {known}")


def _json_box(value: object) -> list[float] | None:
    """First box in a parsed JSON value: under a box key, or a bare list of four numbers."""
    if isinstance(value, dict):
        for key in _BOX_KEYS:
            if key in value:
                found = _json_box(value[key])
                if found is not None:
                    return found
        return None
    if isinstance(value, list):
        if len(value) == 4 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            return [float(v) for v in value]
        for item in value:
            found = _json_box(item)
            if found is not None:
                return found
    return None


def find_box(text: str) -> tuple[list[float], str]:
    """The four raw numbers of the first box in ``text`` and the name of the form found.

    ``<loc_N>`` tokens return form ``florence`` (their convention is fixed); others are numbers
    in the convention of the dialect that wrote them.
    """
    if not isinstance(text, str) or not text.strip():
        raise ParseFailure("empty answer")
    locs = _LOC.findall(text)
    if locs:
        if len(locs) < 4:
            raise ParseFailure(f"only {len(locs)} <loc_N> tokens, a box needs 4")
        return [float(v) for v in locs[:4]], "florence"
    for name, pattern in _TAGGED:
        match = pattern.search(text)
        if match:
            return [float(v) for v in match.groups()], name
    for candidate in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        try:
            found = _json_box(json.loads(candidate.strip()))
        except json.JSONDecodeError:
            continue
        if found is not None:
            return found, "json"
    for name, pattern in _FREE:
        match = pattern.search(text)
        if match:
            return [float(v) for v in match.groups()], name
    raise ParseFailure("no box found")


def _upper_bounds(
    convention: str, width: int, height: int, resize: boxes.SmartResize
) -> tuple[float, float]:
    if convention in ("norm", "norm_square"):
        return 1.0, 1.0
    if convention == "norm1000":
        return 1000.0, 1000.0
    if convention == "florence":
        return boxes.FLORENCE_BINS - 1, boxes.FLORENCE_BINS - 1
    if convention == "qwen25":
        rh, rw = resize(height, width)
        return rw, rh
    return width, height


def to_canonical(
    numbers: Sequence[float],
    convention: str,
    width: int,
    height: int,
    resize: boxes.SmartResize = boxes.QWEN25_RESIZE,
) -> tuple[boxes.Box, bool]:
    """Convert four numbers in ``convention`` to a canonical box; refuse non-boxes.

    A box must be finite and ordered. In pixels (``real``, ``coco``) it must be non-empty
    (x1 < x2, y1 < y2; w, h > 0); in quantized conventions equal coordinates are a box smaller
    than one step (the inverse keeps at least a pixel), only x2 < x1 or y2 < y1 is refused.
    Coordinates past the convention's range are clipped by the inverse; the second value says
    whether that happened.
    """
    values = [float(v) for v in numbers]
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ParseFailure(f"not four finite numbers: {list(numbers)}")
    x1, y1, a, b = values
    x2, y2 = (x1 + a, y1 + b) if convention == "coco" else (a, b)
    if convention in _PIXELS and not (x2 > x1 and y2 > y1):
        raise ParseFailure(f"not an ordered, non-empty box: {list(numbers)}")
    if not (x2 >= x1 and y2 >= y1):
        raise ParseFailure(f"not an ordered box: {list(numbers)}")
    max_x, max_y = _upper_bounds(convention, width, height, resize)
    out_of_range = min(x1, y1) < 0 or x2 > max_x or y2 > max_y
    return boxes.to_canonical(values, convention, width, height, resize), out_of_range


def relative_suspected(numbers: Sequence[float], convention: str) -> bool:
    """Pixels expected but every number in [0, 1] and one a fraction: a model that answered in
    relative coordinates (e.g. Qwen2.5-VL trained on pixels answering 0-1 floats).

    Such a box is still scored as written (a few pixels in the top left corner, IoU ~0); the
    count in the report tells a wrong convention from a wrong localization.
    """
    values = [float(v) for v in numbers]
    return (
        convention in _PIXEL_SCALES
        and all(0.0 <= v <= 1.0 for v in values)
        and any(v != int(v) for v in values)
    )


def parse_answer(
    text: str,
    convention: str,
    width: int,
    height: int,
    resize: boxes.SmartResize = boxes.QWEN25_RESIZE,
) -> Parsed:
    """The first box of a model's answer in canonical pixels of a ``width`` x ``height`` image;
    ``resize`` is the Qwen2.5-VL resize rule the model was trained with (``qwen25`` only)."""
    numbers, form = find_box(text)
    convention = "florence" if form == "florence" else convention
    box, out_of_range = to_canonical(numbers, convention, width, height, resize)
    return Parsed(box, form, out_of_range, relative_suspected(numbers, convention))
