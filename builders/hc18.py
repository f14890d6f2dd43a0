"""HC18: fetal head ultrasound with head-circumference annotations (grand-challenge.org)."""

from __future__ import annotations

import csv
from functools import cached_property
from pathlib import Path

import datasets

from medground_hf import storage
from medground_hf.errors import InputError
from medground_hf.source import LabelSpec, SourceInfo

from .base import Item
from .image_mask_folder import ImageMaskFolder, ImageMaskFolderConfig

PIXEL_SIZE_CSV = "training_set_pixel_size_and_HC.csv"

FETAL_HEAD = LabelSpec(
    id=1,
    name="fetal_head",
    display="fetal head",
    synonyms=("fetal skull", "fetal cranium"),
    single_region=True,
    min_size=256,
    area_mm2_range=(100.0, 15000.0),
    modalities=("ultrasound",),
    description="Fetal skull outline (ellipse) in a standard trans-thalamic plane, filled.",
    # head size is biometry against a gestational-age norm: "a small fetal head" would read as
    # microcephaly, so queries carry no size word
    biometric=True,
)

SOURCE = SourceInfo(
    name="hc18",
    title="HC18 fetal head circumference",
    license="cc-by-4.0",
    license_url="https://creativecommons.org/licenses/by/4.0/",
    commercial_use=True,
    homepage="https://hc18.grand-challenge.org/",
    citation=(
        "@article{vandenheuvel2018hc18,\n"
        "  title={Automated measurement of fetal head circumference using 2D ultrasound images},\n"
        "  author={van den Heuvel, Thomas L. A. and de Bruijn, Dagmar and de Korte, Chris L. and "
        "van Ginneken, Bram},\n  journal={PLoS ONE},\n  volume={13},\n  number={8},\n"
        "  pages={e0200412},\n  year={2018}\n}"
    ),
    modality="ultrasound",
    body_part="fetal head",
    description="2D trans-thalamic ultrasound planes of the fetal head from Radboud UMC, with "
    "the skull ellipse drawn by a sonographer and the pixel size of every image.",
    labels=(FETAL_HEAD,),
)


class HC18(ImageMaskFolder):
    """Official layout: ``training_set/NNN[_k]HC.png`` + ``NNN[_k]HC_Annotation.png`` + CSV.

    Annotations are ellipse outlines in the official release (filled here); the same subject's
    repeat scans (``010_HC``, ``010_2HC``) share a group so they never cross splits.
    """

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIGS = [
        ImageMaskFolderConfig(
            name="default",
            version=VERSION,
            images_subdir="training_set",
            masks_subdir="training_set",
            mask_pattern="{stem}_Annotation.png",
            fill_holes=True,
            label="fetal_head",
            min_size=FETAL_HEAD.min_size,
            single_region_labels=("fetal_head",),
            group_pattern=r"^(\d+)_",
            source_name=SOURCE.name,
        )
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download training_set.zip and training_set_pixel_size_and_HC.csv from "
        "https://zenodo.org/records/1327317 (HC18 challenge); unzip so that --data-dir holds "
        "training_set/ and the CSV side by side."
    )
    SOURCE = SOURCE

    @property
    def source(self) -> SourceInfo:
        return SOURCE

    def is_image(self, path: Path) -> bool:
        return super().is_image(path) and not path.stem.endswith("_Annotation")

    @property
    def csv_path(self) -> Path:
        return storage.path(self.config.data_dir) / PIXEL_SIZE_CSV

    def list_items(self, data_dir: Path) -> list[Item]:
        if not self.csv_path.is_file():
            raise InputError(self.csv_path, "pixel-size CSV is missing (needed for mm spacing)")
        return super().list_items(data_dir)

    @cached_property
    def pixel_sizes(self) -> dict[str, float]:
        sizes: dict[str, float] = {}
        with self.csv_path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                try:
                    sizes[row["filename"]] = float(row["pixel size(mm)"])
                except (KeyError, ValueError) as exc:
                    raise InputError(self.csv_path, f"bad row {row}: {exc}") from exc
        return sizes

    def spacing_of(self, item: Item) -> tuple[float, float]:
        name = storage.path(item.files[0]).name
        if name not in self.pixel_sizes:
            raise InputError(self.csv_path, f"no pixel size for {name}")
        size = self.pixel_sizes[name]
        return (size, size)
