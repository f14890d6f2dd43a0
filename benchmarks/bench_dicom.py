"""DICOM benchmark: a 300-slice CT series (512 x 512) with a DICOM-SEG, built with ``dicom_seg``,
against a bare pydicom read of the same series.

    python benchmarks/bench_dicom.py [--slices 300] [--size 512] [--repeat 3]

The study is written once into a temporary folder by the tests' DICOM writer (an abdomen-like CT
phantom in HU, stored as rescaled uint16 slices, and a binary SEG with three segments). Figures:

* *bare read*: ``pydicom.dcmread`` + ``pixel_array`` of every slice, nothing else;
* *series read*: :func:`medground_hf.dicom.read_series` (sorting, geometry checks, rescale);
* *case*: the builder's list + load of the case (scan, series, SEG frames, reorientation);
* *records*: the case rendered into slices and records (no Arrow);
* *build*: ``medground build dicom_seg --generator none --configs none`` in a fresh process,
  with its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the DICOM writer lives with the tests

import dicom_writer as writer  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402


def write_study(root: Path, slices: int, size: int) -> Path:
    hu, labels, affine = writer.ct_phantom((size, size, slices), (0.7, 0.7, 1.0))
    study = writer.Study.new("bench-patient")
    series = writer.write_series(
        root / "study" / "CT", study, hu, affine, modality="CT", intercept=-1024, dtype=np.uint16
    )
    masks = {name: labels == value for value, name in ((1, "liver"), (2, "lesion"), (3, "kidney"))}
    writer.write_seg(root / "study" / "SEG" / "seg.dcm", series, masks)
    return root


def bare_read(files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        _ = pydicom.dcmread(path).pixel_array
    return time.perf_counter() - start


def series_read(files: list[Path]) -> float:
    from medground_hf.dicom import read_series

    start = time.perf_counter()
    read_series("bench", files)
    return time.perf_counter() - start


def pipeline(data: Path, cache: Path) -> tuple[float, float, int, int]:
    """Seconds for list + load of the case, and for rendering it into records."""
    from medground_hf.builders import get_builder_class

    from medground_hf.sample import sample_to_records
    from medground_hf.volumes import render_case

    builder = get_builder_class("dicom_seg")(data_dir=str(data), cache_dir=str(cache))
    start = time.perf_counter()
    (item,) = builder.list_items(data)
    case = builder.load_case(item)
    loaded = time.perf_counter() - start
    targets = images = 0
    start = time.perf_counter()
    for sample in render_case(case, builder.render_options):
        records, _ = sample_to_records(
            sample, builder.source, builder="dicom_seg", builder_version="b", config_name="default"
        )
        targets += len(records)
        images += 1
    return loaded, time.perf_counter() - start, targets, images


def child_build(data: str, out: str) -> None:
    """Run in a subprocess: a whole build, then print its seconds and peak RSS (MiB)."""
    import logging

    logging.disable(logging.WARNING)
    from medground_hf.build import build

    start = time.perf_counter()
    build("dicom_seg", data, out, generator="none", derived_configs=[])
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib()}))


def peak_mib() -> float:
    """This process's peak resident memory. Linux's ``ru_maxrss`` carries over the parent's
    peak across fork and exec (and the parent holds the phantom), so it reads ``VmHWM``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best is kept)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_build(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="bench-dicom-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        data = write_study(root / "data", args.slices, args.size)
        written = time.perf_counter() - start
        files = sorted((data / "study" / "CT").iterdir())
        bare = min(bare_read(files) for _ in range(args.repeat))
        read = min(series_read(files) for _ in range(args.repeat))
        runs = [pipeline(data, root / "cache") for _ in range(args.repeat)]
        loaded, rendered, targets, images = min(runs)
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(data), str(root / "out")],
            capture_output=True,
            text=True,
            check=True,
        )
        build = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"CT series {args.size}x{args.size}x{args.slices} + SEG (3 segments), "
        f"written in {written:.1f} s; {images} slices rendered, {targets} targets"
    )
    print(f"bare pydicom read of the series     : {bare:6.2f} s")
    print(f"series read (sort, checks, rescale) : {read:6.2f} s  {read / bare:5.2f}x bare")
    print(f"case: scan + series + SEG + reorient: {loaded:6.2f} s  {loaded / bare:5.2f}x bare")
    print(f"render + records                    : {rendered:6.2f} s")
    print(
        f"whole build (fresh process)         : {build['seconds']:6.2f} s  "
        f"{build['seconds'] / bare:5.2f}x bare, peak RSS {build['peak_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
