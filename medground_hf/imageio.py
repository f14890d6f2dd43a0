"""Reading 2D images and masks once, with errors that name the file.

An image file is read into memory once; those bytes are decoded once and embedded as they are, so a
build never decodes (or re-encodes) the same picture twice.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageFile, UnidentifiedImageError

from . import storage
from .errors import InputError
from .intensity import percentile_window

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey stripe

EXIF_ORIENTATION = 0x0112


def read_bytes(path: Path) -> bytes:
    try:
        data = storage.read_bytes(path)
    except OSError as exc:
        raise InputError(path, f"cannot read file: {exc.strerror or exc}") from exc
    if not data:
        raise InputError(path, "file is empty (0 bytes)")
    return data


_OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def describe(error: BaseException) -> str:
    """An error's message without Python object reprs (PIL names its in-memory buffer, e.g.
    ``cannot identify image file <_io.BytesIO object at 0x7f...>``; the caller names the file)."""
    return _OBJECT_REPR.sub("", str(error))


def open_bytes(data: bytes, name: str | os.PathLike) -> Image.Image:
    """Open encoded image bytes; a clear error naming ``name`` (a file, an image id) when they
    are not a readable image."""
    try:
        return Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(name, f"not a readable image: {describe(exc)}") from exc


def _decode(
    path: Path, data: bytes, palette_indices: bool, channel_max: bool = False
) -> tuple[np.ndarray, str]:
    """Pixels and the file's own mode (see :func:`decode`); with ``channel_max`` a colour image
    comes back as its per-pixel channel maximum (2D)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.getexif().get(EXIF_ORIENTATION, 1) != 1:
                raise InputError(
                    path, "EXIF orientation is set; boxes would not match the displayed image"
                )
            im.load()
            mode = im.mode
            if im.mode == "P" and palette_indices:
                return np.asarray(im), mode
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "RGBA", "RGBX", "RGBa", "LAB", "HSV"):
                im = im.convert("RGB")
            elif im.mode in ("1", "LA", "La"):
                im = im.convert("L")
            elif im.mode.startswith("I;16"):
                im = im.convert("I")
            if channel_max and im.mode == "RGB":
                # in Pillow, band by band: cheaper than packing RGB into an array to reduce it
                red, green, blue = im.split()
                im = ImageChops.lighter(ImageChops.lighter(red, green), blue)
            return np.asarray(im), mode
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(path, f"image too large to decode safely: {describe(exc)}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"unreadable or truncated image: {describe(exc)}") from exc


def decode(path: Path, data: bytes, *, palette_indices: bool = False) -> np.ndarray:
    """Decode image bytes to an array: grey (uint8, or int32/float32 for 16/32-bit) or RGB.

    Alpha is dropped (it is transparency, not content). Palette, CMYK and other colour modes
    become RGB, or a palette stays indices with ``palette_indices`` (a label mask whose pixel
    values are the indices).
    """
    return _decode(path, data, palette_indices)[0]


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


EMBEDDED_MODES = ("RGB", "L")  # what trainers and viewers show as the pixels we measured


def load_image(path: Path) -> tuple[np.ndarray, bytes, str | None]:
    """Pixels (uint8, grey or RGB), the bytes to embed, and the conversion made (None: the
    original file is embedded as it is).

    The original bytes are embedded only when they hold exactly the measured pixels: an 8-bit
    RGB or grey image. Other colour modes (CMYK, palette, RGBA, ...) are embedded as the RGB (or
    grey) PNG the boxes were measured on. A 16-bit or float grey image (X-ray, some ultrasound)
    is windowed to 8 bits on its 0.5-99.5 percentiles and embedded as an 8-bit PNG: VLM image
    processors and viewers clip 16-bit pixels, so the original bytes would show a white picture.
    """
    data = read_bytes(path)
    pixels, mode = _decode(path, data, palette_indices=False)
    if pixels.dtype != np.uint8:
        if pixels.ndim != 2:
            raise InputError(
                path, f"unsupported {pixels.dtype} image with {pixels.shape[2]} channels"
            )
        pixels = percentile_window(pixels).apply(pixels)
        return pixels, png_bytes(pixels), f"{mode} -> L (windowed 0.5-99.5 percentiles), PNG"
    if mode not in EMBEDDED_MODES:
        return pixels, png_bytes(pixels), f"{mode} -> {'RGB' if pixels.ndim == 3 else 'L'}, PNG"
    return pixels, data, None


def load_mask(
    path: Path, *, palette_indices: bool = False, channel_max: bool = False
) -> np.ndarray:
    """Raw mask values: 2D for grey/label masks, HxWx3 for colour-coded masks, or with
    ``channel_max`` (what :func:`binary_mask` thresholds) the per-pixel maximum over the colour
    channels."""
    return _decode(path, read_bytes(path), palette_indices, channel_max)[0]


def binary_mask(path: Path, values: np.ndarray, threshold: int) -> np.ndarray:
    """Foreground of a binary mask; lossy (JPEG) masks are thresholded, not compared to 255.

    A mask whose largest value is 1 is a 0/1 mask (common in PNG and NumPy exports) or a float
    mask in [0, 1]: it is thresholded at 0.5, whatever ``threshold`` says. Any other mask with
    values only below the threshold is an error rather than an empty target.
    """
    if values.ndim == 3:  # channel-wise maximum; numpy's max over a short last axis is slow
        values = np.maximum.reduce([values[..., c] for c in range(values.shape[2])])
    top = values.max(initial=0)
    if top == 1:
        return values >= 0.5
    if 0 < top < threshold:
        raise InputError(
            path,
            f"mask values are all below the binary threshold {threshold} (largest {top:g}); "
            "use mask_mode=labels for a label-valued mask, or a lower threshold",
        )
    return values >= threshold


def label_masks(
    path: Path,
    values: np.ndarray,
    label_map: Mapping[int, str],
    background: Collection[int] = (0,),
) -> dict[str, np.ndarray]:
    """Split a label-valued mask into one boolean mask per label name; unknown values are errors.

    ``background`` values (0, and e.g. 255 for the "void" border of VOC-style masks) are no
    target. Several values may share a name: their pixels form one mask.
    """
    if values.ndim == 3:
        raise InputError(path, "label-valued mask must be single-channel, got a colour image")
    present = [int(v) for v in np.unique(values) if int(v) not in background]
    unknown = [v for v in present if v not in label_map]
    if unknown:
        raise InputError(
            path, f"mask values {unknown} are not in the label map {sorted(label_map)}"
        )
    out: dict[str, np.ndarray] = {}
    for v in present:
        name = label_map[v]
        out[name] = out[name] | (values == v) if name in out else values == v
    return out


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
