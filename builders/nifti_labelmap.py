"""Generic NIfTI images + label maps: the layout most 3D segmentation corpora can be put in.

``<data_dir>/<labels_subdir>/<case>.nii[.gz]`` defines the cases. With one modality the image is
``<images_subdir>/<case>.nii[.gz]``; with several (``modalities=["t1", "t2"]``) it is one file per
modality, ``<images_subdir>/<case>_<modality>.nii[.gz]`` (``image_pattern`` changes either).
Label names (value -> name) come from ``label_names``, or from ``label_names_file``: JSON
(``{"1": "liver"}`` or a Decathlon-style ``{"labels": {...}}``) or CSV with ``value,name`` columns.
"""

from __future__ import annotations

import csv
import glob
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import datasets

from medground_hf import storage
from medground_hf.errors import InputError
from medground_hf.source import SourceInfo
from medground_hf.volumes import Target

from .base import CustomSourceConfig, Item
from .volume_base import (
    CaseFiles,
    ChannelFile,
    VolumeBuilder,
    VolumeConfig,
    named_targets,
    nifti_stem,
)

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    """A NIfTI file by name; hidden files (macOS ``._case.nii.gz`` forks) are not."""
    return path.name.endswith(NIFTI_SUFFIXES) and not path.name.startswith(".")


def read_label_names(path: Path) -> dict[int, str]:
    """Label value -> name from a JSON or CSV file; problems name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read label names: {exc}") from exc
    try:
        if path.suffix.lower() == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
            key = next((k for k in ("value", "id", "label") if rows and k in rows[0]), None)
            if key is None or "name" not in rows[0]:
                raise InputError(path, "CSV needs a 'value' (or 'id') and a 'name' column")
            names = {int(row[key]): row["name"] for row in rows}
        else:
            data = json.loads(text)
            data = data.get("labels", data) if isinstance(data, dict) else data
            names = {int(k): str(v) for k, v in data.items()}
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise InputError(path, f"label names must map integer values to names: {exc}") from exc
    names.pop(0, None)
    if not names:
        raise InputError(path, "no foreground label name")
    return names


@dataclass
class NiftiLabelmapConfig(VolumeConfig, CustomSourceConfig):
    """Layout, label names and source metadata of one NIfTI label-map corpus."""

    images_subdir: str = "images"
    labels_subdir: str = "labels"
    image_pattern: str | None = None
    label_names: Mapping[int, str] = field(default_factory=dict)
    label_names_file: str | None = None
    modality: str = "MRI"
    source_name: str = "nifti_labelmap"
    source_title: str = "NIfTI label-map volumes"

    def validate(self) -> None:
        super().validate()
        if not self.label_names and not self.label_names_file:
            raise ValueError("give label names: label_names={value: name} or label_names_file")


class NiftiLabelmap(VolumeBuilder):
    """Any corpus of NIfTI volumes with integer label maps (one or several modalities)."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = NiftiLabelmapConfig
    BUILDER_CONFIGS = [NiftiLabelmapConfig(name="default", version=VERSION)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point --data-dir at a folder with images/ and labels/ holding <case>.nii.gz files (or "
        "images/<case>_<modality>.nii.gz with --set modalities='[...]'), and give label names "
        'with --set label_names=\'{"1": "liver"}\' or --set label_names_file=names.json|.csv.'
    )

    @cached_property
    def names(self) -> dict[int, str]:
        cfg = self.config
        if cfg.label_names_file:
            path = storage.path(cfg.label_names_file)
            if not storage.is_url(path) and not path.is_absolute() and cfg.data_dir:
                path = storage.path(cfg.data_dir) / cfg.label_names_file
            return read_label_names(path)
        return {int(k): str(v) for k, v in cfg.label_names.items() if int(k) != 0}

    @cached_property
    def source(self) -> SourceInfo:
        return self.config.source_info(
            tuple(t.spec for t in self.targets()), "volumes with label maps"
        )

    def targets(self) -> list[Target]:
        return named_targets(
            self.names,
            self.config,
            min_size=self.config.min_size,
            modalities=(self.config.modality,),
        )

    def list_items(self, data_dir: Path) -> list[Item]:
        cfg = self.config
        folders = (data_dir / cfg.images_subdir, data_dir / cfg.labels_subdir)
        for folder in folders:
            if not folder.is_dir():
                raise InputError(
                    folder, f"expected folder is missing.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
                )
        if not self.names:
            raise InputError(data_dir, "no foreground label name given (label 0 is background)")
        labels = sorted(p for p in folders[1].iterdir() if is_nifti(p))
        return [Item(nifti_stem(p), self.group_of(nifti_stem(p)), (str(p),)) for p in labels]

    def ct_preset(self, channel: ChannelFile) -> str | None:
        if self.config.modality.upper() != "CT":
            return None
        return self.config.ct_preset or "soft_tissue"

    def _image(self, case: str, modality: str | None) -> Path:
        cfg = self.config
        pattern = cfg.image_pattern or ("{case}_{modality}.nii*" if modality else "{case}.nii*")
        folder = storage.path(cfg.data_dir) / cfg.images_subdir
        wanted = pattern.format(case=glob.escape(case), modality=modality or "")
        hits = sorted(p for p in folder.glob(wanted) if is_nifti(p))
        if len(hits) != 1:
            found = [p.name for p in hits] or "none"
            raise InputError(folder / wanted, f"expected one image file, found {found}")
        return hits[0]

    def case_files(self, item: Item) -> CaseFiles:
        cfg = self.config
        if cfg.modalities:
            channels = [
                ChannelFile(m, f"{cfg.modality} {m}", self._image(item.key, m), None)
                for m in cfg.modalities
            ]
        else:
            channels = [ChannelFile("image", cfg.modality, self._image(item.key, None), None)]
        return CaseFiles(channels=channels, label=storage.path(item.files[0]))
