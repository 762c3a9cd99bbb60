"""What a worker imports once, before it forks its task processes, so that no task process imports it again.

Airflow 3 runs every task try (and every resume of a deferred task) in a process forked from a long-lived
worker: the LocalExecutor's worker processes (forked from the scheduler) or the Celery pool's. That process
parses the DAG file and imports what the task needs, and for the ingest that was the bulk of a task
process's CPU: boto3 and the Amazon provider, the results models (SQLAlchemy, psycopg), alembic for the
schema check, Great Expectations and pandas for validation: several seconds of CPU, paid by every task
process again. A module imported in the worker before the fork is inherited (copy-on-write) and costs
nothing per task. `PreloadingLocalExecutor` (aps_ingest_tasks.executor) and the Celery configuration
(aps_ingest_tasks.celery_config) call `preload` in the process their task processes fork from.

    preload()   # imports TASK_MODULES, runs WARM_UPS; returns what failed (logged, never raised)

Besides imports, a few things every task process would build the same way are built here once
(`WARM_UPS`): the APS client's TLS context (loading the CA bundle, ~30 ms per client), the parsed
pipelines file and botocore's S3 model (~0.3 s per S3 client). Each holds no connection, thread or lock,
so it survives the fork.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

# Only imports: none of these opens a connection or starts a thread when imported (that would not survive
# the fork). The pipeline's own modules pull in the client (httpx), the results models and the loader.
TASK_MODULES = (
    # Airflow's side of a task process: the task runner, the DAG file's parse, the @task operator.
    "airflow.sdk.execution_time.task_runner",
    "airflow.dag_processing.dagbag",
    "airflow.providers.standard.decorators.python",
    "airflow.providers.amazon.aws.hooks.s3",
    # Imported by every task process otherwise: the template environment's extensions, the DAG bundle.
    "jinja2.ext",
    "airflow.dag_processing.bundles.local",
    "airflow.sdk.definitions.asset.metadata",
    "airflow.sdk.execution_time.cache",
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


def _tls_context() -> None:
    from aps_client.transport import shared_ssl_context

    shared_ssl_context()


def _s3_client() -> None:
    from aps_landing.s3 import warm_s3_loader

    warm_s3_loader()


def _pipelines_file() -> None:
    from aps_pipeline.config import load_pipelines

    load_pipelines()  # keeps the parsed file (aps_pipeline.config._PARSED); a task re-reads, never re-parses


# What the worker builds once before forking: (name, function).
WARM_UPS: tuple[tuple[str, Callable[[], None]], ...] = (
    ("the APS client's TLS context", _tls_context),
    ("the pipelines file", _pipelines_file),
    ("botocore's S3 model", _s3_client),
)


def preload(modules: tuple[str, ...] = TASK_MODULES,
            warm_ups: tuple[tuple[str, Callable[[], None]], ...] = WARM_UPS) -> list[str]:
    """Import `modules`, then run `warm_ups`; return the names of those that failed (each logged as a
    warning: a task that needs one builds it, or fails, itself)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # as expectations._context: no network, no thread
    started, failed = time.monotonic(), []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a task that needs it imports it (and fails) itself; the worker starts
            logger.warning("preloading %s failed: %s: %s", name, type(exc).__name__, exc)
            failed.append(name)
    for name, warm_up in warm_ups:
        try:
            warm_up()
        except Exception as exc:  # e.g. a broken pipelines file: the tasks report it themselves
            logger.warning("preparing %s failed: %s: %s", name, type(exc).__name__, exc)
            failed.append(name)
    logger.info("preloaded %d task modules in %.1fs", len(modules) - len(failed), time.monotonic() - started)
    return failed
