"""Nothing lost, nothing paid twice, against the fake Anthropic/OpenAI server: a request refused
for one target rejects that target only; an abort keeps the answers in flight; a Message Batch
create that times out after the server made the batch leads to exactly one batch; a saved batch
id the API no longer knows recovers with one command; a results download cut mid-stream."""

from __future__ import annotations

import shutil

import pytest
from fake_vlm_server import REFUSAL_MESSAGE, Fault
from medground_hf.generation.anthropic_backend import DEFAULT_MODEL, price
from medground_hf.generation.base import GenerationError
from medground_hf.generation.cache import RequestCache
from medground_hf.generation.commands import GenerationOptions, run_generation
from test_generation_vlm import options as vlm_options
from test_generation_vlm import pick_targets

from medground_hf.cli import main
from medground_hf.folder import read_manifest

N = 25
KEY = "sk-fake-failures"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("FAKE_VLM_KEY", KEY)


@pytest.fixture(scope="module")
def splits(built_kvasir):
    return pick_targets(built_kvasir, N)


@pytest.fixture(scope="module")
def sources(built_kvasir):
    return read_manifest(built_kvasir)["sources"]


def options(server, tmp_path, backend="anthropic", **kw) -> GenerationOptions:
    return vlm_options(server, tmp_path, backend, **{"batch_poll": 0.05, **kw})


def live(backend: str) -> str:
    return "/v1/messages" if backend == "anthropic" else "/v1/chat/completions"


def rejected_rows(outcome) -> list[dict]:
    return [r for ds in outcome.rejected.values() for r in ds.remove_columns(["image"])]


@pytest.mark.parametrize("backend", ["anthropic", "openai-compatible"])
def test_a_permanent_400_rejects_one_target_and_the_run_goes_on(
    backend, server, tmp_path, splits, sources, caplog
):
    server.refuse = {7}
    opts = options(server, tmp_path, backend)
    outcome = run_generation(splits, sources, opts)
    v = outcome.verification
    assert v["targets_total"] == N
    refused = [r for r in rejected_rows(outcome) if r["rejected_stage"] == "generation"]
    assert len(refused) == 1
    assert refused[0]["rejected_reason"] == (
        f"{backend} refused the request (HTTP 400): {REFUSAL_MESSAGE}"
    )
    assert f"{refused[0]['id']}: {backend} refused the request" in caplog.text
    assert server.calls[live(backend)] == N  # a 400 is final: not retried
    assert len(server.paid) == N - 1 and server.paid_twice() == []
    # the rerun asks only the refused one again (a refusal is not cached; it costs nothing)
    again = run_generation(splits, sources, opts)
    assert server.calls[live(backend)] == N + 1
    assert again.verification["usage"]["cached"] == N - 1
    assert server.paid_twice() == []


def test_refusals_of_every_request_abort_the_run(server, tmp_path, splits, sources):
    server.refuse = set(range(N))
    with pytest.raises(GenerationError, match="the first 5 requests were all refused") as error:
        run_generation(splits, sources, options(server, tmp_path, concurrency=1))
    assert REFUSAL_MESSAGE in str(error.value) and "kvasir_seg/" in str(error.value)


def test_an_abort_names_the_target_and_keeps_the_answers_in_flight(
    server, tmp_path, splits, sources
):
    server.delay = 0.2  # every answer takes a while: several are in flight at the abort
    server.faults = [Fault("status", 401)]
    opts = options(server, tmp_path, concurrency=4)
    with pytest.raises(GenerationError) as error:
        run_generation(splits, sources, opts)
    message = str(error.value)
    assert "anthropic request for kvasir_seg/" in message
    assert "AuthenticationError (HTTP 401): fake" in message or "(HTTP 401)" in message
    assert "fake" in message and KEY not in message
    first = server.calls["/v1/messages"]
    answered = len(server.paid)
    assert answered == first - 1 >= 3  # the requests in flight were answered ...
    assert first < N  # ... and nothing queued was sent after the abort
    cache = RequestCache(opts.cache_path())
    saved = cache.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    cache.close()
    assert saved == answered  # ... and saved
    server.delay = 0.0
    run_generation(splits, sources, opts)
    assert server.calls["/v1/messages"] == first + N - answered
    assert server.paid_twice() == []


def test_a_batch_create_that_times_out_after_the_batch_was_made_is_not_repeated(
    server, tmp_path, splits, sources, caplog
):
    server.batch_ready = True
    server.create_delay = 1.5  # the batch exists; its id arrives after the client gave up
    opts = options(server, tmp_path, batch=True, timeout=0.5)
    outcome = run_generation(splits, sources, opts)
    assert "may have reached the API (APITimeoutError" in caplog.text
    assert "found Message Batch msgbatch_0001 made by an unconfirmed create" in caplog.text
    assert len(server.batches) == 1 and server.calls["/v1/messages/batches"] == 1
    assert server.calls["/v1/messages"] == 0 and server.paid_twice() == []
    v = outcome.verification
    assert v["usage"]["cached"] == N
    inp, outp = price(DEFAULT_MODEL)
    assert v["usage"]["cost_usd"] == pytest.approx(0.5 * N * (1200 * inp + 80 * outp) / 1e6)


def test_a_run_killed_between_create_and_saving_the_id_finds_its_batch(
    server, tmp_path, splits, sources, monkeypatch, caplog
):
    server.batch_ready = True
    opts = options(server, tmp_path, batch=True)

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt  # as a kill right after the API answered

    with monkeypatch.context() as patch:
        patch.setattr(RequestCache, "add_batch", crash)
        with pytest.raises(KeyboardInterrupt):
            run_generation(splits, sources, opts)
    assert len(server.batches) == 1
    outcome = run_generation(splits, sources, opts)
    assert "found Message Batch msgbatch_0001 made by an unconfirmed create" in caplog.text
    assert len(server.batches) == 1 and server.calls["/v1/messages"] == 0
    assert outcome.verification["usage"]["cached"] == N and server.paid_twice() == []


def test_an_unknown_saved_batch_recovers_with_one_command(server, tmp_path, built_kvasir, capsys):
    out = tmp_path / "k"
    shutil.copytree(built_kvasir, out)
    cache = tmp_path / "cache.sqlite"
    args = ["generate", str(out), "--generator", "anthropic", "--base-url", server.url,
            "--api-key-env", "FAKE_VLM_KEY", "--cache", str(cache), "--batch"]  # fmt: skip
    assert main([*args, "--batch-wait", "0"]) == 2  # submitted, not ended: id saved
    assert "re-run the same command to resume" in capsys.readouterr().err
    (batch_id,) = server.batches
    del server.batches[batch_id]  # expired: the API no longer knows it
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{batch_id} (" in err and "HTTP 404" in err and "batch not found" in err
    assert f"Re-run with --forget-batch {batch_id}" in err and "Traceback" not in err
    server.batch_ready = True
    assert main([*args, "--forget-batch", batch_id]) == 0
    assert len(server.batches) == 1 and server.calls["/v1/messages"] == 0
    assert main([*args, "--forget-batch", "msgbatch_9999"]) == 2
    assert "--forget-batch msgbatch_9999: no such batch saved" in capsys.readouterr().err


def test_a_results_download_cut_mid_stream_is_retried(server, tmp_path, splits, sources, caplog):
    server.batch_ready, server.cut_results = True, 1
    outcome = run_generation(splits, sources, options(server, tmp_path, batch=True))
    assert "RemoteProtocolError" in caplog.text  # the cut, then the retry
    assert server.cut_results == 0
    assert server.calls["/v1/messages"] == 0 and len(server.batches) == 1
    assert outcome.verification["usage"]["cached"] == N and server.paid_twice() == []


def test_a_download_cut_every_time_keeps_the_results_received(server, tmp_path, splits, sources):
    server.batch_ready, server.cut_results = True, 3
    opts = options(server, tmp_path, batch=True, max_attempts=3)
    with pytest.raises(GenerationError, match="download failed after 3 attempt") as error:
        run_generation(splits, sources, opts)
    assert "results received are saved" in str(error.value)
    cache = RequestCache(opts.cache_path())
    saved = cache.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    cache.close()
    assert 0 < saved < N
    outcome = run_generation(splits, sources, opts)  # the stream is whole again
    assert len(server.batches) == 1 and server.calls["/v1/messages"] == 0
    assert outcome.verification["usage"]["cached"] == N and server.paid_twice() == []
