"""Every box convention, derived from the one canonical box.

Canonical: ``bbox_xyxy = [x_min, y_min, x_max, y_max]`` integer pixels of the original image, with
exclusive maxima (``x_max`` = last mask column + 1), i.e. the continuous pixel-edge coordinates of
the box. All other conventions are computed here and only here, and each has an inverse back to
canonical pixels (``to_canonical``), clipped to the image so a published box can never lie outside
it:

==============  ==========================================================================
``coco``        ``[x, y, w, h]`` pixels
``norm``        ``[x1, y1, x2, y2]`` floats in [0, 1] (divide by width/height)
``norm_square`` floats in [0, 1] of the image padded to a centred square (LLaVA-1.5's
                ``image_aspect_ratio: pad``): ``(x + (S - width) // 2) / S``, S = max side
``norm1000``    ``[x1, y1, x2, y2]`` ints in [0, 1000] (Qwen2-VL, Qwen3-VL, InternVL)
``qwen25``      ``[x1, y1, x2, y2]`` absolute pixels of the Qwen2.5-VL *smart-resized* image
``florence``    four ``<loc_N>`` bins, N in [0, 999]: floor(coord / (size / 1000)), clamped
``real``        canonical pixels themselves (ms-swift ``bbox_type: real``)
==============  ==========================================================================

``convert`` and ``to_canonical`` dispatch on the convention name; ``max_error_px`` bounds the error
of a round trip through a convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Box = list[int]

FLORENCE_BINS = 1000


@dataclass(frozen=True)
class SmartResize:
    """Qwen2.5-VL's image processor resize rule (``smart_resize``), parameters as in its config.

    Defaults are those of the released ``preprocessor_config.json``: patch 14 x merge 2 = factor
    28, ``min_pixels`` 3136, ``max_pixels`` 12845056. Users who cap ``max_pixels`` in training must
    pass the same value here.
    """

    factor: int = 28
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 16384

    def __call__(self, height: int, width: int) -> tuple[int, int]:
        """(resized_height, resized_width), both multiples of ``factor``.

        Same arithmetic as transformers' ``smart_resize``: round each side to the nearest
        multiple (Python's round, halves to even), then scale down (floor, at least one
        ``factor``) or up (ceil) when the area leaves ``[min_pixels, max_pixels]``.
        """
        if max(height, width) / min(height, width) > 200:
            raise ValueError(f"aspect ratio of {width}x{height} exceeds 200, Qwen refuses it")
        f = self.factor
        h_bar = round(height / f) * f
        w_bar = round(width / f) * f
        if h_bar * w_bar > self.max_pixels:
            beta = math.sqrt(height * width / self.max_pixels)
            h_bar = max(f, math.floor(height / beta / f) * f)
            w_bar = max(f, math.floor(width / beta / f) * f)
        elif h_bar * w_bar < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (height * width))
            h_bar = math.ceil(height * beta / f) * f
            w_bar = math.ceil(width * beta / f) * f
        return h_bar, w_bar


QWEN25_RESIZE = SmartResize()
# what the official Qwen2.5-VL fine-tune scripts pass (--max_pixels 50176 --min_pixels 784)
QWEN25_FINETUNE_RESIZE = SmartResize(min_pixels=784, max_pixels=50176)


def check_canonical(box: Sequence[int], width: int, height: int) -> None:
    """Refuse a canonical box that is not integer, ordered and inside the image."""
    if len(box) != 4 or any(int(v) != v for v in box):
        raise ValueError(f"canonical box must be 4 integers, got {box}")
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"box {list(box)} is not a non-empty box inside a {width}x{height} image")


def clip_canonical(box: Sequence[float], width: int, height: int) -> Box:
    """Round a box in continuous pixel coordinates to canonical integers inside the image.

    Coordinates are ordered first; an empty result keeps at least one pixel so the inverse of
    every convention is a valid canonical box.
    """
    x0, x1 = sorted((float(box[0]), float(box[2])))
    y0, y1 = sorted((float(box[1]), float(box[3])))
    x0 = min(max(round(x0), 0), width - 1)
    y0 = min(max(round(y0), 0), height - 1)
    x1 = min(max(round(x1), x0 + 1), width)
    y1 = min(max(round(y1), y0 + 1), height)
    return [x0, y0, x1, y1]


# ---- COCO -------------------------------------------------------------------------------------
def to_coco(box: Sequence[int]) -> list[int]:
    x0, y0, x1, y1 = box
    return [x0, y0, x1 - x0, y1 - y0]


def from_coco(xywh: Sequence[float], width: int, height: int) -> Box:
    x, y, w, h = xywh
    return clip_canonical([x, y, x + w, y + h], width, height)


# ---- normalised floats --------------------------------------------------------------------------
def to_norm(box: Sequence[int], width: int, height: int) -> list[float]:
    x0, y0, x1, y1 = box
    return [x0 / width, y0 / height, x1 / width, y1 / height]


def from_norm(box: Sequence[float], width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    return clip_canonical([x0 * width, y0 * height, x1 * width, y1 * height], width, height)


# ---- normalised floats on the padded square (LLaVA-1.5 ``image_aspect_ratio: pad``) ----------
def square_offsets(width: int, height: int) -> tuple[int, int, int]:
    """(side, x offset, y offset) of the image pasted into its padded square, as LLaVA's
    ``expand2square`` pastes it: centred, the offset floored."""
    side = max(width, height)
    return side, (side - width) // 2, (side - height) // 2


def to_norm_square(box: Sequence[int], width: int, height: int) -> list[float]:
    side, dx, dy = square_offsets(width, height)
    x0, y0, x1, y1 = box
    return [(x0 + dx) / side, (y0 + dy) / side, (x1 + dx) / side, (y1 + dy) / side]


def from_norm_square(box: Sequence[float], width: int, height: int) -> Box:
    side, dx, dy = square_offsets(width, height)
    x0, y0, x1, y1 = (v * side for v in box)
    return clip_canonical([x0 - dx, y0 - dy, x1 - dx, y1 - dy], width, height)


# ---- 0-1000 integers ----------------------------------------------------------------------------
def to_norm1000(box: Sequence[int], width: int, height: int) -> list[int]:
    x0, y0, x1, y1 = box
    return [
        round(x0 * 1000 / width),
        round(y0 * 1000 / height),
        round(x1 * 1000 / width),
        round(y1 * 1000 / height),
    ]


def from_norm1000(box: Sequence[float], width: int, height: int) -> Box:
    return from_norm([v / 1000 for v in box], width, height)


# ---- Qwen2.5-VL absolute pixels on the smart-resized image --------------------------------------
def to_qwen25(
    box: Sequence[int], width: int, height: int, resize: SmartResize = QWEN25_RESIZE
) -> list[int]:
    rh, rw = resize(height, width)
    x0, y0, x1, y1 = box
    return [
        round(x0 * rw / width),
        round(y0 * rh / height),
        round(x1 * rw / width),
        round(y1 * rh / height),
    ]


def from_qwen25(
    box: Sequence[float], width: int, height: int, resize: SmartResize = QWEN25_RESIZE
) -> Box:
    rh, rw = resize(height, width)
    x0, y0, x1, y1 = box
    return clip_canonical(
        [x0 * width / rw, y0 * height / rh, x1 * width / rw, y1 * height / rh], width, height
    )


# ---- Florence-2 location bins -------------------------------------------------------------------
def _bin(coord: float, size: int) -> int:
    """Florence-2's ``BoxQuantizer`` in ``floor`` mode: coord / (size / bins), clamped."""
    return min(max(math.floor(coord / (size / FLORENCE_BINS)), 0), FLORENCE_BINS - 1)


def to_florence_bins(box: Sequence[int], width: int, height: int) -> list[int]:
    x0, y0, x1, y1 = box
    return [_bin(x0, width), _bin(y0, height), _bin(x1, width), _bin(y1, height)]


def from_florence_bins(bins: Sequence[int], width: int, height: int) -> Box:
    """Bin centres back to pixels, as Florence-2's post-processor dequantizes."""
    x0, y0, x1, y1 = ((b + 0.5) for b in bins)
    sx, sy = width / FLORENCE_BINS, height / FLORENCE_BINS
    return clip_canonical([x0 * sx, y0 * sy, x1 * sx, y1 * sy], width, height)


def to_florence(box: Sequence[int], width: int, height: int) -> str:
    return "".join(f"<loc_{b}>" for b in to_florence_bins(box, width, height))


# ---- dispatch -----------------------------------------------------------------------------------
def _to_real(box: Sequence[int], width: int, height: int) -> list[int]:
    return [int(v) for v in box]


def _from_real(box: Sequence[float], width: int, height: int) -> Box:
    return clip_canonical(box, width, height)


def _from_coco(box: Sequence[float], width: int, height: int) -> Box:
    return from_coco(box, width, height)


def _to_coco(box: Sequence[int], width: int, height: int) -> list[int]:
    return to_coco(box)


_CONVENTIONS = {
    "real": (_to_real, _from_real),
    "coco": (_to_coco, _from_coco),
    "norm": (to_norm, from_norm),
    "norm_square": (to_norm_square, from_norm_square),
    "norm1000": (to_norm1000, from_norm1000),
    "qwen25": (to_qwen25, from_qwen25),
    "florence": (to_florence_bins, from_florence_bins),
}
CONVENTIONS = tuple(_CONVENTIONS)


def _pair(convention: str):
    try:
        return _CONVENTIONS[convention]
    except KeyError:
        raise KeyError(
            f"unknown box convention {convention!r} (known: {', '.join(CONVENTIONS)})"
        ) from None


def convert(
    box: Sequence[int],
    convention: str,
    width: int,
    height: int,
    resize: SmartResize = QWEN25_RESIZE,
) -> list:
    """The canonical ``box`` in ``convention`` (florence: the four bin numbers); ``resize`` is
    the Qwen2.5-VL rule, used by ``qwen25`` only."""
    check_canonical(box, width, height)
    if convention == "qwen25":
        return to_qwen25(box, width, height, resize)
    return _pair(convention)[0](box, width, height)


def to_canonical(
    value: Sequence[float],
    convention: str,
    width: int,
    height: int,
    resize: SmartResize = QWEN25_RESIZE,
) -> Box:
    """A box in ``convention`` back to canonical pixels, clipped to the image."""
    if len(value) != 4:
        raise ValueError(f"a box needs 4 numbers, got {list(value)}")
    if convention == "qwen25":
        return from_qwen25(value, width, height, resize)
    return _pair(convention)[1](value, width, height)


def max_error_px(
    convention: str, width: int, height: int, resize: SmartResize = QWEN25_RESIZE
) -> float:
    """Largest coordinate error a round trip through ``convention`` can cause, in pixels.

    Lossless conventions give 0; quantizing ones give half a quantization step (plus rounding).
    """
    size = max(width, height)
    if convention in ("real", "coco", "norm", "norm_square"):
        return 0.0
    if convention == "norm1000":
        return size / 2000 + 0.5
    if convention == "qwen25":
        rh, rw = resize(height, width)
        return max(width / rw, height / rh) / 2 + 0.5
    if convention == "florence":
        return size / (2 * FLORENCE_BINS) + 0.5
    raise KeyError(f"unknown box convention {convention!r}")
