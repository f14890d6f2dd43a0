"""NIfTI volumes to slice samples, without ever confusing the patient's left and right.

Conventions (documented in the README, "3D volumes", and tested on constructed affines):

* **World space** is the NIfTI one, RAS+: world ``x`` grows towards the patient's **right**,
  ``y`` anterior, ``z`` superior. Reorienting never changes world coordinates.
* **Canonical array**: every volume is reoriented with its affine so that array axes 0, 1, 2 point
  to patient Right, Anterior, Superior (``nibabel.orientations``; no resampling, only flips and
  axis permutations). Axis 2 is the axial axis, 1 coronal, 0 sagittal.
* **Radiological display**: axial slices show patient anterior at the top and the patient's right
  on the image's left; coronal slices superior at the top and patient right on the image's left;
  sagittal slices superior at the top and anterior on the image's left. For a canonical slab
  ``s[p, q]`` (``p < q`` the two in-plane axes) the displayed image is ``s[::-1, ::-1].T``: rows
  run along ``q`` (decreasing), columns along ``p`` (decreasing).
* **Patient side** of a target: the world ``x`` of its centroid against the midline (the world-x
  centroid of the brain or body mask); within ``band_mm`` of it the target is "midline".
* **No orientation**: a header whose qform and sform codes are both 0 says nothing about where
  the patient's sides are (nibabel's fallback affine is only a guess). Such a volume is rendered
  as stored, its display convention is ``unoriented`` and every patient side is null, so no
  query may claim one; the user who knows the orientation states it (``orientation="LPS"``).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import (
    aff2axcodes,
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)
from nibabel.spatialimages import HeaderDataError
from skimage.filters import threshold_otsu

from . import storage
from .errors import InputError
from .imageio import png_bytes
from .intensity import Window, background_value, sample_voxels
from .sample import Sample, SliceInfo
from .slices import SlicePolicy, area_profiles, select_slices
from .source import LabelSpec

CANONICAL_AXCODES = ("R", "A", "S")
AXES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
DISPLAY_CONVENTION = "radiological"
UNORIENTED = "unoriented"  # the display convention of a volume whose header has no orientation
LAYOUTS = ("side_by_side", "per_record")
# Affines of image and label map may differ by float noise, not by a voxel shift or a flip.
AFFINE_ATOL_MM = 1e-3
# Targets whose centroid lies within this distance of the midline are "midline".
MIDLINE_BAND_MM = 5.0
# Probabilistic / rescaled binary masks (e.g. BraTS brain masks stored as 0.99999997).
MASK_THRESHOLD = 0.5


# ---- reading ----------------------------------------------------------------------------------
def read_nifti(path: Path) -> nib.Nifti1Image:
    """Open a NIfTI header (data stays on disk until asked for; a URL's file is read once into
    memory and decoded from there, see :mod:`medground_hf.storage`)."""
    try:
        img = _from_url(path) if storage.is_url(path) else nib.load(str(path))
    except FileNotFoundError as exc:
        raise InputError(path, "file does not exist") from exc
    except (ImageFileError, OSError, EOFError, ValueError, zlib.error) as exc:
        raise InputError(path, f"not a readable NIfTI file: {exc}") from exc
    if not isinstance(img, nib.Nifti1Image):
        raise InputError(path, f"expected a NIfTI image, got {type(img).__name__}")
    return img


def _from_url(path) -> nib.Nifti1Image:
    data = storage.read_bytes(path)
    if data[:2] == b"\x1f\x8b":  # gzip magic (.nii.gz)
        data = gzip.decompress(data)
    try:
        return nib.Nifti1Image.from_bytes(data)
    except HeaderDataError as exc:  # nib.load says ImageFileError for these
        raise ValueError(str(exc)) from exc


def spatial_shape(img: nib.Nifti1Image, path: Path, *, allow_4d: bool = False) -> tuple[int, ...]:
    """The 3D grid of an image; a 4th axis is channels (refused unless ``allow_4d``)."""
    shape = tuple(int(v) for v in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) == 4 and not allow_4d:
        raise InputError(path, f"4D image of shape {shape} where a 3D volume is expected")
    if len(shape) not in (3, 4):
        raise InputError(path, f"expected a 3D volume, got {len(shape)}D shape {shape}")
    return shape


def load_data(img: nib.Nifti1Image, path: Path, *, allow_4d: bool = False) -> np.ndarray:
    """Voxel values (scaled), refusing NaN and infinite voxels; 4D only when ``allow_4d``."""
    shape = spatial_shape(img, path, allow_4d=allow_4d)
    try:
        data = np.asanyarray(img.dataobj).reshape(shape)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise InputError(path, f"cannot read voxel data (truncated or corrupt?): {exc}") from exc
    if data.dtype.kind == "f":
        bad = data.size - int(np.count_nonzero(np.isfinite(data)))
        if bad:
            raise InputError(path, f"{bad} voxels are NaN or infinite")
    elif data.dtype.kind not in "iub":
        raise InputError(path, f"unsupported voxel type {data.dtype}")
    return data


def check_same_grid(
    ref_path: Path,
    ref: nib.Nifti1Image,
    path: Path,
    img: nib.Nifti1Image,
    *,
    atol: float = AFFINE_ATOL_MM,
) -> None:
    """Image and label map must share one voxel grid: same 3D shape, same affine (``atol`` mm)."""
    named = storage.path(ref_path)
    ref_name = f"{named.parent.name}/{named.name}"
    if tuple(ref.shape[:3]) != tuple(img.shape[:3]):
        raise InputError(
            path, f"grid {tuple(img.shape[:3])} differs from {ref_name} {tuple(ref.shape[:3])}"
        )
    if not np.allclose(ref.affine, img.affine, atol=atol, rtol=0):
        diff = float(np.abs(ref.affine - img.affine).max())
        raise InputError(
            path,
            f"affine differs from {ref_name} by up to {diff:.4g} (tolerance {atol:g}): "
            "not on the same voxel grid",
        )


def label_values(data: np.ndarray, path: Path) -> np.ndarray:
    """An integer label map; whole-number floats are accepted, fractional values refused."""
    if data.dtype.kind == "f":
        fractional = data != np.round(data)
        count = int(np.count_nonzero(fractional))
        if count:
            example = float(data[fractional][0])
            raise InputError(
                path, f"label map is not integer-valued: {count} voxels, e.g. value {example:g}"
            )
    low, high = int(data.min()), int(data.max())
    if low < 0:
        raise InputError(path, f"label map has negative values (min {low})")
    if high == 0:
        raise InputError(path, "label map is empty (no labelled voxel)")
    dtype = np.uint8 if high < 2**8 else np.uint16 if high < 2**16 else np.int64
    return data.astype(dtype, copy=False)


def binary_values(data: np.ndarray) -> np.ndarray:
    """A mask stored as floats (or rescaled integers): foreground where above 0.5."""
    return data > MASK_THRESHOLD


# ---- orientation ------------------------------------------------------------------------------
def has_orientation(img: nib.Nifti1Image) -> bool:
    """Whether the header says how the voxel axes lie in the patient (qform or sform code > 0)."""
    header = img.header
    return int(header["qform_code"]) > 0 or int(header["sform_code"]) > 0


def check_axcodes(codes: str) -> tuple[str, str, str]:
    """Axis codes such as ``"LPS"``: one of L/R, one of A/P, one of S/I, in the axes' order."""
    letters = tuple(str(codes).upper())
    pairs = [{"L", "R"}, {"A", "P"}, {"S", "I"}]
    found = [next((i for i, p in enumerate(pairs) if c in p), None) for c in letters]
    if len(letters) != 3 or None in found or sorted(found) != [0, 1, 2]:
        raise ValueError(
            f"orientation must be three axis codes, one of each L/R, A/P, S/I (e.g. LPS), "
            f"got {codes!r}"
        )
    return letters  # type: ignore[return-value]


def stated_affine(img: nib.Nifti1Image, codes: str) -> np.ndarray:
    """An affine from the file's voxel sizes and the axis codes the user states: axis ``i``
    points towards ``codes[i]`` (origin at voxel 0; only directions matter here)."""
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for axis, (world, flip) in enumerate(axcodes2ornt(check_axcodes(codes))):
        affine[int(world), axis] = flip * zooms[axis]
    return affine


def orientation_codes(affine: np.ndarray) -> str:
    return "".join(aff2axcodes(affine))


def canonical_transform(affine: np.ndarray) -> np.ndarray:
    """The nibabel orientation transform from ``affine``'s axes to canonical RAS."""
    return ornt_transform(io_orientation(affine), axcodes2ornt(CANONICAL_AXCODES))


def reorient(
    data: np.ndarray, affine: np.ndarray, transform: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Flip/permute the first three axes by ``transform``; the new affine keeps world coords."""
    out = apply_orientation(data, transform)
    return out, affine @ inv_ornt_aff(transform, data.shape[:3])


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in nib.affines.voxel_sizes(affine))
    return x, y, z


# ---- display ----------------------------------------------------------------------------------
def in_plane_axes(axis: str) -> tuple[int, int]:
    """The canonical axes ``(p, q)`` of a slice: columns run along ``p``, rows along ``q``."""
    normal = AXES[axis]
    p, q = (a for a in range(3) if a != normal)
    return p, q


def display_slice(volume: np.ndarray, axis: str, index: int) -> np.ndarray:
    """One slice of a canonical (RAS) volume in the radiological display convention."""
    where: list[slice | int] = [slice(None)] * 3
    where[AXES[axis]] = index
    slab = volume[tuple(where)]  # a view: np.take would copy the whole (flipped) volume first
    return np.ascontiguousarray(slab[::-1, ::-1].T)


def pixel_spacing(spacing: Sequence[float], axis: str) -> tuple[float, float]:
    """(row, column) spacing in mm of a displayed slice."""
    p, q = in_plane_axes(axis)
    return float(spacing[q]), float(spacing[p])


def side_of(offset_mm: float, band_mm: float = MIDLINE_BAND_MM) -> str:
    """RAS+ world: a positive x offset from the midline is towards the patient's right."""
    if abs(offset_mm) <= band_mm:
        return "midline"
    return "right" if offset_mm > 0 else "left"


@dataclass(frozen=True)
class SliceGeometry:
    """Maps pixels of one displayed slice back to canonical voxels and world coordinates."""

    axis: str
    index: int
    shape: tuple[int, ...]
    affine: np.ndarray

    def world(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """World (RAS+ mm) coordinates of display pixels (row, column) — pixel centres."""
        p, q = in_plane_axes(self.axis)
        rows, cols = np.atleast_1d(rows), np.atleast_1d(cols)
        voxels = np.empty((rows.size, 3), dtype=np.float64)
        voxels[:, AXES[self.axis]] = self.index
        voxels[:, p] = self.shape[p] - 1 - cols
        voxels[:, q] = self.shape[q] - 1 - rows
        return nib.affines.apply_affine(self.affine, voxels)


@dataclass(frozen=True)
class PatientSide:
    """``mask -> "right" | "left" | "midline"`` for targets of one displayed slice.

    Holds only the slice geometry and the midline, never the volume, so samples stay small.
    Side-by-side images put targets in the first panel, so columns are taken modulo its width.
    """

    geometry: SliceGeometry
    midline_x: float
    band_mm: float = MIDLINE_BAND_MM

    def __call__(self, mask: np.ndarray) -> str:
        rows, cols = np.nonzero(mask)
        panel_width = self.geometry.shape[in_plane_axes(self.geometry.axis)[0]]
        world = self.geometry.world(np.array([rows.mean()]), np.array([cols.mean() % panel_width]))
        return side_of(float(world[0, 0]) - self.midline_x, self.band_mm)


def midline_x(mask: np.ndarray, affine: np.ndarray) -> float:
    """World x of the centroid of a 3D mask (brain or body): the left/right reference plane."""
    counts = np.count_nonzero(mask, axis=(1, 2)).astype(np.float64)
    total = counts.sum()
    if total == 0:
        raise ValueError("empty mask has no midline")
    centre = np.array(
        [
            (counts * np.arange(mask.shape[0])).sum() / total,
            (np.count_nonzero(mask, axis=(0, 2)) * np.arange(mask.shape[1])).sum() / total,
            (np.count_nonzero(mask, axis=(0, 1)) * np.arange(mask.shape[2])).sum() / total,
        ]
    )
    return float(nib.affines.apply_affine(affine, centre)[0])


def body_mask(volume: np.ndarray) -> np.ndarray:
    """Foreground of an image (body or head vs air), the midline reference without a mask.

    A constant background filling much of the volume (skull-stripped or z-scored MR) is simply
    left out: Otsu inside such a brain would keep only its brighter half (and the tumour with
    it). Otherwise (CT, raw MR with noisy air) Otsu's threshold on a voxel sample separates them.
    """
    sample = sample_voxels(volume, limit=1_000_000)
    background = background_value(sample)
    if background is not None and np.any(sample != background):
        return volume != background
    if sample.min() == sample.max():
        return np.ones(volume.shape, dtype=bool)
    return volume > threshold_otsu(sample)


# ---- a case to samples ------------------------------------------------------------------------
@dataclass
class Channel:
    """One modality of a case: a canonical 3D array and its display window."""

    name: str
    modality: str
    data: np.ndarray
    window: Window


@dataclass(frozen=True)
class Target:
    """A target structure: a label spec and the label-map values that make it up; ``refs`` say
    where it is defined in the source (e.g. a DICOM segment's number and coded concepts)."""

    spec: LabelSpec
    values: tuple[int, ...]
    refs: tuple[tuple[str, str], ...] = ()


@dataclass
class VolumeCase:
    """Everything of one case, validated and in canonical orientation, ready to render."""

    case_id: str
    group_id: str
    channels: list[Channel]
    labels: np.ndarray
    affine: np.ndarray
    targets: list[Target]
    midline_x: float
    source_files: list[str]
    context: dict[str, np.ndarray] = field(default_factory=dict)
    oriented: bool = True  # False: the header gives no orientation, patient sides are unknown
    refs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RenderOptions:
    """How a case becomes images: slicing axis, slice policy, modality layout, midline band."""

    axis: str = "axial"
    policy: SlicePolicy = SlicePolicy()
    layout: str = "side_by_side"
    band_mm: float = MIDLINE_BAND_MM

    def __post_init__(self):
        if self.axis not in AXES:
            raise ValueError(f"axis must be one of {tuple(AXES)}, got {self.axis!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.band_mm < 0:
            raise ValueError(f"band_mm must be >= 0, got {self.band_mm}")


def _panels(channels: Sequence[Channel], layout: str) -> list[tuple[str | None, list[Channel]]]:
    """(image variant, channels shown together): one image of all, or one image per channel."""
    if layout == "per_record" and len(channels) > 1:
        return [(c.name, [c]) for c in channels]
    return [(None, list(channels))]


def _shown_in(
    targets: Sequence[Target], panels: Sequence[tuple[str | None, list[Channel]]]
) -> list[set[str]]:
    """The labels each image carries: those its channels show (:meth:`LabelSpec.visible_on`),
    and those no image of the case shows (the visual check rejects them with the reason)."""
    modality = [" | ".join(c.modality for c in shown) for _, shown in panels]
    return [
        {
            t.spec.name
            for t in targets
            if t.spec.visible_on(here) or not any(t.spec.visible_on(m) for m in modality)
        }
        for here in modality
    ]


def render_case(case: VolumeCase, options: RenderOptions) -> Iterator[Sample]:
    """One sample per selected slice (and per modality in ``per_record`` layout, each with the
    labels that modality shows)."""
    axis = AXES[options.axis]
    shape = case.labels.shape
    structures: Mapping[str, Sequence[int]] = {t.spec.name: t.values for t in case.targets}
    indices = select_slices(area_profiles(case.labels, structures, axis), options.policy)
    spacing = voxel_spacing(case.affine)
    panels = _panels(case.channels, options.layout)
    carried = _shown_in(case.targets, panels)
    for index in indices:
        labels = display_slice(case.labels, options.axis, index)
        grey = {
            c.name: c.window.apply(display_slice(c.data, options.axis, index))
            for c in case.channels
        }
        geometry = SliceGeometry(options.axis, index, shape, case.affine)
        masks = [(t, np.isin(labels, t.values)) for t in case.targets]
        masks = [(t, m) for t, m in masks if m.any()]
        context = {n: display_slice(m, options.axis, index) for n, m in case.context.items()}
        for (variant, shown), names in zip(panels, carried, strict=True):
            here = [(t, m) for t, m in masks if t.spec.name in names]
            image = np.hstack([grey[c.name] for c in shown])
            pad = image.shape[1] - labels.shape[1]
            yield Sample(
                case_id=case.case_id,
                group_id=case.group_id,
                image=image,
                image_bytes=png_bytes(image),
                masks=[(t.spec, np.pad(m, ((0, 0), (0, pad)))) for t, m in here],
                source_files=case.source_files,
                modality=" | ".join(c.modality for c in shown),
                pixel_spacing_mm=pixel_spacing(spacing, options.axis),
                slice=SliceInfo(
                    volume_id=case.case_id,
                    axis=options.axis,
                    index=index,
                    num_slices=shape[axis],
                    voxel_spacing_mm=spacing,
                    display_convention=DISPLAY_CONVENTION if case.oriented else UNORIENTED,
                ),
                context={n: np.pad(m, ((0, 0), (0, pad))) for n, m in context.items()},
                patient_side=(
                    PatientSide(geometry, case.midline_x, options.band_mm)
                    if case.oriented
                    else None
                ),
                image_variant=variant,
                refs=case.refs,
                mask_refs=[t.refs for t, _ in here],
            )
