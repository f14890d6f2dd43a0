"""``--engine ray`` on a local Ray instance (2 CPUs, shared by every test here): the same
records, queries and configs as a local build, row for row; a killed Ray build resumes its
unfinished chunks."""

from __future__ import annotations

import sys

import pytest
import ray
from test_shards_and_workers import assert_same_rows, resume_after_kill, same_manifest

from medground_hf.build import build
from medground_hf.folder import read_manifest


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray instance for the session (starting Ray takes several seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_kvasir_on_ray_equals_the_local_build(ray_address, kvasir_dir, generated_kvasir, tmp_path):
    out = tmp_path / "kvasir"
    manifest = build("kvasir_seg", kvasir_dir, out, engine="ray", num_proc=2)
    assert_same_rows(out, generated_kvasir)
    same_manifest(manifest, read_manifest(generated_kvasir))


def test_brats_on_ray_equals_the_local_build(ray_address, brats_dir, built_brats, tmp_path):
    out = tmp_path / "brats"
    manifest = build("brats", brats_dir, out, engine="ray", derived_configs=["all"])
    assert_same_rows(out, built_brats)
    same_manifest(manifest, read_manifest(built_brats))


def test_a_killed_ray_build_resumes_only_unfinished_chunks(
    ray_address, kvasir_dir, generated_kvasir, tmp_path
):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "medground_hf.cli", "build", "kvasir_seg", "--data-dir",
           str(kvasir_dir), "--out", str(out), "--engine", "ray",
           "--ray-address", ray_address]  # fmt: skip
    resume_after_kill(cmd, out, generated_kvasir)
