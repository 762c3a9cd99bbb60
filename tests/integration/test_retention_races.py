"""Retention decides that nothing needs a model any more, then removes what the model had; a run may link a
newly landed file with the same content to that model in between. The removal must see that file: it locks
the model's row and decides on a read made after the lock, and linking takes the row FOR SHARE
(`registry.get_or_create_model`). Real PostgreSQL, the S3 server and the emulator.
(The APS side's deletion has the same guard: tests/integration/test_derivatives_retention.py.)"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select, text

from aps_client import APSClient
from aps_landing import Landing
from aps_pipeline import maintenance
from aps_pipeline.config import PipelineConfig, RetentionConfig
from aps_results import registry
from aps_results.models import File, FileState, Model
from tests.fixtures.client import aps, aps_config
from tests.fixtures.emulator_http import wait_for
from tests.fixtures.results import results_engine
from tests.fixtures.versions import ingest, put_revision, revision_bytes, s3_landing, s3_pipeline

__all__ = ["aps", "aps_config", "results_engine", "s3_landing", "s3_pipeline"]


def _waiting_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                     "AND datname = current_database()")))


def test_purging_results_sees_a_file_linked_while_it_waited_for_the_model(
    aps: APSClient, s3_landing: Landing, results_engine: Engine, s3_pipeline: PipelineConfig,
) -> None:
    revisions = revision_bytes()
    put_revision(s3_landing, "incoming/floor.ifc", revisions["v1"])
    ingest(aps, s3_landing, results_engine, s3_pipeline, "run-1")
    put_revision(s3_landing, "incoming/floor.ifc", revisions["v2"])
    ingest(aps, s3_landing, results_engine, s3_pipeline, "run-2")
    with results_engine.connect() as conn:
        v1 = conn.execute(select(Model).join(File, File.model_id == Model.id)
                          .where(File.s3_key == "incoming/floor.ifc").order_by(File.id).limit(1)).one()
    identity = registry.ModelIdentity(v1.region, v1.sha256, v1.bucket_key, v1.output_profile)
    keep_one = s3_pipeline.model_copy(update={"retention": RetentionConfig(keep_versions=1)})

    # A run links a new file with v1's content to v1's model and finds it loaded (planning's "content already
    # loaded"), and has not committed yet when the purge starts.
    reports: list[dict[str, Any]] = []
    with results_engine.connect() as linking:
        with linking.begin():
            file_id = linking.execute(insert(File).values(
                pipeline=s3_pipeline.name, s3_bucket="landing", s3_key="incoming/floor-copy.ifc", etag="e",
                size=1, state=FileState.VALID.value, sha256=v1.sha256).returning(File.id)).scalar_one()
            registry.get_or_create_model(linking, identity, source_file_id=file_id)
            registry.set_file_state(linking, [file_id], FileState.LOADED, "content already loaded")
            purge = threading.Thread(target=lambda: reports.append(
                maintenance.purge_history(results_engine, keep_one, datetime.now(UTC))))
            purge.start()
            wait_for(lambda: _waiting_on_a_lock(results_engine), timeout=30)
        purge.join(timeout=60)
    assert not purge.is_alive()

    (report,) = reports
    assert report["versions_purged"] == 1  # v1's version is purged...
    assert report["models_purged"] == 0  # ...but its model now serves the new file: its results stay
    with results_engine.connect() as conn:
        assert conn.scalar(select(Model.loaded_at).where(Model.id == v1.id)) is not None
