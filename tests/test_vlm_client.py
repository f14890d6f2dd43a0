"""What keeps the VLM client cheap per request, checked against the fake server over HTTP with
the real SDKs: at most ``--concurrency`` requests in flight, all on one pool of that many
connections; the outline drawn from the target's box equals eroding the whole image; the heap
frozen out of full garbage collections only while requests run."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from datasets import Image, load_dataset
from medground_hf.generation.commands import make_generator
from medground_hf.generation.pipeline import Siblings, Stage, labels_of
from medground_hf.generation.templates import TemplateGenerator
from medground_hf.generation.vlm import Job, outline_of
from scipy import ndimage
from test_generation_vlm import BACKENDS, _path, options

from medground_hf.folder import read_manifest
from medground_hf.geometry import decode_rle

N = 24


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("FAKE_VLM_KEY", "sk-fake-client-test")


@pytest.fixture(scope="module")
def records(built_kvasir) -> list[dict]:
    splits = dict(load_dataset(str(built_kvasir), "grounding"))
    return [r for ds in splits.values() for r in ds.cast_column("image", Image(decode=False))]


@pytest.fixture(scope="module")
def targets(built_kvasir, records) -> list:
    """``N`` targets with distinct ids (so distinct requests), cycling over the samples."""
    splits = dict(load_dataset(str(built_kvasir), "grounding"))
    labels = labels_of(read_manifest(built_kvasir)["sources"])
    stage = Stage(TemplateGenerator(), None, labels, Siblings.scan(splits))
    return [stage.target({**records[i % len(records)], "id": f"t{i}"}) for i in range(N)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_at_most_concurrency_in_flight_on_one_pool(backend, server, tmp_path, targets):
    server.delay = 0.1  # answers overlap
    generator = make_generator(options(server, tmp_path, backend, concurrency=4))
    try:
        generated = generator.generate(targets)
    finally:
        generator.close()
    assert [g.failure for g in generated] == [None] * N and all(g.items for g in generated)
    assert server.calls[_path(backend)] == N
    assert server.max_inflight == 4  # reached, never passed
    assert len(server.clients) <= 4  # the connections of one pool, each reused


def test_the_outline_found_in_the_box_equals_eroding_the_whole_image(records):
    masks = [decode_rle(r["mask"]) for r in records]
    corner = np.zeros((20, 30), bool)
    corner[:6, 24:] = True  # touches the image's top and right edges
    thin = np.zeros((9, 9), bool)
    thin[4, 2:7] = True
    for mask in [*masks, corner, thin, np.zeros((5, 5), bool), np.ones((4, 4), bool)]:
        for width in (1, 2, 3):
            expected = mask & ~ndimage.binary_erosion(mask, iterations=width)
            assert np.array_equal(outline_of(mask, width), expected)


def test_the_heap_is_frozen_only_while_requests_run(server, tmp_path, targets):
    generator = make_generator(options(server, tmp_path, "openai-compatible"))
    frozen: list[int] = []

    def observed(job: Job) -> Job:
        def request():
            frozen.append(gc.get_freeze_count())
            return job.request()

        return Job(job.key, job.target, request)

    try:
        generator.runner.run([observed(generator.job(t)) for t in targets[:4]])
        assert len(frozen) == 4 and min(frozen) > 0  # while the requests were built and sent
        assert gc.get_freeze_count() == 0  # given back to the collector afterwards
        gc.freeze()  # a caller that froze its heap itself keeps it frozen
        try:
            generator.runner.run([observed(generator.job(t)) for t in targets[4:8]])
            assert gc.get_freeze_count() > 0  # not unfrozen by the run
        finally:
            gc.unfreeze()
    finally:
        generator.close()
