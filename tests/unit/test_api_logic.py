"""Pure logic of the API: viewer-token cache, rate limits, cursors, API-key verification."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest
from fastapi.exceptions import RequestValidationError
from limits import RateLimitItemPerSecond
from sqlalchemy.exc import TimeoutError as PoolTimeout

from aps_api.api_keys import KEY_PREFIX, generate_api_key, hash_api_key
from aps_api.db import FifoGate
from aps_api.key_verifier import APIKeyVerifier, KeyIdentity, TooManyInvalidKeys
from aps_api.metrics import APIMetrics
from aps_api.pagination import decode_cursor, encode_cursor
from aps_api.ratelimit import RateLimit, retry_after_header
from aps_api.token_cache import ViewerTokenCache
from aps_client.viewer import TokenMode, viewer_scope


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class IssuedToken:
    access_token: str
    expires_at: float
    token_type: str = "Bearer"


class CountingTokenService:
    """Stands in for APS's token endpoint: counts requests and issues tokens valid for `lifetime` seconds."""

    def __init__(self, clock: FakeClock, lifetime: float = 3599.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.requests: list[list[str]] = []

    async def __call__(self, scopes: list[str]) -> IssuedToken:
        self.requests.append(scopes)
        await asyncio.sleep(0.01)  # let concurrent callers pile up behind the lock
        return IssuedToken(f"token-{len(self.requests)}", self.clock.now + self.lifetime)


def _metric(metrics: APIMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_concurrent_requests_for_one_scope_cause_one_token_request() -> None:
    clock = FakeClock()
    service = CountingTokenService(clock)
    metrics = APIMetrics()
    cache = ViewerTokenCache(service, refresh_margin=300, max_entries=10, metrics=metrics, clock=clock)

    tokens = await asyncio.gather(*(cache.get("viewables:read") for _ in range(200)))

    assert service.requests == [["viewables:read"]]
    assert {token.access_token for token in tokens} == {"token-1"}
    assert _metric(metrics, "aps_api_viewer_token_cache_total", result="miss") == 1
    assert _metric(metrics, "aps_api_viewer_token_cache_total", result="hit") == 199
    assert _metric(metrics, "aps_api_aps_calls_total", operation="token", outcome="ok") == 1


async def test_token_is_refreshed_once_inside_the_margin() -> None:
    clock = FakeClock()
    service = CountingTokenService(clock, lifetime=3600)
    cache = ViewerTokenCache(service, refresh_margin=300, max_entries=10, metrics=APIMetrics(), clock=clock)
    first = await cache.get("viewables:read")
    assert first.expires_in(clock.now) == 3600

    clock.now += 3600 - 301  # still 301 s to live: served from the cache
    assert (await cache.get("viewables:read")).access_token == "token-1"
    clock.now += 2  # now inside the margin: a new token
    second = await cache.get("viewables:read")
    assert second.access_token == "token-2"
    assert second.expires_in(clock.now) == 3600
    assert len(service.requests) == 2


async def test_short_lived_tokens_are_used_for_half_their_life() -> None:
    clock = FakeClock()
    service = CountingTokenService(clock, lifetime=100)  # shorter than the 300 s margin
    cache = ViewerTokenCache(service, refresh_margin=300, max_entries=10, metrics=APIMetrics(), clock=clock)
    await cache.get("viewables:read")
    clock.now += 49
    await cache.get("viewables:read")
    assert len(service.requests) == 1
    clock.now += 2
    await cache.get("viewables:read")
    assert len(service.requests) == 2


async def test_scopes_are_cached_separately_and_the_cache_is_bounded() -> None:
    clock = FakeClock()
    service = CountingTokenService(clock)
    cache = ViewerTokenCache(service, refresh_margin=300, max_entries=2, metrics=APIMetrics(), clock=clock)
    for scope in ("data:read:a", "data:read:b", "data:read:a", "data:read:c"):
        await cache.get(scope)
    assert [s[0] for s in service.requests] == ["data:read:a", "data:read:b", "data:read:c"]
    assert cache.peek("data:read:b") is None  # least recently used, dropped
    assert cache.peek("data:read:a") is not None


async def test_failed_token_request_is_not_cached() -> None:
    clock = FakeClock()
    calls = 0

    async def failing(scopes: list[str]) -> IssuedToken:
        nonlocal calls
        calls += 1
        raise RuntimeError("APS down")

    metrics = APIMetrics()
    cache = ViewerTokenCache(failing, refresh_margin=300, max_entries=2, metrics=metrics, clock=clock)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await cache.get("viewables:read")
    assert calls == 2
    assert _metric(metrics, "aps_api_aps_calls_total", operation="token", outcome="error") == 2


def test_viewer_scope_per_mode() -> None:
    assert viewer_scope(TokenMode.VIEWABLES, "dXJu") == "viewables:read"
    assert viewer_scope(TokenMode.PER_MODEL, "dXJu") == "data:read:dXJu"


def test_rate_limit_allows_the_limit_then_asks_to_wait() -> None:
    limit = RateLimit(RateLimitItemPerSecond(3), "test")
    assert [limit.acquire("k1") for _ in range(3)] == [None] * 3
    wait = limit.acquire("k1")
    assert wait is not None
    assert 0 < wait <= 1.0
    assert retry_after_header(wait) == "1"
    assert limit.wait_before_next("k1") is not None  # asking does not take a request
    assert limit.acquire("k2") is None  # identities are limited separately
    time.sleep(wait + 0.05)  # the window moves on: the first requests drop out of it
    assert limit.wait_before_next("k1") is None
    assert limit.acquire("k1") is None


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert [retry_after_header(w) for w in (0.0, 0.2, 1.0, 1.01, 59.5)] == ["1", "1", "1", "2", "60"]


def test_cursor_round_trip_and_rejections() -> None:
    cursor = encode_cursor("objects", ("guid-1", 42))
    assert decode_cursor(cursor, "objects", (str, int)) == ("guid-1", 42)
    assert decode_cursor(None, "objects", (str, int)) is None
    bad = [
        "not base64 !!",
        encode_cursor("models", (1,)),  # another listing's cursor
        encode_cursor("objects", ("guid", "x")),  # wrong type
        encode_cursor("objects", ("nul\x00", 1)),  # PostgreSQL text cannot hold NUL
        encode_cursor("objects", ("guid", 2**70)),  # beyond bigint
    ]
    for cursor in bad:
        with pytest.raises(RequestValidationError) as caught:
            decode_cursor(cursor, "objects", (str, int))
        assert caught.value.errors()[0]["loc"] == ("query", "cursor")


async def test_key_verifier_caches_answers_and_skips_foreign_keys() -> None:
    clock = FakeClock()
    good = generate_api_key()
    lookups: list[str] = []

    async def lookup(key_hash: str) -> KeyIdentity | None:
        lookups.append(key_hash)
        return KeyIdentity(id=1, name="svc") if key_hash == hash_api_key(good) else None

    verifier = APIKeyVerifier(lookup, ttl=30, failures=RateLimit.per_minute(100, "test"), clock=clock)
    assert good.startswith(KEY_PREFIX)
    assert await verifier.verify(good, "10.0.0.1") == KeyIdentity(id=1, name="svc")
    assert await verifier.verify(good, "10.0.0.1") == KeyIdentity(id=1, name="svc")
    assert len(lookups) == 1
    clock.now += 31
    await verifier.verify(good, "10.0.0.1")
    assert len(lookups) == 2  # re-checked after the cache time, so a revocation is seen
    assert await verifier.verify("Bearer-something-else", "10.0.0.1") is None
    assert len(lookups) == 2  # not our key format: no database round trip


async def test_key_verifier_refuses_an_address_out_of_failures_before_looking_up() -> None:
    good = generate_api_key()
    lookups: list[str] = []

    async def lookup(key_hash: str) -> KeyIdentity | None:
        lookups.append(key_hash)
        return KeyIdentity(id=1, name="svc") if key_hash == hash_api_key(good) else None

    verifier = APIKeyVerifier(lookup, ttl=30, failures=RateLimit.per_minute(2, "test"))
    assert await verifier.verify(good, "10.0.0.1") is not None
    assert [await verifier.verify(generate_api_key(), "10.0.0.1") for _ in range(2)] == [None, None]
    with pytest.raises(TooManyInvalidKeys) as refused:
        await verifier.verify(generate_api_key(), "10.0.0.1")
    assert 0 < refused.value.retry_after <= 60
    assert refused.value.per_minute == 2
    assert len(lookups) == 3
    assert await verifier.verify(good, "10.0.0.1") is not None  # known good: no lookup, not refused
    assert await verifier.verify(generate_api_key(), "10.0.0.2") is None  # another address
    assert len(lookups) == 4


# --- the database gate (first come, first served) ---------------------------------------------------------


async def _enter_and_record(gate: FifoGate, name: str, order: list[str], hold: asyncio.Event) -> None:
    async with gate.place():
        order.append(name)
        await hold.wait()


def test_gate_lets_waiters_in_in_arrival_order_not_newcomers_first():
    """A freed place goes to the longest waiter, even when a newcomer asks in the same loop turn: with
    asyncio's queue and semaphore a newcomer can take it, and under load some requests waited seconds."""
    async def scenario() -> list[str]:
        gate = FifoGate(1, timeout=5)
        order: list[str] = []
        release = asyncio.Event()
        first = asyncio.create_task(_enter_and_record(gate, "first", order, release))
        await asyncio.sleep(0)
        waiters = [asyncio.create_task(_enter_and_record(gate, f"waiter-{n}", order, release))
                   for n in range(3)]
        await asyncio.sleep(0)
        release.set()  # every holder leaves as soon as it enters from now on
        await first
        newcomer = asyncio.create_task(_enter_and_record(gate, "newcomer", order, release))
        await asyncio.gather(*waiters, newcomer)
        return order

    assert asyncio.run(scenario()) == ["first", "waiter-0", "waiter-1", "waiter-2", "newcomer"]


def test_gate_passes_a_cancelled_waiters_place_on_and_times_out_as_the_pool_does():
    async def scenario() -> list[str]:
        gate = FifoGate(1, timeout=5)
        order: list[str] = []
        hold = asyncio.Event()
        holder = asyncio.create_task(_enter_and_record(gate, "holder", order, hold))
        await asyncio.sleep(0)
        cancelled = asyncio.create_task(_enter_and_record(gate, "cancelled", order, hold))
        after = asyncio.create_task(_enter_and_record(gate, "after", order, hold))
        await asyncio.sleep(0)
        cancelled.cancel()
        hold.set()
        await asyncio.gather(holder, after)
        assert cancelled.cancelled()
        async with gate.place():  # every place was given back
            pass
        busy = FifoGate(1, timeout=0.01)
        async with busy.place():
            with pytest.raises(PoolTimeout):
                async with busy.place():
                    pass
        return order

    assert asyncio.run(scenario()) == ["holder", "after"]
