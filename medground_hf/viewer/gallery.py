"""Write a static, serverless HTML gallery of a built dataset folder.

Layout of the gallery folder (open ``index.html`` from disk, no server)::

    index.html            page (Jinja2 template) with the filters and the pager
    gallery.js, .css      rendering, filtering and paging in the browser
    items.js              ``window.MEDGROUND_ITEMS = [...]``: one small entry per row, what the
                          filters and the pager need (a script, not JSON, because browsers
                          refuse ``fetch`` on file:// pages)
    details/NNNNN.js      mask outlines and queries with verdicts of ``CHUNK_ITEMS`` rows each,
                          loaded by the page only when a row of that chunk is shown
    images/<name>.<ext>   each image once, its original bytes

So the page stays light for large builds: ~0.3 kB per row up front, the heavy part (outlines,
verdicts: several kB per row) only for the pages looked at, and one page of cards in the DOM.

Rows come from the ``grounding`` config (status ``kept``) and, when present, the ``rejected``
config (status ``rejected``, with the stage and reason). Shards are streamed in batches.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader
from skimage.measure import find_contours

from ..folder import DEFAULT_CONFIG, config_splits, iter_rows
from ..geometry import decode_rle
from ..imageio import open_bytes
from ..integrity import check_folder

CONFIGS = ((DEFAULT_CONFIG, "kept"), ("rejected", "rejected"))
COLUMNS = (
    "id",
    "image_id",
    "image",
    "source",
    "modality",
    "split",
    "width",
    "height",
    "label",
    "label_display",
    "num_candidates",
    "bbox_xyxy",
    "mask",
    "queries",
)
REJECT_COLUMNS = ("rejected_stage", "rejected_reason")
FACETS = ("source", "modality", "label", "split", "status")
WEB_FORMATS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp"}
CHUNK_ITEMS = 200
DETAILS = "details"
STATIC = ("gallery.js", "gallery.css")


def gallery_rows(dataset: Path) -> Iterator[tuple[str, dict]]:
    """(status, row) for every row of the kept and rejected configs, streamed batch by batch."""
    present = config_splits(dataset)
    for config, status in CONFIGS:
        if config in present:
            for row in iter_rows(dataset, config, columns=(*COLUMNS, *REJECT_COLUMNS)):
                yield status, row


def corners(contour: np.ndarray) -> np.ndarray:
    """The vertices of a closed contour where its direction changes.

    Marching squares on a binary mask puts every point on a half-pixel grid, so dropping points
    that lie on the line through their neighbours is exact (the outline does not move) and
    leaves only the corners of the staircase.
    """
    points = contour[:-1]  # find_contours repeats the first point at the end of a closed contour
    incoming = points - np.roll(points, 1, axis=0)
    outgoing = np.roll(points, -1, axis=0) - points
    turn = incoming[:, 0] * outgoing[:, 1] - incoming[:, 1] * outgoing[:, 0]
    keep = turn != 0
    return points[keep] if keep.any() else points


def _coord(value: float) -> str:
    """A half-pixel coordinate, short: ``12``, ``12.5``."""
    return f"{value:.1f}".removesuffix(".0")


def mask_outline(mask: dict, bbox: list[int]) -> str:
    """SVG path of the mask's boundary in image pixel-edge coordinates (traced on the box only)."""
    x0, y0, x1, y1 = bbox
    window = np.pad(decode_rle(mask)[y0:y1, x0:x1], 1).astype(np.float32)
    parts = []
    for contour in find_contours(window, 0.5):
        # padded index -> pixel edges: col c of the window is x0 + c - 1, its centre + 0.5
        xy = corners(contour)[:, ::-1] + (x0 - 0.5, y0 - 0.5)
        coords = (f"{_coord(x)},{_coord(y)}" for x, y in xy.tolist())
        parts.append("M" + " L".join(coords) + " Z")
    return " ".join(parts)


def image_name(image_id: str, data: bytes) -> tuple[str, bytes]:
    """A file name for an image and its bytes, re-encoded as PNG only if browsers can't show it."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", image_id).strip("_")[:80]
    digest = hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:8]
    with open_bytes(data, image_id) as im:
        ext = WEB_FORMATS.get(im.format or "")
        if ext is None:
            buffer = io.BytesIO()
            im.save(buffer, format="PNG")
            data, ext = buffer.getvalue(), "png"
    return f"{slug}-{digest}.{ext}", data


def gallery_item(status: str, row: dict, image: str) -> tuple[dict, dict]:
    """What the page needs for one row: the entry filters and paging use (facets, box), and
    its details (outline, queries and verdicts), written to a chunk loaded on demand."""
    item = {
        "id": row["id"],
        "image": image,
        "status": status,
        **{key: row[key] or "unknown" for key in ("source", "modality", "label", "split")},
        "label_display": row.get("label_display") or row["label"],
        "width": row["width"],
        "height": row["height"],
        "num_candidates": row["num_candidates"],
        "bbox": row["bbox_xyxy"],
        "rejected_stage": row.get("rejected_stage"),
        "rejected_reason": row.get("rejected_reason"),
    }
    detail = {
        "outline": mask_outline(row["mask"], row["bbox_xyxy"]),
        "queries": [
            {
                "text": q["text"],
                "style": q.get("style"),
                "kept": q.get("kept"),
                "verdicts": [
                    {k: v.get(k) for k in ("stage", "check", "passed", "reason")}
                    for v in q.get("verdicts") or []
                ],
            }
            for q in row.get("queries") or []
        ],
    }
    return item, detail


def write_details(folder: Path, chunk: int, details: list[dict]) -> None:
    """One chunk of details as a script that hands them to the page."""
    payload = ",\n".join(json.dumps(d) for d in details)
    text = f"window.MEDGROUND_DETAILS({chunk}, [\n{payload}\n]);\n"
    (folder / f"{chunk:05d}.js").write_text(text, "utf-8")


def write_gallery(
    dataset: str | Path, to: str | Path | None = None, *, page_size: int = 24
) -> Path:
    """Write the gallery of ``dataset`` into ``to`` (default ``<dataset>-viewer``); its index."""
    dataset = Path(dataset)
    manifest = check_folder(dataset)
    if page_size < 1:
        raise ValueError(f"page size must be at least 1, got {page_size}")
    to = Path(to) if to else dataset.with_name(dataset.name + "-viewer")
    images, details_dir = to / "images", to / DETAILS
    for folder in (images, details_dir):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    written: dict[str, str] = {}
    details: list[dict] = []
    facets: dict[str, Counter] = {f: Counter() for f in FACETS}
    total = 0
    with open(to / "items.js", "w", encoding="utf-8") as fh:
        fh.write("window.MEDGROUND_ITEMS = [\n")
        for status, row in gallery_rows(dataset):
            if row["image_id"] not in written:
                name, data = image_name(row["image_id"], row["image"]["bytes"])
                (images / name).write_bytes(data)
                written[row["image_id"]] = f"images/{name}"
            item, detail = gallery_item(status, row, written[row["image_id"]])
            for facet in FACETS:
                facets[facet][item[facet]] += 1
            fh.write(("" if total == 0 else ",\n") + json.dumps(item))
            details.append(detail)
            total += 1
            if len(details) == CHUNK_ITEMS:
                write_details(details_dir, total // CHUNK_ITEMS - 1, details)
                details = []
        fh.write("\n];\n")
    if details:
        write_details(details_dir, total // CHUNK_ITEMS, details)
    if total == 0:
        raise ValueError(f"{dataset}: no rows in the grounding or rejected configs to show")
    for name in STATIC:
        (to / name).write_text(
            resources.files(__package__).joinpath("static", name).read_text("utf-8"), "utf-8"
        )
    env = Environment(loader=PackageLoader(__package__, "templates"), autoescape=True)
    page = env.get_template("gallery.html.j2").render(
        title=dataset.name,
        sources=[s["name"] for s in manifest.get("sources", [])],
        total=total,
        images=len(written),
        page_size=page_size,
        chunk_size=CHUNK_ITEMS,
        facets={f: sorted(c.items(), key=lambda kv: str(kv[0])) for f, c in facets.items()},
    )
    index = to / "index.html"
    index.write_text(page, "utf-8")
    return index
