"""The VLM client against a slow server: achieved request rate as a share of the ideal, and the
client's CPU per request (issue 13: concurrency 32 against a 200 ms server reaches >= 0.9 of the
ideal ``concurrency / delay``).

Paired and interleaved: each round runs both generators (anthropic, openai-compatible; the order
alternates between rounds) through the real SDKs, the retry layer, a fresh request cache (every
request really sent) and the image drawing, on distinct Kvasir-SEG targets. The fake server of
the tests runs in a process of its own (lean mode: counts only), so the client's CPU is its
process's CPU alone; the server's CPU is reported next to it (both share the machine's cores).
Medians over rounds.

Run:  python benchmarks/bench_vlm_client.py [--delay 0.2] [--concurrency 32] [--requests 960]
      [--rounds 5] [--data ../shared/data] [--built DIR] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from datasets import Image, load_dataset
from medground_hf.generation.commands import GenerationOptions, make_generator
from medground_hf.generation.pipeline import Siblings, Stage, labels_of
from medground_hf.generation.templates import TemplateGenerator

from medground_hf.build import build
from medground_hf.folder import read_manifest

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "tests" / "fake_vlm_server.py"
BACKENDS = ("anthropic", "openai-compatible")
KEY_ENV = "BENCH_VLM_KEY"


def targets(folder: Path, n: int, tag: str) -> list:
    """``n`` generation targets with distinct ids (distinct cache keys: each is a request),
    cycling over the built Kvasir-SEG records."""
    splits = dict(load_dataset(str(folder), "grounding"))
    labels = labels_of(read_manifest(folder)["sources"])
    rows = [r for ds in splits.values() for r in ds.cast_column("image", Image(decode=False))]
    stage = Stage(TemplateGenerator(), None, labels, Siblings.scan(splits))
    return [stage.target({**rows[i % len(rows)], "id": f"{tag}#{i}"}) for i in range(n)]


class Server:
    """The fake server in its own process; its CPU seconds read from /proc."""

    def __init__(self, delay: float):
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), "--delay", str(delay), "--lean"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = self.process.stdout.readline().strip()

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.process.stdin.close()  # the server stops when its stdin closes
        self.process.wait(timeout=10)


def one_round(backend: str, server: Server, work: list, warm: list, concurrency: int, tmp: str):
    """Send ``work`` through a fresh generator and cache; wall, client CPU and server CPU of the
    timed part (after a warm-up wave: imports, connections)."""
    options = GenerationOptions(
        generator=backend,
        model=None if backend == "anthropic" else "bench-vlm",
        base_url=server.url if backend == "anthropic" else f"{server.url}/v1",
        cache=f"{tmp}/{backend}-{time.monotonic_ns()}.sqlite",
        api_key_env=KEY_ENV,
        concurrency=concurrency,
    )
    generator = make_generator(options)
    try:
        generator.generate(warm)
        chunk = max(64, 32 * concurrency)  # the pipeline's map batch size
        served, cpu, start = server.cpu(), time.process_time(), time.perf_counter()
        loop = time.thread_time()  # the event loop's thread (images are drawn in others)
        for offset in range(0, len(work), chunk):
            out = generator.generate(work[offset : offset + chunk])
            assert all(g.failure is None for g in out), next(g.failure for g in out if g.failure)
        wall, loop = time.perf_counter() - start, time.thread_time() - loop
        return wall, time.process_time() - cpu, loop, server.cpu() - served
    finally:
        generator.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--built", help="a Kvasir-SEG folder built with --generator none (else built)")
    p.add_argument("--delay", type=float, default=0.2)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--requests", type=int, default=960)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--profile", help="write a cProfile of the client's timed part here")
    args = p.parse_args()
    os.environ[KEY_ENV] = "bench-key"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.built) if args.built else Path(tmp) / "kvasir"
        if not args.built:
            build("kvasir_seg", Path(args.data) / "kvasir_seg", folder, generator="none")
        work = targets(folder, args.requests, "bench")
        warm = targets(folder, args.concurrency, "warm")
        server = Server(args.delay)
        profile = cProfile.Profile(time.thread_time) if args.profile else None  # loop thread CPU
        results: dict[str, list[tuple[float, float, float, float]]] = {b: [] for b in BACKENDS}
        try:
            for r in range(args.rounds):
                for backend in BACKENDS if r % 2 == 0 else BACKENDS[::-1]:
                    if profile:
                        profile.enable()
                    measured = one_round(backend, server, work, warm, args.concurrency, tmp)
                    if profile:
                        profile.disable()
                    results[backend].append(measured)
                    wall, cpu, loop, served = (1000 * x / args.requests for x in measured)
                    print(
                        f"  round {r} {backend:<17} {1000 / wall:6.1f} req/s, client {cpu:5.2f} "
                        f"ms CPU/req ({loop:5.2f} in the loop thread), server {served:5.2f}",
                        flush=True,
                    )
        finally:
            server.close()
        if profile:
            profile.dump_stats(args.profile)
    ideal = args.concurrency / args.delay
    n = args.requests
    print(
        f"VLM client, {n} requests/round, concurrency {args.concurrency}, server delay "
        f"{1000 * args.delay:.0f} ms (ideal {ideal:.1f} req/s), medians of {args.rounds} rounds:"
    )
    print(
        "| generator | req/s | ratio of ideal | client CPU ms/request (loop thread) "
        "| server CPU ms/request |"
    )
    print("|---|---|---|---|---|")
    for backend, rows in results.items():
        rate = statistics.median(n / wall for wall, *_ in rows)
        cpu, loop, served = (
            statistics.median(1000 * row[i] / n for row in rows) for i in (1, 2, 3)
        )
        print(
            f"| {backend} | {rate:.1f} | {rate / ideal:.2f} | {cpu:.2f} ({loop:.2f}) "
            f"| {served:.2f} |"
        )
    paired = [
        a[0] / o[0] for a, o in zip(results["openai-compatible"], results["anthropic"], strict=True)
    ]
    print(f"anthropic / openai-compatible rate, paired median: {statistics.median(paired):.2f}")


if __name__ == "__main__":
    main()
