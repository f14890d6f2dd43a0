"""Anthropic Messages API backend (base64 image blocks, structured outputs with a strict JSON
schema) and the Message Batches mode for large runs.

Batch mode submits every uncached request as Message Batches (half price), records each batch id
in the request cache's database the moment the API returns it, polls until the batch ends and
stores the answers in the cache; the ordinary pass then finds every answer cached. An interrupted
run (Ctrl-C, ``--batch-wait`` exceeded, a crash) resumes by collecting the recorded batches
instead of submitting them again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict

import anthropic

from .base import GenerationError
from .vlm import Backend, Completion, Job, Request, Runner, parse_json

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

    def client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=self._api_key, base_url=self.base_url, max_retries=0, timeout=self.timeout
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

    def cost(self, completion: Completion) -> float:
        known = price(self.model)
        if known is None:
            return 0.0
        usd = (completion.input_tokens * known[0] + completion.output_tokens * known[1]) / 1e6
        return usd * (BATCH_DISCOUNT if completion.batch else 1.0)


class BatchRunner(Runner):
    """A Runner that first answers everything it can through Message Batches."""

    def __init__(self, *args, poll_seconds: float = 30.0, max_wait: float = 86400.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.poll_seconds = poll_seconds
        self.max_wait = max_wait

    def prefetch(self, jobs: Iterable[Job]) -> None:
        self.loop.run_until_complete(self._prefetch(jobs))

    async def _prefetch(self, jobs: Iterable[Job]) -> None:
        await self._collect_pending()
        submitted = {k for _, keys in self.cache.pending_batches() for k in keys}
        chunk: dict[str, Request] = {}
        size = 0
        for key, request in jobs:
            if key in submitted or key in chunk or self.cache.get(key) is not None:
                continue
            chunk[key] = request()
            size += len(chunk[key].image_b64) + len(chunk[key].text)
            if len(chunk) == MAX_BATCH_REQUESTS or size >= MAX_BATCH_BYTES:
                await self._submit(chunk)
                chunk, size = {}, 0
        if chunk:
            await self._submit(chunk)
        await self._collect_pending()

    async def _submit(self, chunk: dict[str, Request]) -> None:
        requests = [
            {"custom_id": key, "params": self.backend.params(request)}
            for key, request in chunk.items()
        ]
        batch = await self.call(self.sdk.messages.batches.create, requests=requests)
        self.cache.add_batch(batch.id, chunk)  # persisted before anything else can go wrong
        logger.info("submitted Message Batch %s (%d requests)", batch.id, len(chunk))

    async def _collect_pending(self) -> None:
        for batch_id, _ in self.cache.pending_batches():
            await self._collect(batch_id)

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
        failed = 0
        async for item in await self.call(self.sdk.messages.batches.results, batch_id):
            if item.result.type != "succeeded":
                failed += 1
                continue
            completion = self.backend.parse(item.result.message)
            completion.batch = True
            self.account(completion)
            if completion.cacheable:
                self.cache.put(item.custom_id, asdict(completion))
        self.cache.finish_batch(batch_id)
        logger.info(
            "collected Message Batch %s (%d requests not succeeded, sent live)", batch_id, failed
        )
