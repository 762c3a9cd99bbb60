"""The results pool of a task process is sized from the pipeline's concurrency (issue 20, finding 9):
each streamed load holds one connection for its whole load, and the task needs some beside them."""

from __future__ import annotations

import json
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.engine import make_url

from aps_pipeline.config import PIPELINES_FILE_ENV


@pytest.mark.parametrize("load_concurrency", [8, 16])
def test_a_task_process_can_hold_a_connection_per_concurrent_load_and_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str, load_concurrency: int
) -> None:
    from aps_ingest_tasks.engines import results_engine

    name = f"pool_{uuid.uuid4().hex[:8]}"
    db = make_url(database_url)
    monkeypatch.setenv(f"AIRFLOW_CONN_RESULTS_{name.upper()}", json.dumps({
        "conn_type": "postgres", "host": db.host, "port": db.port, "login": db.username,
        "password": db.password, "schema": db.database}))
    file = tmp_path / "pipelines.yaml"
    file.write_text(yaml.safe_dump({"pipelines": [{
        "name": name, "landing": {"bucket": "landing"}, "aps": {"bucket_key": "pool-test"},
        "results_conn_id": f"results_{name}", "load_concurrency": load_concurrency}]}))
    monkeypatch.setenv(PIPELINES_FILE_ENV, str(file))

    engine = results_engine(f"results_{name}")
    try:
        with ExitStack() as held:
            # One connection per load in flight, plus the step's own bookkeeping beside them.
            connections = [held.enter_context(engine.connect()) for _ in range(load_concurrency + 2)]
            assert all(c.execute(text("SELECT 1")).scalar() == 1 for c in connections)
    finally:
        engine.dispose()
