"""aps_client against the emulator over HTTP: tokens, caching, retries and fault handling."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from aps_client import APSClient, APSConfig, AsyncAPSClient, clear_token_cache
from aps_client.errors import APSAuthError, APSRateLimitedError, APSServerError
from aps_devstack import EmulatorServer
from tests.fixtures.client import aps, aps_config, client_config, stat, wait_until


def test_one_token_serves_many_calls_and_clients(aps: APSClient, emulator: EmulatorServer) -> None:
    aps.oss.ensure_bucket("cache-bucket")
    for _ in range(5):
        aps.oss.bucket_details("cache-bucket")
    aps.derivative.formats()
    with APSClient(aps.config) as second_client:  # same config: same process-wide cache
        second_client.oss.bucket_details("cache-bucket")
    assert stat(emulator, "token") == 1


def test_concurrent_threads_share_one_token_fetch(aps_config: APSConfig, emulator: EmulatorServer) -> None:
    with APSClient(aps_config) as aps, ThreadPoolExecutor(8) as pool:
        formats = list(pool.map(lambda _: aps.derivative.formats(), range(16)))
    assert all("svf2" in f for f in formats)
    assert stat(emulator, "token") == 1


async def test_async_client_shares_the_process_wide_cache(aps: APSClient, emulator: EmulatorServer) -> None:
    sync_token = aps.get_token()
    async with AsyncAPSClient(aps.config) as aps_async:
        async_token = await aps_async.get_token()
        assert "svf2" in await aps_async.derivative.formats()
    assert async_token.access_token == sync_token.access_token
    assert stat(emulator, "token") == 1


def test_tokens_are_cached_per_scope_set(aps: APSClient, emulator: EmulatorServer) -> None:
    narrow = aps.get_token(scopes=["data:read"])
    assert narrow.scopes == ("data:read",)
    assert aps.get_token(scopes=["data:read"]).access_token == narrow.access_token
    assert aps.get_token().access_token != narrow.access_token
    assert stat(emulator, "token") == 2


def test_wrong_secret_is_an_auth_error_without_the_secret(emulator: EmulatorServer) -> None:
    config = client_config(emulator, secret="not-the-right-secret")
    with APSClient(config) as aps, pytest.raises(APSAuthError) as caught:
        aps.oss.bucket_details("any-bucket")
    error = caught.value
    assert error.status_code in (400, 401)
    assert emulator.client_id in str(error)
    for text in (str(error), repr(error), str(error.body), repr(config)):
        assert "not-the-right-secret" not in text
    assert stat(emulator, "token") == 1  # credentials errors are not retried


def test_expired_token_mid_flow_is_refreshed(aps: APSClient, emulator: EmulatorServer) -> None:
    aps.oss.ensure_bucket("expiry-bucket")
    first = aps.get_token()
    emulator.advance_clock(4000)  # past the 3599 s lifetime; our local clock still thinks it is fresh
    assert aps.oss.bucket_details("expiry-bucket").bucket_key == "expiry-bucket"
    assert stat(emulator, "bucket_details 401", "responses") == 1
    assert stat(emulator, "token") == 2
    assert aps.get_token().access_token != first.access_token


def test_429_with_retry_after_is_waited_out(aps: APSClient, emulator: EmulatorServer) -> None:
    aps.oss.ensure_bucket("storm-bucket")
    emulator.configure(fault_429_rate=1.0, fault_429_operations=["bucket_details"], retry_after_seconds=1)
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.update(bucket=aps.oss.bucket_details("storm-bucket")))
    worker.start()
    # While the storm lasts the client keeps waiting and retrying; once it passes the call succeeds.
    wait_until(lambda: stat(emulator, "bucket_details 429", "responses") >= 2)
    emulator.configure(fault_429_rate=0.0)
    worker.join(timeout=60)
    assert result["bucket"].bucket_key == "storm-bucket"  # type: ignore[attr-defined]


def test_429_that_never_ends_surfaces_retry_after(emulator: EmulatorServer) -> None:
    config = client_config(emulator, max_attempts=3)
    emulator.configure(fault_429_rate=1.0, fault_429_operations=["formats"], retry_after_seconds=1)
    with APSClient(config) as aps, pytest.raises(APSRateLimitedError) as caught:
        aps.derivative.formats()
    assert caught.value.retry_after == 1.0
    assert caught.value.status_code == 429
    assert stat(emulator, "formats 429", "responses") == 3


def test_a_token_fetch_that_outlasts_its_retries_is_not_retried_again_but_stays_retryable(
    emulator: EmulatorServer,
) -> None:
    """The request around the token fetch does not multiply its attempts, and a poller may still try later."""
    clear_token_cache()
    config = client_config(emulator, max_attempts=3)
    emulator.configure(fault_429_rate=1.0, fault_429_operations=["token"], retry_after_seconds=0)
    with APSClient(config) as aps, pytest.raises(APSRateLimitedError) as caught:
        aps.derivative.formats()
    assert caught.value.retryable
    assert stat(emulator, "token 429", "responses") == 3  # one fetch's attempts, not 3 x 3
    assert stat(emulator, "formats") == 0


def test_5xx_burst_is_retried(aps: APSClient, emulator: EmulatorServer) -> None:
    aps.get_token()
    emulator.configure(fault_5xx_burst=3)
    assert "svf2" in aps.derivative.formats()
    assert stat(emulator, "formats") == 4


def test_5xx_that_outlasts_the_attempts_is_a_server_error(emulator: EmulatorServer) -> None:
    config = client_config(emulator, max_attempts=2)
    with APSClient(config) as aps:
        aps.get_token()
        emulator.configure(fault_5xx_burst=5)
        with pytest.raises(APSServerError) as caught:
            aps.derivative.formats()
    assert caught.value.status_code == 503
    assert stat(emulator, "formats") == 2


async def test_async_client_refreshes_an_expired_token(
    aps_config: APSConfig, emulator: EmulatorServer
) -> None:
    async with AsyncAPSClient(aps_config) as aps_async:
        first = await aps_async.get_token()
        emulator.advance_clock(4000)
        assert "svf2" in await aps_async.derivative.formats()
        assert (await aps_async.get_token()).access_token != first.access_token
    assert stat(emulator, "formats 401", "responses") == 1
    assert stat(emulator, "token") == 2


async def test_async_client_retries_5xx(aps_config: APSConfig, emulator: EmulatorServer) -> None:
    async with AsyncAPSClient(aps_config) as aps_async:
        await aps_async.get_token()
        emulator.configure(fault_5xx_burst=2)
        assert "svf2" in await aps_async.derivative.formats()
    assert stat(emulator, "formats 503", "responses") == 2
