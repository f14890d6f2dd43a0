"""What a LabelSpec says about wording and seeing a label: display names humanised from source
label names and refused at build start when no English query can use them, no unset body part
in a query, visibility per rendering, and the offline visual check seeing structures by their
outline."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset
from medground_hf.builders.base import LabelOptions
from medground_hf.builders.volume_base import named_targets
from medground_hf.generation.verify import MIN_CONTRAST, visual_target_checks
from PIL import Image

from medground_hf.build import build
from medground_hf.errors import InputError
from medground_hf.sample import Sample, sample_to_records
from medground_hf.source import LabelSpec, SourceInfo, display_problem, humanise


@pytest.mark.parametrize(
    ("name", "display"),
    [
        ("right-cerebral-white-matter", "right cerebral white matter"),
        ("Left-Lateral-Ventricle", "left lateral ventricle"),
        ("Right_Kidney", "right kidney"),
        ("RightKidney", "right kidney"),
        ("non-enhancing-tumor", "non-enhancing tumor"),
        ("non-enhancing tumor", "non-enhancing tumor"),
        ("enhancing_tumour", "enhancing tumour"),
        ("fetal head", "fetal head"),
    ],
)
def test_label_names_are_humanised(name, display):
    assert humanise(name) == display
    assert display_problem(display) is None


@pytest.mark.parametrize(
    ("display", "why"),
    [
        ("et", "abbreviation (of 'enhancing tumour'"),
        ("NET", "abbreviation (of 'non-enhancing tumour'"),
        ("ncr", "abbreviation"),
        ("gtv", "abbreviation"),
        ("L1", "digits"),
        ("lesion 1", "digits"),
        ("label", "does not say what"),
        ("foreground", "does not say what"),
        ("x", "reads as an abbreviation"),
        ("tumeur maligne é", "not an English word"),
        ("", "empty"),
    ],
)
def test_unusable_display_names_are_named(display, why):
    assert why in display_problem(display)


def test_names_from_a_label_map_are_humanised_and_can_be_set():
    names = {0: "background", 1: "right-cerebral-white-matter", 2: "et", 3: "Left_Kidney"}
    options = LabelOptions(label_display={"et": "enhancing tumour"}, fragment_labels=("et",))
    specs = [t.spec for t in named_targets(names, options, min_size=8, modalities=("MRI",))]
    assert [(s.name, s.display) for s in specs] == [
        ("right_cerebral_white_matter", "right cerebral white matter"),
        ("et", "enhancing tumour"),
        ("left_kidney", "left kidney"),
    ]
    assert [s.fragments for s in specs] == [False, True, False]


def _spots(root: Path, *, stem: str = "s") -> None:
    """One image with a bright spot on speckled grey (visible, alone)."""
    yy, xx = np.mgrid[:128, :128]
    image = np.random.default_rng(1).normal(80, 5, (128, 128)).clip(0, 255).astype(np.uint8)
    spot = (yy - 40) ** 2 + (xx - 90) ** 2 <= 8**2
    image[spot] = 230
    for folder, array in (("images", image), ("masks", spot.astype(np.uint8) * 255)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(root / folder / f"{stem}.png")


def test_an_abbreviated_label_stops_the_build_at_its_start_naming_the_option(tmp_path):
    _spots(tmp_path)
    with pytest.raises(InputError) as caught:
        build("image_mask_folder", tmp_path, tmp_path / "out", options={"label": "et"})
    message = str(caught.value)
    assert "label 'et'" in message and "label_display" in message
    assert "enhancing tumour" in message  # what the abbreviation usually stands for
    assert not (tmp_path / "out" / "grounding").exists()
    options = {"label": "et", "label_display": {"et": "enhancing tumour"}}
    build("image_mask_folder", tmp_path, tmp_path / "named", options=options)
    ds = load_dataset(str(tmp_path / "named"), "grounding", download_mode="force_redownload")
    texts = [q["text"] for split in ds for r in ds[split] for q in r["queries"]]
    assert texts and all("enhancing tumour" in t for t in texts)


def test_an_unset_body_part_never_appears_in_a_query(tmp_path):
    """The generic builders' body part defaults to "unknown": a query never says "on this
    image of the unknown"."""
    for stem in ("a", "b", "c", "d", "e", "f"):
        _spots(tmp_path, stem=stem)
    manifest = build("image_mask_folder", tmp_path, tmp_path / "out", options={"label": "nodule"})
    assert manifest["sources"][0]["body_part"] == "unknown"
    ds = load_dataset(str(tmp_path / "out"), "grounding", download_mode="force_redownload")
    texts = [q["text"] for split in ds for r in ds[split] for q in r["queries"]]
    assert len(texts) == 18
    assert not any("unknown" in t for t in texts)
    assert any("seen on this image" in t or "visible on this image" in t for t in texts)


def _record(image: np.ndarray, mask: np.ndarray, spec: LabelSpec, modality: str) -> dict:
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    source = SourceInfo("s", "S", "cc-by-4.0", "", True, "", "", modality, "head", "", (spec,))
    sample = Sample(case_id="c", group_id="c", image=image, image_bytes=png.getvalue(),
                    masks=[(spec, mask)], source_files=[], modality=modality)  # fmt: skip
    (record,), _ = sample_to_records(sample, source, builder="t", builder_version="1",
                                     config_name="d")  # fmt: skip
    return record


def _skull(rim: int, brightness: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A speckled ultrasound-like frame with an ellipse whose inside is as grey as its outside
    and whose rim (``rim`` px) is bright: a fetal skull is seen by its outline."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:540, :800]
    head = ((xx - 400) / 250) ** 2 + ((yy - 270) / 180) ** 2 <= 1
    inner = ((xx - 400) / (250 - rim)) ** 2 + ((yy - 270) / (180 - rim)) ** 2 <= 1
    image = rng.gamma(2.0, 40, head.shape)
    image[head & ~inner] = rng.normal(brightness, 35, np.count_nonzero(head & ~inner))
    return image.clip(0, 255).astype(np.uint8), head


HEAD = LabelSpec(1, "fetal_head", "fetal head", single_region=True, biometric=True)


def test_a_structure_seen_by_its_outline_passes_the_visual_check():
    image, head = _skull(rim=5, brightness=180)
    record = _record(image, head, HEAD, "ultrasound")
    assert record["visual"]["contrast"] < MIN_CONTRAST  # the region alone: indistinguishable
    checks = {v.check: v for v in visual_target_checks(record, HEAD)}
    assert checks["distinct"].passed, checks["distinct"].reason
    assert "edge contrast" in checks["distinct"].reason
    flat, _ = _skull(rim=5, brightness=80)  # no rim: nothing to see
    record = _record(flat, head, HEAD, "ultrasound")
    checks = {v.check: v for v in visual_target_checks(record, HEAD)}
    assert not checks["distinct"].passed
    assert "edge contrast" in checks["distinct"].reason


def test_a_label_is_kept_only_on_a_rendering_that_shows_it():
    enhancing = LabelSpec(4, "enhancing_tumour", "enhancing tumour", visible_in=("MRI T1c",))
    image = np.full((64, 64), 60, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:30, 20:30] = True
    image[mask] = 220
    for modality, shown in (("MRI T1c", True), ("MRI FLAIR", False), ("MRI FLAIR | MRI T1c", True)):
        record = _record(image, mask, enhancing, modality)
        (check,) = [v for v in visual_target_checks(record, enhancing) if v.check == "rendering"]
        assert check.passed == shown, modality
        if not shown:
            assert check.reason == (
                "enhancing tumour cannot be seen on MRI FLAIR (seen on: MRI T1c)"
            )


def test_visual_check_false_rejections_on_the_samples(built_kvasir, built_hc18, built_brats):
    """The offline visual check on every sample target: every Kvasir-SEG polyp and HC18 head
    passes; on BraTS it rejects only specks a viewer cannot make out (under 50 px: scattered
    edema pixels, small non-enhancing pieces on T1c)."""
    from medground_hf.generation.pipeline import labels_of

    from medground_hf.folder import read_manifest

    for folder in (built_kvasir, built_hc18, built_brats):
        labels = labels_of(read_manifest(folder)["sources"])
        ds = load_dataset(str(folder), "grounding", download_mode="force_redownload")
        rows = [r for split in ds for r in ds[split].remove_columns("image")]
        failed = [
            r
            for r in rows
            if not all(v.passed for v in visual_target_checks(r, labels[r["source"]][r["label"]]))
        ]
        if folder is built_brats:
            assert len(failed) <= 5 and all(r["area_px"] < 50 for r in failed), [
                (r["id"], r["area_px"]) for r in failed
            ]
        else:
            assert failed == []


def test_spec_fields_survive_the_manifest(built_kvasir, built_hc18):
    """Size classes, biometry, visibility and fragments are read back from the manifest."""
    from medground_hf.generation.pipeline import labels_of

    for folder, label, field, value in (
        (built_hc18, "fetal_head", "biometric", True),
        (built_kvasir, "polyp", "size_classes", None),
    ):
        manifest = json.loads((folder / "medground.json").read_text())
        spec = labels_of(manifest["sources"])[manifest["sources"][0]["name"]][label]
        if field == "size_classes":
            assert [c.word for c in spec.size_classes] == ["diminutive", "small", "large"]
            assert spec.size_words(5.0) == ("diminutive", "small")
            assert spec.size_words(9.9) == ("small",) and spec.size_words(10.0) == ("large",)
        else:
            assert getattr(spec, field) == value


@pytest.mark.parametrize(
    ("channels", "seen_on"),
    [({"0": "FLAIR", "1": "t1gd"}, ("MRI t1gd",)), ({"0": "FLAIR", "1": "T1w"}, None)],
)
def test_decathlon_enhancement_is_seen_only_on_its_post_contrast_channel(
    tmp_path, channels, seen_on
):
    """MSD BrainTumour's (non-)enhancing labels are seen on the post-contrast channel and are
    pieces of one tumour; a task without such a channel shows them nowhere (rejected, named)."""
    from medground_hf.builders.msd import MedicalSegmentationDecathlon

    meta = {"name": "BrainTumour", "modality": channels, "training": [],
            "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor",
                       "3": "enhancing tumour"}}  # fmt: skip
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    builder = MedicalSegmentationDecathlon(data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
    specs = {t.spec.name: t.spec for t in builder.targets()}
    assert specs["edema"].visible_in == () and not specs["edema"].fragments
    for name in ("non_enhancing_tumor", "enhancing_tumour"):
        assert specs[name].fragments
        panels = " | ".join(f"MRI {c}" for c in channels.values())
        assert specs[name].visible_on(panels) == (seen_on is not None)
        if seen_on:
            assert specs[name].visible_in == seen_on
            assert not specs[name].visible_on("MRI FLAIR")
