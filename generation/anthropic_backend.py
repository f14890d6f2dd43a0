"""Anthropic Messages API backend (base64 image blocks, structured outputs with a strict JSON
schema) and the Message Batches mode for large runs.

Batch mode submits every uncached request as Message Batches (half price), records each batch id
in the request cache's database the moment the API returns it, polls until the batch ends and
stores the answers in the cache; the ordinary pass then finds every answer cached. An interrupted
run (Ctrl-C, ``--batch-wait`` exceeded, a crash) resumes by collecting the recorded batches
instead of submitting them again.

A paid batch is never created twice. The intent to create one is recorded before the call; a
create that may have reached the API (a timeout, a dropped connection, a 5xx) is never retried
blindly: the batches created since are listed and one with as many requests is taken as ours
before anything is submitted again (a run killed during the call does the same on its next
start). Taking a stranger's batch by mistake costs nothing: custom ids are content-addressed
cache keys, so its answers are valid answers, and requests it lacks are sent afterwards. Result
downloads cut mid-stream are retried, every result received being saved at once. A saved batch
id the API no longer knows (HTTP 404) stops the run with the way out: ``--forget-batch ID``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

import anthropic
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from .base import GenerationError
from .vlm import (
    Backend,
    Completion,
    Job,
    Request,
    Runner,
    http_client,
    http_library,
    parse_json,
    server_message,
)

logger = logging.getLogger("medground_hf.generation")

DEFAULT_MODEL = "claude-sonnet-4-6"
# USD per million input / output tokens, by model-name prefix (longest prefix wins), as listed
# on platform.claude.com/docs/en/about-claude/pricing.
PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-6": (5.0, 25.0),
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "claude-3-haiku": (0.25, 1.25),
}
BATCH_DISCOUNT = 0.5
MAX_BATCH_REQUESTS = 10_000
MAX_BATCH_BYTES = 100 * 2**20  # well under the API's 256 MB; bounds the memory of a chunk
CLOCK_SKEW = 300.0  # seconds: a batch created this long before our create call may be ours
LOOKUP_SECONDS = 60.0  # how long a batch from an uncertain create is looked for in the listing


# a results stream cut mid-way raises the HTTP library's own error, not wrapped in the SDK's
STREAM_ERRORS = (anthropic.APIError, http_library(anthropic).HTTPError, OSError)


class BatchPending(GenerationError):
    """A submitted batch has not ended within the wait; its id is saved, re-run to resume."""


def price(model: str) -> tuple[float, float] | None:
    matches = [p for p in PRICES if model.startswith(p)]
    return PRICES[max(matches, key=len)] if matches else None


class AnthropicBackend(Backend):
    name = "anthropic"
    api_errors = (anthropic.APIError,)

    def __init__(self, model: str, api_key: str, base_url: str | None, timeout: float):
        super().__init__(model, api_key, base_url, timeout)
        if price(model) is None:
            logger.warning("no price known for %s: cost is reported as 0", model)

    def client(self, connections: int | None) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.timeout,
            http_client=http_client(anthropic, connections, self.timeout),
        )

    def params(self, request: Request) -> dict:
        """Messages API parameters (also the ``params`` of a batch request); the answer is
        constrained by ``output_config.format`` (structured outputs, a strict JSON schema).
        The current Messages API takes no sampling parameters, so ``request.temperature`` is
        used by the OpenAI-compatible backend only."""
        return {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "system": request.system,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": request.media_type,
                                "data": request.image_b64,
                            },
                        },
                        {"type": "text", "text": request.text},
                    ],
                }
            ],
            "output_config": {"format": {"type": "json_schema", "schema": dict(request.schema)}},
        }

    async def complete(self, client: anthropic.AsyncAnthropic, request: Request) -> Completion:
        message = await client.messages.create(**self.params(request))
        return self.parse(message)

    @staticmethod
    def parse(message) -> Completion:
        usage = message.usage
        tokens = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
        text = "".join(b.text for b in (message.content or []) if b.type == "text")
        if message.stop_reason == "refusal":
            return Completion(refusal=text[:200] or "refusal", **tokens)
        return parse_json(text, **tokens)

    def is_transient(self, error: BaseException) -> bool:
        if isinstance(error, anthropic.APIConnectionError):  # includes timeouts
            return True
        return isinstance(error, anthropic.APIStatusError) and (
            error.status_code == 429 or error.status_code >= 500
        )

    @staticmethod
    def may_have_acted(error: BaseException) -> bool:
        """Whether a failed call may still have been carried out by the API: a timeout, a
        connection lost after connecting, a 5xx other than 529 "overloaded". Refusals (4xx,
        429, 529) and connections never made were not."""
        if isinstance(error, anthropic.APIStatusError):
            return error.status_code >= 500 and error.status_code != 529
        if isinstance(error, anthropic.APITimeoutError):
            return True
        if isinstance(error, anthropic.APIConnectionError):
            return "Connect" not in type(error.__cause__).__name__
        return False

    def cost(self, completion: Completion) -> float:
        known = price(self.model)
        if known is None:
            return 0.0
        usd = (completion.input_tokens * known[0] + completion.output_tokens * known[1]) / 1e6
        return usd * (BATCH_DISCOUNT if completion.batch else 1.0)


def _total(batch) -> int:
    counts = batch.request_counts
    return counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired


def _timestamp(value) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    return float(value)


class BatchRunner(Runner):
    """A Runner that first answers everything it can through Message Batches."""

    def __init__(
        self,
        *args,
        poll_seconds: float = 30.0,
        max_wait: float = 86400.0,
        forget: Sequence[str] = (),
        lookup_seconds: float = LOOKUP_SECONDS,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        # the SDK's httpx transport: its errors tell a connection never made from one lost
        # after the request was sent (aiohttp names both a connection error), which decides
        # whether a batch create may have been carried out (may_have_acted)
        self.pool = None
        self.poll_seconds = poll_seconds
        self.max_wait = max_wait
        self.forget = tuple(forget)
        self.lookup_seconds = lookup_seconds

    def prefetch(self, jobs: Iterable[Job]) -> None:
        self.loop.run_until_complete(self._prefetch(jobs))

    async def _prefetch(self, jobs: Iterable[Job]) -> None:
        self._forget()
        for token, started, keys in self.cache.open_submissions():  # a run killed mid-create
            await self._adopt(token, started, keys, wait=False)
        await self._collect_pending()
        submitted = {k for _, keys in self.cache.pending_batches() for k in keys}
        chunk: dict[str, Request] = {}
        size = 0
        for job in jobs:
            key = job.key
            if key in submitted or key in chunk or self.cache.get(key) is not None:
                continue
            chunk[key] = job.request()
            size += len(chunk[key].image_b64) + len(chunk[key].text)
            if len(chunk) == MAX_BATCH_REQUESTS or size >= MAX_BATCH_BYTES:
                await self._submit(chunk)
                chunk, size = {}, 0
        if chunk:
            await self._submit(chunk)
        await self._collect_pending()

    def _forget(self) -> None:
        for batch_id in self.forget:
            if not self.cache.forget_batch(batch_id):
                raise GenerationError(
                    f"--forget-batch {batch_id}: no such batch saved in {self.cache.path}"
                )
            logger.warning("forgot Message Batch %s: its requests are sent again", batch_id)

    async def _submit(self, chunk: dict[str, Request]) -> None:
        """Create one batch; after a create that may have reached the API, look for the batch
        it made before trying again."""
        requests = [
            {"custom_id": key, "params": self.backend.params(request)}
            for key, request in chunk.items()
        ]
        token, started, keys = self.cache.begin_submission(chunk)
        certain_only = AsyncRetrying(  # retries of calls that surely did not create anything
            retry=retry_if_exception(
                lambda e: self.backend.is_transient(e) and not self.backend.may_have_acted(e)
            ),
            wait=self.retrying().wait,
            stop=stop_after_attempt(self.max_attempts),
            before_sleep=self._log_retry,
            reraise=True,
        )
        for attempt in range(1, self.max_attempts + 1):
            try:
                batch = await self.call(
                    self.sdk.messages.batches.create, requests=requests, retrying=certain_only
                )
            except anthropic.APIError as error:
                if not self.backend.may_have_acted(error):
                    self.cache.end_submission(token)
                    raise GenerationError(
                        f"Message Batch of {len(keys)} requests not created: "
                        f"{server_message(error)}"
                    ) from None
                logger.warning(
                    "Message Batch create (attempt %d) may have reached the API (%s): looking "
                    "for the batch it made before submitting again",
                    attempt,
                    server_message(error),
                )
                if await self._adopt(token, started, keys, wait=True):
                    return
                continue
            self.cache.add_batch(batch.id, keys, submission=token)  # persisted at once
            logger.info("submitted Message Batch %s (%d requests)", batch.id, len(keys))
            return
        raise GenerationError(
            f"Message Batch of {len(keys)} requests: {self.max_attempts} create attempts could "
            "not be confirmed and no batch of theirs is listed; re-run to try again"
        )

    async def _adopt(self, token: str, started: float, keys: list[str], *, wait: bool) -> bool:
        """Take the batches created since ``started`` with ``len(keys)`` requests as this
        submission's (waiting up to ``lookup_seconds`` for one to be listed when ``wait``);
        the submission is closed when one is found, or when not waiting (none was made)."""
        deadline = time.monotonic() + (self.lookup_seconds if wait else 0.0)
        while True:
            found = await self._listed_since(started - CLOCK_SKEW, len(keys))
            if found or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(self.poll_seconds, 2.0))
        for batch_id in found:
            self.cache.add_batch(batch_id, keys)
            logger.warning("found Message Batch %s made by an unconfirmed create", batch_id)
        if found or not wait:
            self.cache.end_submission(token)
        return bool(found)

    async def _listed_since(self, since: float, size: int) -> list[str]:
        """Ids of batches created after ``since`` with ``size`` requests, not yet recorded."""
        known = self.cache.known_batches()
        found = []
        page = await self.call(self.sdk.messages.batches.list, limit=100)
        while True:
            batches = list(page.data)
            found += [
                b.id
                for b in batches
                if _timestamp(b.created_at) >= since and _total(b) == size and b.id not in known
            ]
            oldest = min((_timestamp(b.created_at) for b in batches), default=since - 1)
            if oldest < since or not page.has_next_page():
                return found
            page = await self.call(page.get_next_page)

    async def _collect_pending(self) -> None:
        unknown = []
        for batch_id, keys in self.cache.pending_batches():
            try:
                await self._collect(batch_id)
            except anthropic.NotFoundError as error:
                unknown.append((batch_id, len(keys), server_message(error)))
        if unknown:
            ids = " ".join(f"--forget-batch {b}" for b, _, _ in unknown)
            listed = "; ".join(f"{b} ({n} requests): {why}" for b, n, why in unknown)
            raise GenerationError(
                f"saved Message Batch(es) unknown to the API (HTTP 404): {listed}. They may have "
                f"expired (results are kept 29 days) or belong to another workspace or API key. "
                f"Re-run with {ids} to drop them from {self.cache.path}; their requests are then "
                "sent again"
            )

    def _download_error(self, error: BaseException) -> bool:
        """A results download worth repeating: a cut stream, or a transient API error."""
        if isinstance(error, anthropic.APIStatusError):
            return self.backend.is_transient(error)
        return isinstance(error, STREAM_ERRORS)

    async def _collect(self, batch_id: str) -> None:
        deadline = time.monotonic() + self.max_wait
        while True:
            batch = await self.call(self.sdk.messages.batches.retrieve, batch_id)
            if batch.processing_status == "ended":
                break
            if time.monotonic() >= deadline:
                raise BatchPending(
                    f"Message Batch {batch_id} is still {batch.processing_status}; its id is "
                    f"saved in {self.cache.path}: re-run the same command to resume"
                )
            await asyncio.sleep(self.poll_seconds)
        failed = saved = 0
        download = AsyncRetrying(
            retry=retry_if_exception(self._download_error),
            wait=wait_exponential_jitter(multiplier=self.backoff, max=60),
            stop=stop_after_attempt(self.max_attempts),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async for attempt in download:  # a cut stream: download again, skip what is saved
                with attempt:
                    failed = 0
                    async for item in await self.call(self.sdk.messages.batches.results, batch_id):
                        if item.result.type != "succeeded":
                            failed += 1
                            continue
                        if self.cache.get(item.custom_id) is not None:
                            continue
                        completion = self.backend.parse(item.result.message)
                        completion.batch = True
                        self.account(completion)
                        if completion.cacheable:
                            self.cache.put(item.custom_id, completion.cached())
                            saved += 1
        except anthropic.NotFoundError:
            raise
        except STREAM_ERRORS as error:
            raise GenerationError(
                f"results of Message Batch {batch_id}: download failed after "
                f"{self.max_attempts} attempt(s) ({server_message(error)}); the {saved} results "
                "received are saved: re-run the same command to fetch the rest"
            ) from None
        self.cache.finish_batch(batch_id)
        logger.info(
            "collected Message Batch %s (%d requests not succeeded, sent live)", batch_id, failed
        )
