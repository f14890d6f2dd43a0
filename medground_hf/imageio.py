"""Reading 2D images and masks once, with errors that name the file.

An image file is read into memory once; those bytes are decoded once and embedded as they are, so a
build never decodes (or re-encodes) the same picture twice.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import InputError

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey stripe

EXIF_ORIENTATION = 0x0112


def read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read file: {exc.strerror or exc}") from exc
    if not data:
        raise InputError(path, "file is empty (0 bytes)")
    return data


def decode(path: Path, data: bytes) -> tuple[np.ndarray, str]:
    """Decode image bytes to an array (L, LA, RGB or I), returning the PIL mode as well."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.getexif().get(EXIF_ORIENTATION, 1) != 1:
                raise InputError(
                    path, "EXIF orientation is set; boxes would not match the displayed image"
                )
            im.load()
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "1"):
                im = im.convert("RGB" if im.mode != "1" else "L")
            elif im.mode in ("I;16", "I;16B", "I;16L"):
                im = im.convert("I")
            return np.asarray(im), im.mode
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"unreadable or truncated image: {exc}") from exc


def load_image(path: Path) -> tuple[np.ndarray, bytes]:
    """Pixels (uint8, grey or RGB) and the original file bytes to embed."""
    data = read_bytes(path)
    pixels, _ = decode(path, data)
    if pixels.dtype != np.uint8:
        raise InputError(path, f"expected an 8-bit image, got {pixels.dtype}")
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[..., :3]
    return pixels, data


def load_mask(path: Path) -> np.ndarray:
    """Raw mask values: 2D for grey/label masks, HxWx3 for colour-coded masks."""
    pixels, _ = decode(path, read_bytes(path))
    if pixels.ndim == 3:
        pixels = pixels[..., :3]
    return pixels


def binary_mask(values: np.ndarray, threshold: int) -> np.ndarray:
    """Foreground of a binary mask; lossy (JPEG) masks are thresholded, not compared to 255."""
    if values.ndim == 3:  # channel-wise maximum; numpy's max over a short last axis is slow
        values = np.maximum.reduce([values[..., c] for c in range(values.shape[2])])
    return values >= threshold


def label_masks(
    path: Path, values: np.ndarray, label_map: Mapping[int, str], background: int = 0
) -> dict[str, np.ndarray]:
    """Split a label-valued mask into one boolean mask per label name; unknown values are errors."""
    if values.ndim == 3:
        raise InputError(path, "label-valued mask must be single-channel, got a colour image")
    present = np.unique(values)
    unknown = [int(v) for v in present if v != background and int(v) not in label_map]
    if unknown:
        raise InputError(
            path, f"mask values {unknown} are not in the label map {sorted(label_map)}"
        )
    return {label_map[int(v)]: values == v for v in present if v != background}


def colour_masks(
    path: Path,
    values: np.ndarray,
    colour_map: Mapping[tuple[int, int, int], str],
    tolerance: int = 0,
) -> dict[str, np.ndarray]:
    """Split an RGB colour-coded mask by colour; colours outside the map (and black) are errors."""
    if values.ndim != 3:
        raise InputError(path, "colour-coded mask must be RGB, got a single-channel image")
    signed = values.astype(np.int16)
    out: dict[str, np.ndarray] = {}
    claimed = np.all(signed <= tolerance, axis=2)  # black background
    for colour, name in colour_map.items():
        hit = np.all(np.abs(signed - np.array(colour, np.int16)) <= tolerance, axis=2)
        claimed |= hit
        if hit.any():
            out[name] = out[name] | hit if name in out else hit
    if not claimed.all():
        ys, xs = np.nonzero(~claimed)
        colour = tuple(int(c) for c in values[ys[0], xs[0]])
        raise InputError(
            path,
            f"{ys.size} pixels have colours not in the colour map, e.g. {colour} at "
            f"(x={xs[0]}, y={ys[0]})",
        )
    return out


def check_same_size(image_path: Path, image: np.ndarray, mask_path: Path, mask: np.ndarray) -> None:
    if image.shape[:2] != mask.shape[:2]:
        raise InputError(
            mask_path,
            f"mask size {mask.shape[1]}x{mask.shape[0]} differs from image {image_path.name} "
            f"size {image.shape[1]}x{image.shape[0]}",
        )
