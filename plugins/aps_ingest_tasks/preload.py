"""What a worker imports once, before it forks its task processes, so that no task process imports it again.

Airflow 3 runs every task try (and every resume of a deferred task) in a process forked from a long-lived
worker: the LocalExecutor's worker processes (forked from the scheduler) or the Celery pool's. That process
parses the DAG file and imports what the task needs, and for the ingest that was the bulk of a task
process's CPU: boto3 and the Amazon provider, the results models (SQLAlchemy, psycopg), alembic for the
schema check, Great Expectations and pandas for validation: several seconds of CPU, paid by every task
process again. A module imported in the worker before the fork is inherited (copy-on-write) and costs
nothing per task. `PreloadingLocalExecutor` (aps_ingest_tasks.executor) and the Celery configuration
(aps_ingest_tasks.celery_config) call `preload` in the process their task processes fork from.

    preload()   # imports TASK_MODULES; returns those that failed (logged, never raised: a worker must start)
"""

from __future__ import annotations

import importlib
import logging
import os
import time

logger = logging.getLogger(__name__)

# Only imports: none of these opens a connection or starts a thread when imported (that would not survive
# the fork). The pipeline's own modules pull in the client (httpx), the results models and the loader.
TASK_MODULES = (
    # Airflow's side of a task process: the task runner, the DAG file's parse, the @task operator.
    "airflow.sdk.execution_time.task_runner",
    "airflow.dag_processing.dagbag",
    "airflow.providers.standard.decorators.python",
    "airflow.providers.amazon.aws.hooks.s3",
    # The DAG file's imports and every task's steps.
    "aps_ingest_tasks.tasks",
    "aps_provider.sensors.derivative",
    "aps_ingest_tasks.notifications",
    "aps_ingest_tasks.schedules",
    "aps_results.migrate",
    "aps_pipeline.intake",
    "aps_pipeline.batch_steps",
    "aps_pipeline.summary",
    # Validation's batch expectations (first, so that GX's import-time INFO lines are muted).
    "aps_pipeline.expectations",
    "pandas",
    "great_expectations",
)


def preload(modules: tuple[str, ...] = TASK_MODULES) -> list[str]:
    """Import `modules`; return the names that could not be imported (each logged as a warning)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # as expectations._context: no network, no thread
    started, failed = time.monotonic(), []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a task that needs it imports it (and fails) itself; the worker starts
            logger.warning("preloading %s failed: %s: %s", name, type(exc).__name__, exc)
            failed.append(name)
    logger.info("preloaded %d task modules in %.1fs", len(modules) - len(failed), time.monotonic() - started)
    return failed
