"""Prometheus metrics: one registry per app, filled by a small ASGI middleware and the token cache."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Latency buckets around the goals: viewer-token p95 < 50 ms, everything p95 < 200 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)


class APIMetrics:
    """The app's metrics. A private registry keeps several apps in one process (tests) apart."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "aps_api_requests",
            "HTTP requests handled, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aps_api_request_duration_seconds",
            "Time to answer a request, by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.token_cache = Counter(
            "aps_api_viewer_token_cache",
            "Viewer-token cache lookups (hit: served from the cache).",
            ["result"],
            registry=self.registry,
        )
        self.aps_calls = Counter(
            "aps_api_aps_calls",
            "Calls made to APS through the APS client, by operation and outcome.",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "aps_api_rate_limited",
            "Requests refused with 429 by the per-key rate limit.",
            registry=self.registry,
        )
        self.invalid_keys_refused = Counter(
            "aps_api_invalid_keys_refused",
            "Requests refused with 429 (no database lookup) for too many invalid keys from one address.",
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts requests and times them, labelled by the matched route template (never the raw path,
    which would give one series per model id)."""

    def __init__(self, app: ASGIApp, metrics: APIMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app raises before answering, the server answers 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
