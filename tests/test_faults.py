"""Fault injection: ``build``, ``generate``, ``merge`` and ``export`` killed with SIGKILL at every
write phase (``MEDGROUND_FAULT``), and a full disk (injected, and a real 512 kB tmpfs when this
machine lets us mount one). After each kill the folder is the old one or the new complete one,
never a mix; the rerun of the same command completes with the same files as an uninterrupted
run. The commands run as real subprocesses of the installed CLI."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fake_vlm_server import FakeVLM

from medground_hf.folder import read_manifest
from medground_hf.integrity import check_folder
from medground_hf.staging import old_path, recover, staging_path

KILLED = -signal.SIGKILL
WRITE_PHASES = ("shards", "formats", "manifest", "commit", "swap")


def cases(*phases: str) -> list:
    """Each phase with the atomic exchange, and the swap also with the two-rename fallback (the
    only phase the rename method changes)."""
    return [pytest.param(p, True, id=p) for p in phases] + [
        pytest.param("swap", False, id="swap-two-renames")
    ]


KEY = "sk-fault-test"


def run(*args: str, fault: str | None = None, exchange: bool = True, **env: str):
    environ = {k: v for k, v in os.environ.items() if k != "MEDGROUND_FAULT"}
    environ.update(env)
    if fault:
        environ["MEDGROUND_FAULT"] = fault
    if not exchange:
        environ["MEDGROUND_NO_EXCHANGE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "medground_hf.cli", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


def state(folder: Path) -> dict[str, str] | None:
    """Every file of a folder by its sha256 (None when the folder is missing)."""
    if not folder.exists():
        return None
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def subset(src: Path, dst: Path, stems: list[str]) -> Path:
    """A Kvasir-SEG corpus of a few sample images (symlinks to the read-only samples)."""
    for sub in ("images", "masks"):
        (dst / sub).mkdir(parents=True)
        for stem in stems:
            name = next(p.name for p in (src / sub).iterdir() if p.stem == stem)
            (dst / sub / name).symlink_to(src / sub / name)
    return dst


@pytest.fixture(scope="module")
def corpus(kvasir_dir, tmp_path_factory) -> Path:
    stems = sorted(p.stem for p in (kvasir_dir / "images").iterdir())[:10]
    return subset(kvasir_dir, tmp_path_factory.mktemp("corpus") / "kvasir", stems)


def build_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["build", "kvasir_seg", "--data-dir", str(corpus), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def old(corpus, tmp_path_factory) -> Path:
    """The folder a rebuild replaces: the same corpus, other query wording (seed 1)."""
    out = tmp_path_factory.mktemp("old") / "out"
    assert run(*build_args(corpus, out, "--seed", "1")).returncode == 0
    return out


@pytest.fixture(scope="module")
def new(corpus, tmp_path_factory) -> Path:
    """An uninterrupted build with seed 0: what every interrupted one must end up as."""
    out = tmp_path_factory.mktemp("new") / "out"
    assert run(*build_args(corpus, out, "--seed", "0")).returncode == 0
    return out


def assert_old_or_new(out: Path, before: dict, after: dict) -> None:
    """What a user sees after the kill: the old folder or the new complete one; the leftover of
    an interrupted two-rename swap is put back by the next command that opens the folder."""
    if not out.exists():
        assert old_path(out).is_dir()
        recover(out)
    assert state(out) in (before, after)
    check_folder(out)


@pytest.mark.parametrize(("phase", "exchange"), cases("records", *WRITE_PHASES))
def test_build_killed_at_each_phase(phase, exchange, corpus, old, new, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(old, out)
    before = state(out)
    args = build_args(corpus, out, "--seed", "0", "--overwrite")
    killed = run(*args, fault=phase, exchange=exchange)
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    assert_old_or_new(out, before, state(new))
    if phase != "swap":
        assert state(out) == before  # killed before the swap: the old folder, untouched
    done = run(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert state(out) == state(new)
    assert not staging_path(out).exists() and not old_path(out).exists()


def test_build_killed_mid_items_resumes_the_finished_ones(kvasir_dir, generated_kvasir, tmp_path):
    """40 items, killed after the 36th: the items checkpointed (in chunks of 32, and at the end
    of each split) are not read again."""
    out = tmp_path / "kvasir"
    args = build_args(kvasir_dir, out)
    killed = run(*args, fault="item@36")
    assert killed.returncode == KILLED
    assert not out.exists() and staging_path(out).is_dir()
    done = run(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = re.findall(r"split \w+: (\d+) item\(s\) taken from the interrupted run, (\d+) read",
                         done.stderr)  # fmt: skip
    taken, read = (sum(int(r[i]) for r in resumed) for i in (0, 1))
    assert 32 <= taken <= 35 and taken + read == 40
    assert read_manifest(out)["files"] == read_manifest(generated_kvasir)["files"]
    again = run(*args)  # finished: nothing is rebuilt
    assert again.returncode == 0 and "already written by this same command" in again.stderr
    assert state(out) is not None and not staging_path(out).exists()


def with_notes(old: Path, out: Path) -> Path:
    shutil.copytree(old, out)
    (out / "NOTES.txt").write_text("my notes")  # a file of the user's: carried over
    return out


@pytest.fixture(scope="module")
def regenerated(old, tmp_path_factory) -> Path:
    """``generate --seed 0`` on the old folder, uninterrupted."""
    out = with_notes(old, tmp_path_factory.mktemp("regenerated") / "out")
    assert run("generate", str(out), "--seed", "0").returncode == 0
    return out


@pytest.mark.parametrize(("phase", "exchange"), cases(*WRITE_PHASES))
def test_generate_killed_at_each_phase(phase, exchange, old, regenerated, tmp_path):
    out = with_notes(old, tmp_path / "out")
    before = state(out)
    killed = run("generate", str(out), "--seed", "0", fault=phase, exchange=exchange)
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    assert_old_or_new(out, before, state(regenerated))
    if phase != "swap":
        assert state(out) == before
    if state(out) == before:  # the rerun; once replaced, generating again would start anew
        assert run("generate", str(out), "--seed", "0").returncode == 0
    assert state(out) == state(regenerated)


def test_generate_with_a_vlm_killed_mid_answers_pays_each_answer_once(old, tmp_path):
    """Killed after the 3rd answer was saved: the rerun asks only for the others."""
    out = tmp_path / "out"
    shutil.copytree(old, out)
    cache = tmp_path / "cache.sqlite"
    with FakeVLM() as server:
        args = ["generate", str(out), "--generator", "anthropic", "--base-url", server.url,
                "--api-key-env", "FAULT_KEY", "--cache", str(cache),
                "--concurrency", "1"]  # fmt: skip
        killed = run(*args, fault="answer@3", FAULT_KEY=KEY)
        assert killed.returncode == KILLED
        assert server.calls["/v1/messages"] == 3
        done = run(*args, FAULT_KEY=KEY)
        assert done.returncode == 0, done.stderr[-2000:]
        usage = read_manifest(out)["verification"]["usage"]
        assert usage["cached"] == 3
        assert server.calls["/v1/messages"] == 3 + usage["requests"]
        assert server.paid_twice() == []


@pytest.fixture(scope="module")
def parts(corpus, hc18_dir, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("parts")
    hc18 = root / "hc18corpus"
    (hc18 / "training_set").mkdir(parents=True)
    for path in sorted((hc18_dir / "training_set").iterdir())[:12]:  # 6 images, 6 annotations
        (hc18 / "training_set" / path.name).symlink_to(path)
    for name in os.listdir(hc18_dir):
        if name.endswith(".csv"):
            (hc18 / name).symlink_to(hc18_dir / name)
    a, b = root / "kvasir", root / "hc18"
    assert run(*build_args(corpus, a)).returncode == 0
    done = run("build", "hc18", "--data-dir", str(hc18), "--out", str(b))
    assert done.returncode == 0, done.stderr[-2000:]
    return a, b


@pytest.mark.parametrize(("phase", "exchange"), cases(*WRITE_PHASES))
def test_merge_killed_at_each_phase(phase, exchange, parts, old, tmp_path):
    reference = tmp_path / "ref" / "out"
    args = ["merge", *map(str, parts), "--out"]
    assert run(*args, str(reference)).returncode == 0
    out = tmp_path / "out"
    shutil.copytree(old, out)
    before = state(out)
    killed = run(*args, str(out), "--overwrite", fault=phase, exchange=exchange)
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    assert_old_or_new(out, before, state(reference))
    assert run(*args, str(out), "--overwrite").returncode == 0
    assert state(out) == state(reference)


def test_export_killed_keeps_the_earlier_export(new, tmp_path):
    to = tmp_path / "coco"
    assert run("export", str(new), "--format", "llava", "--to", str(to)).returncode == 0
    before = state(to)
    killed = run("export", str(new), "--format", "coco", "--to", str(to), fault="export")
    assert killed.returncode == KILLED
    assert state(to) == before
    assert run("export", str(new), "--format", "coco", "--to", str(to)).returncode == 0
    assert "instances_train.json" in state(to) and "train.json" not in state(to)


@pytest.mark.parametrize("phase", ["records", "shards", "manifest"])
def test_a_full_disk_is_one_line_and_replaces_nothing(phase, corpus, old, new, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(old, out)
    before = state(out)
    args = build_args(corpus, out, "--seed", "0", "--overwrite")
    failed = run(*args, fault=f"{phase}:enospc")
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("medground build: error: ") and "No space left on device" in last
    assert "no folder was replaced" in last
    assert state(out) == before
    assert run(*args).returncode == 0 and state(out) == state(new)


@pytest.fixture
def small_disk(tmp_path):
    """A real 512 kB tmpfs (needs root and a kernel that lets this container mount): less than
    the build below needs, which stores each of its 10 images (~270 kB in all) about 3 times."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk(corpus, small_disk):
    out = small_disk / "out"
    failed = run(*build_args(corpus, out))
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("medground build: error: ") and "No space left on device" in last
    assert not out.exists()
