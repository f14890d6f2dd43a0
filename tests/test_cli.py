"""What a user sees on the command line: one-line errors for unknown names, and one progress bar
per phase of a build with ``datasets``' own bars and log lines kept quiet."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from datasets.utils import logging as datasets_logging

from medground_hf.cli import main


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    return err


def test_unknown_source_is_a_one_line_error(kvasir_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build", "kvasir", "--data-dir", str(kvasir_dir), "--out", str(out)]) == 2
    err = one_line_error(capsys)
    assert err.startswith("medground build: error: unknown source 'kvasir'")
    assert "kvasir_seg" in err and "medground sources" in err
    assert not any(out.glob("*/*.parquet"))


def test_unknown_builder_option_is_a_one_line_error(kvasir_dir, tmp_path, capsys):
    cmd = ["build", "kvasir_seg", "--data-dir", str(kvasir_dir), "--out", str(tmp_path / "o")]
    assert main([*cmd, "--set", "bogus=1", "--set", "min_size=8"]) == 2
    err = one_line_error(capsys)
    assert "kvasir_seg: unknown builder option(s) bogus (options:" in err
    assert "min_size" in err and "group_pattern" in err
    # options with flags of their own are not --set options
    assert main([*cmd, "--set", "on_error=skip"]) == 2
    assert "unknown builder option(s) on_error" in one_line_error(capsys)
    assert main([*cmd, "--config-name", "nope"]) == 2
    assert "'nope' not found" in one_line_error(capsys)


def test_a_build_draws_one_bar_per_phase(hc18_dir, tmp_path, capsys):
    assert datasets_logging.is_progress_bar_enabled()
    out = tmp_path / "hc18"
    assert main(["build", "hc18", "--data-dir", str(hc18_dir), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    bars = {m.group(1) for m in re.finditer(r"(?:^|\r)([A-Za-z][^:\r\n]*?): +\d+%", err, re.M)}
    assert bars == {"items", "generate+verify", "writing formats"}
    for noise in ("Generating", "Filter", "Creating parquet", "Map", "Casting"):
        assert noise not in err
    assert re.search(r"items: 100%.*40/40", err)
    # the caller's datasets settings are back afterwards
    assert datasets_logging.is_progress_bar_enabled()


def test_tqdm_disable_hides_every_bar(hc18_dir, tmp_path):
    """tqdm reads ``TQDM_*`` when it is imported, so this runs the CLI in a fresh process."""
    cmd = [sys.executable, "-m", "medground_hf.cli", "build", "hc18", "--data-dir", str(hc18_dir)]
    done = subprocess.run(
        [*cmd, "--out", str(tmp_path / "hc18")],
        capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Built " in done.stdout and not re.search(r"\d+%\|", done.stderr)


def test_an_error_mid_phase_starts_its_own_line(kvasir_dir, tmp_path, capsys):
    """The items bar is open when the second item fails: the error must not be glued to it."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    first, second = sorted((kvasir_dir / "images").iterdir())[:2]
    for image in (first, second):
        (data / "images" / image.name).write_bytes(image.read_bytes())
    mask = kvasir_dir / "masks" / first.name
    (data / "masks" / first.name).write_bytes(mask.read_bytes())
    cmd = ["build", "image_mask_folder", "--data-dir", str(data), "--out", str(tmp_path / "o")]
    assert main(cmd) == 2
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("medground build: error: ")
    assert "no mask matches" in errors[0] and lines[-1] == errors[0]
