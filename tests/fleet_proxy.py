"""A round-robin HTTP load balancer on 127.0.0.1 in front of several OpenAI-compatible servers,
as a vLLM fleet is fronted (nginx ``upstream``, a Kubernetes Service, a cloud load balancer):
one base URL, each request to the next server. It counts what it forwards to each server and
the requests in flight, overall and per client process (found from the connection's port in
``/proc``), so tests can check how a build's workers load the fleet."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections import Counter
from pathlib import Path

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "content-length", "host", "keep-alive", "transfer-encoding"}


def _owner(port: int, server_port: int) -> int | None:
    """The process holding the client end (local ``port``) of a connection to ``server_port``."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(a.split(":")[1], 16) for a in fields[1:3])
        if (local, remote) == (port, server_port):
            inode = fields[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.scandir(f"/proc/{pid}/fd")
            if any(os.readlink(fd.path) == target for fd in fds):
                return int(pid)
        except OSError:  # a process that ended, or fds we may not read
            continue
    return None


class RoundRobinProxy:
    """Start with ``with RoundRobinProxy([url, ...]) as proxy:``; ``proxy.url`` is the base."""

    def __init__(self, upstreams: list[str]):
        self.upstreams = upstreams
        self.forwarded: Counter = Counter()  # upstream index -> requests
        self.inflight = self.max_inflight = 0
        self.by_process: Counter = Counter()  # client pid -> requests in flight now
        self.max_by_process: Counter = Counter()  # client pid -> most in flight at once
        self._owners: dict[int, int | None] = {}  # client port -> pid
        self._next = itertools.cycle(range(len(upstreams)))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> RoundRobinProxy:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _start(self) -> int:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        port = request.transport.get_extra_info("peername")[1]
        if port not in self._owners:  # one look-up per connection
            self._owners[port] = await asyncio.to_thread(_owner, port, self.port)
        pid = self._owners[port]
        upstream = next(self._next)
        self.forwarded[upstream] += 1
        self.inflight += 1
        self.by_process[pid] += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        self.max_by_process[pid] = max(self.max_by_process[pid], self.by_process[pid])
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            async with self._session.request(
                request.method,
                self.upstreams[upstream] + request.path_qs,
                data=await request.read(),
                headers=headers,
            ) as answer:
                body = await answer.read()
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
                return web.Response(status=answer.status, body=body, headers=kept)
        finally:
            self.inflight -= 1
            self.by_process[pid] -= 1
