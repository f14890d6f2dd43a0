"""Volume builder benchmark: targets per second on BraTS, against a bare nibabel load, and peak
memory of a whole build for a growing number of cases (it must stay flat: one case at a time).

    python benchmarks/bench_volumes.py [--data-dir ../shared/data/brats2013] [--repeat 3]

Each memory figure is the ``ru_maxrss`` of a fresh subprocess that runs ``medground_hf.build``
on a folder of N cases (symlinks; cases are reused under new names past the real ones).
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

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "brats2013"
BRATS_FILES = ("Flair*.nii*", "OTMultiClass*.nii*", "brainmask*.nii*")  # what the default reads


def bare_load(cases: list[Path]) -> float:
    """Seconds to decode every volume the default config reads, with nothing else done."""
    start = time.perf_counter()
    for case in cases:
        for pattern in BRATS_FILES:
            for path in case.glob(pattern):
                np.asanyarray(nib.load(path).dataobj)
    return time.perf_counter() - start


def pipeline(data_dir: Path, cache: Path) -> tuple[float, int, int]:
    """Seconds, targets and images for load_item + records over every case (no Arrow writing)."""
    from medground_hf.builders import get_builder_class

    from medground_hf.sample import sample_to_records

    builder = get_builder_class("brats")(data_dir=str(data_dir), cache_dir=str(cache))
    items = builder.list_items(data_dir)
    targets = images = 0
    start = time.perf_counter()
    for item in items:
        for sample in builder.load_item(item):
            records, _ = sample_to_records(
                sample, builder.source, builder="brats", builder_version="b", config_name="default"
            )
            targets += len(records)
            images += 1
    return time.perf_counter() - start, targets, images


def case_folder(cases: list[Path], count: int, root: Path) -> Path:
    """``count`` cases as symlinked folders, reusing real cases under new names if needed."""
    folder = root / f"cases-{count}"
    for index in range(count):
        case = cases[index % len(cases)]
        target = folder / f"{case.name}_r{index // len(cases)}"
        target.mkdir(parents=True)
        for f in case.iterdir():
            (target / f.name).symlink_to(f.resolve())
    return folder


def child_build(data_dir: str, out: str) -> None:
    """Run in a subprocess: a whole build, then print this process's peak RSS (MiB)."""
    import logging

    logging.disable(logging.WARNING)
    from medground_hf.build import build

    start = time.perf_counter()
    manifest = build("brats", data_dir, out)
    seconds = time.perf_counter() - start
    records = sum(c["records"] for c in manifest["counts"]["splits"].values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mib": peak, "seconds": seconds, "records": records}))


def peak_memory(cases: list[Path], counts: list[int], root: Path) -> list[dict]:
    rows = []
    for count in counts:
        folder = case_folder(cases, count, root)
        out = root / f"out-{count}"
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(folder), str(out)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append({"cases": count, **json.loads(proc.stdout.strip().splitlines()[-1])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best is kept)")
    parser.add_argument("--counts", default="1,2,3,12", help="case counts for the memory figures")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_build(*args.child)
        return
    cases = sorted(p.parent for p in args.data_dir.glob("*/OTMultiClass*.nii*"))
    with tempfile.TemporaryDirectory(prefix="bench-volumes-") as tmp:
        root = Path(tmp)
        bare = min(bare_load(cases) for _ in range(args.repeat))
        runs = [pipeline(args.data_dir, root / "cache") for _ in range(args.repeat)]
        seconds, targets, images = min(runs)
        memory = peak_memory(cases, [int(c) for c in args.counts.split(",")], root)
    print(f"BraTS sample: {len(cases)} cases, {images} slices, {targets} targets")
    print(f"bare nibabel load of the volumes read : {bare:6.2f} s")
    print(f"load + render + records (no Arrow)    : {seconds:6.2f} s")
    print(f"targets per second                    : {targets / seconds:6.1f}")
    print(f"ratio to bare nibabel load            : {seconds / bare:6.2f}x")
    print("whole build in a fresh process (peak RSS):")
    for row in memory:
        print(
            f"  {row['cases']:>2} cases: {row['peak_mib']:7.1f} MiB  "
            f"{row['seconds']:6.2f} s  {row['records']:>4} records"
        )


if __name__ == "__main__":
    main()
