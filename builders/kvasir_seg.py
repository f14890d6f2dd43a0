"""Kvasir-SEG: colonoscopy images with expert polyp masks (Simula / HyperKvasir)."""

from __future__ import annotations

import datasets

from medground_hf.source import LabelSpec, SourceInfo

from .image_mask_folder import ImageMaskFolder, ImageMaskFolderConfig

POLYP = LabelSpec(
    id=1,
    name="polyp",
    display="polyp",
    synonyms=("colorectal polyp", "polypoid lesion"),
    min_size=32,
    modalities=("endoscopy",),
    description="Colorectal polyp outlined by endoscopists.",
)

SOURCE = SourceInfo(
    name="kvasir_seg",
    title="Kvasir-SEG",
    license="cc-by-4.0",
    license_url="https://creativecommons.org/licenses/by/4.0/",
    commercial_use=True,
    homepage="https://datasets.simula.no/kvasir-seg/",
    citation=(
        "@inproceedings{jha2020kvasir,\n"
        "  title={Kvasir-SEG: A Segmented Polyp Dataset},\n"
        "  author={Jha, Debesh and Smedsrud, Pia H. and Riegler, Michael A. and Halvorsen, P{\\aa}l"
        " and de Lange, Thomas and Johansen, Dag and Johansen, H{\\aa}vard D.},\n"
        "  booktitle={MultiMedia Modeling (MMM 2020)},\n  pages={451--462},\n  year={2020}\n}"
    ),
    modality="endoscopy",
    body_part="colon",
    description="Colonoscopy frames from Vestre Viken (Norway) with polyp masks verified by "
    "gastroenterologists; 1,000 images in the full release.",
    labels=(POLYP,),
)


class KvasirSeg(ImageMaskFolder):
    """Official layout: ``images/<id>.jpg`` and ``masks/<id>.jpg`` (JPEG masks, thresholded)."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIGS = [
        ImageMaskFolderConfig(
            name="default",
            version=VERSION,
            mask_pattern="{stem}.jpg",
            threshold=128,
            label="polyp",
            min_size=POLYP.min_size,
            source_name=SOURCE.name,
        )
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download kvasir-seg.zip from https://datasets.simula.no/kvasir-seg/ and unzip it; "
        "pass the folder holding images/ and masks/ (and kavsir_bboxes.json) as --data-dir."
    )
    SOURCE = SOURCE

    @property
    def source(self) -> SourceInfo:
        return SOURCE
