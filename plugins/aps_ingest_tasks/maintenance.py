"""Tasks of the `aps_maintenance` DAG: each reads the pipelines file and calls `aps_pipeline.maintenance`.

Every task returns what it removed or wrote (small JSON), and `report` logs them all in one line per task and
fails the run when a task before it failed, so a maintenance run that did not do everything ends failed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from aps_ingest_tasks.connections import landing_of
from aps_ingest_tasks.engines import results_engine
from aps_pipeline import maintenance
from aps_pipeline.config import get_pipeline, load_maintenance
from aps_provider.base import APSConnection

logger = logging.getLogger(__name__)
AIRFLOW_DB_CLEAN_TIMEOUT_SECONDS = 3600


@task
def purge_quarantine(pipeline_name: str) -> dict[str, Any]:
    """Remove the pipeline's quarantine copies and reason files past `retention.quarantine_days`."""
    pipeline = get_pipeline(pipeline_name)
    return {"pipeline": pipeline_name,
            **maintenance.purge_quarantine(landing_of(pipeline), pipeline, datetime.now(UTC))}


@task
def purge_history(pipeline_name: str) -> dict[str, Any]:
    """Remove the pipeline's run summaries and validation rows past `retention.history_days`."""
    pipeline = get_pipeline(pipeline_name)
    engine = results_engine(pipeline.results_conn_id)
    return {"pipeline": pipeline_name, **maintenance.purge_history(engine, pipeline, datetime.now(UTC))}


@task
def delete_derivatives(pipeline_name: str) -> dict[str, Any]:
    """With `retention.delete_derivatives`: the APS manifest and OSS object of each model no live document
    version needs (after purge_history, whose purged versions count as not live)."""
    pipeline = get_pipeline(pipeline_name)
    engine = results_engine(pipeline.results_conn_id)
    with APSConnection(pipeline.aps_conn_id, pipeline.aps.region).hook.get_client() as aps:
        return {"pipeline": pipeline_name, **maintenance.delete_derivatives(aps, engine, pipeline)}


@task
def back_up_results() -> dict[str, Any]:
    """A verified dump of the results database into `maintenance.backup.folder`, the newest N kept."""
    config = load_maintenance()
    if config.backup is None:
        return {"backup": None}
    return maintenance.back_up_results(results_engine(config.results_conn_id), config.backup)


@task
def forget_webhook_deliveries() -> dict[str, Any]:
    """Forget APS callbacks' delivery ids once APS can no longer send them again."""
    config = load_maintenance()
    return maintenance.forget_webhook_deliveries(results_engine(config.results_conn_id), datetime.now(UTC))


def _metadata_url(conn_id: str) -> str:
    """The SQLAlchemy URL of Airflow's metadata database, from the Airflow connection `conn_id`."""
    from airflow.sdk import BaseHook
    from sqlalchemy.engine import URL

    conn = BaseHook.get_connection(conn_id)
    return URL.create("postgresql+psycopg", username=conn.login, password=conn.password or None,
                      host=conn.host, port=conn.port, database=conn.schema or None,
                      ).render_as_string(hide_password=False)


@task
def clean_airflow_db() -> dict[str, Any]:
    """`airflow db clean` for Airflow's own records older than `maintenance.airflow_db_days` (no archive)."""
    config = load_maintenance()
    if config.airflow_db_days is None:
        return {"airflow_db_clean": None}
    before = (datetime.now(UTC) - timedelta(days=config.airflow_db_days)).isoformat()
    # The URL (with its password) reaches the command in its environment, never its arguments or the logs.
    env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _metadata_url(config.airflow_db_conn_id)}
    # This interpreter's Airflow: a task's PATH need not hold the `airflow` script of its environment.
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "clean", "--clean-before-timestamp", before, "--skip-archive",
         "--yes"],
        capture_output=True, text=True, timeout=AIRFLOW_DB_CLEAN_TIMEOUT_SECONDS, check=False, env=env,
    )
    logger.info("airflow db clean (before %s):\n%s", before, done.stdout[-4000:])
    if done.returncode != 0:
        raise AirflowFailException(f"airflow db clean failed ({done.returncode}): {done.stderr[-2000:]}")
    return {"airflow_db_clean": before}


@task(trigger_rule="all_done")
def report(results: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Log what every task removed; fail when one of them did not report (it failed)."""
    for result in results:
        if result is not None:
            logger.info("maintenance: %s", result)
    missing = sum(result is None for result in results)
    if missing:
        raise AirflowFailException(f"{missing} maintenance task(s) failed: see their logs")
    return [result for result in results if result is not None]
