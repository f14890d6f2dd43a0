"""Licence rules for publishing: every Creative Commons variant as a source licence against every
variant as the card licence (the expected table is written out by hand from the licence terms),
``other``/``unknown``, lists checked element by element, and the real BraTS build (CC BY-NC-SA
3.0) through ``medground publish --dry-run``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from huggingface_hub import DatasetCard
from PIL import Image

from medground_hf.build import build
from medground_hf.cli import main
from medground_hf.hub import PublishError, plan
from medground_hf.licences import Source, parse, problems

CC = (
    "cc0-1.0",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc-by-nd-4.0",
    "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0",
    "cc-by-nc-nd-4.0",
    "cc-by-3.0",
    "cc-by-sa-3.0",
    "cc-by-nc-sa-3.0",
)
ATTRIBUTING = {c for c in CC if c != "cc0-1.0"}
NON_COMMERCIAL = {"cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-3.0"}
# source licence -> the card licences a derived dataset of it may carry
ALLOWED = {
    "cc0-1.0": set(CC),  # public domain: anything
    "cc-by-4.0": ATTRIBUTING,  # attribution kept; anything else is the adapter's choice
    "cc-by-3.0": ATTRIBUTING,
    "cc-by-sa-4.0": {"cc-by-sa-4.0"},  # same elements, same or later version
    "cc-by-sa-3.0": {"cc-by-sa-3.0", "cc-by-sa-4.0"},
    "cc-by-nc-4.0": NON_COMMERCIAL,  # NC stays NC
    "cc-by-nc-sa-4.0": {"cc-by-nc-sa-4.0"},
    "cc-by-nc-sa-3.0": {"cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0"},
    "cc-by-nd-4.0": set(),  # no adaptation may be shared
    "cc-by-nc-nd-4.0": set(),
}


def source(licence: str, commercial: bool | None = None) -> Source:
    if commercial is None:
        commercial = not parse(licence).non_commercial
    return Source("src", "Some Corpus", licence, commercial)


@pytest.mark.parametrize("card", CC)
@pytest.mark.parametrize("licence", CC)
def test_each_cc_source_licence_against_each_card_licence(licence, card):
    found = problems([source(licence)], [card], None)
    assert (not found) == (card in ALLOWED[licence]), found


def test_the_reasons_name_the_rule():
    def why(licence: str, card: str) -> str:
        return problems([source(licence)], [card], None)[0]

    assert "ShareAlike" in why("cc-by-nc-sa-3.0", "cc-by-nc-4.0")
    assert "ShareAlike" in why("cc-by-nc-sa-3.0", "cc-by-nc-nd-4.0")
    assert "must not be used commercially" in why("cc-by-nc-4.0", "cc-by-4.0")
    assert "NoDerivatives" in why("cc-by-nd-4.0", "cc-by-nd-4.0")
    assert "requires attribution" in why("cc-by-4.0", "cc0-1.0")


@pytest.mark.parametrize("card", ["other", "unknown"])
@pytest.mark.parametrize("licence", CC)
def test_other_and_unknown_need_the_per_source_list(licence, card):
    src = source(licence)
    assert problems([src], [card], None)  # no list: refused
    assert problems([src], [card], "Another Corpus: cc-by-4.0")  # the list misses this one
    with_list = problems([src], [card], f"Some Corpus: {licence}")
    assert (not with_list) == ("nd" not in parse(licence).elements)


def test_a_source_of_unknown_licence_is_never_published():
    src = source("unknown", commercial=False)
    for card in (*CC, "other", "unknown"):
        assert any(
            "licence is unknown" in p for p in problems([src], [card], "Some Corpus: unknown")
        )


def test_a_commercial_use_false_source_needs_a_non_commercial_card():
    src = source("cc-by-4.0", commercial=False)
    assert problems([src], ["cc-by-4.0"], None)
    assert not problems([src], ["cc-by-nc-4.0"], None)


def test_a_licence_list_is_checked_element_by_element():
    brats = Source("brats2013", "BraTS 2013", "cc-by-nc-sa-3.0", False)
    kvasir = Source("kvasir_seg", "Kvasir-SEG", "cc-by-4.0", True)
    found = problems([brats], ["cc-by-4.0", "cc-by-nc-sa-3.0"], None)
    assert found and all("'cc-by-4.0'" in p for p in found)  # the NC-SA element is fine
    assert not problems([brats], ["cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0"], None)
    assert problems([brats, kvasir], ["cc-by-4.0", "cc-by-nc-sa-3.0"], None)
    details = "Kvasir-SEG: cc-by-4.0; BraTS 2013: cc-by-nc-sa-3.0"
    assert not problems([brats, kvasir], ["other"], details)


def test_licences_this_module_does_not_know_are_checked_for_equality():
    src = source("apache-2.0")
    assert not problems([src], ["apache-2.0"], None)
    assert problems([src], ["cc-by-4.0"], None)
    assert problems([source("cc-by-4.0")], ["mit"], None)


def edit_card(folder, dst, **data):
    shutil.copytree(folder, dst)
    card = DatasetCard.load(dst / "README.md")
    for key, value in data.items():
        setattr(card.data, key, value)
    card.save(dst / "README.md")
    return dst


@pytest.mark.parametrize(
    "card",
    ["cc-by-nc-4.0", "cc-by-nc-nd-4.0", "cc-by-4.0", ["cc-by-4.0", "cc-by-nc-sa-3.0"], "other"],
)
def test_brats_keeps_share_alike_and_non_commercial(built_brats, tmp_path, capsys, card):
    """The issue's cases on the real BraTS build: ShareAlike dropped, NC hidden in a list,
    ``other`` without the list: each refused before any network access, naming the rule."""
    assert plan(built_brats, "org/brats", "v1.0.0").license == "cc-by-nc-sa-3.0"
    out = edit_card(built_brats, tmp_path / "brats", license=card)
    code = main(["publish", str(out), "--repo-id", "org/brats", "--version", "v1.0.0", "--dry-run"])
    assert code == 2
    err = capsys.readouterr().err
    named = "brats2013 (cc-by-nc-sa-3.0)", "BraTS 2013 brain tumour segmentation: cc-by-nc-sa-3.0"
    assert any(n in err for n in named) and "Traceback" not in err


def test_brats_under_a_later_version_of_its_licence_publishes(built_brats, tmp_path):
    out = edit_card(built_brats, tmp_path / "brats", license="cc-by-nc-sa-4.0")
    assert plan(out, "org/brats", "v1.0.0").license == "cc-by-nc-sa-4.0"


def test_a_custom_corpus_of_unknown_licence_is_refused(tmp_path):
    root = tmp_path / "corpus"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 20:40] = 255
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(mask).save(root / "masks" / "a.png")
    out = tmp_path / "out"
    build("image_mask_folder", root, out, generator="none")
    card = DatasetCard.load(out / "README.md").data
    assert card.license == "other" and "unknown" in card.license_details
    with pytest.raises(PublishError, match="licence is unknown; set it"):
        plan(out, "org/custom", "v1.0.0")
    build(
        "image_mask_folder",
        root,
        out,
        generator="none",
        options={"license": "cc-by-4.0", "commercial_use": True},
        overwrite=True,
    )
    assert plan(out, "org/custom", "v1.0.0").license == "cc-by-4.0"
