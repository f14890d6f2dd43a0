"""The whole command line, as a user runs it: start-up, and a default build against decoding.

* **start-up**: ``medground --help`` and an error exit (a missing ``--data-dir``), each a fresh
  process; wall and CPU (the child's rusage), medians over rounds. Target: under 1 s.
* **build / decode-only**: the whole default ``medground build SOURCE --data-dir D --out O`` (a
  fresh process: start-up, listing, records, template queries and verification, Parquet, the
  ``coco`` config, manifest and card) against the decode-only CLI (``benchmarks/decode_only.py``:
  a fresh process that lists the same corpus and decodes every image and mask once). Kvasir-SEG
  at its released resolution and HC18, both replicated by symlinks (``--kvasir-repeat``,
  ``--hc18-repeat``) to amortise start-up. Rounds are interleaved and alternate which of the
  pair runs first; the ratio is the median of the per-round ratios, for CPU and for wall time.
  Target: at most 2.5x.

Nothing is copied into the project: the corpora live in a temporary folder.

    python benchmarks/bench_cli.py [--rounds 3] [--kvasir-repeat 20] [--hc18-repeat 20]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corpora import SOURCES, kvasir_at_original_size, replicate

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
# the console script a user runs (its interpreter is this one's)
MEDGROUND = [shutil.which("medground", path=str(Path(sys.executable).parent)) or "medground"]
STARTUP_TARGET_S = 1.0
BUILD_TARGET = 2.5


def timed(cmd: list[str]) -> dict:
    """Wall and CPU seconds (user + system of the child and its children) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"code": proc.returncode, "wall": wall, "cpu": cpu, "stderr": proc.stderr}


def checked(cmd: list[str], code: int = 0) -> dict:
    run = timed(cmd)
    if run["code"] != code:
        raise SystemExit(f"{' '.join(cmd)} exited {run['code']}:\n{run['stderr'][-3000:]}")
    return run


def startup(rounds: int, tmp: Path) -> list[tuple[str, float, float]]:
    """Median wall and CPU of each start-up case, the cases interleaved round by round."""
    cases = {
        "medground --help": ([*MEDGROUND, "--help"], 0),
        "medground build --help": ([*MEDGROUND, "build", "--help"], 0),
        "medground build (missing --data-dir)": (
            [
                *MEDGROUND,
                "build",
                "kvasir_seg",
                "--data-dir",
                str(tmp / "nope"),
                "--out",
                str(tmp / "never"),
            ],
            2,
        ),  # fmt: skip
        "medground build (unknown source)": (
            [*MEDGROUND, "build", "nosuch", "--data-dir", str(tmp), "--out", str(tmp / "never")],
            2,
        ),
        "python -c pass (interpreter alone)": ([sys.executable, "-c", "pass"], 0),
    }
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (cmd, code) in cases.items():
            runs[name].append(checked(cmd, code))
    return [
        (name, statistics.median(r["wall"] for r in rs), statistics.median(r["cpu"] for r in rs))
        for name, rs in runs.items()
    ]


def paired(source: str, corpus: Path, out: Path, rounds: int) -> dict:
    """Interleaved rounds of build and decode-only; medians of the per-round ratios."""
    build = [*MEDGROUND, "build", source, "--data-dir", str(corpus), "--out", str(out)]
    decode = [sys.executable, str(BENCH / "decode_only.py"), source, str(corpus)]
    builds, decodes = [], []
    for k in range(rounds):
        shutil.rmtree(out, ignore_errors=True)
        order = [("build", build), ("decode", decode)]
        for name, cmd in order if k % 2 == 0 else order[::-1]:
            (builds if name == "build" else decodes).append(checked(cmd))
    ratios = {
        key: statistics.median(b[key] / d[key] for b, d in zip(builds, decodes, strict=True))
        for key in ("cpu", "wall")
    }
    return {
        "build": {k: statistics.median(b[k] for b in builds) for k in ("cpu", "wall")},
        "decode": {k: statistics.median(d[k] for d in decodes) for k in ("cpu", "wall")},
        "ratio": ratios,
        "images": len(SOURCES[source][2](corpus)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--startup-rounds", type=int, default=9)
    parser.add_argument("--kvasir-repeat", type=int, default=20, help="copies of the 40 samples")
    parser.add_argument("--hc18-repeat", type=int, default=20, help="copies of the 40 samples")
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--skip-build", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medground-bench-cli-") as tmp:
        root = Path(tmp)
        if not args.skip_startup:
            print(f"start-up (medians of {args.startup_rounds} rounds; target < "
                  f"{STARTUP_TARGET_S:.0f} s wall)\n")  # fmt: skip
            print("| command | wall s | CPU s |\n|---|---|---|")
            for name, wall, cpu in startup(args.startup_rounds, root):
                print(f"| `{name}` | {wall:.2f} | {cpu:.2f} |")
            print()
        if args.skip_build:
            return
        released = kvasir_at_original_size(args.data / "kvasir_seg", root / "kvasir-released")
        corpora = {
            "kvasir_seg (released resolution)": ("kvasir_seg", released, args.kvasir_repeat),
            "hc18": ("hc18", args.data / "hc18", args.hc18_repeat),
        }
        print(f"whole default build / decode-only CLI (medians of {args.rounds} interleaved "
              f"rounds; target <= {BUILD_TARGET}x)\n")  # fmt: skip
        print("| corpus | images | build CPU s | build wall s | decode CPU s | decode wall s "
              "| CPU ratio | wall ratio |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
        for label, (source, src, copies) in corpora.items():
            subdirs, extra, _ = SOURCES[source]
            corpus = root / f"{source}-x{copies}"
            replicate(src, corpus, subdirs, copies, extra)
            r = paired(source, corpus, root / f"out-{source}", args.rounds)
            b, d, ratio = r["build"], r["decode"], r["ratio"]
            print(f"| {label} | {r['images']} | {b['cpu']:.1f} | {b['wall']:.1f} | {d['cpu']:.1f} "
                  f"| {d['wall']:.1f} | {ratio['cpu']:.2f}x | {ratio['wall']:.2f}x |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
