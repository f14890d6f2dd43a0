"""The VLM paths: the real anthropic and openai SDKs over HTTP against a fake server on
127.0.0.1 (success, 429 with retry-after, 529, 500, timeouts, malformed JSON, refusals), the
request cache, Message Batches interrupted and resumed, and the API key never leaking."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from datasets import load_dataset
from fake_vlm_server import Fault
from medground_hf.generation import anthropic_backend, vlm
from medground_hf.generation.anthropic_backend import DEFAULT_MODEL, BatchPending, price
from medground_hf.generation.base import GenerationError
from medground_hf.generation.cache import RequestCache
from medground_hf.generation.commands import GenerationOptions, generate_folder, run_generation
from medground_hf.generation.pipeline import labels_of

from medground_hf import margins
from medground_hf.build import build
from medground_hf.folder import read_manifest

KEY = "sk-fake-7f3a9c-DO-NOT-LEAK"
BACKENDS = ("anthropic", "openai-compatible")
N = 8  # targets per run: enough for concurrency, fast on two cores


@pytest.fixture(scope="module")
def bare(kvasir_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vlm") / "kvasir"
    build("kvasir_seg", kvasir_dir, out, generator="none")
    return out


def pick_targets(bare: Path, n: int) -> dict:
    """``n`` targets of whole images (siblings together) that pass the offline visual check, so
    every target reaches the generator's answer."""
    train = load_dataset(str(bare), "grounding", split="train")
    light = train.remove_columns(["image"])
    images: dict[str, list[int]] = {}
    for index, row in enumerate(light):
        images.setdefault(row["image_id"], []).append(index)
    good = {r["image_id"] for r in light} - {
        r["image_id"] for r in light if r["visual"]["contrast"] < 0.1
    }
    picked: list[int] = []
    for image_id, indices in images.items():
        if image_id in good and len(picked) + len(indices) <= n:
            picked += indices
    assert len(picked) == n
    return {"train": train.select(picked)}


@pytest.fixture(scope="module")
def splits(bare):
    return pick_targets(bare, N)


@pytest.fixture(scope="module")
def sources(bare):
    return read_manifest(bare)["sources"]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("FAKE_VLM_KEY", KEY)


def options(server, tmp_path, backend="anthropic", **kw) -> GenerationOptions:
    base = server.url if backend == "anthropic" else f"{server.url}/v1"
    defaults = {
        "model": None if backend == "anthropic" else "local-vlm",
        "base_url": base,
        "cache": str(tmp_path / "cache.sqlite"),
        "api_key_env": "FAKE_VLM_KEY",
        "retry_backoff": 0.01,
        "timeout": 2.0,
        "concurrency": 4,
        "queries_per_target": 2,
    }
    return GenerationOptions(generator=backend, **{**defaults, **kw})


def _path(backend: str) -> str:
    return "/v1/messages" if backend == "anthropic" else "/v1/chat/completions"


def _rows(parts) -> list[dict]:
    return [r for ds in parts.values() for r in ds.remove_columns(["image"])]


@pytest.mark.parametrize("backend", BACKENDS)
def test_success_cost_and_the_cache(backend, server, tmp_path, splits, sources):
    opts = options(server, tmp_path, backend)
    outcome = run_generation(splits, sources, opts)
    assert server.calls[_path(backend)] == N
    v = outcome.verification
    assert v["generator"] == backend and v["prompt_version"] == "generate-v3"
    assert v["usage"]["requests"] == N and v["usage"]["cached"] == 0
    kept = _rows(outcome.grounding)
    assert kept and all(q["model"] == v["model"] for r in kept for q in r["queries"])
    assert all(q["prompt_version"] == "generate-v3" for r in kept for q in r["queries"])
    body = server.log[0]["body"]
    headers = {k.lower(): val for k, val in server.log[0]["headers"].items()}
    if backend == "anthropic":
        image = body["messages"][0]["content"][0]
        assert image["type"] == "image" and image["source"]["type"] == "base64"
        assert image["source"]["media_type"] == "image/jpeg"  # outlined, re-encoded as JPEG
        assert body["output_config"]["format"]["type"] == "json_schema"
        style = body["output_config"]["format"]["schema"]["properties"]["queries"]["items"]
        assert style["properties"]["style"]["type"] == "string"
        assert "temperature" not in body and body["max_tokens"] == 800  # SDK 2.x: no sampling
        sent = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        assert sent == KEY
        assert v["usage"]["input_tokens"] == 1200 * N and v["usage"]["output_tokens"] == 80 * N
        inp, outp = price(DEFAULT_MODEL)
        assert v["usage"]["cost_usd"] == pytest.approx(N * (1200 * inp + 80 * outp) / 1e6)
    else:
        image = body["messages"][1]["content"][0]
        assert image["image_url"]["url"].startswith("data:image/jpeg;base64,")
        assert body["response_format"]["json_schema"]["strict"] is True
        assert body["temperature"] == 0.7 and body["max_tokens"] == 800
        assert headers["authorization"] == f"Bearer {KEY}"
        assert v["usage"]["input_tokens"] == 900 * N and v["usage"]["cost_usd"] == 0.0
    # the same run again: every answer from the cache, nothing reaches the server
    again = run_generation(splits, sources, opts)
    assert server.calls[_path(backend)] == N
    assert again.verification["usage"]["requests"] == 0
    assert again.verification["usage"]["cached"] == N
    assert _rows(again.grounding) == kept


@pytest.mark.parametrize("backend", BACKENDS)
def test_429_with_retry_after_then_success(backend, server, tmp_path, splits, sources, caplog):
    server.faults = [Fault("status", 429, {"retry-after": "0.4"})]
    outcome = run_generation(splits, sources, options(server, tmp_path, backend, concurrency=1))
    assert server.calls[_path(backend)] == N + 1
    assert outcome.verification["usage"]["requests"] == N + 1
    gap = server.log[1]["time"] - server.log[0]["time"]
    assert gap >= 0.35  # the retry waited what retry-after asked, not the 0.01 s backoff
    assert "(HTTP 429), attempt 1; retrying in 0.40 s" in caplog.text
    assert outcome.verification["targets_total"] == N


@pytest.mark.parametrize(
    ("backend", "status"), [("anthropic", 529), ("anthropic", 500), ("openai-compatible", 500)]
)
def test_overloaded_and_server_errors_are_retried(
    backend, status, server, tmp_path, splits, sources
):
    server.faults = [Fault("status", status), Fault("status", status)]
    outcome = run_generation(splits, sources, options(server, tmp_path, backend))
    assert server.calls[_path(backend)] == N + 2
    reasons = {r["stage"] for r in outcome.verification["reasons"]}
    assert "generation" not in reasons and "format" not in reasons


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeouts_are_retried(backend, server, tmp_path, splits, sources):
    server.faults = [Fault("slow", seconds=1.5)]
    opts = options(server, tmp_path, backend, timeout=0.5)
    outcome = run_generation(splits, sources, opts)
    assert server.calls[_path(backend)] == N + 1
    assert outcome.verification["usage"]["requests"] == N + 1


def test_persistent_errors_stop_the_run_and_keep_what_was_answered(
    server, tmp_path, splits, sources
):
    server.faults = [Fault("status", 500)] * 3
    opts = options(server, tmp_path, concurrency=1, max_attempts=3)
    with pytest.raises(GenerationError, match="HTTP 500") as error:
        run_generation(splits, sources, opts)
    assert "failed after 3 attempt(s)" in str(error.value)
    assert KEY not in str(error.value)
    assert server.calls["/v1/messages"] == 3
    run_generation(splits, sources, opts)  # resumes: the server is fine now
    assert server.calls["/v1/messages"] == 3 + N


@pytest.mark.parametrize("backend", BACKENDS)
def test_malformed_json_rejects_the_target_and_is_retried_next_run(
    backend, server, tmp_path, splits, sources
):
    server.faults = [Fault("malformed")]
    opts = options(server, tmp_path, backend, concurrency=1)
    outcome = run_generation(splits, sources, opts)
    rejected = _rows(outcome.rejected)
    malformed = [r for r in rejected if "malformed generator output" in r["rejected_reason"]]
    assert len(malformed) == 1 and malformed[0]["rejected_stage"] == "format"
    assert malformed[0]["queries"] == []
    fmt = next(s for s in outcome.verification["stages"] if s["stage"] == "format")
    assert fmt["checked"] - fmt["passed"] >= 1
    run_generation(splits, sources, opts)
    assert server.calls[_path(backend)] == N + 1  # only the malformed one is asked again


@pytest.mark.parametrize("backend", BACKENDS)
def test_refusal_is_kept_as_a_rejected_target_and_cached(
    backend, server, tmp_path, splits, sources
):
    server.faults = [Fault("refusal")]
    opts = options(server, tmp_path, backend, concurrency=1)
    outcome = run_generation(splits, sources, opts)
    refused = [r for r in _rows(outcome.rejected) if r["rejected_stage"] == "generation"]
    assert len(refused) == 1 and "refused" in refused[0]["rejected_reason"]
    v = outcome.verification
    assert v["targets_kept"] + v["targets_rejected"] == N
    run_generation(splits, sources, opts)
    assert server.calls[_path(backend)] == N


def test_false_vlm_claims_are_rejected(server, tmp_path, splits, sources):
    server.faults = [Fault("lie")] * N
    outcome = run_generation(splits, sources, options(server, tmp_path))
    kept = {r["id"] for r in _rows(outcome.grounding)}
    for row in _rows(outcome.rejected):
        if row["queries"] and row["rejected_stage"] == "geometry":  # the viewer rule P1
            assert margins.image_half(row) != "left" or row["num_candidates"] > 1
    for row in splits["train"].remove_columns("image"):
        if row["id"] in kept:
            assert margins.image_half(row) == "left"
    assert outcome.verification["queries_generated"] == N


def test_vlm_judge_verdicts(server, tmp_path, splits, sources, monkeypatch):
    server.faults = [Fault("deny")]
    opts = options(server, tmp_path, judge="anthropic")
    opts.generator = "template"
    drawn: list[str] = []  # the real draw(), counted: each target's image is encoded once
    real_draw = vlm.draw
    monkeypatch.setattr(
        vlm, "draw", lambda record, **kw: drawn.append(record["id"]) or real_draw(record, **kw)
    )
    outcome = run_generation(splits, sources, opts)
    judged = server.calls["/v1/messages"]
    assert judged >= N  # every query that passed the offline checks was judged
    assert len(drawn) == len(set(drawn)) and judged > len(drawn)
    body = server.log[0]["body"]
    assert "Expression:" in body["messages"][0]["content"][1]["text"]
    assert body["max_tokens"] == 200
    kept = _rows(outcome.grounding)
    for row in kept:
        for q in row["queries"]:
            assert [v["check"] for v in q["verdicts"] if v["stage"] == "visual"][-1] == "vlm_judge"
    denied = [r for r in _rows(outcome.rejected) if "does not single out" in r["rejected_reason"]]
    assert len(denied) == 1 and denied[0]["rejected_stage"] == "visual"
    assert outcome.verification["usage"]["requests"] == judged


def test_message_batch_submitted_interrupted_and_resumed(
    server, tmp_path, splits, sources, monkeypatch
):
    monkeypatch.setattr(anthropic_backend, "MAX_BATCH_REQUESTS", 3)  # 8 requests -> 3 batches
    opts = options(server, tmp_path, batch=True, batch_wait=0.3, batch_poll=0.05)
    with pytest.raises(BatchPending, match="re-run"):
        run_generation(splits, sources, opts)
    assert server.calls["/v1/messages/batches"] == 3
    cache = RequestCache(opts.cache_path())
    pending = cache.pending_batches()
    cache.close()
    assert [len(keys) for _, keys in pending] == [3, 3, 2]  # every id persisted at once
    assert [batch_id for batch_id, _ in pending] == sorted(server.batches)
    server.batch_ready = True
    outcome = run_generation(splits, sources, opts)
    assert server.calls["/v1/messages/batches"] == 3  # resumed, not submitted again
    assert server.calls["/v1/messages"] == 0  # every answer came from the batch
    v = outcome.verification
    assert v["queries_kept"] > 0 and v["usage"]["cached"] == N
    inp, outp = price(DEFAULT_MODEL)
    assert v["usage"]["cost_usd"] == pytest.approx(0.5 * N * (1200 * inp + 80 * outp) / 1e6)
    run_generation(splits, sources, opts)
    assert server.calls["/v1/messages/batches"] == 3 and server.calls["/v1/messages"] == 0


def test_errored_batch_results_are_asked_live(server, tmp_path, splits, sources):
    """Results that did not succeed in a batch are not lost: the ordinary pass sends them live
    (full price), the rest come from the batch (half price)."""
    server.batch_ready, server.batch_errors = True, 2
    outcome = run_generation(splits, sources, options(server, tmp_path, batch=True))
    assert server.calls["/v1/messages/batches"] == 1 and server.calls["/v1/messages"] == 2
    v = outcome.verification
    assert v["targets_total"] == N and v["usage"]["cached"] == N - 2
    inp, outp = price(DEFAULT_MODEL)
    one = (1200 * inp + 80 * outp) / 1e6
    assert v["usage"]["cost_usd"] == pytest.approx((0.5 * (N - 2) + 2) * one)
    assert not [r for r in v["reasons"] if r["stage"] in ("generation", "format")]


def test_api_key_never_appears_in_logs_files_or_card(server, tmp_path, bare, caplog, capsys):
    out = tmp_path / "k"
    shutil.copytree(bare, out)
    server.faults = [Fault("status", 429, {"retry-after": "0.05"}), Fault("status", 500)]
    caplog.set_level(logging.DEBUG)
    opts = options(server, tmp_path, judge="anthropic", cache=str(out / "requests.sqlite"))
    opts.max_attempts = 6
    manifest = generate_folder(out, opts)
    assert manifest["verification"]["usage"]["requests"] > 0
    assert KEY not in caplog.text
    printed = capsys.readouterr()
    assert KEY not in printed.out and KEY not in printed.err
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and (out / "README.md") in files
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in repr(opts) and KEY not in str(manifest)
    assert labels_of(manifest["sources"])  # the manifest stays readable
