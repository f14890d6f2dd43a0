"""A fake Anthropic + OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

The real SDKs talk to it over HTTP. It answers like a small, honest model: generation requests
get queries built from the verified facts in the prompt, judge requests get a verdict. A script
of faults (status codes with headers, slow answers, malformed JSON, refusals) is consumed by the
first requests; every request is recorded so tests can count what reached the server, and every
answer given (live or in a batch) is counted as paid, per distinct request.

Message Batches: ``create_delay`` makes a create answer only after the client has timed out (the
batch exists all the same); ``cut_results`` cuts that many result downloads mid-stream; a batch
deleted from ``batches`` is unknown (404). ``refuse`` holds the arrival indices (0-based) of
distinct requests that are refused with HTTP 400 every time they are sent.

``lean=True`` (benchmarks) keeps only the per-path counts: no request log, no per-body accounting
(hashing every body), so a long run neither grows the server's memory nor spends its CPU on
bookkeeping; ``refuse`` and ``paid`` are then not available.

``python tests/fake_vlm_server.py --delay 0.2 --lean`` serves in a process of its own (printing
its URL), so a benchmark's client and server do not share one interpreter.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_FACTS = re.compile(r"Verified facts about the target:\s*(\{.*?\})\s*\n\s*\nAnswer", re.S)
_ERROR_TYPES = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
REFUSAL_MESSAGE = "messages.0.content.0.image.source.base64: image exceeds 5 MB maximum"


def body_key(params: dict) -> str:
    """One distinct request (a live body or a batch request's params)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def honest_queries(user_text: str) -> list[dict]:
    """Queries a careful model would write from the facts (all true, singling the target out)."""
    facts = json.loads(_FACTS.search(user_text).group(1))
    label = facts["label"]
    # a target clearly in no half of the image has no position phrase
    where = next(iter(facts.get("position_in_image", [])), "in the image")
    relations = [r for r in facts.get("distinguishing_relations", []) if " " not in r]
    lead = f"the {relations[0]} {label}" if relations else f"the {label}"
    if relations and relations[0] in ("leftmost", "rightmost"):
        lead += " in the image"
    return [
        {"text": f"{lead} {where}" if not relations else f"{lead}, {where}", "style": "location"},
        {"text": f"{lead} seen on this image", "style": "clinical"},
    ]


class _Server(ThreadingHTTPServer):
    """A real server's listen backlog: the stdlib default of 5 refuses the connections of a
    burst of concurrent clients, which then look like network errors to the SDKs."""

    request_queue_size = 256
    daemon_threads = True


@dataclass
class Fault:
    """What the server does instead of answering normally, for one request."""

    kind: str  # status | slow | malformed | refusal | lie (false query) | deny (judge says no)
    status: int = 500
    headers: dict = field(default_factory=dict)
    seconds: float = 0.0


class FakeVLM:
    """Start with ``with FakeVLM() as server:``; ``server.url`` is the base URL."""

    def __init__(self, delay: float = 0.0, *, lean: bool = False):
        self.delay = delay
        self.lean = lean
        self.faults: list[Fault] = []
        self.calls: Counter = Counter()
        self.log: list[dict] = []  # path, headers, body, time of every request
        self.batches: dict[str, dict] = {}
        self.batch_ready = False
        self.batch_errors = 0  # how many results of each batch come back "errored"
        self.batch_count = 0
        self.create_delay = 0.0  # seconds a batch create waits before answering
        self.cut_results = 0  # how many result downloads are cut mid-stream
        self.refuse: set[int] = set()
        self.distinct: dict[str, int] = {}  # body key -> arrival index
        self.paid: Counter = Counter()  # body key -> answers given
        self.billed: set[tuple[str, int]] = set()  # batch results billed (once per request)
        self.inflight = self.max_inflight = 0  # live requests being answered, most at once
        self.clients: set[int] = set()  # client ports: the connections requests came on
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeVLM:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def next_fault(self) -> Fault | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def refused(self, params: dict) -> bool:
        """Whether this request is one of the permanently refused ones."""
        if self.lean:
            return False
        key = body_key(params)
        with self.lock:
            index = self.distinct.setdefault(key, len(self.distinct))
        return index in self.refuse

    def pay(self, params: dict) -> None:
        if self.lean:
            return
        with self.lock:
            self.paid[body_key(params)] += 1

    def paid_twice(self) -> list[str]:
        """Distinct requests answered (and so billed) more than once."""
        return [key for key, n in self.paid.items() if n > 1]

    # ---- answers ------------------------------------------------------------------------------
    def answer(self, body: dict, openai: bool, fault: Fault | None = None) -> dict:
        if openai:
            schema = body["response_format"]["json_schema"]["schema"]
            text = next(p["text"] for p in body["messages"][1]["content"] if p["type"] == "text")
        else:
            schema = body["output_config"]["format"]["schema"]
            text = next(p["text"] for p in body["messages"][0]["content"] if p["type"] == "text")
        if "singles_out" in schema["properties"]:
            if fault and fault.kind == "deny":
                return {"singles_out": False, "reason": "it fits another region equally well"}
            return {"singles_out": True, "reason": "the query fits the boxed region only"}
        if fault and fault.kind == "lie":
            return {
                "queries": [
                    {"text": "the polyp on the left side of the image", "style": "location"}
                ]
            }
        return {"queries": honest_queries(text)}

    @staticmethod
    def anthropic_message(content: list, stop_reason: str, model: str) -> dict:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 1200, "output_tokens": 80},
        }

    def anthropic(self, body: dict, fault: Fault | None) -> dict:
        model = body["model"]
        if fault and fault.kind == "refusal":
            text = [{"type": "text", "text": "I can't help with that."}]
            return self.anthropic_message(text, "refusal", model)
        if fault and fault.kind == "malformed":
            broken = [{"type": "text", "text": "{'queries': ["}]
            return self.anthropic_message(broken, "end_turn", model)
        data = self.answer(body, openai=False, fault=fault)
        text = [{"type": "text", "text": json.dumps(data)}]
        return self.anthropic_message(text, "end_turn", model)

    def openai(self, body: dict, fault: Fault | None) -> dict:
        message = {"role": "assistant", "content": None, "refusal": None}
        if fault and fault.kind == "refusal":
            message["refusal"] = "I can't help with that."
        elif fault and fault.kind == "malformed":
            message["content"] = '{"queries": [{"text": "the polyp'
        else:
            message["content"] = json.dumps(self.answer(body, openai=True, fault=fault))
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 900, "completion_tokens": 60, "total_tokens": 960},
        }

    def batch_json(self, batch_id: str) -> dict:
        n = len(self.batches[batch_id]["requests"])
        ended = self.batch_ready
        created = self.batches[batch_id]["created"]
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": {
                "processing": 0 if ended else n,
                "succeeded": n if ended else 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "expires_at": "2099-01-02T00:00:00Z",
            "ended_at": created.isoformat().replace("+00:00", "Z") if ended else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch_id}/results" if ended else None,
        }

    def batch_results(self, batch_id: str) -> str:
        lines = []
        for index, request in enumerate(self.batches[batch_id]["requests"]):
            if index < self.batch_errors:
                error = {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}
                result = {"type": "errored", "error": error}
            else:
                message = self.anthropic(request["params"], None)
                result = {"type": "succeeded", "message": message}
                if (batch_id, index) not in self.billed:  # a download again is not a new bill
                    self.billed.add((batch_id, index))
                    self.pay(request["params"])
            lines.append(json.dumps({"custom_id": request["custom_id"], "result": result}))
        return "\n".join(lines) + "\n"

    # ---- HTTP -------------------------------------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like a real API server
            disable_nagle_algorithm = True  # no 40 ms Nagle/delayed-ACK stalls per request

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def send_json(self, status: int, payload, headers: dict | None = None) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away

            def record(self, body) -> None:
                with fake.lock:
                    fake.calls[self.path] += 1
                    if fake.lean:
                        return
                    fake.log.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": body,
                            "time": time.monotonic(),
                        }
                    )

            def send_cut(self, data: bytes) -> None:
                """Announce the whole body, send half of it, hang up."""
                self.send_response(200)
                self.send_header("content-type", "application/binary")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True

            def do_GET(self) -> None:
                self.record(None)
                if self.path.split("?")[0] == "/v1/messages/batches":
                    listed = [fake.batch_json(b) for b in reversed(list(fake.batches))]
                    page = {
                        "data": listed,
                        "has_more": False,
                        "first_id": listed[0]["id"] if listed else None,
                        "last_id": listed[-1]["id"] if listed else None,
                    }
                    self.send_json(200, page)
                    return
                match = re.fullmatch(r"/v1/messages/batches/([\w-]+)(/results)?", self.path)
                if not match or match.group(1) not in fake.batches:
                    error = {"type": "not_found_error", "message": "batch not found"}
                    self.send_json(404, {"type": "error", "error": error})
                elif match.group(2):
                    with fake.lock:
                        cut = fake.cut_results > 0
                        fake.cut_results -= cut
                    results = fake.batch_results(match.group(1)).encode()
                    if cut:
                        self.send_cut(results)
                    else:
                        self.send_json(200, results)
                else:
                    self.send_json(200, fake.batch_json(match.group(1)))

            def do_POST(self) -> None:
                with fake.lock:
                    fake.inflight += 1
                    fake.max_inflight = max(fake.max_inflight, fake.inflight)
                    fake.clients.add(self.client_address[1])
                try:
                    self.post()
                finally:
                    with fake.lock:
                        fake.inflight -= 1

            def post(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                self.record(body)
                if self.path == "/v1/messages/batches":
                    with fake.lock:
                        fake.batch_count += 1
                        batch_id = f"msgbatch_{fake.batch_count:04d}"
                        fake.batches[batch_id] = {
                            "requests": body["requests"],
                            "created": datetime.now(timezone.utc),
                        }
                    time.sleep(fake.create_delay)  # the batch exists; the answer comes late
                    self.send_json(200, fake.batch_json(batch_id))
                    return
                live = ("/v1/messages", "/v1/chat/completions")
                params = body if self.path in live else None
                if params is not None and fake.refused(params):
                    error = {"type": "invalid_request_error", "message": REFUSAL_MESSAGE}
                    self.send_json(400, {"type": "error", "error": error})
                    return
                fault = fake.next_fault()
                if fake.delay:
                    time.sleep(fake.delay)
                if fault and fault.kind == "slow":
                    time.sleep(fault.seconds)
                if fault and fault.kind == "status":
                    error = {"type": _ERROR_TYPES.get(fault.status, "api_error"), "message": "fake"}
                    payload = {"type": "error", "error": error}
                    self.send_json(fault.status, payload, fault.headers)
                elif self.path == "/v1/messages":
                    fake.pay(body)
                    self.send_json(200, fake.anthropic(body, fault))
                elif self.path == "/v1/chat/completions":
                    fake.pay(body)
                    self.send_json(200, fake.openai(body, fault))
                else:
                    self.send_json(404, {"error": {"message": f"no route {self.path}"}})

        return Handler


def main() -> None:
    """Serve until stdin closes (or the process is terminated), printing the URL first."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--lean", action="store_true")
    args = parser.parse_args()
    with FakeVLM(args.delay, lean=args.lean) as server:
        print(server.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
