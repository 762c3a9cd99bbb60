"""Registry helpers on real PostgreSQL: claiming files, states, models, translations, run summaries."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from aps_pipeline.checks import CheckResult
from aps_results import registry
from aps_results.models import File, Model, ModelStatusHistory, RunSummary, Translation, ValidationResult
from aps_results.registry import DiscoveredObject
from tests.fixtures.results import results_engine

PIPELINE = "aps_ingest"


def landed(*names: str, etag: str = "e1") -> list[DiscoveredObject]:
    return [DiscoveredObject("landing", f"in/{name}", etag, 100 + i, metadata={"project": "p1"})
            for i, name in enumerate(names)]


def test_claim_is_idempotent_and_a_changed_object_is_a_new_file(results_engine: Engine) -> None:
    with results_engine.begin() as conn:
        first = registry.claim_files(conn, PIPELINE, "run-1", landed("a.ifc", "b.obj"))
    assert [(f.s3_key, f.state) for f in first] == [("in/a.ifc", "discovered"), ("in/b.obj", "discovered")]

    with results_engine.begin() as conn:  # a retried discover task of the same run gets the same files
        assert registry.claim_files(conn, PIPELINE, "run-1", landed("a.ifc", "b.obj")) == first
    with results_engine.begin() as conn:  # the next run does not claim what is already known
        assert registry.claim_files(conn, PIPELINE, "run-2", landed("a.ifc", "b.obj")) == []
    with results_engine.begin() as conn:  # a.ifc was overwritten: new etag, new file
        changed = registry.claim_files(conn, PIPELINE, "run-3", landed("a.ifc", etag="e2"))
    assert [(f.s3_key, f.etag) for f in changed] == [("in/a.ifc", "e2")]
    with results_engine.begin() as conn:  # another pipeline on the same bucket tracks its own files
        assert len(registry.claim_files(conn, "other", "run-1", landed("a.ifc"))) == 1
        rows = conn.execute(select(File.s3_key, File.etag, File.meta).where(File.pipeline == PIPELINE)
                            .order_by(File.id)).all()
    assert rows == [("in/a.ifc", "e1", {"project": "p1"}), ("in/b.obj", "e1", {"project": "p1"}),
                    ("in/a.ifc", "e2", {"project": "p1"})]


def test_states_reasons_and_unfinished_files(results_engine: Engine) -> None:
    with results_engine.begin() as conn:
        a, b, c = registry.claim_files(conn, PIPELINE, "run-1", landed("a.ifc", "b.obj", "c.exe"))
        registry.set_file_state(conn, c.id, "rejected", "extension .exe is not supported",
                                quarantine_key="quarantine/c.exe")
        registry.set_file_state(conn, [a.id, b.id], "validating", count_attempt=True)
        assert registry.count_unfinished_files(conn, PIPELINE, "run-1") == 2
        registry.set_file_state(conn, a.id, "loaded", sha256="f" * 64)
        registry.set_file_state(conn, b.id, "failed", "translation failed: corrupt file")
        assert registry.count_unfinished_files(conn, PIPELINE, "run-1") == 0
    with Session(results_engine) as session:
        rows = {f.s3_key: f for f in session.scalars(select(File).where(File.pipeline == PIPELINE))}
    rejected, loaded = rows["in/c.exe"], rows["in/a.ifc"]
    assert rejected.reason == "extension .exe is not supported"
    assert rejected.quarantine_key == "quarantine/c.exe"
    assert rejected.finished_at is not None
    assert (loaded.state, loaded.sha256, loaded.attempts) == ("loaded", "f" * 64, 1)

    with results_engine.begin() as conn, pytest.raises(ValueError, match="lost"):
        registry.set_file_state(conn, a.id, "lost")
    with results_engine.begin() as conn, pytest.raises(ValueError, match="unknown file columns"):
        registry.set_file_state(conn, a.id, "loaded", colour="red")


def test_reclaim_takes_over_files_a_crashed_run_left_unfinished(results_engine: Engine) -> None:
    with results_engine.begin() as conn:
        a, b = registry.claim_files(conn, PIPELINE, "run-1", landed("a.ifc", "b.obj"))
        registry.set_file_state(conn, a.id, "loaded")
        registry.set_file_state(conn, b.id, "uploading")
    with results_engine.begin() as conn:
        taken = registry.claim_files(conn, PIPELINE, "run-2", [], take_over_from=["run-1"])
    assert [(f.id, f.state) for f in taken] == [(b.id, "uploading")]


def test_a_takeover_never_takes_a_file_another_run_took_first(results_engine: Engine) -> None:
    with results_engine.begin() as conn:
        (x,) = registry.claim_files(conn, PIPELINE, "crashed", landed("x.ifc"))
    # Two overlapping runs both found "crashed" ended; run-a claims first, run-b decided before that.
    with results_engine.begin() as conn:
        assert [f.id for f in registry.claim_files(conn, PIPELINE, "run-a", [], take_over_from=["crashed"])] \
            == [x.id]
    with results_engine.begin() as conn:
        assert registry.claim_files(conn, PIPELINE, "run-b", [], take_over_from=["crashed"]) == []


def test_validation_results_replace_an_earlier_try(results_engine: Engine) -> None:
    with results_engine.begin() as conn:
        (a,) = registry.claim_files(conn, PIPELINE, "run-1", landed("a.ifc"))
        for _ in range(2):  # a retried validate task
            registry.record_validation(conn, a.id, "run-1", [
                CheckResult("extension", True),
                CheckResult("magic_bytes", False, details={"expected": "ISO-10303-21"}),
            ])
        registry.record_validation_run(conn, PIPELINE, "run-1", "batch", False, {"evaluated": 3}, [{"x": 1}])
        run_id = registry.record_validation_run(conn, PIPELINE, "run-1", "batch", True, {"evaluated": 3}, [])
        results = conn.execute(select(ValidationResult.check_name, ValidationResult.passed,
                                      ValidationResult.details).order_by(ValidationResult.id)).all()
    assert results == [("extension", True, {}), ("magic_bytes", False, {"expected": "ISO-10303-21"})]
    assert isinstance(run_id, int)


def test_identical_content_shares_one_model_per_region(results_engine: Engine) -> None:
    with results_engine.begin() as conn:
        a, b = registry.claim_files(conn, PIPELINE, "run-1", landed("a.ifc", "copy-of-a.ifc"))
        us = registry.ModelIdentity("US", "d" * 64, "bucket")
        first = registry.get_or_create_model(conn, us, source_file_id=a.id, run_id="run-1")
        second = registry.get_or_create_model(conn, us, source_file_id=b.id, run_id="run-1")
        emea = registry.get_or_create_model(conn, registry.ModelIdentity("EMEA", "d" * 64, "bucket"))
        links = conn.execute(select(File.model_id).order_by(File.id)).scalars().all()
    assert first.created
    assert not second.created
    assert emea.created
    assert first.id == second.id != emea.id
    assert links == [first.id, first.id]


def test_translation_attempts_and_model_status_history(results_engine: Engine) -> None:
    with results_engine.begin() as conn:
        model = registry.get_or_create_model(conn, registry.ModelIdentity("US", "e" * 64, "bucket"))
        registry.update_model(conn, model.id, object_key="e.ifc",
                              object_id="urn:adsk.objects:os.object:bucket/e.ifc", urn="dXJu",
                              upload_state={"parts": [1, 2]})
        one = registry.start_translation(conn, model.id, run_id="run-1", output_formats=["svf2"])
        registry.update_translation(conn, one.id, "inprogress", progress="40% complete")
        registry.update_translation(conn, one.id, "failed", messages=[
            {"type": "error", "code": "TranslationWorker-InternalFailure",
             "message": ["Unrecoverable", "exit"]},
        ], manifest={"status": "failed"})
        two = registry.start_translation(conn, model.id, run_id="run-2", forced=True)
        registry.update_translation(conn, two.id, "success", progress="complete",
                                    manifest={"status": "success"})
        latest = registry.latest_translation(conn, model.id)
        assert latest is not None
        assert (latest.id, latest.attempt, latest.status) == (two.id, 2, "success")
        stored = conn.execute(
            select(Model.status, Model.urn, Model.upload_state).where(Model.id == model.id)
        ).one()
        history = conn.execute(select(ModelStatusHistory.status, ModelStatusHistory.reason)
                               .order_by(ModelStatusHistory.id)).all()
        attempts = conn.execute(
            select(Translation.attempt, Translation.status, Translation.started_at.is_not(None),
                   Translation.finished_at.is_not(None)).order_by(Translation.attempt)
        ).all()
    assert (one.attempt, two.attempt) == (1, 2)
    assert tuple(stored) == ("success", "dXJu", {"parts": [1, 2]})
    assert history == [
        ("pending", None), ("translating", None),
        ("failed", "TranslationWorker-InternalFailure: Unrecoverable exit"),
        ("translating", None), ("success", None),
    ]
    assert attempts == [(1, "failed", True, True), (2, "success", True, True)]
    with results_engine.begin() as conn:
        assert registry.set_model_status(conn, model.id, "success") is False  # unchanged: no history row
        with pytest.raises(ValueError, match="cannot set"):
            registry.update_model(conn, model.id, status="success")


def test_run_summary_counts_terminal_states_and_is_refreshed(results_engine: Engine) -> None:
    with results_engine.begin() as conn:
        a, b, c, d = registry.claim_files(conn, PIPELINE, "run-1", landed("a", "b", "c", "d"))
        registry.set_file_state(conn, a.id, "loaded")
        registry.set_file_state(conn, b.id, "rejected", "bad magic bytes")
        registry.set_file_state(conn, c.id, "failed", "timeout")
        counts = registry.write_run_summary(conn, PIPELINE, "run-1", details={"note": "first"})
    assert counts.line("demo summary") == "demo summary: discovered=4 loaded=1 rejected=1 failed=1 lost=1"
    with results_engine.begin() as conn:
        registry.set_file_state(conn, d.id, "loaded")
        registry.write_run_summary(conn, PIPELINE, "run-1")
        rows = conn.execute(select(RunSummary.discovered, RunSummary.loaded, RunSummary.lost)).all()
    assert rows == [(4, 2, 0)]


def test_a_terminal_state_is_never_overwritten_by_another_pipeline(results_engine: Engine) -> None:
    """Issue 11, scenario 6: pipelines share the database (and scheduled run ids); a file's end is final."""
    with results_engine.begin() as conn:
        (mine,) = registry.claim_files(conn, "a", "scheduled__1", landed("x.ifc"))
        (theirs,) = registry.claim_files(conn, "b", "scheduled__1", landed("x.ifc"))
        registry.set_file_state(conn, mine.id, "loaded", "loaded as model 1")
        registry.set_file_state(conn, theirs.id, "rejected", "metadata: no project")
    with results_engine.begin() as conn:
        # Another pipeline's settlement cannot reach the file, whatever state it asks for ...
        assert registry.set_file_state(conn, mine.id, "failed", "from b", pipeline="b") == 0
        assert registry.set_file_state(conn, [mine.id, theirs.id], "failed", "from b", pipeline="b") == 0
        # ... and no one moves a file out of its terminal state: loaded stays loaded.
        assert registry.set_file_state(conn, mine.id, "failed", "late failure") == 0
        assert registry.set_file_state(conn, theirs.id, "valid") == 0
        # The same terminal state may still be completed (the quarantine records its copy).
        assert registry.set_file_state(conn, theirs.id, "rejected", "metadata: no project",
                                       quarantine_key="quarantine/x.ifc", pipeline="b") == 1
        # A pipeline's own unfinished files move as before.
        *_, other = registry.claim_files(conn, "a", "scheduled__1", landed("y.ifc"))  # and x.ifc
        assert registry.set_file_state(conn, other.id, "valid", pipeline="a") == 1
        assert registry.set_file_state(conn, other.id, "failed", "from b", pipeline="b") == 0
        rows = dict(conn.execute(select(File.id, File.state).order_by(File.id)).all())
        reasons = dict(conn.execute(select(File.id, File.reason)).all())
    assert rows == {mine.id: "loaded", theirs.id: "rejected", other.id: "valid"}
    assert reasons[mine.id] == "loaded as model 1"


def test_summaries_of_pipelines_with_one_run_id_count_their_own_files(results_engine: Engine) -> None:
    with results_engine.begin() as conn:
        a1, a2 = registry.claim_files(conn, "a", "scheduled__1", landed("x.ifc", "y.ifc"))
        (b1,) = registry.claim_files(conn, "b", "scheduled__1", landed("x.ifc"))
        registry.set_file_state(conn, [a1.id, a2.id], "loaded")
        registry.set_file_state(conn, b1.id, "failed", "translation failed")
        a = registry.write_run_summary(conn, "a", "scheduled__1")
        b = registry.write_run_summary(conn, "b", "scheduled__1")
    assert (a.discovered, a.loaded, a.failed) == (2, 2, 0)
    assert (b.discovered, b.loaded, b.failed) == (1, 0, 1)
