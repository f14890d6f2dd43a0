"""Throughput of query generation + verification.

1. Template generator with all offline verification stages on the real samples (Kvasir-SEG and
   HC18 under ../shared/data): queries per second, end to end through ``Dataset.map`` and for the
   in-memory stage alone.
2. The VLM path (real anthropic / openai SDKs, request cache, retry layer) against the fake
   server of the tests answering after a fixed delay: requests per second as a share of the
   ideal ``concurrency / delay`` (goal >= 0.8).

Run:  python benchmarks/bench_generation.py [--data ../shared/data] [--delay 0.25]
      [--concurrency 16] [--targets 256]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from datasets import load_dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the fake VLM server lives with the tests

from fake_vlm_server import FakeVLM  # noqa: E402
from medground_hf.generation.commands import GenerationOptions, make_generator  # noqa: E402
from medground_hf.generation.pipeline import Siblings, Stage, labels_of, run  # noqa: E402
from medground_hf.generation.templates import TemplateGenerator  # noqa: E402

from medground_hf.build import build  # noqa: E402
from medground_hf.folder import read_manifest  # noqa: E402


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


def bench_vlm(folder: Path, delay: float, concurrency: int, n: int, backend: str) -> float:
    splits = dict(load_dataset(str(folder), "grounding"))
    labels = labels_of(read_manifest(folder)["sources"])
    rows = [r for ds in splits.values() for r in ds.cast_column("image", _raw()).to_list()]
    stage = Stage(TemplateGenerator(), None, labels, Siblings.scan(splits))
    targets = []
    for i in range(n):  # distinct ids: distinct cache keys, every target is a real request
        row = dict(rows[i % len(rows)])
        row["id"] = f"{row['id']}#{i}"
        targets.append(stage.target(row))
    os.environ["BENCH_VLM_KEY"] = "bench-key"
    with FakeVLM(delay=delay) as server, tempfile.TemporaryDirectory() as tmp:
        options = GenerationOptions(
            generator=backend,
            model=None if backend == "anthropic" else "bench-vlm",
            base_url=server.url if backend == "anthropic" else f"{server.url}/v1",
            cache=f"{tmp}/cache.sqlite",
            api_key_env="BENCH_VLM_KEY",
            concurrency=concurrency,
        )
        generator = make_generator(options)
        try:
            warmup = [stage.target({**rows[0], "id": f"warmup#{i}"}) for i in range(concurrency)]
            generator.generate(warmup)  # imports, connection pool: one-time costs, not timed
            chunk = max(64, 32 * concurrency)  # the pipeline's map batch size
            start = time.perf_counter()
            for offset in range(0, n, chunk):
                generator.generate(targets[offset : offset + chunk])
            elapsed = time.perf_counter() - start
        finally:
            generator.close()
        assert server.calls[next(iter(server.calls))] == n + concurrency
    achieved, ideal = n / elapsed, concurrency / delay
    print(
        f"  {backend:<17} {n} requests, delay {delay:.2f} s, concurrency {concurrency}: "
        f"{achieved:6.1f} req/s vs ideal {ideal:6.1f} -> ratio {achieved / ideal:.2f}"
    )
    return achieved / ideal


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--delay", type=float, default=0.25)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--targets", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as work:
        folders = bare_builds(Path(args.data), Path(work))
        bench_template(folders, args.repeats)
        print("VLM path against a fake server (SDK + cache + retry layer + image drawing)")
        for backend in ("anthropic", "openai-compatible"):
            bench_vlm(folders["kvasir_seg"], args.delay, args.concurrency, args.targets, backend)


if __name__ == "__main__":
    main()
