"""A backlog bigger than one run can map drains over successive runs: no run fails, every file ends once.

A real scheduler, triggerer and LocalExecutor with `[core] max_map_length` lowered to 8: one run maps at
most 7 batches (aps_pipeline.batch.mapped_entry_ceiling) of 10 models, so 100 landed files need two runs.
Before batching, a backlog above max_map_length failed `plan_models` on every try of every run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from aps_devstack.demo import create_pools
from aps_devstack.stack import LANDING_BUCKET, LANDING_PREFIX, LocalStack
from aps_results.models import File, FileState, RunSummary, Translation
from aps_samples.batch import SIDECAR_SUFFIX, sample_metadata
from aps_samples.ifc import generate_ifc

pytestmark = pytest.mark.airflow_stack

DAG_ID = "aps_ingest"
FILES = 100
MAX_MAP_LENGTH = 8
MODELS_PER_TASK = 10
RUN_TIMEOUT = 600


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    workdir: Path = tmp_path_factory.mktemp("backlog")
    stack = LocalStack.start(workdir, emulator_env={"APS_EMULATOR_TRANSLATION_SECONDS": "1"})
    try:
        s3 = stack.s3.client()
        for i in range(FILES):
            key = f"{LANDING_PREFIX}backlog/part-{i:03d}.ifc"
            s3.put_object(Bucket=LANDING_BUCKET, Key=key, Body=generate_ifc(5000 + i, name=f"part-{i}").data)
            s3.put_object(Bucket=LANDING_BUCKET, Key=key + SIDECAR_SUFFIX,
                          Body=json.dumps(sample_metadata(i, 1)).encode())
        stack.start_airflow(parallelism=8, extra_env={
            "AIRFLOW__CORE__MAX_MAP_LENGTH": str(MAX_MAP_LENGTH),
            "APS_MODELS_PER_TASK": str(MODELS_PER_TASK),
        })
        create_pools(stack)
        assert stack.airflow is not None
        stack.airflow.wait_for_dag(DAG_ID)
        yield stack
    finally:
        stack.stop()


def test_the_backlog_drains_over_successive_runs_with_every_file_loaded_once(stack: LocalStack) -> None:
    assert stack.airflow is not None
    engine = create_engine(stack.results_url)
    try:
        runs: list[tuple[str, str]] = []
        unfinished = FILES
        while unfinished and len(runs) < 4:
            run_id = stack.airflow.trigger(DAG_ID)
            state = stack.airflow.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
            assert state == "success", stack.airflow.failure_report(DAG_ID, run_id)
            runs.append((run_id, state))
            with Session(engine) as session:
                unfinished = session.scalar(select(func.count()).select_from(File).where(
                    File.state != FileState.LOADED.value))
        assert len(runs) == 2  # 70 models fit one run (7 batches of 10), the other 30 the next

        with Session(engine) as session:
            files = session.scalars(select(File)).all()
            assert len(files) == FILES  # every object claimed once: no duplicate row
            assert {f.state for f in files} == {FileState.LOADED.value}
            assert session.scalar(select(func.count()).select_from(Translation)) == FILES
            summaries = {s.run_id: s for s in session.scalars(select(RunSummary))}
        first, second = (summaries[run_id] for run_id, _ in runs)
        assert (first.discovered, first.loaded, first.lost) == (70, 70, 0)
        assert (second.discovered, second.loaded, second.lost) == (30, 30, 0)
        requests = stack.emulator.stats()["requests"]
        assert (requests["upload_complete"], requests["job"]) == (FILES, FILES)  # once each
    finally:
        engine.dispose()
