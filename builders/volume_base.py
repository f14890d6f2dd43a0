"""The shared base of volume builders: a case of NIfTI files in, one sample per selected slice out.

A subclass finds its cases (``list_items``) and says which files of a case are which
(``case_files``); reading, grid checks, reorientation, windowing, slice selection and rendering
are shared (:mod:`medground_hf.volumes`). One case is held in memory at a time, and the whole case
is validated before any slice is rendered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from medground_hf.errors import InputError, logger
from medground_hf.intensity import DEFAULT_PERCENTILES, window_for
from medground_hf.sample import Sample
from medground_hf.slices import MAX_HISTOGRAM, SlicePolicy
from medground_hf.volumes import (
    AFFINE_ATOL_MM,
    MIDLINE_BAND_MM,
    Channel,
    RenderOptions,
    Target,
    VolumeCase,
    binary_values,
    body_mask,
    canonical_transform,
    check_axcodes,
    check_same_grid,
    has_orientation,
    label_values,
    load_data,
    midline_x,
    orientation_codes,
    read_nifti,
    render_case,
    reorient,
    spatial_shape,
    stated_affine,
)

from .base import Item, LabelOptions, MedGroundBuilder, MedGroundConfig


@dataclass
class VolumeConfig(MedGroundConfig):
    """Rendering options every volume source shares (see the README, "3D volumes")."""

    axis: str = "axial"
    layout: str = "side_by_side"
    modalities: tuple[str, ...] = ()
    every_k: int = 0
    min_area_px: int = 64
    min_gap: int = 3
    max_slices: int | None = None
    midline_band_mm: float = MIDLINE_BAND_MM
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    ct_preset: str | None = None
    min_size: int = 16
    affine_atol: float = AFFINE_ATOL_MM
    # Axis codes (e.g. "LPS") of volumes whose header has no orientation (qform and sform codes
    # 0); without it their patient sides stay unknown.
    orientation: str | None = None

    def validate(self) -> None:
        super().validate()
        self.render_options()
        if self.orientation is not None:
            self.orientation = "".join(check_axcodes(self.orientation))

    def render_options(self) -> RenderOptions:
        """The rendering options; bad values raise ValueError (also run by :meth:`validate`)."""
        policy = SlicePolicy(
            every_k=int(self.every_k),
            min_area_px=int(self.min_area_px),
            min_gap=int(self.min_gap),
            max_slices=None if self.max_slices is None else int(self.max_slices),
        )
        return RenderOptions(
            axis=self.axis, policy=policy, layout=self.layout, band_mm=float(self.midline_band_mm)
        )


@dataclass
class ChannelFile:
    """Where one modality of a case lives: a file, and the channel index for 4D files."""

    name: str
    modality: str
    path: Path
    index: int | None = None


@dataclass
class CaseChannel:
    """One modality of a case as a canonical array, with its CT window preset (None: MR-like)."""

    name: str
    modality: str
    data: np.ndarray
    ct_preset: str | None


@dataclass
class CaseFiles:
    """The files of one case: its modalities, its label map and optional context masks."""

    channels: list[ChannelFile]
    label: Path
    context: dict[str, Path] = field(default_factory=dict)


def nifti_stem(path: Path) -> str:
    """``case_001.nii.gz`` -> ``case_001``."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def slug(text: str) -> str:
    """A name as an id part: ``"non-enhancing tumor"`` -> ``non_enhancing_tumor``."""
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")


def check_known_values(labels: np.ndarray, known: Sequence[int], path: Path) -> None:
    """Every non-zero value of the label map must be a declared label."""
    small = labels.max(initial=0) < MAX_HISTOGRAM  # else a histogram would dwarf the volume
    present = np.flatnonzero(np.bincount(labels.ravel())) if small else np.unique(labels)
    unknown = sorted(set(int(v) for v in present) - {0} - set(known))
    if unknown:
        raise InputError(path, f"label values {unknown} are not declared labels {sorted(known)}")


def named_targets(
    names: Mapping[int, str], options: LabelOptions, *, min_size: int, modalities: tuple[str, ...]
) -> list[Target]:
    """One target per declared label value (0 is background) of a source that names its labels
    (``dataset.json``, a label-names file): its id-safe name, clinical wording and options."""
    return [
        Target(
            options.label_spec(
                value, slug(name), name, min_size=int(min_size), modalities=modalities
            ),
            (value,),
        )
        for value, name in sorted(names.items())
        if value != 0
    ]


class VolumeBuilder(MedGroundBuilder):
    """A source of NIfTI cases: subclasses give ``list_items``, ``case_files`` and ``targets``."""

    BUILDER_CONFIG_CLASS = VolumeConfig
    RELEASE_NOTES = {"1.0.0": "Slices in the radiological convention, patient side per target."}

    @cached_property
    def render_options(self) -> RenderOptions:
        return self.config.render_options()

    # ---- what a subclass provides -------------------------------------------------------------
    def case_files(self, item: Item) -> CaseFiles:
        raise NotImplementedError

    def targets(self) -> list[Target]:
        raise NotImplementedError

    def ct_preset(self, channel: ChannelFile) -> str | None:
        """The HU window of a channel, or None for the percentile window (non-CT)."""
        return self.config.ct_preset

    # ---- shared -------------------------------------------------------------------------------
    def load_case(self, item: Item) -> VolumeCase:
        """Read and check every file of a case, then reorient it to canonical RAS."""
        files = self.case_files(item)
        atol = float(self.config.affine_atol)
        label_img = read_nifti(files.label)
        spatial_shape(label_img, files.label)
        opened = {}
        for path in dict.fromkeys([*(c.path for c in files.channels), *files.context.values()]):
            img = read_nifti(path)
            check_same_grid(files.label, label_img, path, img, atol=atol)
            opened[path] = img
        stored, oriented = self.stored_affine(label_img, files.label)
        transform = canonical_transform(stored)

        def canonical(data: np.ndarray) -> np.ndarray:
            """Same grid as the label map (checked above), so the same flips/permutation."""
            return reorient(data, stored, transform)[0]

        labels = label_values(load_data(label_img, files.label), files.label)
        targets = self.targets()
        check_known_values(labels, sorted({v for t in targets for v in t.values}), files.label)
        labels, affine = reorient(labels, stored, transform)
        context = {
            name: canonical(binary_values(load_data(opened[path], path)))
            for name, path in files.context.items()
        }
        for name, mask in context.items():
            if not mask.any():
                raise InputError(files.context[name], f"{name} mask is empty")
        arrays: dict[Path, np.ndarray] = {}
        channels = []
        for cf in files.channels:
            if cf.path not in arrays:
                data = load_data(opened[cf.path], cf.path, allow_4d=cf.index is not None)
                arrays[cf.path] = canonical(data)
            data = arrays[cf.path]
            if cf.index is not None:
                if data.ndim != 4 or cf.index >= data.shape[3]:
                    raise InputError(
                        cf.path,
                        f"channel {cf.index} ({cf.name}) missing: expected a 4D image with "
                        f"channels last, got shape {data.shape}",
                    )
                data = data[..., cf.index]
            channels.append(CaseChannel(cf.name, cf.modality, data, self.ct_preset(cf)))
        return self.assemble_case(
            item,
            channels,
            labels,
            affine,
            targets,
            context,
            [p.name for p in dict.fromkeys(opened)] + [files.label.name],
            oriented=oriented,
        )

    def assemble_case(
        self,
        item: Item,
        channels: Sequence[CaseChannel],
        labels: np.ndarray,
        affine: np.ndarray,
        targets: list[Target],
        context: dict[str, np.ndarray],
        source_files: list[str],
        refs: tuple[tuple[str, str], ...] = (),
        oriented: bool = True,
    ) -> VolumeCase:
        """A case from canonical (RAS) arrays, whatever files they came from: windows, midline.

        The first context mask (e.g. the brain) is the midline reference and the MR window's
        foreground; without one, the body found in the first channel is. ``oriented`` is False
        when the files do not say where the patient's sides are (no side is then claimed).
        """
        reference = next(iter(context.values()), None)
        windowed = [
            Channel(
                c.name,
                c.modality,
                c.data,
                window_for(
                    c.data,
                    ct_preset=c.ct_preset,
                    percentiles=tuple(self.config.percentiles),
                    foreground=reference,
                ),
            )
            for c in channels
        ]
        if reference is None:
            reference = body_mask(windowed[0].data)
        return VolumeCase(
            case_id=item.key,
            group_id=item.group,
            channels=windowed,
            labels=labels,
            affine=affine,
            targets=targets,
            midline_x=midline_x(reference, affine),
            source_files=source_files,
            context=context,
            oriented=oriented,
            refs=refs,
        )

    def stored_affine(self, img, path: Path) -> tuple[np.ndarray, bool]:
        """The affine to orient a case by, and whether the patient's sides are known: the
        header's, else the one the ``orientation`` option states, else none (sides unknown)."""
        stated = self.config.orientation
        if has_orientation(img):
            codes = orientation_codes(img.affine)
            if stated and stated != codes:
                raise InputError(
                    path, f"the header says the axes point {codes}, the orientation option {stated}"
                )
            return img.affine, True
        if stated:
            return stated_affine(img, stated), True
        logger.warning(
            "%s: the header has no orientation (qform and sform codes 0): patient sides are "
            "unknown (null) and no query may claim one; set orientation=<axis codes, e.g. LPS> "
            "if you know it",
            path,
        )
        return img.affine, False

    def load_item(self, item: Item) -> Iterator[Sample]:
        case = self.load_case(item)
        return render_case(case, self.render_options)
