"""``--engine ray`` on a local Ray instance (2 CPUs, shared by every test here): the same
records, queries and configs as a local build, row for row; a killed Ray build resumes its
unfinished chunks."""

from __future__ import annotations

import os
import sys

import pytest
import ray
from test_shards_and_workers import assert_same_rows, resume_after_kill, same_manifest

from medground_hf.build import build, shared_cache
from medground_hf.errors import BuildError
from medground_hf.folder import read_manifest

KEY_ENV, KEY = "MEDGROUND_RAY_TEST_KEY", "sk-fake-ray-test"


@pytest.fixture(scope="session")
def ray_address(object_store):
    """One local Ray instance for the session (starting Ray takes several seconds). Its workers
    get the environment it starts with: an API key and the object store's endpoint and
    credentials, as on any cluster, are set on every node."""
    os.environ[KEY_ENV] = KEY
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


def test_a_ray_build_reads_and_writes_urls(ray_address, object_store, generated_kvasir, tmp_path):
    """Workers read the corpus from the object store; the driver's staging folder (here on one
    machine; --work-dir on shared storage for several) is uploaded and swapped in."""
    out = object_store.new_url("kvasir-ray")
    manifest = build("kvasir_seg", object_store.url("kvasir"), out, engine="ray", num_proc=2,
                     work_dir=tmp_path / "work")  # fmt: skip
    assert_same_rows(object_store.download(out, tmp_path / "copy"), generated_kvasir)
    same_manifest(manifest, read_manifest(generated_kvasir))


def test_a_killed_ray_build_resumes_only_unfinished_chunks(
    ray_address, kvasir_dir, generated_kvasir, tmp_path
):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "medground_hf.cli", "build", "kvasir_seg", "--data-dir",
           str(kvasir_dir), "--out", str(out), "--engine", "ray",
           "--ray-address", ray_address]  # fmt: skip
    resume_after_kill(cmd, out, generated_kvasir)


def test_a_vlm_build_on_ray_shares_one_request_cache(
    ray_address, kvasir_dir, tmp_path, monkeypatch
):
    """Workers on Ray write answers to a folder cache in the staging folder (machines share no
    SQLite file); the build adds them to the user's SQLite cache, so a later local run of the
    same build sends no request at all and writes the same rows."""
    from fake_vlm_server import FakeVLM

    cache = tmp_path / "requests.sqlite"
    with FakeVLM() as server:
        options = {
            "model": "local-vlm",
            "base_url": f"{server.url}/v1",
            "api_key_env": KEY_ENV,
            "cache": str(cache),
            "queries_per_target": 2,
        }
        on_ray = build("kvasir_seg", kvasir_dir, tmp_path / "ray", engine="ray",
                       generator="openai-compatible", generation_options=options)  # fmt: skip
        asked = server.calls["/v1/chat/completions"]
        assert asked == on_ray["verification"]["usage"]["requests"] > 0
        local = build("kvasir_seg", kvasir_dir, tmp_path / "local",
                      generator="openai-compatible", generation_options=options)  # fmt: skip
        assert server.calls["/v1/chat/completions"] == asked  # all answers came from the cache
        again = build("kvasir_seg", kvasir_dir, tmp_path / "ray-again", engine="ray",
                      generator="openai-compatible", generation_options=options)  # fmt: skip
        assert server.calls["/v1/chat/completions"] == asked  # a later Ray run pays nothing
    assert local["verification"]["usage"]["cached"] == asked
    assert again["verification"]["usage"]["cached"] == asked
    assert_same_rows(tmp_path / "ray", tmp_path / "local")
    assert_same_rows(tmp_path / "ray", tmp_path / "ray-again")


def test_a_cluster_of_several_machines_needs_a_folder_cache(tmp_path):
    """Workers on other machines cannot read the driver's SQLite cache: refused, not paid twice."""
    options = {"generator": "openai-compatible", "judge": "offline", "cache": None}
    with pytest.raises(BuildError, match="cluster of 3 machines .*a path ending in /"):
        shared_cache(options, "ray", tmp_path, nodes=3)
    one, sqlite = shared_cache(options, "ray", tmp_path, nodes=1)
    assert one["cache"] == f"{tmp_path / 'requests'}/" and one["read_cache"] == str(sqlite)
    chosen = {**options, "cache": f"{tmp_path / 'shared'}/"}
    assert shared_cache(chosen, "ray", tmp_path, nodes=3) == (chosen, None)
