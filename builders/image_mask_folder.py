"""Generic 2D image/mask folders: the layout most segmentation corpora ship in.

``<data_dir>/<images_subdir>/<stem>.<ext>`` is paired with the mask found by ``mask_pattern``
(``{stem}`` is replaced by the image's stem) under ``<data_dir>/<masks_subdir>``. Masks are
``binary`` (any non-zero/above-threshold pixel is the one label; JPEG masks are thresholded),
``labels`` (pixel value = label id, via ``label_map``) or ``colours`` (RGB colour = label, via
``colour_map``).
"""

from __future__ import annotations

import bisect
import fnmatch
import glob
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

import datasets
import numpy as np

from medground_hf import storage
from medground_hf.errors import InputError
from medground_hf.geometry import fill_holes
from medground_hf.imageio import (
    binary_mask,
    check_same_size,
    colour_masks,
    label_masks,
    load_image,
    load_mask,
)
from medground_hf.sample import Sample
from medground_hf.source import LabelSpec, SourceInfo

from .base import CustomSourceConfig, Item, MedGroundBuilder

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_MODES = ("binary", "labels", "colours")


def is_image_file(path: Path) -> bool:
    """An image by its extension; hidden files (macOS ``._a.png`` forks) are not images."""
    return (
        path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()
    )


class Listing:
    """A folder's image files, sorted by name, so an image's mask candidates are the names that
    start with its literal prefix (a binary search, not a scan of the folder per image)."""

    def __init__(self, paths: list[Path]):
        self.exact = sorted((p.name, p) for p in paths)
        self.folded = sorted((p.name.lower(), p) for p in paths)

    def starting(self, prefix: str, pattern: str, *, ignore_case: bool = False) -> list[Path]:
        """Files whose name starts with ``prefix`` and matches the glob ``pattern``."""
        entries = self.folded if ignore_case else self.exact
        if ignore_case:
            prefix, pattern = prefix.lower(), pattern.lower()
        out = []
        for name, path in entries[bisect.bisect_left(entries, (prefix,)) :]:
            if not name.startswith(prefix):
                break
            if fnmatch.fnmatchcase(name, pattern):
                out.append(path)
        return out


def _parse_colour(key: str | tuple) -> tuple[int, int, int]:
    if isinstance(key, str):
        parts = tuple(int(v) for v in re.split(r"[,\s]+", key.strip("()[] ")))
    else:
        parts = tuple(int(v) for v in key)
    if len(parts) != 3:
        raise ValueError(f"colour {key!r} must have three components")
    return parts  # type: ignore[return-value]


@dataclass
class ImageMaskFolderConfig(CustomSourceConfig):
    """Layout, mask encoding and source metadata of one image/mask folder."""

    images_subdir: str = "images"
    masks_subdir: str = "masks"
    mask_pattern: str = "{stem}.*"
    mask_mode: str = "binary"
    threshold: int = 128
    fill_holes: bool = False
    label: str = "lesion"
    label_map: Mapping[int, str] = field(default_factory=dict)
    ignore_values: tuple[int, ...] = ()
    colour_map: Mapping[str, str] = field(default_factory=dict)
    colour_tolerance: int = 0
    min_size: int = 16
    source_name: str = "image_mask_folder"
    source_title: str = "Image/mask folder"

    def validate(self) -> None:
        super().validate()
        if self.mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {self.mask_mode!r}")
        self.label_map = {int(k): v for k, v in self.label_map.items()}
        if self.mask_mode == "labels" and not self.label_map:
            raise ValueError("mask_mode 'labels' needs a label_map {value: name}")
        if self.mask_mode == "colours" and not self.colour_map:
            raise ValueError("mask_mode 'colours' needs a colour_map {'r,g,b': name}")


class ImageMaskFolder(MedGroundBuilder):
    """Any corpus of 2D images with binary, label-valued or colour-coded masks."""

    BUILDER_CONFIG_CLASS = ImageMaskFolderConfig
    BUILDER_CONFIGS = [ImageMaskFolderConfig(name="default", version=datasets.Version("1.0.0"))]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point --data-dir at a folder with an images/ and a masks/ subfolder; masks are paired "
        "with images by mask_pattern (default: same stem, any extension)."
    )

    @property
    def label_names(self) -> list[str]:
        cfg = self.config
        if cfg.mask_mode == "binary":
            return [cfg.label]
        if cfg.mask_mode == "labels":
            return list(dict.fromkeys(cfg.label_map[k] for k in sorted(cfg.label_map)))
        return list(dict.fromkeys(cfg.colour_map.values()))

    def label_specs(self) -> tuple[LabelSpec, ...]:
        cfg = self.config
        return tuple(
            cfg.label_spec(index, name, min_size=cfg.min_size)
            for index, name in enumerate(self.label_names, start=1)
        )

    @cached_property
    def source(self) -> SourceInfo:
        return self.config.source_info(self.label_specs(), "2D images with expert masks")

    def image_dir(self, data_dir: Path) -> Path:
        return data_dir / self.config.images_subdir

    def mask_dir(self, data_dir: Path) -> Path:
        return data_dir / self.config.masks_subdir

    def is_image(self, path: Path) -> bool:
        return is_image_file(path)

    def find_masks(self, image: Path, listing: Listing) -> tuple[str, list[Path]]:
        """The glob for an image's mask and the image files of ``listing`` it matches.

        The stem is escaped (``a[1].png`` is no glob class). With the default ``{stem}.*`` a mask
        named exactly ``<stem>.<ext>`` wins over ``<stem>.more.<ext>``. When nothing matches, the
        extension's case is ignored (``a.PNG`` for ``{stem}.png``).
        """
        template = self.config.mask_pattern
        pattern = template.format(stem=glob.escape(image.stem))
        head = template.split("{stem}")[0] if "{stem}" in template else ""
        prefix = "" if any(c in head for c in "*?[") else head + image.stem
        masks = [p for p in listing.starting(prefix, pattern) if p != image]
        if not masks:
            masks = [p for p in listing.starting(prefix, pattern, ignore_case=True) if p != image]
        if len(masks) > 1 and template.endswith(".*"):
            exact = template[:-2].format(stem=image.stem)
            masks = [p for p in masks if p.name.rsplit(".", 1)[0] == exact] or masks
        return pattern, masks

    def list_items(self, data_dir: Path) -> list[Item]:
        """Images anywhere under the image folder, each paired with the mask at the same relative
        place under the mask folder; the item key is the relative path without extension. An
        image that is another image's mask (both in one folder) is not an item."""
        image_dir, mask_dir = self.image_dir(data_dir), self.mask_dir(data_dir)
        for folder in {image_dir, mask_dir}:
            if not folder.is_dir():
                raise InputError(
                    folder, f"expected folder is missing.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
                )
        items = []
        listings: dict[Path, Listing] = {}  # each mask folder is listed once, not per image
        for image in sorted(p for p in image_dir.rglob("*") if self.is_image(p)):
            relative = PurePosixPath(image.relative_to(image_dir).as_posix())  # also of a UPath
            key = relative.with_suffix("").as_posix()
            folder = mask_dir.joinpath(*relative.parent.parts)
            if folder not in listings:
                files = folder.iterdir() if folder.is_dir() else ()
                listings[folder] = Listing([p for p in files if is_image_file(p)])
            pattern, masks = self.find_masks(image, listings[folder])
            problem = None
            if not masks:
                problem = f"no mask matches {folder / pattern}"
            elif len(masks) > 1:
                problem = f"several masks match {pattern}: {[m.name for m in masks]}"
            files = (str(image),) if problem else (str(image), str(masks[0]))
            extra = (("error", problem),) if problem else ()
            items.append(Item(key, self.group_of(key), files, extra=extra))
        masks_found = {item.files[1] for item in items if len(item.files) > 1}
        return [item for item in items if item.files[0] not in masks_found]

    def masks_of(self, mask_path: Path, values: np.ndarray) -> dict[str, np.ndarray]:
        """One boolean mask per label from the raw mask values, by the configured encoding."""
        cfg = self.config
        if cfg.mask_mode == "binary":
            masks = {cfg.label: binary_mask(mask_path, values, cfg.threshold)}
        elif cfg.mask_mode == "labels":
            background = {0, *(int(v) for v in cfg.ignore_values)}
            masks = label_masks(mask_path, values, cfg.label_map, background)
        else:
            colours = {_parse_colour(k): v for k, v in cfg.colour_map.items()}
            masks = colour_masks(mask_path, values, colours, cfg.colour_tolerance)
        if cfg.fill_holes:
            masks = {name: fill_holes(m) for name, m in masks.items()}
        if not any(m.any() for m in masks.values()):
            raise InputError(mask_path, "mask is empty (no foreground pixel)")
        return masks

    def spacing_of(self, item: Item) -> tuple[float, float] | None:
        """Pixel spacing (row, column) in mm when the source provides it."""
        return None

    def load_item(self, item: Item) -> Iterator[Sample]:
        image_path, mask_path = (storage.path(f) for f in item.files)
        image, data, converted = load_image(image_path)
        mode = self.config.mask_mode
        values = load_mask(
            mask_path, palette_indices=mode == "labels", channel_max=mode == "binary"
        )
        check_same_size(image_path, image, mask_path, values)
        masks = self.masks_of(mask_path, values)
        specs = {spec.name: spec for spec in self.source.labels}
        yield Sample(
            case_id=item.key,
            group_id=item.group,
            image=image,
            image_bytes=data,
            masks=[(specs[name], m) for name, m in masks.items()],
            source_files=[image_path.name, mask_path.name],
            modality=self.source.modality,
            pixel_spacing_mm=self.spacing_of(item),
            image_converted=converted,
        )
