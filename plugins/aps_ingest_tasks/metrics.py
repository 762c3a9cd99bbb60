"""The ingest's Airflow metrics, sent wherever Airflow's `[metrics]` section says (StatsD or OpenTelemetry).

    aps.<pipeline>.files.<loaded|rejected|failed|lost>   counter: a run's files by outcome (finish_run)
    aps.<pipeline>.api.<answers|throttled|retries>       counter: what a task's APS calls met (429s, retries)
    aps.<pipeline>.translations.oldest_waiting_seconds   gauge: the longest a file of it has been translating
    aps.<pipeline>.translations.seconds                  timing: a translation's submission to its load
    aps.<pipeline>.load.rows_per_second                  gauge: a model's objects and properties per second
    aps.<pipeline>.budget.<day|month>_used_percent       gauge: the pipeline's budget used this period
    aps.<pipeline>.budget.global_<day|month>_used_percent  gauge: the global budget used this period

The pipeline is part of the name, not a tag: plain StatsD drops tags. Dotted names; a
StatsD exporter for Prometheus turns them into `airflow_aps_<pipeline>_files_failed` and so on (the alert
rules in deploy/prometheus/ read those).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk.observability.stats import gauge, incr, normalize_name_for_stats, timing

from aps_client.call_stats import CALL_STATS

if TYPE_CHECKING:
    from aps_pipeline.budget import PeriodUse

OUTCOMES = ("loaded", "rejected", "failed", "lost")


def metric_name(pipeline: str, *parts: str) -> str:
    return ".".join(["aps", normalize_name_for_stats(pipeline, log_warning=False), *parts])


def files_by_outcome(pipeline: str, summary: Mapping[str, object]) -> None:
    """One counter per outcome, by the run's summary counts."""
    for outcome in OUTCOMES:
        count = summary.get(outcome)
        if isinstance(count, int) and count > 0:
            incr(metric_name(pipeline, "files", outcome), count)


@contextmanager
def counting_aps_calls(pipeline: str) -> Iterator[None]:
    """Send what the APS calls made inside the block met: answers, 429s and retries."""
    before = CALL_STATS.snapshot()
    try:
        yield
    finally:
        for name, count in CALL_STATS.since(before).items():
            if count > 0:
                incr(metric_name(pipeline, "api", name), count)


def oldest_waiting(pipeline: str, seconds: float | None) -> None:
    """The age of the pipeline's longest-waiting translation (0 when none waits), for the stuck alert."""
    gauge(metric_name(pipeline, "translations", "oldest_waiting_seconds"), seconds or 0.0)


def budget_use(pipeline: str, use: Iterable[PeriodUse]) -> None:
    """Each limited budget's use this period, in percent (planned jobs included), for the spent alert."""
    from aps_pipeline.budget import GLOBAL_SCOPE

    for entry in use:
        name = f"{'global_' if entry.scope == GLOBAL_SCOPE else ''}{entry.kind}_used_percent"
        gauge(metric_name(pipeline, "budget", name), entry.percent)


def settled(pipeline: str, results: Iterable[Mapping[str, Any]]) -> None:
    """For each model a load step loaded: its translation's seconds (a timing: StatsD's histogram) and the
    load's rows (objects and properties) per second."""
    for result in results:
        if result.get("status") != "success":  # aps_pipeline.settle.Outcome.LOAD
            continue
        seconds = result.get("translation_seconds")
        if isinstance(seconds, (int, float)) and seconds >= 0:
            timing(metric_name(pipeline, "translations", "seconds"), timedelta(seconds=seconds))
        load_seconds = result.get("load_seconds")
        rows = result.get("objects", 0) + result.get("properties", 0)
        if isinstance(load_seconds, (int, float)) and load_seconds > 0:
            gauge(metric_name(pipeline, "load", "rows_per_second"), rows / load_seconds)
