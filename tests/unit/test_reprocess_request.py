"""A reprocess request's checks, and whose run holds a reprocess run's files (aps_pipeline.reprocess)."""

from __future__ import annotations

import pytest

from aps_pipeline.reprocess import ReprocessRequest, files_run_id, owner_dag_run


def test_a_request_needs_a_known_action_a_reason_and_known_states() -> None:
    base = {"pipeline": "p", "requested_by": "alice", "run_id": "r"}
    assert ReprocessRequest(**base, action="retranslate", reason="new IFC loader").force is True
    assert ReprocessRequest(**base, action="reload", reason="x").force is False
    with pytest.raises(ValueError, match="unknown action"):
        ReprocessRequest(**base, action="delete", reason="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="say why"):
        ReprocessRequest(**base, action="reload", reason="  ")
    with pytest.raises(ValueError, match="unknown states"):
        ReprocessRequest(**base, action="reload", reason="x", states=("done",))


def test_the_ingest_asks_the_reprocess_dag_about_a_reprocess_runs_files() -> None:
    held = files_run_id("manual__2026-12-07T10:00:00+00:00")
    assert owner_dag_run(held, "aps_ingest") == ("aps_reprocess", "manual__2026-12-07T10:00:00+00:00")
    assert owner_dag_run("scheduled__2026-12-07", "aps_ingest") == ("aps_ingest", "scheduled__2026-12-07")
