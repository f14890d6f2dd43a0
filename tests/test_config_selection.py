"""Choosing which derived configs a build writes (each embeds its images)."""

from __future__ import annotations

import pytest

from medground_hf.build import build
from medground_hf.cli import main
from medground_hf.folder import config_splits, read_manifest
from medground_hf.merge import merge


def test_build_writes_only_the_chosen_configs_and_generate_keeps_them(kvasir_dir, tmp_path):
    out = tmp_path / "k"
    assert main(["build", "kvasir_seg", "--data-dir", str(kvasir_dir), "--out", str(out),
                 "--configs", "chat-qwen2.5-vl,coco"]) == 0  # fmt: skip
    assert set(config_splits(out)) == {"grounding", "coco", "chat-qwen2.5-vl"}
    assert read_manifest(out)["derived_configs"] == ["coco", "chat-qwen2.5-vl"]
    assert main(["generate", str(out), "--seed", "5"]) == 0
    assert set(config_splits(out)) == {"grounding", "coco", "chat-qwen2.5-vl"}


def test_none_writes_no_derived_config(hc18_dir, tmp_path):
    out = tmp_path / "h"
    assert main(["build", "hc18", "--data-dir", str(hc18_dir), "--out", str(out),
                 "--configs", "none"]) == 0  # fmt: skip
    assert set(config_splits(out)) == {"grounding"}


def test_unknown_config_is_refused_before_anything_is_written(kvasir_dir, tmp_path):
    with pytest.raises(ValueError, match="chat-foo"):
        build("kvasir_seg", kvasir_dir, tmp_path / "x", derived_configs=["coco", "chat-foo"])
    assert not (tmp_path / "x").exists()


def test_merge_writes_what_any_part_chose(kvasir_dir, hc18_dir, tmp_path):
    build("kvasir_seg", kvasir_dir, tmp_path / "k", derived_configs=["chat-llava"])
    build("hc18", hc18_dir, tmp_path / "h", derived_configs=["coco"])
    merge([tmp_path / "k", tmp_path / "h"], tmp_path / "m")
    assert set(config_splits(tmp_path / "m")) == {"grounding", "coco", "chat-llava"}
