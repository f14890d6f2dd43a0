"""What the DICOM builders share: studies found under the data dir, one case per study and
referenced series, structures (segments or ROIs) renamed or merged by ``label_map``, some kept as
context, and the case handed to the volume pipeline in canonical RAS like a NIfTI case.

A subclass names the object it reads (``OBJECT_MODALITY``), the structures an object holds
(``structure_names``), the series and frames of reference it names (``references``) and paints
its structures on the series' grid (``paint``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from medground_hf import dicom
from medground_hf.errors import InputError, SkipReport
from medground_hf.overlaps import OverlapLabels
from medground_hf.source import LabelSpec, SourceInfo
from medground_hf.volumes import Target, VolumeCase, canonical_transform, reorient

from .base import CustomSourceConfig, Item
from .label_map import mapped, normalise
from .volume_base import CaseChannel, VolumeBuilder, VolumeConfig, slug

logger = logging.getLogger("medground_hf")

# DICOM Modality -> record modality (the names the other sources use)
MODALITY_NAMES = {"CT": "CT", "MR": "MRI", "PT": "PET"}

Refs = tuple[tuple[str, str], ...]


def record_modality(modality: str) -> str:
    return MODALITY_NAMES.get(modality, modality or "unknown")


@dataclass
class DicomConfig(VolumeConfig, CustomSourceConfig):
    """Options of the DICOM sources, on top of every volume option (axis, slice policy, windows).

    ``label_map`` renames structures (``{"GTV_1": "tumour"}``), merges them (several names to
    one) or leaves them out (``null``); keys match a structure's name as written or as an id
    (``"gtv 1"`` matches ``GTV_1``). ``context_labels`` are structures (after renaming) kept as
    context instead of targets: the first one present is the left/right midline reference and the
    MR window's foreground (e.g. ``brain``, or the ``External`` body contour of RT).
    ``modality`` overrides the one the series says (CT, MR -> MRI, PT -> PET).
    """

    label_map: Mapping[str, str | None] = field(default_factory=dict)
    single_region_labels: tuple[str, ...] = ()
    context_labels: tuple[str, ...] = ()
    modality: str = ""

    def validate(self) -> None:
        super().validate()
        if self.modalities:
            raise ValueError(
                "modalities is not an option of the DICOM sources: the image is the series the "
                "segmentation references"
            )
        if self.orientation:
            raise ValueError(
                "orientation is not an option of the DICOM sources: every slice states its own "
                "(ImageOrientationPatient)"
            )
        self.label_map = normalise(self.label_map)
        self.single_region_labels = tuple(slug(n) for n in self.single_region_labels)
        self.context_labels = tuple(slug(n) for n in self.context_labels)


@dataclass
class DicomCase:
    """One case: a study's objects that reference one image series (None: unresolved)."""

    study: dicom.Study
    series_uid: str | None
    objects: list[dicom.DicomFile]
    problem: str | None = None


class DicomBuilder(VolumeBuilder):
    """Studies of DICOM image series with segmentation objects of one kind (SEG or RTSTRUCT)."""

    BUILDER_CONFIG_CLASS = DicomConfig
    OBJECT_MODALITY = ""
    root: Path
    cases: dict[str, DicomCase]
    names: dict[str, str]  # label name (id form) -> display name, in order of first appearance
    modalities: tuple[str, ...] = ()
    URL_REFUSAL = (
        "the DICOM scan reads only the header of every file in place and groups series by "
        "their folders on disk; mount the bucket (s3fs, gcsfuse, mountpoint-s3) or copy the "
        "corpus to a local folder"
    )

    def _info(self):
        dicom.pydicom_module(self.name)  # a missing extra is one clear line, before any work
        return super()._info()

    # ---- what a subclass provides -------------------------------------------------------------
    def structure_names(self, obj: dicom.DicomFile) -> list[str]:
        raise NotImplementedError

    def references(self, obj: dicom.DicomFile) -> tuple[set[str], set[str]]:
        """The series UIDs and frame-of-reference UIDs an object names."""
        raise NotImplementedError

    def paint(
        self, obj: dicom.DicomFile, series: dicom.Series, labels: OverlapLabels
    ) -> dict[str, Refs]:
        """Paint the object's structures (by label name) slice by slice, ``labels.paint(label,
        (k,), mask)`` with a (rows, columns) mask; returns each label's source refs."""
        raise NotImplementedError

    def referenced_series(self, obj: dicom.DicomFile, study: dicom.Study) -> tuple[str | None, str]:
        """The image series an object is drawn on, or None and why it cannot be told.

        By the series UID it names; without one, the study's one image series in its frame of
        reference. Several candidates are refused rather than guessed.
        """
        uids, frames = self.references(obj)
        if len(uids) == 1:
            return uids.pop(), ""
        if uids:
            return None, f"references {len(uids)} series; one image series per object is read"
        series = study.image_series()
        candidates = [
            uid
            for uid, files in series.items()
            if not frames or files[0].frame_of_reference in frames
        ]
        if len(candidates) == 1:
            return candidates[0], ""
        if not candidates:
            return None, "names no image series, and no image series shares its frame of reference"
        folders = sorted({str(series[uid][0].path.parent) for uid in candidates})
        return None, (
            f"mixed series: names no series, and {len(candidates)} image series share its frame "
            f"of reference (in {', '.join(folders)}); keep one image series per study or export "
            "the object with its series reference"
        )

    # ---- names ----------------------------------------------------------------------------
    def label_name(self, name: str) -> str | None:
        """A structure's label (id form) after ``label_map``; None when left out."""
        hit = mapped(name, self.config.label_map)
        return hit[0] if hit else None

    @property
    def source(self) -> SourceInfo:
        """The options' metadata, with the labels and modalities the scan (``list_items``) found."""
        cfg = self.config
        labels = tuple(self.spec(name) for name in self.__dict__.get("names", {}))
        info = cfg.source_info(labels, f"DICOM series with {self.OBJECT_MODALITY} objects")
        return replace(info, modality=cfg.modality or "/".join(self.modalities) or "unknown")

    def spec(self, name: str) -> LabelSpec:
        return self.config.label_spec(
            list(self.names).index(name) + 1,
            name,
            self.names[name],
            min_size=int(self.config.min_size),
            modalities=(self.config.modality,) if self.config.modality else self.modalities,
        )

    # ---- items --------------------------------------------------------------------------------
    def list_items(self, data_dir: Path) -> list[Item]:
        self.root = data_dir
        self.cases = {}
        names: dict[str, str] = {}
        modalities: dict[str, None] = {}
        without = []
        report = SkipReport(self.config.report_dir)

        def unreadable(error: InputError) -> None:  # reported, not an item: counts stay exact
            report.add(error.path or "", error.path, "scan", error.problem)

        skip = self.config.on_error == "skip"
        found = dicom.studies(dicom.scan(data_dir, unreadable if skip else None))
        study_keys = self._study_keys(found, data_dir)
        items = []
        for study in found:
            objects = study.objects(self.OBJECT_MODALITY)
            if not objects:
                without.append(study_keys[study.uid])
                continue
            by_series: dict[str | None, DicomCase] = {}
            for obj in objects:
                uid, problem = self.referenced_series(obj, study)
                case = by_series.setdefault(uid, DicomCase(study, uid, [], problem))
                case.objects.append(obj)
                for name in self.structure_names(obj):
                    hit = mapped(name, self.config.label_map)
                    if hit and hit[0] not in self.config.context_labels:
                        names.setdefault(*hit)
                images = study.series(uid) if uid else []
                if images:
                    modalities.setdefault(record_modality(images[0].modality))
            for uid, case in by_series.items():
                key = study_keys[study.uid]
                if len(by_series) > 1:
                    key = f"{key}/{self._series_tag(study, uid)}"
                series = study.series(uid) if uid else []
                files = [*(f.path for f in series), *(o.path for o in case.objects)]
                # a patient's studies share a split, unless a group pattern says otherwise
                pattern = self.config.group_pattern
                group = self.group_of(key) if pattern else study.patient_id or key
                self.cases[key] = case
                items.append(Item(key, group, tuple(map(str, files))))
        if without:
            logger.warning(
                "%d stud(y/ies) under %s hold no %s object and are not cases: %s",
                len(without),
                data_dir,
                self.OBJECT_MODALITY,
                ", ".join(without[:10]) + (" ..." if len(without) > 10 else ""),
            )
        self.names = names
        self.modalities = tuple(modalities)
        return items

    @staticmethod
    def _study_keys(found: list[dicom.Study], data_dir: Path) -> dict[str, str]:
        """The study's folder relative to the data dir; studies sharing a folder add their
        UID's tail so keys stay unique and stable."""
        keys = {}
        for study in found:
            rel = os.path.relpath(study.folder, data_dir)
            keys[study.uid] = data_dir.name if rel == "." else Path(rel).as_posix()
        counts: dict[str, int] = {}
        for key in keys.values():
            counts[key] = counts.get(key, 0) + 1
        return {uid: f"{k}/{uid[-12:]}" if counts[k] > 1 else k for uid, k in keys.items()}

    @staticmethod
    def _series_tag(study: dicom.Study, uid: str | None) -> str:
        """A study holding cases on several series: the series' own folder, else its UID tail."""
        files = study.series(uid) if uid else []
        if files:
            folder = Path(os.path.commonpath([str(f.path.parent) for f in files]))
            if folder != study.folder:
                return Path(os.path.relpath(folder, study.folder)).as_posix()
        return (uid or "unresolved")[-12:]

    # ---- a case -------------------------------------------------------------------------------
    def load_case(self, item: Item) -> VolumeCase:
        case = self.cases[item.key]
        first = case.objects[0].path
        if case.series_uid is None:
            raise InputError(first, case.problem or "references no image series")
        paths = [f.path for f in case.study.series(case.series_uid)]
        if not paths:
            raise InputError(
                first,
                f"references series {case.series_uid}, which is not among the study's files "
                f"under {case.study.folder}",
            )
        series = dicom.read_series(case.series_uid, paths)
        # painted slice by slice as frames are stored, (slice, row, column); its transpose is
        # the [column, row, slice] grid of the series volume
        geometry = series.geometry
        painted = OverlapLabels((geometry.count, geometry.rows, geometry.columns))
        refs: dict[str, list[tuple[str, str]]] = {}
        for obj in case.objects:
            for label, pairs in self.paint(obj, series, painted).items():
                refs.setdefault(label, []).extend(pairs)
        affine_ras = series.geometry.ras_affine
        transform = canonical_transform(affine_ras)
        labels, affine = reorient(painted.labels.transpose(2, 1, 0), affine_ras, transform)
        volume = reorient(series.volume, affine_ras, transform)[0]
        present = painted.names()
        context = {
            name: np.isin(labels, painted.values([name]))
            for name in self.config.context_labels
            if name in present
        }
        targets = [
            Target(self.spec(name), painted.values([name]), tuple(refs.get(name, ())))
            for name in self.names
            if name in present
        ]
        if not targets:
            raise InputError(first, "no target structure has a voxel on the series")
        modality = self.config.modality or record_modality(series.modality)
        ct_preset = (self.config.ct_preset or "soft_tissue") if series.modality == "CT" else None
        channel = CaseChannel(series.modality.lower() or "image", modality, volume, ct_preset)
        folder = Path(os.path.commonpath([str(p.parent) for p in paths]))
        source_files = [
            f"{os.path.relpath(folder, self.root)}/ ({len(paths)} slices)",
            *(os.path.relpath(o.path, self.root) for o in case.objects),
        ]
        study_refs = (
            ("study_instance_uid", case.study.uid),
            ("series_instance_uid", series.uid),
        )
        return self.assemble_case(
            item, [channel], labels, affine, targets, context, source_files, study_refs
        )
