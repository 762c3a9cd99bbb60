"""Bugs the model-based test found, each replayed as a short, deterministic test through the same driver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aps_devstack import EmulatorServer, LocalPostgres, S3Server
from aps_results.models import Model, Translation
from aps_samples import generate_ifc, generate_obj
from tests.model.driver import PipelineDriver, Services, SimulatedRun, StepKilled


@pytest.fixture
def driver(postgres: LocalPostgres, s3_server: S3Server, emulator_server: EmulatorServer,
           tmp_path: Path) -> Iterator[PipelineDriver]:
    world = PipelineDriver(Services(postgres, s3_server, emulator_server, tmp_path))
    yield world
    world.close()


def job_posts(driver: PipelineDriver) -> int:
    return sum(n for op, n in driver.emulator_stats()["responses"].items() if op.startswith("job 2"))


def test_a_job_posted_again_for_a_crashed_runs_lost_job_is_a_new_attempt(driver: PipelineDriver) -> None:
    """Seed 3336021520 of the soak: a run died after submitting; APS then lost the job (its manifest is
    gone). The run that takes the files over POSTs a new job, and must record it as a new attempt, not as
    the dead run's (one job POST per model and attempt)."""
    driver.put("incoming/a.ifc", generate_ifc(1).data, metadata={"project": "p"})
    first = SimulatedRun(driver, "a", "r1", lambda run_id: False)
    while first.current != "wait:0":  # discovery to submission, then the run dies
        assert first.advance().error is None
    with Session(driver.engine) as session:
        (urn,) = session.scalars(select(Model.urn)).all()
    driver.delete_manifest(urn)

    second = SimulatedRun(driver, "a", "r2", lambda run_id: False)
    while not second.finished:
        assert second.advance().error is None, second.errors
    with Session(driver.engine) as session:
        attempts = session.execute(select(Translation.attempt, Translation.run_id, Translation.status)
                                   .order_by(Translation.attempt)).all()
    assert job_posts(driver) == 2
    # The new attempt closes the dead run's (failed, code `replaced`): no attempt stays `submitted` for ever.
    assert [tuple(a) for a in attempts] == [(1, "r1", "failed"), (2, "r2", "success")]
    assert second.summary is not None
    assert second.summary["loaded"] == 1


def test_upload_and_submit_killed_anywhere_leaves_at_most_its_batch_unrecorded_and_never_posts_twice(
    driver: PipelineDriver,
) -> None:
    """Seed 3801321324 of the soak: the step POSTs a batch's jobs concurrently, so a worker killed mid-step
    can leave every one of them POSTed and unrecorded (the model had allowed one per killed try). Killed at
    every statement in turn, each try leaves at most the batch's three models done and unrecorded, and the
    tries that follow record each job without POSTing it again: three POSTs, three attempts, three loads."""
    for n in (8, 17, 24):
        driver.put(f"incoming/v/obj-{n}.obj", generate_obj(n).data, metadata={"project": "p"})
    run = SimulatedRun(driver, "a", "r1", lambda run_id: True)
    while run.current != "upload_submit:0":
        assert run.advance().error is None
    models = run.batches[0]["models"]
    unrecorded = []
    for kill_after in range(500):
        try:
            with driver.killable(kill_after):
                driver.upload_submit(run.pipeline, run.run_id, models, retried=kill_after > 0,
                                     last_attempt=False)
        except StepKilled:
            with Session(driver.engine) as session:
                attempts = session.scalar(select(func.count()).select_from(Translation))
            unrecorded.append(job_posts(driver) - attempts)
            continue
        break
    assert unrecorded, "no try was killed"
    assert max(unrecorded) <= 3
    with Session(driver.engine) as session:
        assert session.scalar(select(func.count()).select_from(Translation)) == 3
    assert job_posts(driver) == 3
