"""The static gallery, opened from disk in headless Chromium (Debian's package) via Playwright."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Features, Value

from medground_hf.folder import write_split
from medground_hf.record import GROUNDING_FEATURES
from medground_hf.viewer import write_gallery
from medground_hf.viewer.gallery import mask_outline

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PAGE_SIZE = 12
STAGES = ("format", "geometry", "medical_prior", "visual")
REJECTED_FEATURES = Features(
    {**GROUNDING_FEATURES, "rejected_stage": Value("string"), "rejected_reason": Value("string")}
)


def verdicts(failed_stage: str | None = None, reason: str = "") -> list[dict]:
    return [
        {
            "stage": stage,
            "check": f"{stage}_check",
            "passed": stage != failed_stage,
            "reason": reason if stage == failed_stage else "",
        }
        for stage in STAGES
    ]


def query(text: str, kept: bool, failed_stage: str | None = None, reason: str = "") -> dict:
    return {
        "text": text,
        "style": "location",
        "generator": "template",
        "model": None,
        "prompt_version": "test",
        "kept": kept,
        "verdicts": verdicts(failed_stage, reason),
    }


@pytest.fixture(scope="module")
def reviewed(built_mixed: Path, tmp_path_factory) -> Path:
    """The mixed build with queries: every target one kept query, every 10th also a rejected one
    (geometry), and the first target rejected as a whole (visual), per the rejected contract."""
    out = tmp_path_factory.mktemp("reviewed") / "mixed"
    out.mkdir()
    (out / "medground.json").write_text((built_mixed / "medground.json").read_text())
    n = 0
    for shard in sorted((built_mixed / "grounding").glob("*.parquet")):
        split = shard.name.split("-")[0]
        kept, rejected = [], []
        for row in pq.read_table(shard).to_pylist():
            where = row["spatial"]["grid_cell"]
            text = f"the {row['label_display']} in the {where} of the image"
            if n == 0:
                reason = "region not distinct from its surroundings"
                row["queries"] = [query(text, False, "visual", reason)]
                rejected.append({**row, "rejected_stage": "visual", "rejected_reason": reason})
            else:
                row["queries"] = [query(text, True)]
                kept.append(row)
            if n % 10 == 5:
                reason = "says 'left' but the target is on the image's right"
                bad = query(f"the {row['label_display']} on the left", False, "geometry", reason)
                rejected.append(
                    {**row, "queries": [bad], "rejected_stage": "geometry",
                     "rejected_reason": reason}
                )  # fmt: skip
            n += 1
        write_split(out, "grounding", split, Dataset.from_list(kept, features=GROUNDING_FEATURES))
        if rejected:
            write_split(
                out, "rejected", split, Dataset.from_list(rejected, features=REJECTED_FEATURES)
            )
    return out


def rows_of(folder: Path) -> list[dict]:
    columns = ["id", "image_id", "source", "label", "split", "bbox_xyxy"]
    rows = []
    for config, status in (("grounding", "kept"), ("rejected", "rejected")):
        for path in sorted((folder / config).glob("*.parquet")):
            rows += [
                {**r, "status": status} for r in pq.read_table(path, columns=columns).to_pylist()
            ]
    return rows


def test_gallery_files_and_outlines(reviewed, tmp_path):
    index = write_gallery(reviewed, tmp_path / "g", page_size=PAGE_SIZE)
    rows = rows_of(reviewed)
    text = (tmp_path / "g" / "items.js").read_text()
    items = json.loads(text.removeprefix("window.MEDGROUND_ITEMS = ").rstrip().rstrip(";"))
    assert [i["id"] for i in items] == [r["id"] for r in rows]
    assert len(list((tmp_path / "g" / "images").iterdir())) == len({r["image_id"] for r in rows})
    for item in items:
        assert (index.parent / item["image"]).is_file()
        # the outline's extent is the mask's extent, i.e. exactly the canonical box
        numbers = [float(v) for v in re.findall(r"-?\d+\.?\d*", item["outline"])]
        xs, ys = numbers[0::2], numbers[1::2]
        assert [min(xs), min(ys), max(xs), max(ys)] == item["bbox"], item["id"]
    html = index.read_text()
    assert 'src="items.js"' in html and "hc18 (" in html and "rejected (" in html


def test_outline_of_a_rectangle():
    import numpy as np

    from medground_hf.geometry import encode_rle

    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:16] = True
    path = mask_outline(encode_rle(mask), [10, 5, 16, 9])
    numbers = [float(v) for v in re.findall(r"-?\d+\.?\d*", path)]
    assert path.startswith("M") and path.endswith("Z")
    assert (min(numbers[0::2]), max(numbers[0::2])) == (10, 16)
    assert (min(numbers[1::2]), max(numbers[1::2])) == (5, 9)


def test_view_refuses_a_folder_that_is_not_a_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a medground dataset folder"):
        write_gallery(tmp_path)


def test_gallery_in_headless_chromium(reviewed, tmp_path, capsys):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    index = write_gallery(reviewed, tmp_path / "gallery", page_size=PAGE_SIZE)
    rows = rows_of(reviewed)
    total = len(rows)
    rejected = [r for r in rows if r["status"] == "rejected"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 2200})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
        page.goto(index.as_uri())
        page.wait_for_function("Array.from(document.images).every(i => i.complete)")
        cards = page.locator("#gallery .item")

        def shown() -> int:
            return int(page.inner_text("#count").split(" of ")[0])

        # first page: all items counted, one page shown, every image decoded, boxes in place
        assert page.inner_text("#count") == f"{total} of {total} items"
        assert cards.count() == PAGE_SIZE
        assert page.inner_text("#page") == f"page 1 / {math.ceil(total / PAGE_SIZE)}"
        assert page.evaluate(
            "Array.from(document.querySelectorAll('#gallery img')).every(i => i.naturalWidth > 0)"
        )
        first = rows[0]
        rect = page.locator(f'[data-id="{first["id"]}"] rect.box')
        x0, y0, x1, y1 = first["bbox_xyxy"]
        assert [rect.get_attribute(a) for a in ("x", "y", "width", "height")] == [
            str(v) for v in (x0, y0, x1 - x0, y1 - y0)
        ]
        assert page.locator(f'[data-id="{first["id"]}"] path.outline').get_attribute("d")
        page.screenshot(path=str(tmp_path / "gallery.png"), full_page=True)

        # source filter and paging through it to the last page
        page.select_option("#f-source", "hc18")
        hc18 = sum(r["source"] == "hc18" for r in rows)
        assert shown() == hc18
        pages = math.ceil(hc18 / PAGE_SIZE)
        for _ in range(pages - 1):
            page.click("#next")
        assert page.inner_text("#page") == f"page {pages} / {pages}"
        assert cards.count() == hc18 - PAGE_SIZE * (pages - 1)
        assert page.is_disabled("#next")
        page.click("#prev")
        assert cards.count() == PAGE_SIZE
        ids = set(page.eval_on_selector_all("#gallery .item", "els => els.map(e => e.dataset.id)"))
        assert all(i.startswith("hc18/") for i in ids)

        # kept/rejected filter: the rejected rows with their stage, reason and failed verdict
        page.select_option("#f-source", "")
        page.select_option("#f-status", "rejected")
        assert shown() == cards.count() == len(rejected)
        assert page.locator("#gallery .item.rejected").count() == len(rejected)
        assert page.locator("#gallery .verdict.failed").count() == len(rejected)
        assert "rejected at visual: region not distinct" in page.inner_text("#gallery")

        # split and label filters combine
        page.select_option("#f-status", "")
        page.select_option("#f-split", "train")
        page.select_option("#f-label", "polyp")
        expected = sum(r["split"] == "train" and r["label"] == "polyp" for r in rows)
        assert shown() == expected > PAGE_SIZE
        assert page.inner_text("#page") == f"page 1 / {math.ceil(expected / PAGE_SIZE)}"
        page.select_option("#f-status", "kept")
        page.screenshot(path=str(tmp_path / "gallery-filtered.png"), full_page=True)
        browser.close()
    assert errors == []
    with capsys.disabled():
        print(f"\ngallery screenshots: {tmp_path / 'gallery.png'}, {tmp_path}/gallery-filtered.png")
