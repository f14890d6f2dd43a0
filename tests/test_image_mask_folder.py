"""The generic 2D folder builder: label-valued, colour-coded and binary masks, pairing, groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset
from PIL import Image

from medground_hf.build import BuildError, build
from medground_hf.cli import main
from medground_hf.errors import InputError
from medground_hf.folder import config_splits, read_manifest


# These tests pin the builder, so they build without a generator: the constructed images are
# flat grey, which the visual check would (rightly) reject.
def rows_of(out: Path) -> list[dict]:
    ds = load_dataset(str(out), "grounding")
    return sorted((r for s in ds for r in ds[s]), key=lambda r: r["id"])


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def grey(h=40, w=60):
    return np.full((h, w), 120, np.uint8)


def test_label_valued_masks_become_one_target_per_component(tmp_path):
    mask = np.zeros((40, 60), np.uint8)
    mask[5:15, 5:15] = 1  # liver
    mask[20:30, 40:55] = 2  # spleen
    mask[30:35, 5:10] = 1  # second liver component
    save(tmp_path / "images" / "s1.png", grey())
    save(tmp_path / "masks" / "s1_seg.png", mask)
    out = tmp_path / "out"
    build(
        "image_mask_folder",
        tmp_path,
        out,
        generator="none",
        options={
            "mask_mode": "labels",
            "label_map": {"1": "liver", "2": "spleen"},
            "mask_pattern": "{stem}_seg.png",
            "min_size": 4,
            "source_name": "organs",
        },
    )
    rows = rows_of(out)
    assert [r["id"] for r in rows] == [
        "organs/s1/liver/0",
        "organs/s1/liver/1",
        "organs/s1/spleen/0",
    ]
    assert [r["bbox_xyxy"] for r in rows] == [[5, 5, 15, 15], [5, 30, 10, 35], [40, 20, 55, 30]]
    assert [r["num_candidates"] for r in rows] == [2, 2, 1]
    assert [r["label_id"] for r in rows] == [1, 1, 2]
    assert all(r["num_targets_in_image"] == 3 for r in rows)
    assert rows[0]["relations"]["largest"] and rows[0]["relations"]["uppermost"]


def test_colour_coded_rgb_masks(tmp_path):
    mask = np.zeros((40, 60, 3), np.uint8)
    mask[2:12, 2:22] = (255, 0, 0)
    mask[20:38, 30:50] = (0, 255, 0)
    save(tmp_path / "images" / "c.png", grey())
    save(tmp_path / "masks" / "c.png", mask)
    out = tmp_path / "out"
    build(
        "image_mask_folder",
        tmp_path,
        out,
        generator="none",
        options={
            "mask_mode": "colours",
            "colour_map": {"255,0,0": "tumour", "0,255,0": "cyst"},
        },
    )
    boxes = {r["label"]: r["bbox_xyxy"] for r in rows_of(out)}
    assert boxes == {"tumour": [2, 2, 22, 12], "cyst": [30, 20, 50, 38]}


def test_unknown_colour_is_an_error_naming_the_pixel(tmp_path):
    mask = np.zeros((40, 60, 3), np.uint8)
    mask[2:12, 2:22] = (255, 0, 0)
    mask[30, 7] = (0, 0, 255)
    save(tmp_path / "images" / "c.png", grey())
    save(tmp_path / "masks" / "c.png", mask)
    with pytest.raises(InputError, match=r"\(0, 0, 255\) at \(x=7, y=30\)"):
        build(
            "image_mask_folder",
            tmp_path,
            tmp_path / "out",
            options={"mask_mode": "colours", "colour_map": {"255,0,0": "tumour"}},
        )


def test_group_pattern_keeps_a_patient_in_one_split(tmp_path):
    for patient in range(12):
        for view in range(3):
            save(tmp_path / "images" / f"p{patient:02d}_v{view}.png", grey())
            m = np.zeros((40, 60), np.uint8)
            m[10:20, 10 + view : 20 + view] = 255
            save(tmp_path / "masks" / f"p{patient:02d}_v{view}.png", m)
    out = tmp_path / "out"
    build(
        "image_mask_folder",
        tmp_path,
        out,
        generator="none",
        options={"group_pattern": r"^(p\d+)_"},
        split_ratios={"train": 0.5, "test": 0.5},
    )
    splits: dict[str, set] = {}
    for row in rows_of(out):
        splits.setdefault(row["group_id"], set()).add(row["split"])
    assert len(splits) == 12
    assert all(len(s) == 1 for s in splits.values())
    assert {s for v in splits.values() for s in v} == {"train", "test"}


def test_bad_builder_options_are_reported(tmp_path):
    save(tmp_path / "images" / "a.png", grey())
    with pytest.raises(BuildError, match="mask_mode"):
        build("image_mask_folder", tmp_path, tmp_path / "out", options={"mask_mode": "magic"})
    with pytest.raises(BuildError, match="no_such_option"):
        build("image_mask_folder", tmp_path, tmp_path / "o2", options={"no_such_option": 1})


def flat_corpus(root: Path) -> None:
    """Two flat grey images, each with one boxed target the eye cannot tell from its ring."""
    for stem in ("a", "b"):
        save(root / "images" / f"{stem}.png", grey())
        m = np.zeros((40, 60), np.uint8)
        m[10:20, 10:30] = 255
        save(root / "masks" / f"{stem}.png", m)


def test_a_build_whose_every_target_is_rejected_keeps_them_all(tmp_path):
    """Flat grey images: the visual check rejects every target; the build still completes and
    the rejected config holds every one of them with its reason."""
    flat_corpus(tmp_path)
    out = tmp_path / "out"
    manifest = build("image_mask_folder", tmp_path, out)
    v = manifest["verification"]
    assert v["targets_total"] == v["targets_rejected"] == 2 and v["targets_kept"] == 0
    assert not (out / "grounding").exists()
    ds = load_dataset(str(out), "rejected")
    rows = [r for split in ds for r in ds[split]]
    assert {r["rejected_stage"] for r in rows} == {"visual"}
    assert len({r["id"] for r in rows}) == 2


def test_generate_that_rejects_every_target_drops_the_stale_derived_configs(tmp_path):
    """A bare build of flat images has grounding rows and a coco config; generating then rejects
    every target: grounding and coco go, the rejected config holds them all."""
    flat_corpus(tmp_path)
    out = tmp_path / "out"
    build("image_mask_folder", tmp_path, out, generator="none")
    assert {"grounding", "coco"} <= set(config_splits(out))
    assert main(["generate", str(out)]) == 0
    assert set(config_splits(out)) == {"rejected"}
    manifest = read_manifest(out)
    assert "formats" not in manifest and manifest["verification"]["targets_rejected"] == 2
    assert "config_name: coco" not in (out / "README.md").read_text()


def test_label_map_from_the_command_line_is_ordered_by_value(tmp_path):
    """JSON gives label-map keys as strings; the builder's labels follow the numeric values
    ("10" after "2"), whatever order the options were written in."""
    mask = np.zeros((40, 60), np.uint8)
    mask[2:10, 2:10] = 1
    mask[12:20, 2:10] = 2
    mask[22:30, 2:10] = 10
    save(tmp_path / "images" / "s.png", grey())
    save(tmp_path / "masks" / "s.png", mask)
    out = tmp_path / "out"
    options = {"mask_mode": "labels", "label_map": {"10": "cyst", "1": "liver", "2": "spleen"}}
    manifest = build("image_mask_folder", tmp_path, out, generator="none", options=options)
    assert [lab["name"] for lab in manifest["sources"][0]["labels"]] == ["liver", "spleen", "cyst"]
    assert {r["label"]: r["label_id"] for r in rows_of(out)} == {"liver": 1, "spleen": 2, "cyst": 3}
