"""The Celery configuration of the ingest's workers: Airflow's default, and the task modules preloaded.

    AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=aps_ingest_tasks.celery_config.CELERY_CONFIG

A Celery worker forks its pool processes after `worker_init`, and each task process is forked from a pool
process: importing the task modules there (`aps_ingest_tasks.preload`) spares every task process their
import. The scheduler imports this module too (it reads the same configuration); only workers preload.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

from aps_ingest_tasks.preload import preload

CELERY_CONFIG: dict[str, Any] = dict(DEFAULT_CELERY_CONFIG)


@worker_init.connect
def _preload_task_modules(**_: Any) -> None:
    preload()
