"""The results database as the ingest tasks and callbacks reach it: one small pool per worker process."""

from __future__ import annotations

from functools import cache

from airflow.sdk import BaseHook
from sqlalchemy import Engine


@cache
def results_engine(conn_id: str) -> Engine:
    """One small pool per worker process for the results database named by an Airflow connection."""
    from aps_results.db import engine_from_connection

    return engine_from_connection(BaseHook.get_connection(conn_id), pool_size=2, max_overflow=2)
