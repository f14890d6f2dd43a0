"""One build, three ways: in one process, in worker processes (``--num-proc``), and as three
shards merged back; each gives the same rows. A killed build resumes its unfinished chunks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medground_hf.build import BuildError, build
from medground_hf.cli import main
from medground_hf.folder import config_shards, config_splits, read_manifest
from medground_hf.merge import merge
from medground_hf.staging import RESUME, WORK, staging_path


def table(folder: Path, config: str, split: str) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in config_shards(folder, config, split))


def assert_same_rows(a: Path, b: Path) -> None:
    """Same configs, splits and rows in the same order, every column (images included)."""
    assert config_splits(a) == config_splits(b)
    for config, splits in config_splits(a).items():
        for split in splits:
            left, right = table(a, config, split), table(b, config, split)
            assert left.num_rows == right.num_rows, (config, split)
            assert left.to_pylist() == right.to_pylist(), (config, split)


def same_manifest(a: dict, b: dict) -> None:
    a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))  # as medground.json holds them
    for key in ("counts", "skipped", "verification", "sources", "builds", "formats"):
        assert a.get(key) == b.get(key), key


def test_three_shards_merge_back_to_the_unsharded_build(kvasir_dir, generated_kvasir, tmp_path):
    parts = []
    for index in (2, 0, 1):  # any order: merge puts them in shard order
        out = tmp_path / f"part{index}"
        code = main(["build", "kvasir_seg", "--data-dir", str(kvasir_dir), "--out", str(out),
                     "--shard", f"{index}/3"])  # fmt: skip
        assert code == 0
        parts.append(out)
        shard = read_manifest(out)["shard"]
        assert (shard["index"], shard["count"], shard["items_total"]) == (index, 3, 40)
    sizes = [read_manifest(p)["counts"]["items_read"] for p in parts]
    assert sum(sizes) == 40 and all(sizes)
    merged = merge(parts, tmp_path / "merged")
    assert_same_rows(tmp_path / "merged", generated_kvasir)
    same_manifest(merged, read_manifest(generated_kvasir))
    with pytest.raises(BuildError, match=r"missing \[1\]"):
        merge([parts[0], parts[1]], tmp_path / "incomplete")


def test_bad_shard_spec_is_refused(kvasir_dir, tmp_path, capsys):
    code = main(["build", "kvasir_seg", "--data-dir", str(kvasir_dir), "--out",
                 str(tmp_path / "x"), "--shard", "3/3"])  # fmt: skip
    assert code == 2
    assert "--shard must be i/N with 0 <= i < N" in capsys.readouterr().err


def test_worker_processes_give_the_same_folder(kvasir_dir, generated_kvasir, tmp_path):
    out = tmp_path / "two"
    manifest = build("kvasir_seg", kvasir_dir, out, num_proc=2)
    assert_same_rows(out, generated_kvasir)
    same_manifest(manifest, read_manifest(generated_kvasir))


def run_until(cmd: list[str], work: Path, stage: str, done: int) -> None:
    """Start a build and kill it (SIGKILL, no clean-up) once ``done`` chunks of ``stage`` are
    finished; fails if the build ended first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if len(list((work / stage).glob("*.json"))) >= done:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return
            if proc.poll() is not None:
                pytest.fail(f"the build ended (code {proc.returncode}) before it could be killed")
            time.sleep(0.01)
        pytest.fail("the build never got that far")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def resume_after_kill(cmd: list[str], out: Path, reference: Path) -> None:
    """Kill a build midway, run it again: finished chunks are kept as they were, the rest is
    made, and the result equals an uninterrupted build."""
    work = staging_path(out) / WORK / RESUME / "chunks"
    run_until(cmd, work, "verified", 4)
    assert not (out / "medground.json").exists()
    done = sorted(p.name for p in (work / "verified").glob("*.json"))
    assert 4 <= len(done) < 24
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not work.exists()
    assert_same_rows(out, reference)
    log = proc.stderr
    assert "records: 24 of 24 chunks already done" in log, log[-2000:]
    assert f"verified: {len(done)} of 24 chunks already done" in log, log[-2000:]


def test_a_killed_build_resumes_only_unfinished_chunks(kvasir_dir, generated_kvasir, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "medground_hf.cli", "build", "kvasir_seg", "--data-dir",
           str(kvasir_dir), "--out", str(out)]  # fmt: skip
    resume_after_kill(cmd, out, generated_kvasir)
    assert json.loads((out / "medground.json").read_text())["counts"]["items_built"] == 40
