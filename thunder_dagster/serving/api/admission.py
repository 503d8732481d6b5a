"""The bounds a request meets before it costs the server much: its body's size (an ASGI
middleware outside every route, so a body over the limit is never read whole), its caller's
rate (a token bucket per key, or per client address on an open server; off unless
configured) and the workers' queue (a request that would wait behind too many others is
turned away at once with Retry-After, instead of holding its connection and memory)."""

import asyncio
import json
import math
import re
import threading
import time

from starlette.datastructures import Headers

from thunder_dagster.serving.errors import Busy

# A document's upload: streamed to disk by its route, under THUNDER_MAX_UPLOAD_BYTES instead.
UPLOAD = re.compile(r"/v1/admin/agents/[^/]+/documents/[^/]+/[^/]+")


class BodyLimit:
    """413 for a body over `max_bytes`: by its Content-Length before anything is read, or,
    sent in chunks without one, as soon as what arrived passes the limit. An upload's body
    is left to its route, which streams it to disk under its own limit."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or (
            scope["method"] == "PUT" and UPLOAD.fullmatch(scope["path"])
        ):
            return await self.app(scope, receive, send)
        length = Headers(scope=scope).get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                return await self._refuse(send)
            return await self.app(scope, receive, send)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._refuse(send)
        handed = False

        async def replay():
            nonlocal handed
            if handed:
                return await receive()
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        detail = f"the body is over {self.max_bytes} bytes (THUNDER_MAX_BODY_BYTES): send less"
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """A token bucket per caller: `per_minute` requests a minute, in bursts of as many; no
    limit when it is 0."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, when)
        self._lock = threading.Lock()

    def wait(self, caller: str) -> int:
        """0 when the caller may go on (a token is taken), else the whole seconds to wait."""
        if self.per_minute <= 0:
            return 0
        rate, now = self.per_minute / 60.0, time.monotonic()
        with self._lock:
            tokens, when = self._buckets.get(caller, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - when) * rate)
            taken = tokens >= 1.0
            self._buckets[caller] = (tokens - 1.0 if taken else tokens, now)
        return 0 if taken else math.ceil((1.0 - tokens) / rate)


class WorkQueue:
    """The answering threads with a bound on the requests waiting for one: past it, Busy
    (503 with Retry-After). Counted on the event loop, which alone submits."""

    def __init__(self, workers, threads: int, max_waiting: int):
        self.workers = workers
        self.bound = threads + max_waiting
        self.max_waiting = max_waiting
        self.admitted = 0

    async def run(self, function, *args):
        if self.admitted >= self.bound:
            raise Busy(
                f"{self.admitted} requests are being answered or waiting (THUNDER_MAX_WAITING "
                f"is {self.max_waiting}): retry in a few seconds"
            )
        self.admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.workers, function, *args)
        finally:
            self.admitted -= 1


def foreign_host(request, settings) -> str | None:
    """Why an open server (ServerSettings) refuses the request's Host (a name it does not
    answer to: a web page reaching it by DNS rebinding), or None."""
    if settings.auth != "open" or settings.open_hosts is None:
        return None
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name.strip("[]").lower() in settings.open_hosts:
        return None
    return (
        f"Host {host[:80]!r} is not a name this open server answers to: without API keys it "
        "answers only loopback names (a web page could reach it otherwise, by DNS rebinding); "
        "use http://127.0.0.1, or make keys with `thunder keys create`"
    )
