"""Inputs that used to slip through or give poor errors: two files with one stem, CMYK and other
colour modes, messages showing Python object reprs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from datasets import load_dataset
from PIL import Image
from test_bad_input import write_pair

from medground_hf.build import build
from medground_hf.cli import main
from medground_hf.errors import InputError
from medground_hf.folder import read_manifest


def test_two_files_with_one_stem_name_both_and_can_be_skipped(tmp_path, capsys):
    root = tmp_path / "corpus"
    write_pair(root, "ok")
    write_pair(root, "a")
    Image.open(root / "images" / "a.png").save(root / "images" / "a.jpg")
    with pytest.raises(InputError) as error:
        build("image_mask_folder", root, tmp_path / "out")
    message = str(error.value)
    assert str(root / "images" / "a.jpg") in message and str(root / "images" / "a.png") in message
    assert "same item key 'a'" in message and "--on-error skip" in message
    args = ["build", "image_mask_folder", "--data-dir", str(root), "--out", str(tmp_path / "o")]
    assert main([*args, "--generator", "none", "--on-error", "skip"]) == 0
    printed = capsys.readouterr().out
    assert "items read 3 = built 1 + skipped 2" in printed
    skipped = read_manifest(tmp_path / "o")["skipped"]
    assert {(s["item"], s["path"]) for s in skipped} == {
        ("a", str(root / "images" / "a.jpg")),
        ("a", str(root / "images" / "a.png")),
    }
    assert all("same item key 'a'" in s["reason"] for s in skipped)


@pytest.mark.parametrize(
    ("mode", "fmt", "converted"),
    [
        ("CMYK", "JPEG", "CMYK -> RGB, PNG"),
        ("P", "PNG", "P -> RGB, PNG"),
        ("RGBA", "PNG", "RGBA -> RGB, PNG"),
        ("LA", "PNG", "LA -> L, PNG"),
        ("RGB", "JPEG", None),
        ("L", "PNG", None),
    ],
)
def test_colour_modes_are_embedded_as_rgb_or_grey_and_recorded(mode, fmt, converted, tmp_path):
    root = tmp_path / "corpus"
    write_pair(root, "x")
    source = root / "images" / f"x.{fmt.lower()}"
    rgb = Image.open(root / "images" / "x.png").convert("RGB")
    (root / "images" / "x.png").unlink()
    image = rgb.convert("L").convert(mode) if mode in ("LA", "L") else rgb.convert(mode)
    image.save(source, format=fmt)
    build("image_mask_folder", root, tmp_path / "out", generator="none")
    (row,) = load_dataset(str(tmp_path / "out"), "grounding", split="train")
    assert row["provenance"]["image_converted"] == converted
    assert row["image"].mode == ("L" if mode in ("LA", "L") else "RGB")
    if converted is None:
        assert row["image"].format == fmt  # the file's own bytes, not re-encoded
    else:
        assert row["image"].format == "PNG"
        measured = np.asarray(Image.open(source).convert(row["image"].mode))
        assert np.array_equal(np.asarray(row["image"]), measured)
    to = tmp_path / "export"
    main(["export", str(tmp_path / "out"), "--format", "coco", "--to", str(to)])
    (exported,) = (to / "images").rglob("*.*")
    assert Image.open(exported).mode in ("RGB", "L")


def test_error_messages_name_files_not_object_reprs(tmp_path, capsys):
    root = tmp_path / "corpus"
    write_pair(root, "bad")
    (root / "images" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    args = ["build", "image_mask_folder", "--data-dir", str(root), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(root / "images" / "bad.png") in err and "object at 0x" not in err
    from medground_hf.imageio import open_bytes

    with pytest.raises(InputError) as error:
        open_bytes(io.BytesIO(b"junk").getvalue(), "kvasir_seg/cju0qkwl35piu0993l0dewei2")
    assert str(error.value).startswith("kvasir_seg/cju0qkwl35piu0993l0dewei2: not a readable")
    assert "object at 0x" not in str(error.value)
