"""Medical Segmentation Decathlon tasks: ``dataset.json`` + ``imagesTr/`` + ``labelsTr/``.

``dataset.json`` declares the ``modality`` channels (multi-modal images are 4D, channels last),
the ``labels`` (value -> name, 0 = background) and the ``training`` pairs. CT channels get a HU
window (lung for the lung task, soft tissue otherwise, or ``ct_preset``), MR channels the robust
percentile window. The left/right midline is the body found in the first channel.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path, PurePosixPath

import datasets

from medground_hf import storage
from medground_hf.errors import InputError
from medground_hf.source import SourceInfo
from medground_hf.volumes import Target

from .base import Item, LabelOptions
from .volume_base import (
    CaseFiles,
    ChannelFile,
    VolumeBuilder,
    VolumeConfig,
    named_targets,
    nifti_stem,
    slug,
)

DATASET_JSON = "dataset.json"
# Labels named for (non-)enhancement, and the channel names of post-contrast MR sequences
# (MSD BrainTumour: "t1gd").
ENHANCEMENT = re.compile(r"enhanc")
POST_CONTRAST = re.compile(r"gd\b|t1c|t1ce|contrast|\bpost", re.I)
REQUIRED_KEYS = ("labels", "modality", "training")
BODY_PARTS = {
    "braintumour": "brain",
    "brats": "brain",
    "heart": "heart",
    "liver": "liver",
    "hippocampus": "brain",
    "prostate": "prostate",
    "lung": "lung",
    "pancreas": "pancreas",
    "hepaticvessel": "liver",
    "spleen": "spleen",
    "colon": "colon",
}

SOURCE = SourceInfo(
    name="msd",
    title="Medical Segmentation Decathlon",
    license="cc-by-sa-4.0",
    license_url="https://creativecommons.org/licenses/by-sa/4.0/",
    commercial_use=True,
    homepage="http://medicaldecathlon.com/",
    citation=(
        "@article{antonelli2022msd,\n"
        "  title={The Medical Segmentation Decathlon},\n"
        "  author={Antonelli, Michela and Reinke, Annika and Bakas, Spyridon and others},\n"
        "  journal={Nature Communications},\n  volume={13},\n  pages={4128},\n  year={2022}\n}"
    ),
    modality="CT/MRI",
    body_part="various",
    description="Ten CT and MRI segmentation tasks (brain tumour, heart, liver, hippocampus, "
    "prostate, lung, pancreas, hepatic vessel, spleen, colon), rendered as slices in the "
    "radiological convention with the patient side of every target.",
)


def record_modality(name: str) -> str:
    """``CT`` stays CT; MR sequence names become ``MRI <name>``."""
    upper = name.strip().upper()
    if upper == "CT":
        return "CT"
    if upper in ("MR", "MRI"):
        return "MRI"
    return f"MRI {name.strip()}"


@dataclass
class MsdTask:
    """What ``dataset.json`` says about one task."""

    name: str
    labels: dict[int, str]
    modalities: dict[int, str]
    training: list[tuple[Path, Path]]
    description: str


def read_dataset_json(data_dir: Path) -> MsdTask:
    """Parse and check ``dataset.json``; every problem names the file."""
    path = data_dir / DATASET_JSON
    if not path.is_file():
        raise InputError(path, "dataset.json is missing (not a Decathlon task folder)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"unreadable JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise InputError(path, "top level must be an object")
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise InputError(path, f"missing key(s) {missing}; a Decathlon task needs {REQUIRED_KEYS}")
    try:
        labels = {int(k): str(v) for k, v in meta["labels"].items()}
        modalities = {int(k): str(v) for k, v in meta["modality"].items()}
        training = [
            (
                data_dir.joinpath(*PurePosixPath(entry["image"]).parts),  # "./imagesTr/..."
                data_dir.joinpath(*PurePosixPath(entry["label"]).parts),
            )
            for entry in meta["training"]
        ]
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise InputError(
            path,
            "labels/modality must map integer keys to names and training must list "
            f"{{'image', 'label'}} pairs: {exc!r}",
        ) from exc
    if not any(k != 0 for k in labels):
        raise InputError(path, "labels declare no foreground label")
    if not modalities:
        raise InputError(path, "modality is empty")
    return MsdTask(
        name=str(meta.get("name") or data_dir.name),
        labels=labels,
        modalities=dict(sorted(modalities.items())),
        training=training,
        description=str(meta.get("description") or ""),
    )


@dataclass
class MsdConfig(LabelOptions, VolumeConfig):
    """Label wording options (:class:`~.base.LabelOptions`) over the volume options."""


class MedicalSegmentationDecathlon(VolumeBuilder):
    """Medical Segmentation Decathlon (any task): 3D/4D NIfTI images and label maps."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = MsdConfig
    BUILDER_CONFIGS = [MsdConfig(name="default", version=VERSION)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download a task archive (e.g. Task01_BrainTumour.tar) from http://medicaldecathlon.com/, "
        "extract it and point --data-dir at the task folder holding dataset.json, imagesTr/ and "
        "labelsTr/."
    )

    @cached_property
    def task(self) -> MsdTask:
        return read_dataset_json(storage.path(self.config.data_dir))

    @property
    def source(self) -> SourceInfo:
        """Static metadata until dataset.json has been read (by ``list_items``), then its labels."""
        if "task" not in self.__dict__:
            return SOURCE
        task = self.task
        return replace(
            SOURCE,
            name=f"msd_{slug(task.name)}",
            title=f"Medical Segmentation Decathlon: {task.name}",
            modality="/".join(dict.fromkeys(map(record_modality, task.modalities.values()))),
            # an unknown task has no body part: queries never name one they cannot know
            body_part=BODY_PARTS.get(slug(task.name).replace("_", ""), ""),
            labels=tuple(t.spec for t in self.targets()),
        )

    def targets(self) -> list[Target]:
        modalities = tuple(dict.fromkeys(map(record_modality, self.task.modalities.values())))
        contrast = tuple(m for m in modalities if POST_CONTRAST.search(m))
        targets = named_targets(
            self.task.labels, self.config, min_size=self.config.min_size, modalities=modalities
        )
        # (non-)enhancement is seen only against a post-contrast channel; the pieces of a
        # tumour's (non-)enhancing part are fragments of one lesion, not several lesions
        return [
            replace(
                t,
                spec=replace(
                    t.spec,
                    visible_in=contrast or ("post-contrast MRI",),
                    fragments=t.spec.fragments or not t.spec.single_region,
                ),
            )
            if ENHANCEMENT.search(t.spec.name)
            else t
            for t in targets
        ]

    def list_items(self, data_dir: Path) -> list[Item]:
        known = [slug(name) for name in self.task.modalities.values()]
        unknown = [m for m in self.config.modalities if m not in known]
        if unknown:
            raise InputError(
                data_dir / DATASET_JSON, f"modalities {unknown} not declared; declared: {known}"
            )
        return [
            Item(nifti_stem(image), nifti_stem(image), (str(image), str(label)))
            for image, label in self.task.training
        ]

    def ct_preset(self, channel: ChannelFile) -> str | None:
        if channel.modality != "CT":
            return None
        if self.config.ct_preset:
            return self.config.ct_preset
        return "lung" if "lung" in self.task.name.lower() else "soft_tissue"

    def case_files(self, item: Item) -> CaseFiles:
        image, label = (storage.path(f) for f in item.files)
        several = len(self.task.modalities) > 1
        available = {
            slug(name): ChannelFile(
                slug(name), record_modality(name), image, index if several else None
            )
            for index, name in self.task.modalities.items()
        }
        wanted = self.config.modalities or list(available)
        return CaseFiles(channels=[available[name] for name in wanted], label=label)
