"""Build throughput of the 2D sources against the bare decode floor.

The floor is what any build must do at least: read each image and mask file and decode both to
pixels. *records* is the core alone (decoding, instances, cues, relations, RLE); *build* is
``medground build --generator none`` (plus Arrow, Parquet with embedded images, card); *full* is
the default ``medground build`` (plus template queries, four verification stages, the rejected,
coco and nine chat configs, each with its images embedded). The sample corpora are small, so
they are replicated (symlinks in a temporary folder, nothing copied) to amortise start-up costs.

    python benchmarks/bench_build_2d.py [--data ../shared/data] [--repeat 20]
"""

from __future__ import annotations

import argparse
import io
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from corpora import SOURCES, kvasir_at_original_size, replicate
from PIL import Image

from medground_hf.build import build

REPO = Path(__file__).resolve().parents[1]


def records_only(name: str, corpus: Path) -> float:
    """The core alone: list, decode, instances, cues and relations, no Arrow or Parquet."""
    from medground_hf.builders import get_builder_class

    from medground_hf.sample import sample_to_records

    builder = get_builder_class(name)(data_dir=str(corpus), cache_dir=str(corpus / ".cache"))
    start = time.perf_counter()
    for item in builder.list_items(corpus):
        for sample in builder.load_item(item):
            sample_to_records(
                sample, builder.source, builder=name, builder_version="", config_name="default"
            )
    return time.perf_counter() - start


def decode_floor(pairs: list[tuple[Path, Path]]) -> float:
    start = time.perf_counter()
    for image, mask in pairs:
        for path in (image, mask):
            with Image.open(io.BytesIO(path.read_bytes())) as im:
                np.asarray(im)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=20, help="replicas of each sample corpus")
    parser.add_argument("--num-proc", type=int, default=None)
    parser.add_argument(
        "--original-size",
        action="store_true",
        help="also run Kvasir-SEG resized to the released resolution",
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    print(
        "| source | images | targets | decode floor s | records s | build s | full s "
        "| build targets/s | records / floor | build / floor | full / floor |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as original:
        runs = [(name, name, args.data / name, spec) for name, spec in SOURCES.items()]
        if args.original_size:
            src = kvasir_at_original_size(args.data / "kvasir_seg", Path(original) / "kvasir")
            runs.append(("kvasir_seg (original size)", "kvasir_seg", src, SOURCES["kvasir_seg"]))
        for label, name, src, (subdirs, extra, pairs_of) in runs:
            with tempfile.TemporaryDirectory() as tmp:
                corpus = Path(tmp) / name
                replicate(src, corpus, subdirs, args.repeat, extra)
                pairs = pairs_of(corpus)
                floor = min(decode_floor(pairs) for _ in range(3))
                core = min(records_only(name, corpus) for _ in range(2))
                times = {}
                for generator in ("none", "template"):
                    start = time.perf_counter()
                    manifest = build(
                        name, corpus, Path(tmp) / generator, num_proc=args.num_proc,
                        generator=generator,
                    )  # fmt: skip
                    times[generator] = time.perf_counter() - start
                targets = sum(c["records"] for c in manifest["counts"]["splits"].values())
                bare, full = times["none"], times["template"]
                print(
                    f"| {label} | {len(pairs)} | {targets} | {floor:.2f} | {core:.2f} "
                    f"| {bare:.2f} | {full:.2f} | {targets / bare:.0f} | {core / floor:.2f}x "
                    f"| {bare / floor:.2f}x | {full / floor:.2f}x |"
                )


if __name__ == "__main__":
    main()
