"""BraTS 2013/2015 glioma MRI in the per-case NIfTI layout (FLAIR, T1c, label map, brain mask)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import datasets

from medground_hf import storage
from medground_hf.errors import InputError
from medground_hf.source import LabelSpec, SourceInfo
from medground_hf.volumes import Target

from .base import Item
from .volume_base import CaseFiles, ChannelFile, VolumeBuilder, VolumeConfig

MODALITY_NAMES = {"flair": "MRI FLAIR", "t1c": "MRI T1c", "t1": "MRI T1", "t2": "MRI T2"}
MRI_MODALITIES = ("MRI", *MODALITY_NAMES.values())

# What shows each label (BraTS: enhancing tumour and the necrotic / non-enhancing core against
# the enhancing rim on T1c, edema and the whole tumour as FLAIR / T2 hyperintensity).
POST_CONTRAST = ("MRI T1c",)
FLUID_SENSITIVE = ("MRI FLAIR", "MRI T2")

NECROSIS = LabelSpec(
    id=1,
    name="necrosis",
    display="necrotic tumour core",
    synonyms=("necrosis", "necrotic core"),
    modalities=MRI_MODALITIES,
    description="Necrotic (non-enhancing, fluid-like) centre of a glioma.",
    visible_in=(*POST_CONTRAST, "MRI T2"),
    fragments=True,
    piece_names=("focus of necrosis", "foci of necrosis"),
)
EDEMA = LabelSpec(
    id=2,
    name="edema",
    display="peritumoral edema",
    synonyms=("oedema", "vasogenic edema"),
    single_region=True,
    modalities=MRI_MODALITIES,
    description="Vasogenic edema around the tumour; diffuse, kept as one region per slice.",
    visible_in=FLUID_SENSITIVE,
)
NON_ENHANCING = LabelSpec(
    id=3,
    name="non_enhancing_tumour",
    display="non-enhancing tumour",
    synonyms=("non-enhancing tumor",),
    modalities=MRI_MODALITIES,
    description="Solid tumour that does not take up contrast on T1c.",
    visible_in=POST_CONTRAST,
    fragments=True,
    piece_names=("non-enhancing region", "non-enhancing regions"),
)
ENHANCING = LabelSpec(
    id=4,
    name="enhancing_tumour",
    display="enhancing tumour",
    synonyms=("contrast-enhancing tumor", "enhancing tumor component"),
    modalities=MRI_MODALITIES,
    description="Tumour that enhances on post-contrast T1 (T1c).",
    visible_in=POST_CONTRAST,
    fragments=True,
    piece_names=("enhancing focus", "enhancing foci"),
)
WHOLE_TUMOUR = LabelSpec(
    id=5,
    name="whole_tumour",
    display="whole tumour",
    synonyms=("tumour with surrounding edema", "whole tumor"),
    single_region=True,
    modalities=MRI_MODALITIES,
    description="Union of labels 1-4 (necrosis, edema, non-enhancing and enhancing tumour).",
    visible_in=FLUID_SENSITIVE,
)
PART_TARGETS = (
    Target(NECROSIS, (1,)),
    Target(EDEMA, (2,)),
    Target(NON_ENHANCING, (3,)),
    Target(ENHANCING, (4,)),
)
WHOLE_TARGET = Target(WHOLE_TUMOUR, (1, 2, 3, 4))

SOURCE = SourceInfo(
    name="brats2013",
    title="BraTS 2013 brain tumour segmentation",
    license="cc-by-nc-sa-3.0",
    license_url="https://creativecommons.org/licenses/by-nc-sa/3.0/",
    commercial_use=False,
    homepage="http://braintumorsegmentation.org/",
    citation=(
        "@article{menze2015brats,\n"
        "  title={The Multimodal Brain Tumor Image Segmentation Benchmark (BRATS)},\n"
        "  author={Menze, Bjoern H. and Jakab, Andras and Bauer, Stefan and others},\n"
        "  journal={IEEE Transactions on Medical Imaging},\n  volume={34},\n  number={10},\n"
        "  pages={1993--2024},\n  year={2015}\n}"
    ),
    modality="MRI",
    body_part="brain",
    description="Multi-sequence brain MRI of glioma patients with expert labels of necrosis, "
    "edema, non-enhancing and enhancing tumour, rendered as axial slices in the radiological "
    "convention with the patient side of every target.",
    labels=tuple(t.spec for t in PART_TARGETS),
)


@dataclass
class BratsConfig(VolumeConfig):
    """Which sequences to render and whether to add a whole-tumour target.

    By default FLAIR and T1c are rendered as separate images, each carrying the labels it shows
    (:attr:`LabelSpec.visible_in`): edema on FLAIR, the tumour core's parts on T1c.
    """

    modalities: tuple[str, ...] = ("flair", "t1c")
    layout: str = "per_record"
    whole_tumour: bool = False
    every_k: int = 10
    min_area_px: int = 100
    # File name globs, matched case-insensitively: the DeepMedic-style BraTS 2013/2015 names
    # (Flair_subtrMeanDivStd, T1c_..., OTMultiClass, brainmask) and the later _flair/_t1ce/_seg.
    modality_patterns: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "flair": ("*flair*.nii*",),
            "t1c": ("*t1c*.nii*",),
            "t1": ("*t1_*.nii*", "*_t1.nii*"),
            "t2": ("*t2*.nii*",),
        }
    )
    label_patterns: tuple[str, ...] = ("*otmulticlass*.nii*", "*_seg.nii*")
    brain_mask_patterns: tuple[str, ...] = ("*brainmask*.nii*",)
    # timepoints of one patient (``..._pat0001_1``, ``..._pat0001_2``) share a group
    group_pattern: str = r"^(.*_pat\d+)(?:_\d+)?$"

    def validate(self) -> None:
        super().validate()
        unknown = set(self.modalities) - set(self.modality_patterns)
        if unknown or not self.modalities:
            raise ValueError(
                f"modalities must be among {sorted(self.modality_patterns)}, "
                f"got {list(self.modalities)}"
            )


def matches(path: Path, patterns: Sequence[str]) -> bool:
    """Whether a file's name matches one of the globs, ignoring case and hidden files (macOS
    ``._Flair.nii.gz`` forks would otherwise make a second FLAIR)."""
    name = path.name.lower()
    if name.startswith(".") or not path.is_file():
        return False
    return any(fnmatch.fnmatch(name, p.lower()) for p in patterns)


class Brats(VolumeBuilder):
    """BraTS 2013/2015 gliomas: necrosis, edema, non-enhancing and enhancing tumour per slice."""

    VERSION = datasets.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Axial slices, radiological convention, patient side per target.",
        "1.1.0": "Every label on the sequence that shows it (FLAIR: edema; T1c: tumour core).",
    }
    BUILDER_CONFIG_CLASS = BratsConfig
    BUILDER_CONFIGS = [
        BratsConfig(
            name="default",
            version=VERSION,
            description="Tumour parts, each on the sequence that shows it: edema on FLAIR; "
            "necrosis, non-enhancing and enhancing tumour on T1c.",
        ),
        BratsConfig(
            name="whole_tumour",
            version=VERSION,
            whole_tumour=True,
            description="As default, plus the whole tumour (labels 1-4) as one target on FLAIR.",
        ),
        BratsConfig(
            name="multimodal",
            version=VERSION,
            layout="side_by_side",
            description="FLAIR and T1c side by side in one image (masks on the FLAIR panel); "
            "tumour parts.",
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Register for BraTS 2013/2015 (http://braintumorsegmentation.org/) and convert each case "
        "to NIfTI in one folder per case: Flair*.nii.gz, T1c*.nii.gz, OTMultiClass*.nii.gz (labels "
        "0-4) and optionally brainmask*.nii.gz, as in the DeepMedic example data (later names "
        "*_flair, *_t1ce, *_seg.nii.gz are found too). Point --data-dir "
        "at the folder holding the case folders (subfolders such as HGG/ and LGG/ are searched)."
    )

    @cached_property
    def source(self) -> SourceInfo:
        labels = tuple(t.spec for t in self.targets())
        return replace(SOURCE, labels=labels)

    def targets(self) -> list[Target]:
        return [*PART_TARGETS, WHOLE_TARGET] if self.config.whole_tumour else list(PART_TARGETS)

    def list_items(self, data_dir: Path) -> list[Item]:
        labels = self.config.label_patterns
        items = []
        for case in sorted({p.parent for p in data_dir.rglob("*") if matches(p, labels)}):
            # the label map last: errors about the case as a whole name it
            files = sorted(case.iterdir(), key=lambda p: (matches(p, labels), p.name))
            items.append(Item(case.name, self.group_of(case.name), tuple(map(str, files))))
        return items

    def _find(
        self, item: Item, patterns: Sequence[str], what: str, *, required: bool = True
    ) -> Path | None:
        paths = [storage.path(f) for f in item.files]
        hits = [p for p in paths if matches(p, patterns)]
        folder = paths[0].parent
        if len(hits) > 1:
            raise InputError(
                folder, f"several {what} files match {list(patterns)}: {[p.name for p in hits]}"
            )
        if not hits and required:
            raise InputError(folder, f"no {what} file matching {list(patterns)}")
        return hits[0] if hits else None

    def case_files(self, item: Item) -> CaseFiles:
        cfg = self.config
        channels = []
        for name in cfg.modalities:
            path = self._find(item, cfg.modality_patterns[name], name)
            channels.append(ChannelFile(name, MODALITY_NAMES.get(name, f"MRI {name}"), path))
        brain = self._find(item, cfg.brain_mask_patterns, "brain mask", required=False)
        return CaseFiles(
            channels=channels,
            label=self._find(item, cfg.label_patterns, "label map"),
            context={"brain": brain} if brain else {},
        )
