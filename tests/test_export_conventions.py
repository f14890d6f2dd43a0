"""Export options checked against each trainer's own convention, on pixels of the real samples:
LLaVA-1.5's padded square, the Qwen2.5-VL fine-tune scripts' pixel budget and ms-swift's image
path resolution."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from medground_hf import boxes
from medground_hf.cli import main
from medground_hf.evaluation.answers import parse_answer
from medground_hf.formats.chat import get_dialect


def records(out: Path) -> dict[str, dict]:
    return {
        r["id"]: r
        for p in sorted((out / "grounding").glob("*.parquet"))
        for r in pq.read_table(
            p, columns=["id", "width", "height", "bbox_xyxy", "mask"]
        ).to_pylist()
    }


def mask_of(record: dict) -> np.ndarray:
    rle = {**record["mask"], "counts": record["mask"]["counts"].encode()}
    return mask_utils.decode(rle)


def tight_box(mask: np.ndarray) -> list[int]:
    rows, cols = np.nonzero(mask)
    return [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]


def exported(to: Path, split: str = "train") -> list[dict]:
    path = to / f"{split}.json"
    if path.exists():
        return json.loads(path.read_text())
    return [json.loads(line) for line in (to / f"{split}.jsonl").read_text().splitlines()]


def expand_to_square(image: Image.Image, fill: int = 0) -> Image.Image:
    """LLaVA-1.5's ``image_aspect_ratio: pad``: the image pasted centred (offset floored) on a
    square canvas as wide as its longer side."""
    width, height = image.size
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def test_llava_square_boxes_are_those_of_the_padded_image(hc18_queries, tmp_path, capsys):
    """HC18 frames are 800x540: LLaVA-1.5 pads them to 800x800, 130 rows above the picture."""
    to = tmp_path / "llava-pad"
    assert (
        main(["export", str(hc18_queries), "--format", "llava", "--to", str(to), "--square"]) == 0
    )
    plain = tmp_path / "llava"
    assert main(["export", str(hc18_queries), "--format", "llava", "--to", str(plain)]) == 0
    rows = records(hc18_queries)
    dialect = get_dialect("llava", square=True)
    checked = 0
    worst_plain = 0.0
    for item, unpadded in zip(exported(to), exported(plain), strict=True):
        if item["task"] not in ("ground", "disambiguate"):
            continue
        record = rows[item["id"]]
        padded = np.asarray(expand_to_square(Image.fromarray(mask_of(record) * 255)))
        side = padded.shape[0]
        assert padded.shape == (800, 800)
        expected = [v / side for v in tight_box(padded)]
        answer = item["conversations"][1]["value"]
        values = json.loads(answer)
        assert values == pytest.approx(expected, abs=0.0005 + 1e-9)  # 3 decimals
        # read back through the evaluation's parser with the padded convention
        back = parse_answer(answer, "norm_square", 800, 540).box
        error = max(abs(a - b) for a, b in zip(back, record["bbox_xyxy"], strict=True))
        assert error <= dialect.max_error_px(800, 540)
        # the unpadded export read as padded would be off by up to the 130-row offset
        misread = parse_answer(unpadded["conversations"][1]["value"], "norm_square", 800, 540).box
        worst_plain = max(worst_plain, abs(misread[1] - record["bbox_xyxy"][1]))
        checked += 1
    assert checked >= 30
    assert worst_plain > 60


def test_square_is_refused_where_it_means_nothing(hc18_queries, tmp_path, capsys):
    for fmt in ("qwen2.5-vl", "coco"):
        code = main(
            ["export", str(hc18_queries), "--format", fmt, "--to", str(tmp_path / fmt), "--square"]
        )
        assert code == 2
        err = capsys.readouterr().err
        assert "padded square applies to llava" in err and "Traceback" not in err


@pytest.mark.parametrize(("fixture", "size", "finetune"), [
    ("kvasir_queries", (256, 256), (224, 224)),
    ("hc18_queries", (540, 800), (168, 252)),
])  # fmt: skip
def test_qwen25_export_for_the_finetune_budget(fixture, size, finetune, tmp_path, request, capsys):
    """The fine-tune scripts' ``--max_pixels 50176 --min_pixels 784``: smart_resize rounds each
    side to a multiple of 28 (256 -> 252; 540 x 800 -> 532 x 812), finds the area above 50176 and
    scales by sqrt(h * w / 50176) flooring to multiples of 28 (256 / 1.1429 = 224 -> 224;
    540 / 2.934 = 184 -> 168, 800 / 2.934 = 273 -> 252). The exported boxes must be those of the
    mask resized to that size."""
    out = request.getfixturevalue(fixture)
    assert boxes.QWEN25_FINETUNE_RESIZE(*size) == finetune
    to = tmp_path / "qwen"
    budget = ["--min-pixels", "784", "--max-pixels", "50176"]
    assert main(["export", str(out), "--format", "qwen2.5-vl", "--to", str(to), *budget]) == 0
    assert "min_pixels=784, max_pixels=50176" in capsys.readouterr().out
    default = tmp_path / "default"
    assert main(["export", str(out), "--format", "qwen2.5-vl", "--to", str(default)]) == 0
    rows = records(out)
    height, width = finetune
    differ = 0
    for item, plain in zip(exported(to), exported(default), strict=True):
        if item["task"] == "describe":
            continue
        record = rows[item["id"]]
        resized = np.asarray(
            Image.fromarray(mask_of(record) * 255).resize((width, height), Image.Resampling.BOX)
        )
        expected = tight_box(resized > 0)
        coords = json.loads(item["conversations"][1]["value"].split("\n")[1])[0]["bbox_2d"]
        # the box scaled to the resized image, against the resized mask's own box: resampling
        # blurs one pixel at each edge
        assert max(abs(a - b) for a, b in zip(coords, expected, strict=True)) <= 1.5, item["id"]
        assert all(0 <= v <= lim for v, lim in zip(coords, (width, height) * 2, strict=True))
        old = json.loads(plain["conversations"][1]["value"].split("\n")[1])[0]["bbox_2d"]
        differ += coords != old
    assert differ > 0


def test_export_help_and_card_show_the_qwen25_budget(kvasir_queries, capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "min_pixels=3136, max_pixels=12845056" in text
    assert "--max_pixels 50176 --min_pixels 784" in text
    assert "--min-pixels 784 --max-pixels 50176" in text
    assert "224x224 instead of 252x252" in text
    card = " ".join((kvasir_queries / "README.md").read_text().split())
    assert "min_pixels 3136, max_pixels 12845056" in card
    assert "--min-pixels 784 --max-pixels 50176" in card


# ms-swift's image loader, reproduced: a path that exists relative to the working directory is
# used as it is; otherwise, when ROOT_IMAGE_DIR is set, it is joined to it; then made absolute.
SWIFT_RESOLVE = """
import json, os, sys
path = sys.argv[1]
root = os.environ.get("ROOT_IMAGE_DIR")
if not os.path.exists(path) and root is not None:
    path = os.path.join(root, path)
path = os.path.abspath(os.path.expanduser(path))
print(json.dumps({"path": path, "exists": os.path.isfile(path)}))
"""


def swift_resolve(path: str, cwd: Path, env_file: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ROOT_IMAGE_DIR"}
    script = shlex.join([sys.executable, "-c", SWIFT_RESOLVE, path])
    if env_file is not None:
        script = f". {shlex.quote(str(env_file))} && {script}"
    done = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_ms_swift_paths_resolve_from_any_working_directory(kvasir_queries, tmp_path, capsys):
    to = tmp_path / "export" / "swift"
    assert main(["export", str(kvasir_queries), "--format", "ms-swift", "--to", str(to)]) == 0
    assert "env.sh" in capsys.readouterr().out
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    item = exported(to)[0]
    relative = item["images"][0]
    assert not Path(relative).is_absolute()
    # as written, from another working directory ms-swift would not find the image ...
    assert not swift_resolve(relative, elsewhere)["exists"]
    # ... with the env file next to the data sourced, it does
    found = swift_resolve(relative, elsewhere, to / "env.sh")
    assert found["exists"] and Path(found["path"]).read_bytes() == (to / relative).read_bytes()
    assert (to / "env.sh").read_text().count("\n") <= 3  # a one-line how-to and the export

    absolute = tmp_path / "abs"
    cmd = ["export", str(kvasir_queries), "--format", "ms-swift", "--to", str(absolute)]
    assert main([*cmd, "--absolute-paths"]) == 0
    for item in exported(absolute):
        path = item["images"][0]
        assert Path(path).is_absolute()
        assert swift_resolve(path, elsewhere)["exists"]
        assert item["objects"]["bbox_type"] == "real"
        assert item["objects"]["bbox"] == [records(kvasir_queries)[item["id"]]["bbox_xyxy"]]
    assert main(["export", str(kvasir_queries), "--format", "coco", "--to", str(tmp_path / "c"),
                 "--absolute-paths"]) == 2  # fmt: skip
    assert "stays relative" in capsys.readouterr().err
