"""`make demo`: the hourly ingest, end to end, on local stand-ins; prints what it did and stops everything.

PostgreSQL (results + Airflow metadata), an S3 server and the APS emulator start on free ports; a sample
batch (valid IFC and OBJ files, a duplicate, bad files) lands in the bucket; `aps_ingest` runs through a
real scheduler and triggerer; then the results API starts on the demo's database and a viewer token is
fetched with an API key and without one. Last, one more file lands and an event-driven run (S3 notification
-> SQS -> the triggerer's asset watcher) loads it: the demo prints how long that took from the PUT.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from aps_devstack.postgres import MissingPrerequisite
from aps_devstack.stack import (
    LANDING_BUCKET,
    LANDING_PREFIX,
    REPO_ROOT,
    LocalStack,
    secrets_manager_requested,
)

DAG_ID = "aps_ingest"


def say(message: str) -> None:
    print(message, flush=True)


def create_pools(stack: LocalStack) -> None:
    from aps_pipeline.config import load_pipelines

    assert stack.airflow is not None
    for pipeline in load_pipelines():
        stack.airflow.cli(
            "pools",
            "set",
            pipeline.pool.name,
            str(pipeline.pool.slots),
            f"Concurrent APS work of {pipeline.name}",
        )


def print_results(stack: LocalStack, run_id: str) -> str:
    """Print the registry and results of the run; returns the summary line."""
    engine = create_engine(stack.results_url)
    with engine.connect() as conn:
        say("\nfiles:")
        for row in conn.execute(
            text(
                "SELECT s3_key, state, coalesce(reason, '') AS reason FROM aps.files "
                "WHERE run_id = :r ORDER BY id"
            ),
            {"r": run_id},
        ):
            say(f"  {row.state:<9} {row.s3_key!r:<42} {row.reason[:90]}")
        say("\nmodels:")
        for row in conn.execute(
            text(
                "SELECT m.id, m.object_key, m.status, "
                " (SELECT count(*) FROM aps.model_views v WHERE v.model_id = m.id) AS views, "
                " (SELECT count(*) FROM aps.objects o WHERE o.model_id = m.id) AS objects, "
                " (SELECT count(*) FROM aps.properties p WHERE p.model_id = m.id) AS properties, "
                " (SELECT count(*) FROM aps.thumbnails t WHERE t.model_id = m.id) AS thumbnails "
                "FROM aps.models m ORDER BY m.id"
            )
        ):
            say(
                f"  model {row.id}: {row.object_key[:24]}… status={row.status} views={row.views} "
                f"objects={row.objects} properties={row.properties} thumbnail={bool(row.thumbnails)}"
            )
        summary = conn.execute(
            text(
                "SELECT discovered, loaded, rejected, failed, lost FROM aps.run_summaries WHERE run_id = :r"
            ),
            {"r": run_id},
        ).one_or_none()
    engine.dispose()
    if summary is None:
        return "demo summary: no run summary was written"
    return (
        f"demo summary: discovered={summary.discovered} loaded={summary.loaded} "
        f"rejected={summary.rejected} failed={summary.failed} lost={summary.lost}"
    )


def check_secrets(stack: LocalStack) -> str:
    """Where Airflow's connections are: the `demo secrets:` line."""
    assert stack.airflow is not None
    listed = stack.airflow.cli("connections", "list", "--output", "json").stdout
    in_database = len(json.loads(listed[listed.index("["):])) if "[" in listed else 0
    in_environment = sum(name.startswith("AIRFLOW_CONN_") for name in stack.airflow.env)
    backend = stack.airflow.env.get("AIRFLOW__SECRETS__BACKEND", "none").rsplit(".", 1)[-1]
    return (f"demo secrets: backend={backend} connections_in_database={in_database} "
            f"connections_in_environment={in_environment}")


def check_api(stack: LocalStack) -> str:
    """Start the API, create a key, fetch a viewer token with and without it; returns the `demo api:` line."""
    api_url = stack.start_api()
    created = subprocess.run(
        [sys.executable, "-m", "aps_api", "keys", "create", "demo", "--db-url", stack.results_url],
        capture_output=True,
        text=True,
        check=True,
    )
    api_key = created.stdout.strip().splitlines()[-1].strip()
    with httpx.Client(base_url=api_url, timeout=30) as client:
        models = client.get(
            "/v1/models", params={"status": "success"}, headers={"Authorization": f"Bearer {api_key}"}
        ).json()
        items = models.get("items", models.get("data", []))
        if not items:
            return "demo api: viewer-token=no-model scope=- expires_in=0 unauthenticated=-"
        model_id = items[0]["id"]
        token = client.get(
            f"/v1/models/{model_id}/viewer-token", headers={"Authorization": f"Bearer {api_key}"}
        )
        anonymous = client.get(f"/v1/models/{model_id}/viewer-token")
    ok = token.status_code == 200 and bool(token.json().get("access_token"))
    body = token.json() if token.status_code == 200 else {}
    return (
        f"demo api: viewer-token={'ok' if ok else token.status_code} scope={body.get('scope', '-')} "
        f"expires_in={body.get('expires_in', 0)} unauthenticated={anonymous.status_code}"
    )


def land_one_more(stack: LocalStack, timeout: float = 300) -> str:
    """PUT one more valid file, wait for an event-driven run to load it; returns the `demo events:` line."""
    from aps_samples.ifc import generate_ifc

    key = f"{LANDING_PREFIX}ifc/after-the-run.ifc"
    data = generate_ifc(707, name="after-the-run").data
    put_at = datetime.now(UTC)
    # Its metadata as S3 user metadata: one PUT, one event (a sidecar would be a second one).
    stack.s3.client().put_object(Bucket=LANDING_BUCKET, Key=key, Body=data,
                                 Metadata={"project": "demo", "discipline": "architecture"})
    engine = create_engine(stack.results_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                row = conn.execute(text("SELECT state, run_id, finished_at FROM aps.files WHERE s3_key = :k"),
                                   {"k": key}).one_or_none()
            if row is not None and row.finished_at is not None:
                seconds = (row.finished_at - put_at).total_seconds()
                return f"demo events: PUT -> {row.state} by event-driven run {row.run_id} in {seconds:.1f}s"
            time.sleep(0.5)
    finally:
        engine.dispose()
    return f"demo events: {key} not loaded within {timeout:.0f}s of its PUT"


def run_demo(workdir: Path) -> int:
    shutil.rmtree(workdir, ignore_errors=True)
    started = time.monotonic()
    say("demo: starting PostgreSQL, the S3 server and the APS emulator…")
    try:
        stack = LocalStack.start(workdir, emulator_env={"APS_EMULATOR_TRANSLATION_SECONDS": "4"}, events=True)
    except MissingPrerequisite as exc:
        say(f"demo: cannot start: {exc}")
        return 2
    try:
        say(
            f"demo: PostgreSQL on port {stack.postgres.port}, S3 at {stack.s3.endpoint_url}, "
            f"APS emulator at {stack.emulator.base_url}"
        )
        placed = stack.put_sample_batch()
        say(
            f"demo: put {len(placed)} sample files in s3://aps-landing/incoming/ "
            f"({sum(1 for f in placed if f.expected.outcome == 'valid')} valid, including a duplicate)"
        )
        # The batch is the scheduled-style run's: its events are dropped (the run lists the prefix anyway).
        assert stack.events_queue_url is not None
        stack.s3.drain_queue(stack.events_queue_url)
        say("demo: starting Airflow (api-server, scheduler, dag-processor, triggerer)…")
        secrets_manager = secrets_manager_requested()
        if secrets_manager:
            say("demo: Airflow's connections are in AWS Secrets Manager (the S3 server's), read through "
                "the Amazon provider's SecretsManagerBackend")
        airflow = stack.start_airflow(secrets_manager=secrets_manager)
        create_pools(stack)
        airflow.wait_for_dag(DAG_ID)
        run_id = airflow.trigger(DAG_ID)
        say(f"demo: triggered {DAG_ID} run {run_id}; waiting for it…")
        state = airflow.wait_for_run(DAG_ID, run_id, timeout=900)
        say(f"demo: run finished: {state} in {time.monotonic() - started:.0f}s")
        if state != "success":
            say(airflow.failure_report(DAG_ID, run_id))
        summary = print_results(stack, run_id)
        say("")
        say(summary)
        say(check_secrets(stack))
        api_line = check_api(stack)
        say(api_line)
        events_line = land_one_more(stack)
        say(events_line)
        ok = state == "success" and summary.endswith("lost=0") and "viewer-token=ok" in api_line
        return 0 if ok and "loaded by event-driven run" in events_line else 1
    finally:
        say("demo: stopping everything it started")
        stack.stop()


def main() -> int:
    return run_demo(REPO_ROOT / ".stack" / "demo")
