"""Throughput of query generation + verification: the template generator with all offline
verification stages on the real samples (Kvasir-SEG and HC18 under ../shared/data), queries per
second, end to end through ``Dataset.map`` and for the in-memory stage alone. The VLM client's
rate against a slow server is measured by ``bench_vlm_client.py``.

Run:  python benchmarks/bench_generation.py [--data ../shared/data] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from datasets import load_dataset
from medground_hf.generation.pipeline import Siblings, Stage, labels_of, run
from medground_hf.generation.templates import TemplateGenerator

from medground_hf.build import build
from medground_hf.folder import read_manifest

REPO = Path(__file__).resolve().parents[1]


def bare_builds(data: Path, work: Path) -> dict[str, Path]:
    out = {}
    for source, folder in (("kvasir_seg", "kvasir_seg"), ("hc18", "hc18")):
        out[source] = work / source
        build(source, data / folder, out[source], generator="none")
    return out


def bench_template(folders: dict[str, Path], repeats: int) -> None:
    print("template generator + offline verification (3 queries per target)")
    for source, folder in folders.items():
        splits = dict(load_dataset(str(folder), "grounding"))
        labels = labels_of(read_manifest(folder)["sources"])
        targets = sum(len(ds) for ds in splits.values())
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            outcome = run(splits, labels, TemplateGenerator(queries_per_target=3))
            best = min(best, time.perf_counter() - start)
        queries = outcome.verification["queries_generated"]
        stage = Stage(TemplateGenerator(queries_per_target=3), None, labels, Siblings.scan(splits))
        rows = [r for ds in splits.values() for r in ds.cast_column("image", _raw()).to_list()]
        batch = {k: [r[k] for r in rows] for k in rows[0]}
        start = time.perf_counter()
        for _ in range(repeats):
            stage(batch)
        in_memory = (time.perf_counter() - start) / repeats
        print(
            f"  {source:<11} {targets:>3} targets {queries:>4} queries: end to end "
            f"{queries / best:8.0f} queries/s ({best:.2f} s); stage alone "
            f"{queries / in_memory:8.0f} queries/s"
        )


def _raw():
    from datasets import Image

    return Image(decode=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as work:
        folders = bare_builds(Path(args.data), Path(work))
        bench_template(folders, args.repeats)


if __name__ == "__main__":
    main()
