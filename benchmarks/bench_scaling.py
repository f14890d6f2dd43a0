"""Scaling figures of a build, each from paired, interleaved runs (medians over rounds):

* **storage**: bytes of each config of a default build over the bytes of its distinct images
  (target: the whole default build at most 3x), and how many copies of each image ``grounding``
  holds (target: one);
* **memory**: peak RSS of a default build of a generated 2,000-item corpus over a 40-item one,
  each in a fresh process (target: at most 1.2x);
* **workers**: wall and CPU time of ``--num-proc 1`` against ``--num-proc 2`` on the same corpus,
  rounds interleaved (target: at least 1.7x faster on 2 cores);
* an estimate for a SA-Med2D-20M-sized build (4.6 M images, 20 M masks) on 64 cores from the
  measured per-item cost, and its output size from the measured storage ratio.

The generated corpus lives in a temporary folder (nothing is copied into the project).

    python benchmarks/bench_scaling.py [--items 2000] [--rounds 3] [--num-proc 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from synthetic import write_corpus  # noqa: E402

# peak = the process's own VmHWM (ru_maxrss would carry the parent's peak across fork and exec)
MEASURE = """
import json, re, resource, sys, time
from medground_hf.cli import main
start = time.perf_counter()
code = main(sys.argv[1:])
usage = resource.getrusage(resource.RUSAGE_SELF)
children = resource.getrusage(resource.RUSAGE_CHILDREN)
status = open("/proc/self/status").read()
print(json.dumps({
    "code": code,
    "wall": time.perf_counter() - start,
    "cpu": usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime,
    "peak_mb": int(re.search(r"VmHWM:\\s+(\\d+)", status)[1]) / 1024,
}))
"""
SA_MED2D_IMAGES = 4_600_000
SA_MED2D_MASKS = 20_000_000
SA_MED2D_SOURCE_GB = 300.0  # approximate size of its released images (PNG)


def run_build(corpus: Path, out: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-c", MEASURE, "build", "image_mask_folder", "--data-dir",
           str(corpus), "--out", str(out), "--overwrite", "--set", "min_size=16",
           *extra]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def storage(out: Path) -> dict:
    manifest = json.loads((out / "medground.json").read_text())
    images = manifest["counts"]["image_bytes"]
    sizes = {
        config.name: sum(p.stat().st_size for p in config.glob("*.parquet"))
        for config in sorted(out.iterdir())
        if config.is_dir() and any(config.glob("*.parquet"))
    }
    return {"image_bytes": images, "configs": sizes, "ratio": sum(sizes.values()) / images}


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--small", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-proc", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medground-bench-") as tmp:
        root = Path(tmp)
        large = write_corpus(root / "large", args.items)
        small = write_corpus(root / "small", args.small)
        mem_small, mem_large, one, many = [], [], [], []
        for _ in range(args.rounds):  # interleaved: load changes hit every variant alike
            mem_small.append(run_build(small, root / "out-small"))
            mem_large.append(run_build(large, root / "out-large"))
            one.append(run_build(large, root / "out-1", "--num-proc", "1"))
            many.append(run_build(large, root / "out-n", "--num-proc", str(args.num_proc)))
        sizes = storage(root / "out-large")
    peak = median(mem_large, "peak_mb") / median(mem_small, "peak_mb")
    wall = median(one, "wall") / median(many, "wall")
    cpu_one, wall_one = median(one, "cpu"), median(one, "wall")
    per_item_cpu = cpu_one / args.items
    print(f"storage ({args.items} items, default build): {sizes['ratio']:.2f}x the image bytes "
          f"({sizes['image_bytes'] / 2**20:.1f} MB); target <= 3x: "
          f"{'met' if sizes['ratio'] <= 3 else 'missed'}")  # fmt: skip
    for config, size in sizes["configs"].items():
        print(f"  {config:<12} {size / 2**20:8.1f} MB  {size / sizes['image_bytes']:.2f}x")
    print(f"memory: peak RSS {median(mem_large, 'peak_mb'):.0f} MB at {args.items} items vs "
          f"{median(mem_small, 'peak_mb'):.0f} MB at {args.small}: {peak:.2f}x; target <= 1.2x: "
          f"{'met' if peak <= 1.2 else 'missed'}")  # fmt: skip
    print(f"workers: --num-proc 1 {wall_one:.1f} s wall {cpu_one:.1f} s CPU; --num-proc "
          f"{args.num_proc} {median(many, 'wall'):.1f} s wall {median(many, 'cpu'):.1f} s CPU: "
          f"{wall:.2f}x; target >= 1.7x: {'met' if wall >= 1.7 else 'missed'}")  # fmt: skip
    hours = SA_MED2D_IMAGES * per_item_cpu / 64 / 3600
    size_gb = SA_MED2D_SOURCE_GB * sizes["ratio"]
    print(f"estimate, SA-Med2D-20M-sized build ({SA_MED2D_IMAGES:,} images, {SA_MED2D_MASKS:,} "
          f"masks) on 64 cores: {per_item_cpu * 1000:.1f} ms CPU per item -> about {hours:.1f} h "
          f"if every phase scales (template queries), output about {size_gb:.0f} GB "
          f"({sizes['ratio']:.2f}x ~{SA_MED2D_SOURCE_GB:.0f} GB of images)")  # fmt: skip


if __name__ == "__main__":
    main()
