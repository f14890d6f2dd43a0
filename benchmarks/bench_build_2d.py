"""The record-making core of the 2D sources against the bare decode floor: paired, interleaved.

*floor* is what any build must do at least: read each image and mask file once and decode both
with Pillow to NumPy arrays in the files' own modes (RGB for Kvasir-SEG's JPEG masks and HC18's
PNG annotations). *records* is the core, as a build runs it per item: list the corpus, read and
decode each image and mask, binarise the mask (the build takes a colour mask's channel maximum
in Pillow, band by band, so it never makes the floor's RGB array of the mask), split instances,
shape and visual cues, relations and the RLE of every target; no Arrow, Parquet or card. With
``--build`` a third task is timed: ``medground build --generator none`` (plus Arrow, Parquet
and the card); the whole CLI against a decode-only CLI is ``benchmarks/bench_cli.py``'s figure.

Every round runs the tasks of one source back to back on the same corpus, in an order that
rotates between rounds (so neither side always runs on a warmer cache or a quieter machine),
and measures both wall time and CPU time (``time.process_time``: every thread of the process).
The table gives the medians over rounds of each, and the medians of the per-round ratios: on a
shared machine those paired ratios, the CPU ones above all, are the stable figures.

The sample corpora are small, so they are replicated (symlinks in a temporary folder, nothing
copied) to amortise start-up costs. ``kvasir_seg (original size)`` is the Kvasir samples resized
back to their released resolution (from ``kavsir_bboxes.json``), where decoding costs several
times more than on the 256x256 copies.

    python benchmarks/bench_build_2d.py [--data ../shared/data] [--repeat 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from corpora import SOURCES, kvasir_at_original_size, replicate
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def decode_floor(files: list[Path]) -> int:
    """Read and decode every file once, to an array in its own mode."""
    for path in files:
        with Image.open(io.BytesIO(path.read_bytes())) as im:
            np.asarray(im)
    return 0


def records_core(name: str, corpus: Path) -> int:
    """The core alone, per item as a build runs it; returns the number of target records."""
    from medground_hf.builders import get_builder_class

    from medground_hf.errors import SkipReport

    builder = get_builder_class(name)(data_dir=str(corpus), cache_dir=str(corpus / ".cache"))
    report = SkipReport(None)
    targets = 0
    for item in builder.list_items(corpus):
        records, _ = builder.item_records(item, "train", report)
        targets += len(records)
    return targets


def bare_build(name: str, corpus: Path, out: Path) -> int:
    from medground_hf.build import build

    with contextlib.redirect_stderr(io.StringIO()):  # the build's progress bars
        manifest = build(name, corpus, out, generator="none")
    return sum(c["records"] for c in manifest["counts"]["splits"].values())


def timed(task: Callable[[], int]) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = task()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def measure(
    name: str,
    corpus: Path,
    pairs: list[tuple[Path, Path]],
    rounds: int,
    with_build: bool,
    tmp: Path,
) -> dict:
    """Per task, the wall and CPU seconds of every round, tasks in rotating order."""
    files = [path for pair in pairs for path in pair]
    tasks: dict[str, Callable[[], int]] = {
        "floor": lambda: decode_floor(files),
        "records": lambda: records_core(name, corpus),
    }
    if with_build:
        runs = iter(range(10**6))
        tasks["build"] = lambda: bare_build(name, corpus, tmp / f"build{next(runs)}")
    decode_floor(files)  # warm the page cache and the imports before the first timed round
    targets = records_core(name, corpus)
    times: dict[str, list[tuple[float, float]]] = {task: [] for task in tasks}
    order = list(tasks)
    for r in range(rounds):
        shift = r % len(order)
        for task in order[shift:] + order[:shift]:
            wall, cpu, _ = timed(tasks[task])
            times[task].append((wall, cpu))
    return {"targets": targets, "times": times}


def summary(label: str, images: int, result: dict) -> str:
    times = result["times"]

    def median(task: str, k: int) -> float:
        return statistics.median(t[k] for t in times[task])

    def ratio(task: str, k: int) -> float:
        return statistics.median(
            a[k] / b[k] for a, b in zip(times[task], times["floor"], strict=True)
        )

    cells = [
        label,
        str(images),
        str(result["targets"]),
        f"{median('floor', 0):.2f}",
        f"{median('floor', 1):.2f}",
        f"{median('records', 0):.2f}",
        f"{median('records', 1):.2f}",
        f"{ratio('records', 1):.2f}x",
        f"{ratio('records', 0):.2f}x",
    ]
    if "build" in times:
        cells += [
            f"{median('build', 0):.2f}",
            f"{ratio('build', 1):.2f}x",
            f"{ratio('build', 0):.2f}x",
        ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=10, help="replicas of each sample corpus")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds per source")
    parser.add_argument(
        "--sources",
        nargs="+",
        default=["kvasir_seg (original size)", "hc18", "kvasir_seg"],
        choices=["kvasir_seg (original size)", "hc18", "kvasir_seg"],
    )
    parser.add_argument("--build", action="store_true", help="also time a --generator none build")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    header = (
        "| source | images | targets | floor wall s | floor CPU s | records wall s "
        "| records CPU s | records / floor CPU | records / floor wall |"
    )
    if args.build:
        header += " build wall s | build / floor CPU | build / floor wall |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.sources:
            name = label.split(" ")[0]
            subdirs, extra, pairs_of = SOURCES[name]
            src = args.data / name
            if label.endswith("(original size)"):
                src = kvasir_at_original_size(src, Path(tmp) / "kvasir_original")
            corpus = Path(tmp) / label.replace(" ", "_").strip("()")
            replicate(src, corpus / name, subdirs, args.repeat, extra)
            pairs = pairs_of(corpus / name)
            result = measure(name, corpus / name, pairs, args.rounds, args.build, corpus)
            print(summary(label, len(pairs), result), flush=True)


if __name__ == "__main__":
    main()
