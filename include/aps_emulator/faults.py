"""Per-request plumbing in one ASGI middleware: operation stats, injected faults, APS rate limits, MD headers.

Every request that matches an APS route (not `/`, not `/_emulator/*`) gets an *operation* name, which is
the route's `name` (token, bucket_create, upload_part, manifest, ...; listed in README.md, "Control API").
In order: count the request, add `latency_ms` (optionally only for `latency_operations`), answer 503 while
`fault_5xx_burst` lasts, answer 429 with probability `fault_429_rate` (optionally only for
`fault_429_operations`), enforce the per-client, per-minute limits of aps-api.md §5 when
`rate_limits_enabled`; then run the route and count its status.
It is written as plain ASGI (not BaseHTTPMiddleware) so request bodies stream straight through.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aps_emulator.context import EmulatorContext
from aps_emulator.rate_limits import FORCEGET_LIMIT_PER_MINUTE, RATE_LIMITS_PER_MINUTE
from aps_emulator.security import client_id_of

QUOTA_BODY = {"developerMessage": "Quota limit exceeded."}
InjectedAnswer = tuple[int, dict[str, Any], dict[str, str]]  # status, JSON body, headers
UNCOUNTED_PREFIXES = ("/_emulator", "/docs", "/openapi.json", "/redoc")


async def _drain(receive: Receive) -> None:
    """Consume the request body so the client reads our early answer rather than a reset connection."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": data})


def _unavailable_body(path: str) -> dict[str, Any]:
    if path.startswith("/modelderivative"):
        return {"diagnostic": "Service Unavailable"}
    if path.startswith("/oss"):
        return {"reason": "Service Unavailable"}
    return {"developerMessage": "Service Unavailable", "errorCode": ""}


class FaultsAndStatsMiddleware:
    def __init__(self, app: ASGIApp, routes_app: Any) -> None:
        self.app = app
        self.routes_app = routes_app  # the FastAPI app, to match a request to its route name
        self._burst_lock = threading.Lock()

    @property
    def context(self) -> EmulatorContext:
        context: EmulatorContext = self.routes_app.state.emulator
        return context

    def operation(self, scope: Scope) -> str | None:
        path: str = scope["path"]
        if path == "/" or path.startswith(UNCOUNTED_PREFIXES):
            return None
        for route in self.routes_app.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return str(getattr(route, "name", None) or path)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        operation = self.operation(scope)
        context = self.context
        if operation is None:
            await self.app(scope, receive, send)
            context.store.save_if_dirty()
            return
        context.stats.count_request(operation)
        started = time.monotonic()
        path: str = scope["path"]

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                context.stats.count_response(operation, message["status"])
                if path.startswith("/modelderivative"):
                    message["headers"] = [*message.get("headers", []), *self._md_headers(started)]
            await send(message)

        fault = await self._injected_fault(scope, operation)
        if fault is not None:
            status, body, headers = fault
            await _drain(receive)
            await _send_json(counting_send, status, body, headers)
            return
        await self.app(scope, receive, counting_send)
        context.store.save_if_dirty()

    async def _injected_fault(self, scope: Scope, operation: str) -> InjectedAnswer | None:
        context = self.context
        tunables = context.tunables
        delayed = not tunables.latency_operations or operation in tunables.latency_operations
        if tunables.latency_ms and delayed:
            await asyncio.sleep(tunables.latency_ms / 1000)
        with self._burst_lock:
            if tunables.fault_5xx_burst > 0:
                tunables.fault_5xx_burst -= 1
                return 503, _unavailable_body(scope["path"]), {}
        retry_after = {"Retry-After": str(tunables.retry_after_seconds)}
        targeted = not tunables.fault_429_operations or operation in tunables.fault_429_operations
        if tunables.fault_429_rate > 0 and targeted and random.random() < tunables.fault_429_rate:
            return 429, QUOTA_BODY, retry_after
        if tunables.rate_limits_enabled:
            limit = RATE_LIMITS_PER_MINUTE.get(operation)
            key = operation
            query = scope.get("query_string", b"").decode().lower()
            if operation in ("tree", "properties") and "forceget=true" in query:
                limit, key = FORCEGET_LIMIT_PER_MINUTE, f"{operation}:forceget"
            if limit is not None:
                headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
                client = client_id_of(context, headers.get("authorization", "")) or "anonymous"
                wait = context.rate_limiter.check(client, key, limit, context.clock.now())
                if wait is not None:
                    return 429, QUOTA_BODY, {"Retry-After": str(wait)}
        return None

    def _md_headers(self, started: float) -> list[tuple[bytes, bytes]]:
        startup = time.strftime("%a %b %d %H:%M:%S GMT %Y", time.gmtime(self.context.started_at))
        return [
            (b"x-ads-app-identifier", b"platform-viewing-emulator"),
            (b"x-ads-duration", f"{int((time.monotonic() - started) * 1000)} ms".encode()),
            (b"x-ads-startup-time", startup.encode()),
            (b"x-ads-troubleshooting", b"Find troubleshooting info at https://aps.autodesk.com/support"),
        ]
