"""Every kind of bad input: a clear error naming the file, or a reported skip that adds up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset
from PIL import Image

from medground_hf.build import build
from medground_hf.cli import main
from medground_hf.errors import InputError
from medground_hf.folder import read_manifest


def write_pair(root: Path, stem: str, size=(48, 40), box=(5, 6, 20, 30), value=255):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    w, h = size
    x0, y0, x1, y1 = box
    rng = np.random.default_rng(abs(hash(stem)) % 2**32)
    pixels = rng.integers(20, 100, (h, w, 3), dtype=np.uint8)
    pixels[y0:y1, x0:x1] += 120  # a visible target, as the visual check demands
    Image.fromarray(pixels).save(root / "images" / f"{stem}.png")
    mask = np.zeros((h, w), np.uint8)
    mask[y0:y1, x0:x1] = value
    Image.fromarray(mask).save(root / "masks" / f"{stem}.png")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for i in range(5):
        write_pair(root, f"ok{i}")
    return root


def break_size(root: Path) -> tuple[str, str]:
    write_pair(root, "bad")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "bad.png")
    return "masks/bad.png", "differs from image bad.png"


def break_truncated(root: Path) -> tuple[str, str]:
    write_pair(root, "bad")
    data = (root / "images" / "bad.png").read_bytes()
    (root / "images" / "bad.png").write_bytes(data[: len(data) // 2])
    return "images/bad.png", "unreadable or truncated"


def break_garbage(root: Path) -> tuple[str, str]:
    write_pair(root, "bad")
    (root / "masks" / "bad.png").write_bytes(b"this is not an image at all")
    return "masks/bad.png", "unreadable or truncated"


def break_zero_bytes(root: Path) -> tuple[str, str]:
    write_pair(root, "bad")
    (root / "images" / "bad.png").write_bytes(b"")
    return "images/bad.png", "file is empty"


def break_empty_mask(root: Path) -> tuple[str, str]:
    write_pair(root, "bad", value=0)
    return "masks/bad.png", "mask is empty"


def break_missing_mask(root: Path) -> tuple[str, str]:
    write_pair(root, "bad")
    (root / "masks" / "bad.png").unlink()
    return "images/bad.png", "no mask matches"


BREAKERS = [
    break_size,
    break_truncated,
    break_garbage,
    break_zero_bytes,
    break_empty_mask,
    break_missing_mask,
]


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__)
def test_bad_item_raises_naming_the_file(corpus, tmp_path, breaker):
    rel, problem = breaker(corpus)
    with pytest.raises(InputError) as info:
        build("image_mask_folder", corpus, tmp_path / "out")
    assert info.value.path == str(corpus / rel)
    assert problem in str(info.value)


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__)
def test_bad_item_skipped_and_counted(corpus, tmp_path, breaker):
    rel, problem = breaker(corpus)
    out = tmp_path / "out"
    manifest = build("image_mask_folder", corpus, out, on_error="skip")
    counts = manifest["counts"]
    assert counts["items_read"] == 6
    assert counts["items_built"] == 5 and counts["items_skipped"] == 1
    (skip,) = manifest["skipped"]
    assert skip["item"] == "bad" and skip["path"] == str(corpus / rel)
    assert problem in skip["reason"]
    ds = load_dataset(str(out), "grounding")
    assert sum(len(ds[s]) for s in ds) == 5
    assert json.loads((out / "medground.json").read_text())["skipped"] == [skip]


def test_label_values_not_in_the_label_map(tmp_path):
    root = tmp_path / "c"
    write_pair(root, "a", value=1)
    write_pair(root, "b", value=7)
    options = {"mask_mode": "labels", "label_map": {"1": "liver"}}
    with pytest.raises(InputError, match=r"mask values \[7\] are not in the label map \[1\]"):
        build("image_mask_folder", root, tmp_path / "out", options=options)


def test_missing_and_empty_data_dirs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        build("kvasir_seg", tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="data dir is empty") as info:
        build("hc18", tmp_path / "empty", tmp_path / "out2")
    assert info.value.path == str(tmp_path / "empty")


def test_wrong_layout_says_what_is_expected(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "x.txt").write_text("x")
    with pytest.raises(InputError, match="expected folder is missing") as info:
        build("kvasir_seg", tmp_path / "stuff", tmp_path / "out")
    assert "datasets.simula.no" in str(info.value)


def test_hc18_without_pixel_size_csv(tmp_path):
    (tmp_path / "training_set").mkdir()
    (tmp_path / "training_set" / "000_HC.png").write_bytes(b"x")
    with pytest.raises(InputError, match="pixel-size CSV is missing"):
        build("hc18", tmp_path, tmp_path / "out")


def test_small_components_are_reported_not_silently_dropped(tmp_path):
    root = tmp_path / "c"
    write_pair(root, "a")
    mask = np.array(Image.open(root / "masks" / "a.png"))
    mask[35:37, 40:42] = 255  # a 4-pixel speck, below the default min_size of 16
    Image.fromarray(mask).save(root / "masks" / "a.png")
    manifest = build("image_mask_folder", root, tmp_path / "out")
    assert manifest["counts"]["components_dropped"] == 1
    (entry,) = [s for s in manifest["skipped"] if s["stage"] == "min_size"]
    assert "4 px below min_size" in entry["reason"]


def test_cli_error_names_the_file_and_exits_2(corpus, tmp_path, capsys):
    rel, _ = break_size(corpus)
    code = main(
        ["build", "image_mask_folder", "--data-dir", str(corpus), "--out", str(tmp_path / "out")]
    )
    assert code == 2
    assert str(corpus / rel) in capsys.readouterr().err


def test_cli_skip_prints_the_reason(corpus, tmp_path, capsys):
    break_empty_mask(corpus)
    code = main(
        [
            "build",
            "image_mask_folder",
            "--data-dir",
            str(corpus),
            "--out",
            str(tmp_path / "out"),
            "--on-error",
            "skip",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "items read 6 = built 5 + skipped 1" in printed
    assert "mask is empty" in printed


def test_refuses_to_overwrite_a_non_empty_out(corpus, tmp_path):
    """A folder written by another command is never replaced without --overwrite; the same
    command again finds its finished folder and leaves it as it is."""
    out = tmp_path / "out"
    build("image_mask_folder", corpus, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert build("image_mask_folder", corpus, out) == read_manifest(out)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    with pytest.raises(Exception, match="not empty"):
        build("image_mask_folder", corpus, out, options={"min_size": 20})
    build("image_mask_folder", corpus, out, options={"min_size": 20}, overwrite=True)


def test_a_split_whose_every_item_is_skipped(tmp_path):
    """All of one split's items broken: the other splits are built and the counts add up."""
    from medground_hf.splits import assign_split

    root = tmp_path / "c"
    stems = [f"s{i}" for i in range(30)]
    test_stems = [s for s in stems if assign_split(s) == "test"]
    assert test_stems and len(test_stems) < len(stems)
    for stem in stems:
        write_pair(root, stem, value=0 if stem in test_stems else 255)
    out = tmp_path / "out"
    manifest = build("image_mask_folder", root, out, on_error="skip")
    assert "test" not in manifest["counts"]["splits"]
    assert manifest["counts"]["items_skipped"] == len(test_stems)
    assert manifest["counts"]["items_built"] == len(stems) - len(test_stems)
    assert "test" not in load_dataset(str(out), "grounding")
