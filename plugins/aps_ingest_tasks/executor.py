"""PreloadingLocalExecutor: the LocalExecutor, its worker processes started with the task modules imported.

    AIRFLOW__CORE__EXECUTOR=aps_ingest_tasks.executor.PreloadingLocalExecutor

The LocalExecutor forks its workers from the scheduler when it starts, and each task process is forked from
a worker: importing the ingest's task modules once here (`aps_ingest_tasks.preload`) spares every task
process their import. Everything else is the LocalExecutor's own.
"""

from __future__ import annotations

from airflow.executors.local_executor import LocalExecutor

from aps_ingest_tasks.preload import preload


class PreloadingLocalExecutor(LocalExecutor):
    """LocalExecutor that imports `aps_ingest_tasks.preload.TASK_MODULES` before it forks its workers."""

    def start(self) -> None:
        preload()
        super().start()
