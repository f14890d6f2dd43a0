"""``medground --help``, each command's help and argument or input errors answer without loading
Arrow, ``datasets``, pandas, nibabel or Ray: together they cost more than a second of start-up,
and none of them is needed to parse a command line or refuse it. Each case runs the CLI in a
fresh interpreter and reads which modules it loaded (a behavioural check; the timings are
measured by ``benchmarks/bench_cli.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medground_hf.cli import parser

HEAVY = ("datasets", "pyarrow", "pandas", "nibabel", "ray")
PROBE = f"""
import json, sys
from medground_hf.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
with open(sys.argv[1], "w") as fh:
    json.dump({{"code": code, "loaded": loaded}}, fh)
"""


def run_cli(tmp_path: Path, *args: str) -> tuple[dict, str]:
    """Exit code and heavy modules loaded by ``medground ARGS``, and what it wrote to stderr."""
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args], capture_output=True, text=True
    )
    assert report.is_file(), done.stderr
    return json.loads(report.read_text()), done.stderr


def commands() -> list[str]:
    sub = next(a for a in parser()._actions if a.dest == "command")
    return sorted(sub.choices)


def test_every_command_is_covered():
    assert {"build", "export", "eval", "verify", "publish", "merge"} <= set(commands())


@pytest.mark.parametrize("args", [["--help"], *([c, "--help"] for c in commands())])
def test_help_loads_no_heavy_module(tmp_path, args):
    result, _ = run_cli(tmp_path, *args)
    assert result == {"code": 0, "loaded": []}


def test_a_missing_data_dir_is_refused_before_anything_is_loaded_or_staged(tmp_path):
    result, stderr = run_cli(
        tmp_path, "build", "kvasir_seg", "--data-dir", str(tmp_path / "nope"), "--out",
        str(tmp_path / "out"),
    )  # fmt: skip
    assert result == {"code": 2, "loaded": []}
    assert f"{tmp_path / 'nope'}: data dir does not exist or is not a folder" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # nothing staged


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--num-proc", "x"], "argument --num-proc: invalid int value: 'x'"),
        (["--on-error", "ignore"], "argument --on-error: invalid choice: 'ignore'"),
        (["--configs", "coco,chat-nosuch"], "unknown derived config(s) ['chat-nosuch']"),
        (["--shard", "3/2"], "--shard must be i/N with 0 <= i < N"),
        (["--split-ratios", "train=0.5,test=0.2"], "split ratios"),
        (["--ray-address", "127.0.0.1:6379"], "--ray-address needs --engine ray"),
        (["--work-dir", "/tmp/medground-work"], "--work-dir is for a URL --out"),
    ],
)
def test_a_bad_option_is_refused_before_anything_is_loaded(tmp_path, kvasir_dir, option, message):
    result, stderr = run_cli(
        tmp_path, "build", "kvasir_seg", "--data-dir", str(kvasir_dir), "--out",
        str(tmp_path / "out"), *option,
    )  # fmt: skip
    assert result == {"code": 2, "loaded": []}
    assert message in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # nothing staged


def test_an_unknown_source_is_refused_before_anything_is_loaded(tmp_path, kvasir_dir):
    result, stderr = run_cli(
        tmp_path, "build", "nosuch", "--data-dir", str(kvasir_dir), "--out", str(tmp_path / "out")
    )
    assert result == {"code": 2, "loaded": []}
    assert "unknown source 'nosuch' (known: brats, coco_instances," in stderr
    assert not (tmp_path / "out").exists()
