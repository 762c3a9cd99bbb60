"""The client counts what its calls met (answers, 429s, retries), alike for the sync and async transports."""

from __future__ import annotations

import pytest

from aps_client import APSClient, AsyncAPSClient
from aps_client.call_stats import CALL_STATS
from aps_client.errors import APSRateLimitedError
from aps_devstack import EmulatorServer
from tests.fixtures.client import client_config, stat


def test_a_429_storm_is_counted_as_throttled_answers_and_retries(emulator: EmulatorServer) -> None:
    config = client_config(emulator, max_attempts=3)
    with APSClient(config) as aps:
        aps.get_token()
        before = CALL_STATS.snapshot()
        emulator.configure(fault_429_rate=1.0, fault_429_operations=["formats"], retry_after_seconds=0)
        with pytest.raises(APSRateLimitedError):
            aps.derivative.formats()
        emulator.configure(fault_429_rate=0.0)
        aps.derivative.formats()
    assert stat(emulator, "formats 429", "responses") == 3
    counted = CALL_STATS.since(before)
    # Three 429s, two retries between them; answers: those and the last call's (a token refresh, when an
    # earlier test of this worker reset the emulator, adds its own).
    assert (counted["throttled"], counted["retries"]) == (3, 2)
    assert counted["answers"] >= 4


async def test_the_async_client_counts_alike(emulator: EmulatorServer) -> None:
    config = client_config(emulator, max_attempts=2)
    async with AsyncAPSClient(config) as aps:
        await aps.get_token()
        before = CALL_STATS.snapshot()
        emulator.configure(fault_429_rate=1.0, fault_429_operations=["formats"], retry_after_seconds=0)
        with pytest.raises(APSRateLimitedError):
            await aps.derivative.formats()
        emulator.configure(fault_429_rate=0.0)
    counted = CALL_STATS.since(before)
    assert (counted["throttled"], counted["retries"]) == (2, 1)
    assert counted["answers"] >= 2
