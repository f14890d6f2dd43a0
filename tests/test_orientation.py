"""Volumes whose header has no orientation (qform and sform codes 0): patient sides are null with a
warning naming the file, no patient-side claim is kept, and the ``orientation`` option states it
when the user knows it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from medground_hf.generation import pipeline
from medground_hf.generation.base import Generated, Generator, Target
from test_volume_builders import check_sides, phantom, records, save

from medground_hf.build import BuildError, build
from medground_hf.errors import InputError

NAMES = {"label_names": {"1": "edema", "2": "enhancing tumour"}}


def unoriented(path: Path) -> Path:
    """The same file with qform and sform codes 0: the header no longer says where sides are."""
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    bare = nib.Nifti1Image(data, None)
    bare.header.set_zooms(img.header.get_zooms())
    bare.set_qform(None, code=0)
    bare.set_sform(None, code=0)
    nib.save(bare, str(path))
    return path


@pytest.fixture
def corpus(tmp_path) -> Path:
    """One phantom case stored L,P,S (label 1 on the patient's left, 2 on the right), then
    stripped of its orientation."""
    root = tmp_path / "corpus"
    image, labels = phantom()
    unoriented(save(root / "images" / "c1.nii.gz", image))
    unoriented(save(root / "labels" / "c1.nii.gz", labels))
    return root


def test_no_orientation_means_no_patient_side(corpus, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    build("nifti_labelmap", corpus, tmp_path / "out", options=NAMES)
    rows = records(tmp_path / "out")
    assert rows and all(r["spatial"]["patient_side"] is None for r in rows)
    assert {r["spatial"]["display_convention"] for r in rows} == {"unoriented"}
    label_file = str(corpus / "labels" / "c1.nii.gz")
    assert f"{label_file}: the header has no orientation (qform and sform codes 0)" in caplog.text
    for r in rows:  # the template writes no patient side
        assert all("patient" not in q["text"] for q in r["queries"])


def test_the_orientation_option_restores_the_sides(corpus, tmp_path):
    options = {**NAMES, "orientation": "lps"}
    build("nifti_labelmap", corpus, tmp_path / "out", options=options)
    check_sides(records(tmp_path / "out"))


def test_a_stated_orientation_must_agree_with_the_header(tmp_path):
    root = tmp_path / "corpus"
    image, labels = phantom()
    save(root / "images" / "c1.nii.gz", image)
    save(root / "labels" / "c1.nii.gz", labels)  # stored L,P,S with its orientation
    build("nifti_labelmap", root, tmp_path / "ok", options={**NAMES, "orientation": "LPS"})
    with pytest.raises(InputError, match="header says the axes point LPS, the orientation"):
        build("nifti_labelmap", root, tmp_path / "no", options={**NAMES, "orientation": "RAS"})
    with pytest.raises(BuildError, match="one of each L/R, A/P, S/I"):
        build("nifti_labelmap", root, tmp_path / "bad", options={**NAMES, "orientation": "LLS"})


class SideClaims(Generator):
    """Writes what a careless VLM might: a patient side for every target."""

    name = "side-claims"
    prompt_version = "test"

    def generate(self, targets: Sequence[Target]) -> list[Generated]:
        return [
            Generated(
                [
                    {"text": f"the {t.spec.display} on the patient's right", "style": "location"},
                    {"text": f"the {t.spec.display} in the anterior part", "style": "location"},
                ]
            )
            for t in targets
        ]


def test_patient_side_claims_on_an_unoriented_volume_are_rejected(corpus, tmp_path):
    from datasets import load_dataset

    from medground_hf.folder import read_manifest

    out = tmp_path / "out"
    build("nifti_labelmap", corpus, out, options=NAMES, generator="none")
    splits = {
        split: load_dataset(str(out), "grounding", split=split)
        for split in read_manifest(out)["counts"]["splits"]
    }
    outcome = pipeline.run(splits, pipeline.labels_of(read_manifest(out)["sources"]), SideClaims())
    assert not any(len(ds) for ds in outcome.grounding.values())
    reasons = [r["rejected_reason"] for ds in outcome.rejected.values() for r in ds]
    queried = [r for r in reasons if "patient's right" in r or "anterior" in r]
    assert queried and all("header records no orientation" in r for r in queried)
