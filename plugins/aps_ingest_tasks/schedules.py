"""The ingest DAG's schedule: the pipeline's cron, or that cron or an asset watched on its SQS queue.

    schedule=ingest_schedule(pipeline)

With `events:` in the pipelines file, S3 `ObjectCreated` notifications on the queue start runs within seconds
(an `AssetWatcher` over the SQS trigger, run by the triggerer) and the cron keeps running as the net that
lists the whole prefix. The events are hints only: the run's discover task HEADs the keys they name and the
files registry decides what is new (aps_pipeline.events, aps_pipeline.discovery).
"""

from __future__ import annotations

from typing import Any

from aps_pipeline.config import PipelineConfig

# The watcher's poll: SQS_BATCHES long polls of up to SQS_WAIT_SECONDS each (a poll returns as soon as a
# message is there), then SQS_POLL_PAUSE seconds before the next round; an event fires for a round that got
# messages. The second poll folds what lands together (a file and its sidecar, a burst of files) into one
# event (fewer events, fewer runs; the discover task reads any events the scheduler left out of its run).
SQS_WAIT_SECONDS = 1
SQS_BATCHES = 2
SQS_POLL_PAUSE = 0
SQS_MAX_MESSAGES = 10


def events_asset_name(pipeline: PipelineConfig) -> str:
    """The asset the queue's messages become events of (one per pipeline)."""
    return f"{pipeline.name}_landed"


def ingest_schedule(pipeline: PipelineConfig) -> Any:
    """The DAG's `schedule`: the pipeline's own, or with `events:` the cron or-ed with the queue's asset."""
    if pipeline.events is None:
        return pipeline.schedule

    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
    from airflow.sdk import Asset, AssetOrTimeSchedule, AssetWatcher, CronTriggerTimetable

    # The scheme form: the provider's URL form accepts only https://sqs.<region>.amazonaws.com queues, and
    # a local SQS server (the devstack's) has an http://host:port one. The connection's endpoint_url holds.
    trigger = MessageQueueTrigger(
        scheme="sqs", sqs_queue=pipeline.events.queue_url, aws_conn_id=pipeline.events_conn_id,
        wait_time_seconds=SQS_WAIT_SECONDS, num_batches=SQS_BATCHES, waiter_delay=SQS_POLL_PAUSE,
        max_messages=SQS_MAX_MESSAGES,
    )
    asset = Asset(name=events_asset_name(pipeline),
                  watchers=[AssetWatcher(name=f"{pipeline.name}_sqs", trigger=trigger)])
    if pipeline.schedule is None:
        return [asset]
    cron = CronTriggerTimetable(pipeline.schedule, timezone="UTC")
    return AssetOrTimeSchedule(timetable=cron, assets=asset)
