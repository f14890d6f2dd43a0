"""The static gallery, opened from disk in headless Chromium (Debian's package) via Playwright."""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Features, Value

from medground_hf.folder import config_splits, read_manifest, write_manifest, write_split
from medground_hf.record import GROUNDING_FEATURES
from medground_hf.viewer import write_gallery
from medground_hf.viewer.gallery import CHUNK_ITEMS, corners, mask_outline

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
    write_manifest(out, read_manifest(out))  # records the shards, as a build does
    return out


@contextlib.contextmanager
def chromium_page(height: int) -> Iterator[tuple[object, list[str]]]:
    """A headless Chromium page (Debian's package, via Playwright) and the errors it logs:
    console errors, uncaught exceptions and failed requests."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": height})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
        try:
            yield page, errors
        finally:
            browser.close()


def outline_extent(outline: str) -> list[float]:
    """[min x, min y, max x, max y] of an SVG outline path."""
    numbers = [float(v) for v in re.findall(r"-?\d+\.?\d*", outline)]
    xs, ys = numbers[0::2], numbers[1::2]
    return [min(xs), min(ys), max(xs), max(ys)]


def rows_of(folder: Path) -> list[dict]:
    columns = ["id", "image_id", "source", "label", "split", "bbox_xyxy"]
    rows = []
    for config, status in (("grounding", "kept"), ("rejected", "rejected")):
        for path in sorted((folder / config).glob("*.parquet")):
            rows += [
                {**r, "status": status} for r in pq.read_table(path, columns=columns).to_pylist()
            ]
    return rows


def gallery_data(folder: Path) -> list[dict]:
    """Every item of a written gallery with its details (from the chunk scripts) merged in."""
    text = (folder / "items.js").read_text()
    items = json.loads(text.removeprefix("window.MEDGROUND_ITEMS = ").rstrip().rstrip(";"))
    details = []
    for number, chunk in enumerate(sorted((folder / "details").glob("*.js"))):
        head = f"window.MEDGROUND_DETAILS({number}, "
        text = chunk.read_text()
        assert text.startswith(head) and chunk.name == f"{number:05d}.js"
        rows = json.loads(text.removeprefix(head).rstrip().removesuffix(");"))
        assert len(rows) == CHUNK_ITEMS or number == len(items) // CHUNK_ITEMS
        details += rows
    assert len(details) == len(items)
    return [{**item, **detail} for item, detail in zip(items, details, strict=True)]


def test_gallery_files_and_outlines(reviewed, tmp_path):
    index = write_gallery(reviewed, tmp_path / "g", page_size=PAGE_SIZE)
    rows = rows_of(reviewed)
    items = gallery_data(tmp_path / "g")
    assert [i["id"] for i in items] == [r["id"] for r in rows]
    assert len(list((tmp_path / "g" / "images").iterdir())) == len({r["image_id"] for r in rows})
    for item in items:
        assert (index.parent / item["image"]).is_file()
        # the outline's extent is the mask's extent, i.e. exactly the canonical box
        assert outline_extent(item["outline"]) == item["bbox"], item["id"]
    html = index.read_text()
    assert 'src="items.js"' in html and "hc18 (" in html and "rejected (" in html


def test_outline_of_a_rectangle():
    import numpy as np

    from medground_hf.geometry import encode_rle

    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:16] = True
    path = mask_outline(encode_rle(mask), [10, 5, 16, 9])
    # marching squares cuts each pixel corner; the points between corners are dropped
    assert path == "M15.5,9 L10.5,9 L10,8.5 L10,5.5 L10.5,5 L15.5,5 L16,5.5 L16,8.5 Z"
    assert outline_extent(path) == [10, 5, 16, 9]


def test_outline_corners_are_exact():
    """Dropping the points between corners never moves the outline: every traced point lies on
    a segment of the simplified polygon, on random blobs."""
    import numpy as np
    from skimage.measure import find_contours

    rng = np.random.default_rng(0)
    traced = dropped = 0
    for _ in range(20):
        mask = np.pad(rng.random((12, 15)) > 0.4, 1).astype(np.float32)
        for contour in find_contours(mask, 0.5):
            kept = corners(contour)
            traced, dropped = traced + len(contour) - 1, dropped + len(contour) - 1 - len(kept)
            ends = np.stack([kept, np.roll(kept, -1, axis=0)], axis=1)  # polygon segments
            for point in contour:
                a, b = ends[:, 0], ends[:, 1]
                cross = (b - a)[:, 0] * (point - a)[:, 1] - (b - a)[:, 1] * (point - a)[:, 0]
                inside = ((point - a) * (point - b)).sum(axis=1) <= 0
                assert np.any((np.abs(cross) < 1e-9) & inside), point
    assert dropped > traced / 4  # and it does simplify


def test_view_refuses_a_folder_that_is_not_a_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a medground dataset folder"):
        write_gallery(tmp_path)


def test_gallery_in_headless_chromium(reviewed, tmp_path, capsys):
    index = write_gallery(reviewed, tmp_path / "gallery", page_size=PAGE_SIZE)
    rows = rows_of(reviewed)
    total = len(rows)
    rejected = [r for r in rows if r["status"] == "rejected"]
    with chromium_page(2200) as (page, errors):
        cards = page.locator("#gallery .item")

        def drawn() -> None:
            """Wait until the page's cards (details loaded on demand) and images are drawn."""
            page.wait_for_selector('#gallery[data-state="ready"]', state="attached")
            page.wait_for_function("Array.from(document.images).every(i => i.complete)")

        page.goto(index.as_uri())
        drawn()

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
        drawn()
        hc18 = sum(r["source"] == "hc18" for r in rows)
        assert shown() == hc18
        pages = math.ceil(hc18 / PAGE_SIZE)
        for _ in range(pages - 1):
            page.click("#next")
            drawn()
        assert page.inner_text("#page") == f"page {pages} / {pages}"
        assert cards.count() == hc18 - PAGE_SIZE * (pages - 1)
        assert page.is_disabled("#next")
        page.click("#prev")
        drawn()
        assert cards.count() == PAGE_SIZE
        ids = set(page.eval_on_selector_all("#gallery .item", "els => els.map(e => e.dataset.id)"))
        assert all(i.startswith("hc18/") for i in ids)

        # kept/rejected filter: the rejected rows with their stage, reason and failed verdict
        page.select_option("#f-source", "")
        drawn()
        page.select_option("#f-status", "rejected")
        drawn()
        assert shown() == cards.count() == len(rejected)
        assert page.locator("#gallery .item.rejected").count() == len(rejected)
        assert page.locator("#gallery .verdict.failed").count() == len(rejected)
        assert "rejected at visual: region not distinct" in page.inner_text("#gallery")

        # split and label filters combine
        page.select_option("#f-status", "")
        drawn()
        page.select_option("#f-split", "train")
        drawn()
        page.select_option("#f-label", "polyp")
        drawn()
        expected = sum(r["split"] == "train" and r["label"] == "polyp" for r in rows)
        assert shown() == expected > PAGE_SIZE
        assert page.inner_text("#page") == f"page 1 / {math.ceil(expected / PAGE_SIZE)}"
        page.select_option("#f-status", "kept")
        drawn()
        page.screenshot(path=str(tmp_path / "gallery-filtered.png"), full_page=True)
    assert errors == []
    with capsys.disabled():
        print(f"\ngallery screenshots: {tmp_path / 'gallery.png'}, {tmp_path}/gallery-filtered.png")


def test_ten_thousand_items_stay_light(built_brats, tmp_path):
    """10k rows (the BraTS rows repeated under new ids): the page loads ~0.5 kB per row up front,
    fetches the details of the chunks it shows only, and keeps one page of cards in the DOM."""
    import shutil

    import pyarrow as pa
    import pyarrow.compute as pc

    big = tmp_path / "big"
    (big / "grounding").mkdir(parents=True)
    shutil.copy(built_brats / "medground.json", big)
    shards = sorted((built_brats / "grounding").glob("*.parquet"))
    table = pa.concat_tables(pq.read_table(path) for path in shards)
    copies = -(-10_000 // table.num_rows)
    column = table.schema.get_field_index("id")
    parts = [
        table.set_column(column, "id", pc.binary_join_element_wise(table["id"], f"#{k}", ""))
        for k in range(copies)
    ]
    pq.write_table(pa.concat_tables(parts), big / "grounding" / "train-00000-of-00001.parquet")
    write_manifest(big, read_manifest(big))
    total = copies * table.num_rows
    index = write_gallery(big, tmp_path / "gallery", page_size=PAGE_SIZE)
    assert (index.parent / "items.js").stat().st_size / total < 600
    chunks = sorted((index.parent / "details").glob("*.js"))
    assert len(chunks) == math.ceil(total / CHUNK_ITEMS)
    with chromium_page(1000) as (page, errors):
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(index.as_uri())
        page.wait_for_selector('#gallery[data-state="ready"]', state="attached")
        assert page.inner_text("#count") == f"{total} of {total} items"
        assert page.locator("#gallery .item").count() == PAGE_SIZE
        assert page.evaluate("document.getElementsByTagName('*').length") < 100 * PAGE_SIZE
        assert [u for u in requested if "/details/" in u] == [chunks[0].as_uri()]
        # the last page: only its own chunk is added, the cards are replaced, not appended
        for _ in range(2):  # two pages on: still inside chunk 0
            page.click("#next")
        page.wait_for_selector('#gallery[data-state="ready"]', state="attached")
        assert [u for u in requested if "/details/" in u] == [chunks[0].as_uri()]
        last = math.ceil(total / PAGE_SIZE)
        page.evaluate(
            f"() => {{ for (let i = 3; i < {last}; i++) document.getElementById('next').click(); }}"
        )
        page.wait_for_selector('#gallery[data-state="ready"]', state="attached")
        assert page.inner_text("#page") == f"page {last} / {last}"
        assert page.locator("#gallery .item").count() == total - PAGE_SIZE * (last - 1)
        assert [u for u in requested if "/details/" in u] == [
            chunks[0].as_uri(),
            chunks[-1].as_uri(),
        ]
        assert page.locator("#gallery path.outline").count() > 0
    assert errors == []


@pytest.fixture(scope="module")
def all_rejected(tmp_path_factory) -> Path:
    """An image_mask_folder build of flat grey images: every target fails the visual check, so
    the folder has a ``rejected`` config and no ``grounding`` one."""
    import numpy as np
    from PIL import Image

    from medground_hf.build import build

    corpus = tmp_path_factory.mktemp("flat")
    for sub in ("images", "masks"):
        (corpus / sub).mkdir()
    for i in range(5):
        mask = np.zeros((96, 128), np.uint8)
        mask[20 + 4 * i : 60 + 4 * i, 30:80] = 255
        Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(corpus / "images" / f"c{i}.png")
        Image.fromarray(mask).save(corpus / "masks" / f"c{i}.png")
    out = tmp_path_factory.mktemp("built") / "flat"
    build("image_mask_folder", corpus, out, options={"label": "lesion", "modality": "CT"})
    assert set(config_splits(out)) == {"rejected"}
    return out


@pytest.mark.parametrize("fixture", ["built_brats", "all_rejected"])
def test_brats_and_all_rejected_galleries(fixture, request, tmp_path, capsys):
    folder = request.getfixturevalue(fixture)
    rows = rows_of(folder)
    index = write_gallery(folder, tmp_path / "g", page_size=PAGE_SIZE)
    items = gallery_data(tmp_path / "g")
    assert [(i["id"], i["status"]) for i in items] == [(r["id"], r["status"]) for r in rows]
    for item in items:  # volume slices too: the outline spans exactly the canonical box
        assert outline_extent(item["outline"]) == item["bbox"], item["id"]
    rejected = sum(r["status"] == "rejected" for r in rows)
    assert rejected and (fixture != "all_rejected" or rejected == len(rows))
    with chromium_page(1600) as (page, errors):
        page.goto(index.as_uri())
        page.wait_for_selector('#gallery[data-state="ready"]', state="attached")
        assert page.inner_text("#count") == f"{len(rows)} of {len(rows)} items"
        page.select_option("#f-status", "rejected")
        page.wait_for_selector('#gallery[data-state="ready"]', state="attached")
        page.wait_for_function("Array.from(document.images).every(i => i.complete)")
        assert page.inner_text("#count").startswith(f"{rejected} of ")
        assert page.locator("#gallery .item.rejected").count() == min(rejected, PAGE_SIZE)
        assert "rejected at " in page.inner_text("#gallery")
        shot = tmp_path / f"{fixture}.png"
        page.screenshot(path=str(shot), full_page=True)
    assert errors == []
    with capsys.disabled():
        print(f"\n{fixture} gallery screenshot: {shot}")
