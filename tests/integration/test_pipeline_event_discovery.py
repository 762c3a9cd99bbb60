"""Discovery by the keys of S3 event notifications, against a real S3 server and PostgreSQL: the registry
decides, so duplicate, folded, foreign, stale and lost events each end with every object version claimed once.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

import pytest
from sqlalchemy import Engine, func, select, update

from aps_landing import Landing
from aps_pipeline.config import PipelineConfig
from aps_pipeline.discovery import discover_files
from aps_pipeline.events import landed_keys
from aps_results.models import File, FileState
from tests.fixtures.pipeline import landing_pipeline
from tests.fixtures.results import results_engine


def notification(bucket: str, *keys: str, event: str = "ObjectCreated:Put") -> dict[str, Any]:
    """One SQS message as the SQS trigger hands it over: an S3 notification body, keys URL-encoded."""
    records = [
        {"eventName": event, "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(k)}}}
        for k in keys
    ]
    return {"MessageId": "m", "Body": json.dumps({"Records": records})}


def asset_event(*messages: dict[str, Any]) -> dict[str, Any]:
    """An asset event's `extra` as Airflow stores an SQS trigger's event (the trigger's payload inside)."""
    return {"from_trigger": True, "payload": {"status": "success", "message_batch": list(messages)}}


def row_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(File)) or 0


def finish_all(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(update(File).values(state=FileState.LOADED.value))


def test_landed_keys_reads_every_folded_event_and_decodes_keys() -> None:
    extras = [
        asset_event(notification("landing", "incoming/a b.ifc", "incoming/ü.rvt")),
        asset_event(
            notification("landing", "incoming/a b.ifc"),  # a duplicate
            notification("other", "incoming/c.ifc"),  # another bucket
            notification("landing", "incoming/gone.ifc", event="ObjectRemoved:Delete"),
            {"Body": json.dumps({"Event": "s3:TestEvent"})},
            {"Body": "not json"},
        ),
        None,
    ]
    # A removed object's key is named too: discovery's HEAD finds it gone and marks its version deleted.
    assert landed_keys(extras, bucket="landing") == [
        "incoming/a b.ifc", "incoming/ü.rvt", "incoming/gone.ifc"]


@pytest.mark.parametrize("landing", ["s3", "s3-versioned"], indirect=True)
def test_event_keys_claim_each_version_once(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    bucket = landing.location
    landing.put("incoming/one model.obj", b"v 0 0 0\n")
    landing.put("incoming/two.obj", b"v 0 0 1\n")
    landing.put("quarantine/incoming/q.obj", b"v 0 0 2\n")
    landing.put("elsewhere/e.obj", b"v 0 0 3\n")
    landing.put("incoming/two.obj.meta.json", b"{}")

    # Folded and duplicated events, with foreign keys and a key whose object is not there.
    extras = [
        asset_event(notification(bucket, "incoming/one model.obj")),
        asset_event(notification(bucket, "incoming/two.obj", "incoming/one model.obj")),
        asset_event(
            notification(bucket, "quarantine/incoming/q.obj", "elsewhere/e.obj", "incoming/deleted.obj"),
            notification(bucket, "incoming/two.obj.meta.json"),
        ),
    ]
    keys = landed_keys(extras, bucket=bucket)
    first = discover_files(landing, results_engine, landing_pipeline, "event-1", keys=keys)
    assert first["source"] == "events"
    assert first["new"] == 2
    with results_engine.connect() as connection:
        claimed = set(connection.scalars(select(File.s3_key)))
    assert claimed == {"incoming/one model.obj", "incoming/two.obj"}

    # The same events again (another triggerer's copy) while the first run still owns the files: nothing new.
    again = discover_files(landing, results_engine, landing_pipeline, "event-2", keys=keys)
    assert again["new"] == 0
    assert row_count(results_engine) == 2

    # The scheduled listing after them finds nothing either.
    finish_all(results_engine)
    scheduled = discover_files(landing, results_engine, landing_pipeline, "scheduled-1")
    assert scheduled["source"] == "listing"
    assert scheduled["file_ids"] == []
    assert row_count(results_engine) == 2


@pytest.mark.parametrize("landing", ["s3", "s3-versioned"], indirect=True)
def test_stale_event_claims_the_current_version_once(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    bucket = landing.location
    key = "incoming/m.obj"
    landing.put(key, b"v 0 0 0\n")
    landing.put(key, b"v 1 1 1\n")  # overwritten before any run: two events, one current version
    extras = [asset_event(notification(bucket, key)), asset_event(notification(bucket, key))]
    first = discover_files(
        landing, results_engine, landing_pipeline, "event-1", keys=landed_keys(extras, bucket=bucket)
    )
    assert first["new"] == 1
    head = landing.head(key)
    with results_engine.connect() as connection:
        (etag,) = connection.scalars(select(File.etag)).all()
    assert etag == head.etag
    finish_all(results_engine)

    # A late copy of the first event names a version the registry has finished: nothing is claimed.
    late = discover_files(
        landing, results_engine, landing_pipeline, "event-2", keys=landed_keys(extras[:1], bucket=bucket)
    )
    assert late["file_ids"] == []
    assert row_count(results_engine) == 1


@pytest.mark.parametrize("landing", ["s3"], indirect=True)
def test_lost_event_is_caught_by_the_scheduled_listing_once(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    bucket = landing.location
    landing.put("incoming/seen.obj", b"v 0 0 0\n")
    landing.put("incoming/lost.obj", b"v 0 0 1\n")  # its event never arrives
    event_run = discover_files(
        landing, results_engine, landing_pipeline, "event-1",
        keys=landed_keys([asset_event(notification(bucket, "incoming/seen.obj"))], bucket=bucket),
    )  # fmt: skip
    assert event_run["new"] == 1
    finish_all(results_engine)

    scheduled = discover_files(landing, results_engine, landing_pipeline, "scheduled-1")
    assert scheduled["new"] == 1
    with results_engine.connect() as connection:
        rows = connection.execute(select(File.s3_key, File.run_id).order_by(File.s3_key)).all()
    assert [tuple(r) for r in rows] == [
        ("incoming/lost.obj", "scheduled-1"),
        ("incoming/seen.obj", "event-1"),
    ]


@pytest.mark.parametrize("landing", ["s3"], indirect=True)
def test_event_keys_beyond_the_limit_wait_for_the_listing(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    bucket = landing.location
    names = [f"incoming/f{i}.obj" for i in range(3)]
    for index, key in enumerate(names):
        landing.put(key, b"v 0 0 %d\n" % index)
    extras = [asset_event(notification(bucket, *names))]
    keys = landed_keys(extras, bucket=bucket)
    first = discover_files(landing, results_engine, landing_pipeline, "event-1", keys=keys, limit=2)
    assert first["new"] == 2
    assert first["waiting"] == 1
    finish_all(results_engine)
    scheduled = discover_files(landing, results_engine, landing_pipeline, "scheduled-1")
    assert scheduled["new"] == 1
    assert row_count(results_engine) == 3
