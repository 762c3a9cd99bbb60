"""The pipeline's metrics through Airflow's own StatsD client to a real UDP listener on loopback, as a task
process sends them: translation seconds and load rows per second when a model loads, the budget's use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from airflow.sdk._shared.observability.metrics import stats
from airflow.sdk._shared.observability.metrics.statsd_logger import get_statsd_logger
from statsd import StatsClient

from aps_ingest_tasks import metrics
from aps_pipeline.budget import GLOBAL_SCOPE, PeriodUse
from tests.fixtures.client import wait_until
from tests.fixtures.statsd import StatsdListener


@pytest.fixture
def listener() -> Iterator[StatsdListener]:
    received = StatsdListener()
    stats.initialize(factory=lambda: get_statsd_logger(stats_class=StatsClient, host="127.0.0.1",
                                                       port=received.port, prefix="airflow"),
                     export_legacy_names=True)
    try:
        yield received
    finally:
        stats.initialize(factory=stats.NoStatsLogger, export_legacy_names=True)
        received.close()


def arrived(listener: StatsdListener, name: str) -> str:
    """The first line the listener got for `name` (waits for it: UDP is asynchronous)."""
    return wait_until(lambda: next((line for line in list(listener.lines)
                                    if line.startswith(name + ":")), None))


def test_a_loaded_model_sends_its_translation_seconds_and_load_rows_per_second(
    listener: StatsdListener,
) -> None:
    metrics.settled("aps_ingest", [
        {"status": "success", "objects": 300, "properties": 2700, "load_seconds": 1.5,
         "translation_seconds": 42.25},
        {"status": "failed", "failed_files": [1]},  # nothing loaded: no timing, no rate
    ])
    assert arrived(listener, "airflow.aps.aps_ingest.translations.seconds") == (
        "airflow.aps.aps_ingest.translations.seconds:42250.000000|ms")
    assert arrived(listener, "airflow.aps.aps_ingest.load.rows_per_second") == (
        "airflow.aps.aps_ingest.load.rows_per_second:2000.0|g")


def test_the_budget_use_is_a_gauge_per_budget_and_period(listener: StatsdListener) -> None:
    metrics.budget_use("aps_ingest", [
        PeriodUse("aps_ingest", "day", "day:2026-12-07", 10, 7, 1, False),
        PeriodUse(GLOBAL_SCOPE, "month", "month:2026-12", 100, 100, 0, True),
    ])
    assert arrived(listener, "airflow.aps.aps_ingest.budget.day_used_percent") == (
        "airflow.aps.aps_ingest.budget.day_used_percent:80.0|g")
    assert arrived(listener, "airflow.aps.aps_ingest.budget.global_month_used_percent") == (
        "airflow.aps.aps_ingest.budget.global_month_used_percent:100.0|g")
