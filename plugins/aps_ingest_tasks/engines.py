"""The results database as the ingest tasks and callbacks reach it: one pool per worker process, sized from
the concurrency of the pipelines that use the connection (aps_results.db.pool_options)."""

from __future__ import annotations

from functools import cache

from airflow.sdk import BaseHook
from sqlalchemy import Engine


@cache
def results_engine(conn_id: str) -> Engine:
    """One pool per worker process for the results database named by an Airflow connection.

    Sized for the most concurrent pipeline on that connection: a batch task holds one connection per model
    it loads (`load_concurrency`) or uploads (`upload_concurrency`) at once, and a few beside them. The
    fixed "2 + 2" it had ran out at `load_concurrency` 5 (loads waited 30 s for a connection, then failed).
    """
    from aps_pipeline.config import load_pipelines
    from aps_results.db import engine_from_connection, pool_options

    concurrency = max((max(p.load_concurrency, p.upload_concurrency) for p in load_pipelines()
                       if p.results_conn_id == conn_id), default=1)
    return engine_from_connection(BaseHook.get_connection(conn_id), **pool_options(concurrency))
