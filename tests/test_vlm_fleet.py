"""A VLM fleet behind one ``--base-url``, driven by Ray Data: three fake OpenAI-compatible
servers behind a round-robin load balancer (``tests/fleet_proxy.py``), a Ray build of the
Kvasir-SEG samples with the openai-compatible generator. The requests spread over the servers,
come from Ray's worker processes (not the driver), each keeping at most ``--concurrency`` in
flight, the fleet at most ``num_proc x concurrency``; every request is paid once, also when the
build runs again with the same (folder) request cache; the rows are those of a local build
against the same fleet."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import ray
from fake_vlm_server import FakeVLM
from fleet_proxy import RoundRobinProxy
from test_ray import KEY, KEY_ENV
from test_shards_and_workers import assert_same_rows

from medground_hf.build import build

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="the load balancer finds clients in /proc"
)
NUM_PROC, CONCURRENCY = 2, 2


@pytest.fixture(scope="module")
def local_ray(monkeypatch_module):
    """The session's Ray instance when tests/test_ray.py started one (its workers hold the API
    key variable), else one for this module."""
    monkeypatch_module.setenv(KEY_ENV, KEY)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture
def fleet():
    """Three servers answering after 100 ms (so requests overlap) behind one URL."""
    servers = [FakeVLM(delay=0.1) for _ in range(3)]
    for server in servers:
        server.__enter__()
    try:
        with RoundRobinProxy([s.url for s in servers]) as proxy:
            yield proxy, servers
    finally:
        for server in servers:
            server.__exit__(None, None, None)


def paid(servers: list[FakeVLM]) -> Counter:
    """Answers given per distinct request body, over the whole fleet."""
    return sum((s.paid for s in servers), Counter())


def test_a_ray_build_drives_a_fleet_behind_one_base_url(local_ray, kvasir_dir, fleet, tmp_path):
    proxy, servers = fleet
    options = {
        "model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "base_url": f"{proxy.url}/v1",
        "api_key_env": KEY_ENV,
        "cache": f"{tmp_path / 'requests'}/",  # a folder cache, on storage every node sees
        "concurrency": CONCURRENCY,
        "queries_per_target": 2,
    }
    manifest = build("kvasir_seg", kvasir_dir, tmp_path / "ray", engine="ray", num_proc=NUM_PROC,
                     generator="openai-compatible", generation_options=options)  # fmt: skip
    sent = sum(proxy.forwarded.values())
    usage = manifest["verification"]["usage"]
    assert sent == usage["requests"] == sum(s.calls["/v1/chat/completions"] for s in servers)
    assert sent >= 45  # a request per target not rejected before asking

    # spread evenly over the fleet, paid once each
    assert max(proxy.forwarded.values()) - min(proxy.forwarded.values()) <= 1
    assert len(proxy.forwarded) == len(servers)
    assert max(paid(servers).values()) == 1 and sum(paid(servers).values()) == sent

    # at most --concurrency in flight per worker process (reached: images with two polyps),
    # num_proc x concurrency over all (how many tasks run at once is Ray's to decide)
    assert None not in proxy.max_by_process and os.getpid() not in proxy.max_by_process
    assert max(proxy.max_by_process.values()) == CONCURRENCY
    assert proxy.max_inflight <= NUM_PROC * CONCURRENCY

    # run again (same cache, new output): nothing is sent, the same rows come out
    again = build("kvasir_seg", kvasir_dir, tmp_path / "again", engine="ray", num_proc=NUM_PROC,
                  generator="openai-compatible", generation_options=options)  # fmt: skip
    assert sum(proxy.forwarded.values()) == sent
    assert again["verification"]["usage"]["cached"] == sent
    assert_same_rows(tmp_path / "again", tmp_path / "ray")

    # a local build against the same fleet (its own cache) asks the same and writes the same
    local = {**options, "cache": str(tmp_path / "local.sqlite")}
    build("kvasir_seg", kvasir_dir, tmp_path / "local", generator="openai-compatible",
          generation_options=local)  # fmt: skip
    assert sum(proxy.forwarded.values()) == 2 * sent
    assert set(paid(servers).values()) == {2}  # each distinct request once per cache
    assert_same_rows(tmp_path / "ray", tmp_path / "local")
