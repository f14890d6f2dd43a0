"""Peak memory of a default build stays flat as the corpus grows: 2,000 items against 40, each
built in a fresh process (the peak RSS of a process only ever grows). The peak is the process's
own ``VmHWM``: ``ru_maxrss`` would carry the pytest parent's peak across fork and exec."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic import write_corpus

MEASURE = """
import json, re, sys
from medground_hf.cli import main
code = main(sys.argv[1:])
status = open("/proc/self/status").read()
print(json.dumps({"code": code, "peak_kb": int(re.search(r"VmHWM:\\s+(\\d+)", status)[1])}))
"""


def peak_kb(corpus: Path, out: Path) -> int:
    cmd = [sys.executable, "-c", MEASURE, "build", "image_mask_folder", "--data-dir", str(corpus),
           "--out", str(out), "--set", "min_size=16"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    return result["peak_kb"]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    return {n: write_corpus(root / f"n{n}", n) for n in (40, 2000)}


def test_peak_memory_at_2000_items_is_within_1_2x_of_40(corpora, tmp_path):
    small = peak_kb(corpora[40], tmp_path / "small")
    large = peak_kb(corpora[2000], tmp_path / "large")
    manifest = json.loads((tmp_path / "large" / "medground.json").read_text())
    assert manifest["counts"]["items_built"] == 2000  # the large build did the whole corpus
    assert large <= 1.2 * small, f"peak RSS {large} kB at 2,000 items vs {small} kB at 40"
