"""Image and mask files as real corpora ship them: 0/1 and 16-bit masks, palette label masks,
alpha channels, 16-bit images, odd file names, nested folders, EXIF rotation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset
from PIL import Image

from medground_hf.build import build
from medground_hf.errors import InputError

BOX = (10, 5, 30, 25)  # x0, y0, x1, y1 of the constructed target


def rows_of(out: Path) -> list[dict]:
    ds = load_dataset(str(out), "grounding")
    return sorted((r for s in ds for r in ds[s]), key=lambda r: r["id"])


def save(path: Path, image: np.ndarray | Image.Image, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path, **kwargs)


def target(value=255, dtype=np.uint8, shape=(40, 60)) -> np.ndarray:
    mask = np.zeros(shape, dtype)
    x0, y0, x1, y1 = BOX
    mask[y0:y1, x0:x1] = value
    return mask


def grey(shape=(40, 60)) -> np.ndarray:
    return np.full(shape, 120, np.uint8)


def build_rows(root: Path, **options) -> list[dict]:
    out = root / "out"
    build("image_mask_folder", root, out, generator="none", options=options)
    return rows_of(out)


@pytest.mark.parametrize(
    "mask",
    [
        Image.fromarray(target(1)),  # 0/1 in 8 bits
        Image.fromarray(target(1, np.uint16)),  # 0/1 in 16 bits
        Image.fromarray(target(65535, np.uint16)),  # 0/65535
        Image.fromarray(np.where(target(1) > 0, 1.0, 0.2).astype(np.float32)),  # float in [0, 1]
        Image.fromarray(target(255)).convert("1"),  # 1-bit
        Image.fromarray(np.dstack([target(255), grey() + 135]), "LA"),  # opaque alpha
    ],
    ids=["u8-0-1", "u16-0-1", "u16-0-65535", "float", "1bit", "LA"],
)
def test_binary_masks_in_any_encoding_give_the_same_box(tmp_path, mask):
    save(tmp_path / "images" / "a.png", grey())
    save(tmp_path / "masks" / ("a.tif" if mask.mode == "F" else "a.png"), mask)
    (row,) = build_rows(tmp_path)
    assert row["bbox_xyxy"] == list(BOX)
    assert row["area_px"] == 400


def test_label_valued_mask_in_binary_mode_is_an_error_not_an_empty_target(tmp_path):
    save(tmp_path / "images" / "a.png", grey())
    save(tmp_path / "masks" / "a.png", target(2))
    with pytest.raises(InputError, match="below the binary threshold 128 .largest 2.") as info:
        build_rows(tmp_path)
    assert info.value.path == str(tmp_path / "masks" / "a.png")


def test_palette_label_mask_is_read_by_index(tmp_path):
    """VOC-style masks: pixel values are palette indices, shown as colours."""
    values = target(1)
    values[30:38, 40:55] = 2
    mask = Image.fromarray(values, "P")
    mask.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
    save(tmp_path / "images" / "a.png", grey())
    save(tmp_path / "masks" / "a.png", mask)
    rows = build_rows(
        tmp_path, mask_mode="labels", label_map={"1": "liver", "2": "spleen"}, min_size=4
    )
    assert {r["label"]: r["bbox_xyxy"] for r in rows} == {
        "liver": list(BOX),
        "spleen": [40, 30, 55, 38],
    }


def test_rgba_image_and_16_bit_image(tmp_path):
    rgba = np.dstack([np.full((40, 60, 3), 90, np.uint8), np.full((40, 60), 255, np.uint8)])
    rgba[5:25, 10:30, :3] = 200
    save(tmp_path / "images" / "rgba.png", rgba)
    wide = np.linspace(1000, 40000, 40 * 60).reshape(40, 60).astype(np.uint16)
    save(tmp_path / "images" / "xray.png", wide)
    for stem in ("rgba", "xray"):
        save(tmp_path / "masks" / f"{stem}.png", target())
    rows = {r["case_id"]: r for r in build_rows(tmp_path)}
    assert rows["rgba"]["visual"]["region_mean"] == pytest.approx(200, abs=1)
    xray = rows["xray"]
    assert xray["bbox_xyxy"] == list(BOX)
    # embedded as an 8-bit PNG windowed over the image's range, not the clipped 16-bit original
    embedded = np.asarray(xray["image"])
    assert xray["image"].mode == "L" and embedded.min() == 0 and embedded.max() == 255
    assert np.all(np.diff(embedded.astype(int).ravel()) >= 0)  # the ramp keeps its order


def test_mask_pairing_with_awkward_names(tmp_path):
    for stem in ("a[1]", "b", "b.v2", "c"):
        save(tmp_path / "images" / f"{stem}.png", grey())
    save(tmp_path / "masks" / "a[1].png", target())
    save(tmp_path / "masks" / "b.png", target())
    save(tmp_path / "masks" / "b.v2.png", target())  # "b.*" matches it too: exact stem wins
    save(tmp_path / "masks" / "c.PNG", target())  # extension case differs from the pattern
    (tmp_path / "masks" / "b.json").write_text("{}")  # sidecar files are not masks
    (tmp_path / "masks" / "._b.png").write_bytes(b"\0\5\26\7")  # macOS resource fork
    (tmp_path / "images" / "._c.png").write_bytes(b"\0\5\26\7")
    out = tmp_path / "out"
    manifest = build("image_mask_folder", tmp_path, out, generator="none")
    assert manifest["counts"]["items_read"] == manifest["counts"]["items_built"] == 4
    rows = rows_of(out)
    assert sorted(r["case_id"] for r in rows) == ["a[1]", "b", "b.v2", "c"]
    assert {r["provenance"]["source_files"][1] for r in rows} == {
        "a[1].png",
        "b.png",
        "b.v2.png",
        "c.PNG",
    }
    out2 = tmp_path / "out2"
    build(
        "image_mask_folder",
        tmp_path,
        out2,
        generator="none",
        options={"mask_pattern": "{stem}.png"},
    )
    assert len(rows_of(out2)) == 4


def test_ambiguous_mask_is_a_skippable_item_error(tmp_path):
    for stem in ("a", "b"):
        save(tmp_path / "images" / f"{stem}.png", grey())
        save(tmp_path / "masks" / f"{stem}.png", target())
    save(tmp_path / "masks" / "b.jpg", target())
    with pytest.raises(InputError, match="several masks match"):
        build("image_mask_folder", tmp_path, tmp_path / "o1", generator="none")
    manifest = build(
        "image_mask_folder", tmp_path, tmp_path / "o2", generator="none", on_error="skip"
    )
    counts = manifest["counts"]
    assert (counts["items_read"], counts["items_built"], counts["items_skipped"]) == (2, 1, 1)
    assert manifest["skipped"][0]["item"] == "b"


def test_nested_folders_keep_their_path_in_the_key(tmp_path):
    for patient in ("p1", "p2"):
        for view in ("x", "y"):
            save(tmp_path / "images" / patient / f"{view}.png", grey())
            save(tmp_path / "masks" / patient / f"{view}.png", target())
    rows = build_rows(tmp_path, group_pattern=r"^([^/]+)/", source_name="nest")
    assert [r["id"] for r in rows] == [
        "nest/p1/x/lesion/0",
        "nest/p1/y/lesion/0",
        "nest/p2/x/lesion/0",
        "nest/p2/y/lesion/0",
    ]
    assert [r["group_id"] for r in rows] == ["p1", "p1", "p2", "p2"]


def test_images_and_masks_in_one_folder(tmp_path):
    save(tmp_path / "all" / "a.png", grey())
    save(tmp_path / "all" / "a_mask.png", target())
    options = {"images_subdir": "all", "masks_subdir": "all", "mask_pattern": "{stem}_mask.png"}
    manifest = build(
        "image_mask_folder", tmp_path, tmp_path / "out", generator="none", options=options
    )
    assert manifest["counts"]["items_read"] == manifest["counts"]["items_built"] == 1


def test_exif_rotated_jpeg_is_refused_naming_the_file(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buffer = io.BytesIO()
    Image.fromarray(np.stack([grey()] * 3, axis=-1)).save(buffer, "JPEG", exif=exif)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(buffer.getvalue())
    save(tmp_path / "masks" / "a.png", target())
    with pytest.raises(InputError, match="EXIF orientation") as info:
        build_rows(tmp_path)
    assert info.value.path == str(tmp_path / "images" / "a.jpg")


def test_decompression_bomb_is_an_input_error(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 40x60 = 2400 > 2 * 100
    save(tmp_path / "images" / "a.png", grey())
    save(tmp_path / "masks" / "a.png", target())
    with pytest.raises(InputError, match="too large to decode safely"):
        build_rows(tmp_path)


def test_few_groups_warn_about_empty_splits_and_stay_put(tmp_path, caplog):
    """Three groups with 80/10/10 ratios: hashing leaves a split empty; the build says so, and a
    re-run (or more groups) never moves the three."""
    for stem in ("a", "b", "c"):
        save(tmp_path / "images" / f"{stem}.png", grey())
        save(tmp_path / "masks" / f"{stem}.png", target())
    with caplog.at_level("WARNING", logger="medground_hf"):
        first = {r["case_id"]: r["split"] for r in build_rows(tmp_path)}
    assert len(set(first.values())) < 3
    assert "received none" in caplog.text and "3 group(s)" in caplog.text
    for stem in ("d", "e", "f", "g"):
        save(tmp_path / "images" / f"{stem}.png", grey())
        save(tmp_path / "masks" / f"{stem}.png", target())
    out = tmp_path / "again"
    build("image_mask_folder", tmp_path, out, generator="none")
    again = {r["case_id"]: r["split"] for r in rows_of(out)}
    assert {k: again[k] for k in first} == first


def test_label_map_with_shared_names_and_void_border(tmp_path):
    """VOC-style: 255 marks a void border (ignored when asked), two values may be one organ."""
    values = target(1)
    values[30:38, 40:55] = 2
    values[4, 9:31] = 255  # void border above the first region
    save(tmp_path / "images" / "a.png", grey())
    save(tmp_path / "masks" / "a.png", values)
    options = {"mask_mode": "labels", "label_map": {"1": "organ", "2": "organ"}, "min_size": 4}
    with pytest.raises(InputError, match=r"mask values \[255\] are not in the label map"):
        build_rows(tmp_path, **options)
    rows = build_rows(tmp_path, ignore_values=[255], **options)
    assert [(r["label"], r["label_id"], r["bbox_xyxy"]) for r in rows] == [
        ("organ", 1, list(BOX)),
        ("organ", 1, [40, 30, 55, 38]),
    ]
    assert all(r["num_candidates"] == 2 for r in rows)
