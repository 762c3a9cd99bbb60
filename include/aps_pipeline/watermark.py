"""The listing watermark: a scheduled run considers only the objects modified since the last listing, and a
full listing every `full_listing_every_hours` catches what a watermark can miss.

    window = listing_window(engine, pipeline, bucket, prefix)     # before the listing
    [o for o in listed if window.includes(o.last_modified)]       # what the run looks up and HEADs
    advance(connection, pipeline, bucket, prefix, window, first_waiting)   # inside discovery's claim

Without it every hourly run looked up every object ever landed in the registry (and kept growing). With it,
the registry lookups, HEADs and sidecar reads of a run are proportional to what landed since the last run;
the LIST requests themselves still page through the prefix (one per 1,000 keys: the `Landing` protocol has
no StartAfter, and S3 lists by key, not by time).

`since` is the listing's start less `listing_watermark_lag_seconds` (and a little clock slack: S3's
LastModified has whole seconds), never past the first object a run left waiting (over its limit), so an
object not yet registered is never behind the watermark, except one whose LastModified is older than when
it became listable: a multipart upload slower than the lag (LastModified is its start), a replicated or
restored object. The periodic full listing registers those. Event-driven runs neither read nor move it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from aps_pipeline.config import PipelineConfig
from aps_results.models import ListingWatermark

CLOCK_SLACK = timedelta(seconds=2)  # S3's LastModified has whole seconds; the worker's clock is another


@dataclass(frozen=True)
class ListingWindow:
    """Which listed objects a run considers: those modified since `since` (None: all, a full listing)."""

    started: datetime
    since: datetime | None

    @property
    def full(self) -> bool:
        return self.since is None

    def includes(self, last_modified: datetime | None) -> bool:
        return self.since is None or last_modified is None or last_modified >= self.since


def listing_window(engine: Engine, pipeline: PipelineConfig, bucket: str, prefix: str) -> ListingWindow:
    """The window of the listing about to start: incremental, or full when one is due (or never ran)."""
    started = datetime.now(UTC)
    with engine.connect() as connection:
        row = connection.execute(select(ListingWatermark.since, ListingWatermark.full_at).where(
            ListingWatermark.pipeline == pipeline.name, ListingWatermark.s3_bucket == bucket,
            ListingWatermark.prefix == prefix)).one_or_none()
    if row is None or row.since is None or row.full_at is None:
        return ListingWindow(started, None)
    if started - row.full_at >= timedelta(hours=pipeline.full_listing_every_hours):
        return ListingWindow(started, None)
    return ListingWindow(started, row.since)


def advance(
    conn: Connection, pipeline: PipelineConfig, bucket: str, prefix: str, window: ListingWindow,
    first_waiting: datetime | None,
) -> None:
    """Store the next window's start (in discovery's claim transaction: it moves only with the claims)."""
    since = window.started - timedelta(seconds=pipeline.listing_watermark_lag_seconds) - CLOCK_SLACK
    if first_waiting is not None:
        since = min(since, first_waiting)
    values = {"pipeline": pipeline.name, "s3_bucket": bucket, "prefix": prefix, "since": since,
              "full_at": window.started if window.full else None}
    statement = pg_insert(ListingWatermark).values(values)
    updated = {"since": statement.excluded.since, "updated_at": window.started}
    if window.full:
        updated["full_at"] = statement.excluded.full_at
    conn.execute(statement.on_conflict_do_update(
        index_elements=[ListingWatermark.pipeline, ListingWatermark.s3_bucket, ListingWatermark.prefix],
        set_=updated))
