"""What the VLM backends share: versioned prompts, the facts and image sent, the request cache,
one retry layer, bounded concurrency and usage accounting.

A backend (:mod:`.anthropic_backend`, :mod:`.openai_backend`) only turns a :class:`Request` into
an SDK call and the SDK's answer into a :class:`Completion`. Retries happen here and only here:
the SDK clients are built with ``max_retries=0`` and ``tenacity`` retries 429, 5xx (including
Anthropic's 529 "overloaded") and timeouts/connection errors, waiting what the server's
``retry-after`` asks (else exponential backoff with jitter).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import importlib
import io
import json
import logging
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from string import Template
from types import ModuleType
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from medground_hf.geometry import decode_rle
from medground_hf.imageio import open_bytes
from medground_hf.staging import fault

from . import templates, vocab
from .base import Generated, GenerationError, Generator, Judge, Target, Usage
from .cache import RequestCache, open_cache, request_key
from .verify import STYLES

logger = logging.getLogger("medground_hf.generation")

GENERATE_PROMPT = "generate-v3"
JUDGE_PROMPT = "judge-v1"
MAX_RETRY_AFTER = 120.0
# Refusals of single requests (e.g. HTTP 400) before any success that mean the whole run is
# misconfigured (a bad model name or parameter), not that those targets are bad.
REFUSALS_BEFORE_ABORT = 5

QUERIES_SCHEMA = {
    "type": "object",
    "properties": {
        "queries": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "style": {"type": "string", "enum": list(STYLES)},
                },
                "required": ["text", "style"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["queries"],
    "additionalProperties": False,
}
JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"singles_out": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["singles_out", "reason"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Prompt:
    version: str
    system: str
    user: Template


def load_prompt(name: str) -> Prompt:
    """A versioned prompt file ``prompts/<name>.md``: system text, ``---user---``, user text."""
    text = resources.files("medground_hf.generation").joinpath(f"prompts/{name}.md").read_text()
    system, sep, user = text.partition("---user---")
    if not sep:
        raise ValueError(f"prompts/{name}.md: missing the ---user--- separator")
    return Prompt(name, system.strip(), Template(user.strip()))


@dataclass(frozen=True)
class Request:
    """One VLM call, backend-neutral."""

    system: str
    text: str
    image_b64: str
    media_type: str
    schema_name: str
    schema: Mapping
    max_tokens: int
    temperature: float


@dataclass
class Completion:
    """A backend's answer, normalized: parsed JSON, or a refusal, or why it is unusable."""

    data: dict | None = None
    refusal: str | None = None
    malformed: str | None = None
    rejected: str | None = None  # the server refused this one request (e.g. HTTP 400): why
    input_tokens: int = 0
    output_tokens: int = 0
    batch: bool = False

    def cached(self) -> dict:
        """The form kept in the request cache (its fields; ``asdict`` would deep-copy the
        answer only to serialise it)."""
        return dict(vars(self))

    @property
    def cacheable(self) -> bool:
        """Parsed answers and refusals are final; malformed answers and refused requests are
        asked again on the next run (a refused request costs nothing)."""
        return self.malformed is None and self.rejected is None


def parse_json(text: str, **tokens: int) -> Completion:
    """A JSON-object answer, or why it is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return Completion(malformed=f"invalid JSON ({exc.msg})", **tokens)
    if not isinstance(data, dict):
        return Completion(malformed="the JSON answer is not an object", **tokens)
    return Completion(data=data, **tokens)


class Backend(ABC):
    """An SDK: builds its async client, sends a Request, says which errors are transient."""

    name: str
    api_errors: tuple[type[Exception], ...]  # the SDK's error classes

    def __init__(self, model: str, api_key: str, base_url: str | None, timeout: float):
        self.model = model
        self._api_key = api_key
        self.base_url = base_url
        self.timeout = timeout

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r})"

    @abstractmethod
    def client(self, connections: int | None):
        """A new async SDK client with ``max_retries=0``: over aiohttp with a pool of
        ``connections`` (:func:`http_client`), or over the SDK's own httpx transport (None)."""

    @abstractmethod
    async def complete(self, client, request: Request) -> Completion: ...

    @abstractmethod
    def is_transient(self, error: BaseException) -> bool: ...

    def is_per_request(self, error: BaseException) -> bool:
        """A permanent refusal of this one request (malformed or oversized for the server: 400,
        413, 422), as opposed to one that concerns every request (401, 403, 404, ...)."""
        return getattr(error, "status_code", None) in (400, 413, 422)

    def cost(self, completion: Completion) -> float:
        return 0.0


def http_library(sdk: ModuleType) -> ModuleType:
    """The HTTP library an SDK is built on (``httpx``, or ``httpx2`` in recent SDKs)."""
    base = next(c for c in sdk.DefaultAsyncHttpxClient.__mro__[1:] if c.__name__ == "AsyncClient")
    return importlib.import_module(base.__module__.split(".")[0])


def http_client(sdk: ModuleType, connections: int | None, timeout: float):
    """The SDK's aiohttp-based HTTP client (its ``aiohttp`` extra) with a pool of
    ``connections``, or None (the SDK's default httpx client). The httpx pool probes every
    idle connection's socket each time a request starts or ends, about 3 ms of CPU per request
    with 32 connections; aiohttp keeps its idle connections in a queue."""
    if connections is None:
        return None
    limits = http_library(sdk).Limits(
        max_connections=connections, max_keepalive_connections=connections
    )
    return sdk.DefaultAioHttpClient(timeout=timeout, limits=limits)


def retry_after(error: BaseException) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms`` / ``retry-after``), if any."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms") is not None:
            return float(headers["retry-after-ms"]) / 1000.0
        if headers.get("retry-after") is not None:
            return float(headers["retry-after"])
    except ValueError:
        return None
    return None


def server_message(error: BaseException) -> str:
    """What the server said about a failed request (its error message), else what failed."""
    body = getattr(error, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, Mapping) else None
        if message:
            return str(message)[:300]
    if getattr(error, "status_code", None) is not None:
        return f"{type(error).__name__} (HTTP {error.status_code})"
    return f"{type(error).__name__}: {error}"[:300]


class Job(NamedTuple):
    """A request by its cache key and the target it is for; the request itself (image drawn,
    base64-encoded) is only built when the cache does not answer."""

    key: str
    target: str
    request: Callable[[], Request]


class _Stopped(Exception):
    """A queued request not sent because the run is aborting."""


class _WaitRetryAfter:
    """tenacity wait: the server's retry-after when given, else exponential backoff + jitter."""

    def __init__(self, fallback):
        self.fallback = fallback

    def __call__(self, state) -> float:
        error = state.outcome.exception() if state.outcome else None
        asked = retry_after(error) if error is not None else None
        if asked is not None:
            return min(max(asked, 0.0), MAX_RETRY_AFTER)
        return self.fallback(state)


@contextmanager
def _frozen_heap() -> Iterator[None]:
    """Leave the objects that exist before the requests out of the garbage collector's full
    collections while they are sent: with ``datasets`` and the SDKs loaded, one full collection
    walks millions of objects and stalls the event loop for 0.3-0.4 s, holding up the answers of
    every request in flight (a quarter of the rate at 32 requests against a 200 ms server). They
    go back to the collector afterwards (unless the caller had frozen the heap itself)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class Runner:
    """Sends requests through the cache with bounded concurrency on its own event loop."""

    def __init__(
        self,
        backend: Backend,
        cache: RequestCache,
        concurrency: int,
        max_attempts: int = 6,
        backoff: float = 1.0,
    ):
        self.backend = backend
        self.cache = cache
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.usage = Usage()
        self.succeeded = self.refused = 0
        self.pool: int | None = concurrency  # HTTP connections (see Backend.client)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = None
        self._drawer: ThreadPoolExecutor | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    @property
    def drawer(self) -> ThreadPoolExecutor:
        """The thread drawing and encoding images while the loop waits on the network: one
        thread, as several would take the interpreter lock from the loop in turns and delay
        the answers of every request in flight (one draws about 300 images per second)."""
        if self._drawer is None:
            self._drawer = ThreadPoolExecutor(1, thread_name_prefix="medground-draw")
        return self._drawer

    @property
    def sdk(self):
        if self._client is None:
            self._client = self.backend.client(self.pool)
        return self._client

    def run(self, jobs: Sequence[Job]) -> list[Completion]:
        with _frozen_heap():
            return self.loop.run_until_complete(self._run(jobs))

    async def _run(self, jobs: Sequence[Job]) -> list[Completion]:
        """Every job's completion, in order. A failure of one request that concerns only it
        becomes that target's ``rejected`` completion; a failure that concerns the run stops
        it: no queued request is sent any more, the ones in flight finish and their answers
        are saved, then the error is raised."""
        gate = asyncio.Semaphore(self.concurrency)
        # requests built (image drawn, encoded) ahead of a free slot: a slot is held only while
        # its request is on the network, and at most this many built requests wait in memory
        ahead = asyncio.Semaphore(self.concurrency)
        inflight: dict[str, asyncio.Task] = {}
        abort: list[BaseException] = []

        async def one(job: Job) -> Completion:
            cached = self.cache.get(job.key)
            if cached is not None:
                self.usage.cached += 1
                return Completion(**cached)
            try:
                async with ahead:
                    if abort:
                        raise _Stopped
                    # drawing and encoding the image runs in a thread, overlapping network waits
                    request = await self.loop.run_in_executor(self.drawer, job.request)
                    await gate.acquire()
                try:
                    if abort:
                        raise _Stopped
                    completion = await self.send(request, job.target)
                    if completion.cacheable:
                        self.cache.put(job.key, completion.cached())
                        fault("answer")
                    self.check_refusals(completion, job.target)
                finally:
                    gate.release()
            except _Stopped:
                raise
            except BaseException as error:
                abort.append(error)
                raise
            return completion

        for job in jobs:  # identical requests in one batch are sent once
            if job.key not in inflight:
                inflight[job.key] = asyncio.ensure_future(one(job))
        try:
            done = await asyncio.gather(*inflight.values(), return_exceptions=True)
        finally:
            for task in inflight.values():
                task.cancel()
        if abort:
            raise abort[0]
        failed = next((d for d in done if isinstance(d, BaseException)), None)
        if failed is not None:
            raise failed
        return [inflight[job.key].result() for job in jobs]

    def check_refusals(self, completion: Completion, target: str) -> None:
        """Count refused requests; many refusals and no success mean a misconfigured run."""
        if completion.rejected is None:
            self.succeeded += 1
            return
        self.refused += 1
        logger.warning("%s: %s", target, completion.rejected)
        if self.refused >= REFUSALS_BEFORE_ABORT and not self.succeeded:
            raise GenerationError(
                f"{self.backend.name}: the first {self.refused} requests were all refused, the "
                f"last for {target}: {completion.rejected}. Check the model and options."
            )

    def retrying(self) -> AsyncRetrying:
        """The one retry layer: transient errors only, honouring the server's retry-after."""
        return AsyncRetrying(
            retry=retry_if_exception(self.backend.is_transient),
            wait=_WaitRetryAfter(wait_exponential_jitter(multiplier=self.backoff, max=60)),
            stop=stop_after_attempt(self.max_attempts),
            before_sleep=self._log_retry,
            reraise=True,
        )

    def _log_retry(self, state) -> None:
        error = state.outcome.exception()
        status = getattr(error, "status_code", None)
        logger.warning(
            "%s: %s%s, attempt %d; retrying in %.2f s",
            self.backend.name,
            type(error).__name__,
            f" (HTTP {status})" if status else "",
            state.attempt_number,
            state.next_action.sleep if state.next_action else 0.0,
        )

    async def call(self, method, *args, retrying: AsyncRetrying | None = None, **kwargs):
        """Every API call (messages and batch endpoints) goes through here: the one retry layer,
        each attempt counted as a request."""
        async for attempt in retrying or self.retrying():
            with attempt:
                self.usage.requests += 1
                return await method(*args, **kwargs)
        raise AssertionError("unreachable: the retry layer re-raises the last error")

    async def send(self, request: Request, target: str) -> Completion:
        """One request through the retry layer. A permanent refusal of this request alone comes
        back as a ``rejected`` completion with the server's reason; any other failure raises,
        naming the target and the server's reason."""
        retrying = self.retrying()
        try:
            completion = await self.call(
                self.backend.complete, self.sdk, request, retrying=retrying
            )
        except self.backend.api_errors as error:
            status = getattr(error, "status_code", None)
            http = f" (HTTP {status})" if status else ""
            if self.backend.is_per_request(error):
                return Completion(
                    rejected=f"{self.backend.name} refused the request{http}: "
                    f"{server_message(error)}"
                )
            raise GenerationError(
                f"{self.backend.name} request for {target} failed after "
                f"{retrying.statistics['attempt_number']} attempt(s): {type(error).__name__}"
                f"{http}: {server_message(error)}. Answers received so far are cached; re-run "
                "to resume."
            ) from None
        self.account(completion)
        return completion

    def account(self, completion: Completion) -> None:
        self.usage.input_tokens += completion.input_tokens
        self.usage.output_tokens += completion.output_tokens
        self.usage.cost_usd += self.backend.cost(completion)

    def close(self) -> None:
        if self._loop is not None:
            if self._client is not None:
                self._loop.run_until_complete(self._client.close())
            self._loop.close()
        if self._drawer is not None:
            self._drawer.shutdown()
        self._loop = self._client = self._drawer = None
        self.cache.close()


# ---- what is sent ---------------------------------------------------------------------------
def media_type(data: bytes) -> str | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None  # anything else is re-encoded as PNG by draw()


def _image_bytes(record: Mapping) -> bytes:
    image = record["image"]
    data = image.get("bytes") if isinstance(image, Mapping) else None
    if not data:
        raise GenerationError(f"{record['id']}: the record carries no embedded image bytes")
    return data


def outline_of(mask: np.ndarray, width: int) -> np.ndarray:
    """The mask's pixels less than ``width`` pixels from its edge (or the image's), found in
    the mask's bounding box grown by ``width`` only: the same pixels as eroding the whole image,
    at the cost of the target's size."""
    edge = np.zeros_like(mask)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size:
        y0, y1 = max(rows[0] - width, 0), rows[-1] + width + 1
        x0, x1 = max(cols[0] - width, 0), cols[-1] + width + 1
        crop = mask[y0:y1, x0:x1]
        edge[y0:y1, x0:x1] = crop & ~ndimage.binary_erosion(crop, iterations=width)
    return edge


def draw(record: Mapping, *, outline: bool = False, box: bool = False) -> tuple[str, str]:
    """The record's image (base64, media type), with the target outlined and/or boxed in red."""
    data = _image_bytes(record)
    original = media_type(data)
    if not (outline or box) and original is not None:
        return base64.b64encode(data).decode(), original
    with open_bytes(data, record["id"]) as im:
        canvas = im.convert("RGB")
    pixels = np.asarray(canvas).copy()
    width = max(1, round(max(record["width"], record["height"]) / 256))
    if outline:
        pixels[outline_of(decode_rle(record["mask"]), width)] = (0, 255, 0)
    canvas = Image.fromarray(pixels)
    if box:
        x0, y0, x1, y1 = record["bbox_xyxy"]
        ImageDraw.Draw(canvas).rectangle((x0, y0, x1 - 1, y1 - 1), outline=(255, 0, 0), width=width)
    buffer = io.BytesIO()
    if original == "image/jpeg":  # photographs stay JPEG: small and fast to encode
        canvas.save(buffer, format="JPEG", quality=95)
        return base64.b64encode(buffer.getvalue()).decode(), "image/jpeg"
    canvas.save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode(), "image/png"


def facts(target: Target) -> dict:
    """The verified cues, worded as the verifier will check them."""
    record, spec = target.record, target.spec
    shape, rel = record["shape"], record["relations"]
    n = record["num_candidates"]
    distinguishing = [f for f in ("largest", "smallest", "leftmost", "rightmost") if rel[f]]
    distinguishing += [f for f in ("uppermost", "lowermost") if rel[f]]
    if n > 1:
        distinguishing.append(f"number {rel['size_rank']} of {n} by size (1 = largest)")
    out = {
        "label": spec.display,
        "synonyms": list(spec.synonyms),
        "size": vocab.size_phrases(record, spec),
        "shape": [w for w, test in vocab.SHAPE_PREDICATES.items() if test(shape)],
        "orientation": shape["orientation"] if shape["orientation"] != "none" else None,
        "position_in_image": templates.location_phrases(record),
        "patient_side": (
            f"the patient's {record['spatial']['patient_side']}"
            if record["spatial"]["patient_side"] in ("left", "right")
            else None
        ),
        f"number_of_{spec.name}_candidates_in_image": n,
        "distinguishing_relations": distinguishing,
        "inside": [target.structures.get(s, s) for s in rel["inside"]],
        "next_to": [target.structures.get(s, s) for s in rel["adjacent_to"]],
    }
    return {k: v for k, v in out.items() if v not in (None, [])}


def _target_key(record: Mapping) -> dict:
    return {
        "id": record["id"],
        "bbox": list(record["bbox_xyxy"]),
        "mask": hashlib.sha256(record["mask"]["counts"].encode()).hexdigest(),
        "image": hashlib.sha256(_image_bytes(record)).hexdigest(),
    }


class _Prompted:
    """Binds a generator or judge to its runner (backend, cache, usage) and versioned prompt."""

    def bind(self, runner: Runner, prompt: str) -> None:
        self.runner = runner
        self.usage = runner.usage
        self.name = runner.backend.name
        self.model = runner.backend.model
        self.prompt = load_prompt(prompt)
        self.prompt_version = self.prompt.version

    def close(self) -> None:
        self.runner.close()


class VLMGenerator(_Prompted, Generator):
    """Queries from a VLM that sees the image (target outlined) and the verified facts."""

    def __init__(
        self,
        runner: Runner,
        *,
        queries_per_target: int = 3,
        outline: bool = True,
        temperature: float = 0.7,
        max_tokens: int = 800,
    ):
        super().__init__()
        self.bind(runner, GENERATE_PROMPT)
        self.queries_per_target = queries_per_target
        self.outline = outline
        self.temperature = temperature
        self.max_tokens = max_tokens

    def params(self) -> dict:
        return {
            "k": self.queries_per_target,
            "outline": self.outline,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def job(self, target: Target) -> Job:
        record = target.record
        stated = facts(target)
        key = request_key(
            {
                "task": "generate",
                "model": self.model,
                "prompt_version": self.prompt_version,
                "params": self.params(),
                "target": _target_key(record),
                "facts": stated,
            }
        )

        def request() -> Request:
            image_b64, mtype = draw(record, outline=self.outline)
            note = " The target is outlined in green." if self.outline else ""
            text = self.prompt.user.substitute(
                k=self.queries_per_target,
                modality=record["modality"],
                body_part=record["body_part"],
                outline_note=note,
                facts=json.dumps(stated, indent=1),
            )
            system = self.prompt.system.replace("$k", str(self.queries_per_target))
            return Request(
                system,
                text,
                image_b64,
                mtype,
                "submit_queries",
                QUERIES_SCHEMA,
                self.max_tokens,
                self.temperature,
            )

        return Job(key, record["id"], request)

    def generate(self, targets: Sequence[Target]) -> list[Generated]:
        completions = self.runner.run([self.job(t) for t in targets])
        return [to_generated(c) for c in completions]

    def prefetch(self, targets) -> None:
        prefetch = getattr(self.runner, "prefetch", None)
        if prefetch is not None:
            prefetch(self.job(t) for t in targets)


def to_generated(completion: Completion) -> Generated:
    if completion.rejected is not None:
        return Generated(failure=("generation", completion.rejected))
    if completion.refusal is not None:
        return Generated(failure=("generation", f"the model refused: {completion.refusal}"))
    if completion.malformed is not None:
        return Generated(failure=("format", f"malformed generator output: {completion.malformed}"))
    queries = completion.data.get("queries") if isinstance(completion.data, dict) else None
    if not isinstance(queries, list):
        return Generated(failure=("format", "malformed generator output: no 'queries' list"))
    return Generated([q if isinstance(q, Mapping) else {"text": q} for q in queries])


class VLMJudge(_Prompted, Judge):
    """The online visual check: the VLM sees the image with the box drawn, and the query."""

    DRAWN = 256  # boxed images kept: a target's queries are judged together

    def __init__(self, runner: Runner, *, max_tokens: int = 200):
        super().__init__()
        self.bind(runner, JUDGE_PROMPT)
        self.max_tokens = max_tokens
        self._drawn: OrderedDict[str, Future] = OrderedDict()
        self._lock = threading.Lock()

    def boxed(self, record: Mapping) -> tuple[str, str]:
        """The record's image with its box drawn, base64-encoded once per target however many
        of its queries are judged, also when their requests are built at the same time in
        several threads (decoding, drawing and encoding cost more than a request)."""
        with self._lock:
            pending = self._drawn.get(record["id"])
            mine = pending is None
            if mine:
                pending = self._drawn[record["id"]] = Future()
                while len(self._drawn) > self.DRAWN:
                    self._drawn.popitem(last=False)
        if mine:
            try:
                pending.set_result(draw(record, box=True))
            except BaseException as exc:
                pending.set_exception(exc)
        return pending.result()

    def job(self, target: Target, query: str) -> Job:
        record = target.record
        key = request_key(
            {
                "task": "judge",
                "model": self.model,
                "prompt_version": self.prompt_version,
                "params": {"max_tokens": self.max_tokens, "temperature": 0.0},
                "target": _target_key(record),
                "query": query,
            }
        )

        def request() -> Request:
            image_b64, mtype = self.boxed(record)
            text = self.prompt.user.substitute(query=query, label=target.spec.display)
            return Request(
                self.prompt.system,
                text,
                image_b64,
                mtype,
                "verdict",
                JUDGE_SCHEMA,
                self.max_tokens,
                0.0,
            )

        return Job(key, record["id"], request)

    def judge(self, items: Sequence[tuple[Target, str]]) -> list[tuple[bool, str]]:
        if not items:
            return []
        completions = self.runner.run([self.job(t, q) for t, q in items])
        return [to_verdict(c, self.model) for c in completions]


def to_verdict(completion: Completion, model: str) -> tuple[bool, str]:
    data = completion.data
    if completion.rejected is not None:
        return False, f"judge {model}: {completion.rejected}"
    if completion.refusal is not None:
        return False, f"judge {model} refused: {completion.refusal}"
    if not isinstance(data, dict) or not isinstance(data.get("singles_out"), bool):
        why = completion.malformed or "no boolean 'singles_out'"
        return False, f"judge {model} gave no usable answer: {why}"
    reason = str(data.get("reason", "")).strip()[:200] or "no reason given"
    verdict = "singles out the target" if data["singles_out"] else "does not single out the target"
    return data["singles_out"], f"judge {model}: {verdict}: {reason}"


# ---- factory --------------------------------------------------------------------------------
def _backend(kind: str, model: str | None, options) -> Backend:
    key = options.api_key(kind)
    if kind == "anthropic":
        from .anthropic_backend import DEFAULT_MODEL, AnthropicBackend

        return AnthropicBackend(model or DEFAULT_MODEL, key, options.base_url, options.timeout)
    from .openai_backend import OpenAIBackend

    if not model:
        raise ValueError("openai-compatible needs --model (or --judge-model): the served model")
    return OpenAIBackend(model, key, options.base_url, options.timeout)


def _runner(kind: str, model: str | None, options, *, batch: bool = False) -> Runner:
    backend = _backend(kind, model, options)
    cache = (
        open_cache(options.cache, options.read_cache)
        if options.cache
        else RequestCache(options.cache_path())
    )
    if batch and not isinstance(cache, RequestCache):
        raise GenerationError("--batch needs an SQLite request cache (--cache FILE), not a folder")
    if batch:
        from .anthropic_backend import BatchRunner

        return BatchRunner(
            backend,
            cache,
            options.concurrency,
            max_attempts=options.max_attempts,
            backoff=options.retry_backoff,
            poll_seconds=options.batch_poll,
            max_wait=options.batch_wait,
            forget=options.forget_batches,
        )
    return Runner(
        backend,
        cache,
        options.concurrency,
        max_attempts=options.max_attempts,
        backoff=options.retry_backoff,
    )


def make_vlm_generator(options) -> VLMGenerator:
    runner = _runner(options.generator, options.model, options, batch=options.batch)
    return VLMGenerator(
        runner, queries_per_target=options.queries_per_target, outline=options.outline
    )


def make_vlm_judge(options) -> VLMJudge:
    return VLMJudge(_runner(options.judge, options.judge_model or options.model, options))
