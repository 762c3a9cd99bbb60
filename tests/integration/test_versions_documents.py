"""Documents, versions and stored diffs through the load step: IFC revisions with known edits landed in the
S3 server, translated by the emulator, loaded into PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from aps_client import APSClient
from aps_landing import Landing
from aps_pipeline import discovery, maintenance
from aps_pipeline.config import PipelineConfig, RetentionConfig
from aps_pipeline.discovery import discover_files
from aps_pipeline.notify import change_lines
from aps_results.models import (
    Document,
    File,
    ListingWatermark,
    Model,
    Property,
    VersionDiff,
    VersionDiffItem,
)
from aps_results.run_report import run_report, version_diff
from aps_run_page.web import _templates
from aps_versions.documents import numbered_versions
from aps_versions.reports import run_versions
from tests.fixtures.client import aps, aps_config
from tests.fixtures.results import results_engine
from tests.fixtures.versions import (
    SPATIAL_ELEMENTS,
    ingest,
    put_revision,
    revision_bytes,
    s3_landing,
    s3_pipeline,
)

__all__ = ["aps", "aps_config", "results_engine", "s3_landing", "s3_pipeline"]


def versions(engine: Engine) -> list[dict[str, Any]]:
    numbered = numbered_versions()
    with engine.connect() as conn:
        rows = conn.execute(
            select(Document.key, numbered.c.number, File.s3_key, File.model_id, numbered.c.id,
                   numbered.c.state)
            .join(numbered, numbered.c.document_id == Document.id).join(File, File.id == numbered.c.file_id)
            .order_by(Document.key, numbered.c.number)
        ).all()
    return [dict(row._mapping) for row in rows]


def stored_diffs(engine: Engine) -> list[dict[str, Any]]:
    with Session(engine) as session:
        diffs = session.scalars(select(VersionDiff).order_by(VersionDiff.id)).all()
        result = []
        for diff in diffs:
            items = session.scalars(select(VersionDiffItem).where(VersionDiffItem.diff_id == diff.id)
                                    .order_by(VersionDiffItem.seq)).all()
            result.append({
                "pair": (diff.from_version_id, diff.to_version_id),
                "counts": {"added": diff.added, "removed": diff.removed, "changed": diff.changed,
                           "unchanged": diff.unchanged},
                "matched_by": diff.matched_by,
                "items": {(i.change, i.name, i.matched_by): [(p["name"], p["before"], p["after"])
                                                             for p in i.properties] for i in items},
            })
    return result


def test_revisions_of_one_key_are_numbered_versions_with_stored_diffs(
    aps: APSClient, s3_landing: Landing, results_engine: Engine, s3_pipeline: PipelineConfig,
) -> None:
    revisions = revision_bytes()
    for run, name in enumerate(("v1", "v2", "v3"), start=1):
        put_revision(s3_landing, "incoming/floor.ifc", revisions[name])
        ingest(aps, s3_landing, results_engine, s3_pipeline, f"run-{run}")

    rows = versions(results_engine)
    assert [(r["key"], r["number"], r["state"]) for r in rows] == [
        ("incoming/floor.ifc", 1, "loaded"), ("incoming/floor.ifc", 2, "loaded"),
        ("incoming/floor.ifc", 3, "loaded")]
    assert len({r["model_id"] for r in rows}) == 3
    ids = [r["id"] for r in rows]
    first, second = stored_diffs(results_engine)
    assert first["pair"] == (ids[0], ids[1])
    # Walls 1-2, door 2, window 1, the two partitions and the spatial structure are unchanged.
    assert first["counts"] == {"added": 1, "removed": 1, "changed": 2, "unchanged": 6 + SPATIAL_ELEMENTS}
    assert first["items"] == {
        ("changed", "Door 1", "global_id"): [("FireRating", first_rating(revisions), "EI120")],
        ("changed", "Window 2b", "global_id"): [("Name", "Window 2", "Window 2b")],
        ("added", "Wall 4", None): [],
        ("removed", "Wall 3", None): [],
    }
    assert first["matched_by"] == {"global_id": 8 + SPATIAL_ELEMENTS}
    # The re-export shares no GlobalId with v2: nothing is removed and added again.
    assert second["pair"] == (ids[1], ids[2])
    assert second["counts"] == {"added": 0, "removed": 0, "changed": 0, "unchanged": 9 + SPATIAL_ELEMENTS}
    assert second["items"] == {}
    assert second["matched_by"] == {"name": 7 + SPATIAL_ELEMENTS, "signature": 2}

    # People see it: the run page shows the version and its diff with a link; the diff page lists it.
    (page,) = run_report(results_engine, s3_pipeline.name, "run-2").files
    assert page.version is not None
    assert (page.version.number, page.version.versions, page.version.previous) == (2, 3, 1)
    assert page.version.counts == first["counts"]
    html = _templates.get_template("run.html").render(prefix="/aps", report=run_report(
        results_engine, s3_pipeline.name, "run-2"))
    assert "version 2 of 3" in html
    assert "vs version 1: 1 added, 1 removed, 2 changed, 10 unchanged" in html
    link = f'href="/aps/dags/{s3_pipeline.name}/documents/{page.version.document_id}/diff?to=2"'
    assert link in html
    diff = version_diff(results_engine, s3_pipeline.name, page.version.document_id, 2)
    assert diff is not None
    assert [(item["change"], item["name"]) for item in diff.items] == [
        ("changed", "Door 1"), ("changed", "Window 2b"), ("added", "Wall 4"), ("removed", "Wall 3")]
    page_html = _templates.get_template("diff.html").render(prefix="/aps", pipeline=s3_pipeline.name,
                                                            diff=diff)
    assert "version 1 → 2" in page_html
    assert "FireRating:</span> " in page_html
    assert version_diff(results_engine, "another_pipeline", page.version.document_id, 2) is None
    with results_engine.connect() as conn:
        assert change_lines(run_versions(conn, s3_pipeline.name, "run-3")) == []  # the re-export: no change
        assert change_lines(run_versions(conn, s3_pipeline.name, "run-2")) == [
            "4 elements changed in incoming/floor.ifc (version 2 against 1: 1 added, 1 removed, 2 changed)"]


def first_rating(revisions: dict[str, bytes]) -> str:
    from tests.fixtures.versions import revision_elements

    (door,) = [e for e in revision_elements()["v1"] if e.name == "Door 1"]
    return door.properties["FireRating"]


def test_a_batch_load_stores_the_diffs_of_its_documents_new_versions(
    aps: APSClient, s3_landing: Landing, results_engine: Engine, s3_pipeline: PipelineConfig,
) -> None:
    # The load task settles a batch's models, then looks for missing diffs once for all of them.
    revisions = revision_bytes()
    for run, name in enumerate(("v1", "v2"), start=1):
        put_revision(s3_landing, "incoming/floor.ifc", revisions[name])
        ingest(aps, s3_landing, results_engine, s3_pipeline, f"run-{run}", as_batch=True)

    ids = {(r["key"], r["number"]): r["id"] for r in versions(results_engine)}
    (diff,) = stored_diffs(results_engine)
    assert diff["pair"] == (ids[("incoming/floor.ifc", 1)], ids[("incoming/floor.ifc", 2)])
    assert diff["counts"] == {"added": 1, "removed": 1, "changed": 2, "unchanged": 6 + SPATIAL_ELEMENTS}


def test_a_version_that_lands_late_takes_its_place_and_a_renamed_file_continues_its_document(
    aps: APSClient, s3_landing: Landing, results_engine: Engine, s3_pipeline: PipelineConfig,
) -> None:
    """The older revision (landed first under another name) is discovered after the newer one: it is
    version 1, the newer one moves to 2, and the diff between them is stored once both are loaded."""
    revisions = revision_bytes()
    put_revision(s3_landing, "incoming/floor-old-name.ifc", revisions["v1"], document="floor")
    put_revision(s3_landing, "incoming/floor-new-name.ifc", revisions["v2"], document="floor")
    ingest(aps, s3_landing, results_engine, s3_pipeline, "run-events-1", keys=["incoming/floor-new-name.ifc"])
    assert [(r["key"], r["number"], r["s3_key"]) for r in versions(results_engine)] == [
        ("floor", 1, "incoming/floor-new-name.ifc")]
    assert stored_diffs(results_engine) == []

    ingest(aps, s3_landing, results_engine, s3_pipeline, "run-events-2", keys=["incoming/floor-old-name.ifc"])
    rows = versions(results_engine)
    assert [(r["key"], r["number"], r["s3_key"]) for r in rows] == [
        ("floor", 1, "incoming/floor-old-name.ifc"), ("floor", 2, "incoming/floor-new-name.ifc")]
    (diff,) = stored_diffs(results_engine)
    assert diff["pair"] == (rows[0]["id"], rows[1]["id"])
    assert diff["counts"] == {"added": 1, "removed": 1, "changed": 2, "unchanged": 6 + SPATIAL_ELEMENTS}
    with results_engine.connect() as conn:
        assert conn.execute(select(Document.pipeline, Document.key, Document.project)).all() == [
            ("test_ingest", "floor", "tower")]


def test_identical_content_under_a_new_key_is_a_version_loaded_without_a_job(
    aps: APSClient, s3_landing: Landing, results_engine: Engine, s3_pipeline: PipelineConfig,
) -> None:
    """A revision whose bytes were loaded before (dedupe marks it loaded at planning) is a version too, and
    its diff against the version before it is stored by the planning step."""
    revisions = revision_bytes()
    put_revision(s3_landing, "incoming/a.ifc", revisions["v1"], document="floor")
    put_revision(s3_landing, "incoming/b.ifc", revisions["v2"], document="floor")
    ingest(aps, s3_landing, results_engine, s3_pipeline, "run-1")
    put_revision(s3_landing, "incoming/c.ifc", revisions["v1"], document="floor")  # a revert to v1
    plan = ingest(aps, s3_landing, results_engine, s3_pipeline, "run-2")
    assert plan["models"] == []
    rows = versions(results_engine)
    assert [(r["number"], r["s3_key"]) for r in rows] == [
        (1, "incoming/a.ifc"), (2, "incoming/b.ifc"), (3, "incoming/c.ifc")]
    assert rows[0]["model_id"] == rows[2]["model_id"]
    (report,) = plan["diffs"]
    assert (report["from_version_id"], report["to_version_id"]) == (rows[1]["id"], rows[2]["id"])
    assert {key: report[key] for key in ("added", "removed", "changed", "unchanged")} == {
        "added": 1, "removed": 1, "changed": 2, "unchanged": 6 + SPATIAL_ELEMENTS}


def test_keep_versions_purges_older_results_but_keeps_versions_diffs_and_shared_models(
    aps: APSClient, s3_landing: Landing, results_engine: Engine, s3_pipeline: PipelineConfig,
) -> None:
    revisions = revision_bytes()
    put_revision(s3_landing, "incoming/floor.ifc", revisions["v1"])
    put_revision(s3_landing, "incoming/annex.ifc", revisions["v1"])  # the same bytes: one model for both
    ingest(aps, s3_landing, results_engine, s3_pipeline, "run-1")
    for run, name in enumerate(("v2", "v3"), start=2):
        put_revision(s3_landing, "incoming/floor.ifc", revisions[name])
        ingest(aps, s3_landing, results_engine, s3_pipeline, f"run-{run}")
    rows = versions(results_engine)
    annex, floor = rows[0], rows[1:]
    assert annex["model_id"] == floor[0]["model_id"]

    keep_one = s3_pipeline.model_copy(update={"retention": RetentionConfig(keep_versions=1)})
    report = maintenance.purge_history(results_engine, keep_one, datetime.now(UTC))
    assert (report["versions_purged"], report["models_purged"]) == (2, 1)
    after = versions(results_engine)
    assert [(r["key"], r["number"], r["state"]) for r in after] == [
        ("incoming/annex.ifc", 1, "loaded"), ("incoming/floor.ifc", 1, "purged"),
        ("incoming/floor.ifc", 2, "purged"), ("incoming/floor.ifc", 3, "loaded")]
    with results_engine.connect() as conn:
        loaded = dict(conn.execute(select(Model.id, Model.loaded_at.is_not(None))).all())
        counted = select(Property.model_id, func.count()).group_by(Property.model_id)
        properties = dict(conn.execute(counted).all())
    # v1's model also serves annex.ifc: kept. v2's served only a purged version: its results are gone.
    assert loaded == {floor[0]["model_id"]: True, floor[1]["model_id"]: False, floor[2]["model_id"]: True}
    assert set(properties) == {floor[0]["model_id"], floor[2]["model_id"]}
    assert len(stored_diffs(results_engine)) == 2  # what changed stays readable
    again = maintenance.purge_history(results_engine, keep_one, datetime.now(UTC))
    assert (again["versions_purged"], again["models_purged"]) == (0, 0)

    # v2's bytes landing again (the same key and ETag would be no new file: under another name, continuing
    # the document): planning hands the purged model back for APS work, and it loads again.
    put_revision(s3_landing, "incoming/floor-again.ifc", revisions["v2"], document="incoming/floor.ifc")
    plan = ingest(aps, s3_landing, results_engine, s3_pipeline, "run-4")
    assert [model["model_id"] for model in plan["models"]] == [floor[1]["model_id"]]
    assert versions(results_engine)[-1]["state"] == "loaded"
    with results_engine.connect() as conn:
        assert conn.scalar(select(Model.loaded_at).where(Model.id == floor[1]["model_id"])) is not None


def test_an_object_removed_from_the_landing_marks_its_version_and_document_deleted_keeping_results(
    aps: APSClient, s3_landing: Landing, results_engine: Engine, s3_pipeline: PipelineConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    revisions = revision_bytes()
    put_revision(s3_landing, "incoming/floor.ifc", revisions["v1"])
    put_revision(s3_landing, "incoming/annex.ifc", revisions["v2"])
    ingest(aps, s3_landing, results_engine, s3_pipeline, "run-1")
    put_revision(s3_landing, "incoming/floor.ifc", revisions["v2"])
    ingest(aps, s3_landing, results_engine, s3_pipeline, "run-2")

    # An event run: the s3:ObjectRemoved:* event names the key, its HEAD finds no object.
    s3_landing.delete("incoming/floor.ifc")
    found = discover_files(s3_landing, results_engine, s3_pipeline, "run-3", keys=["incoming/floor.ifc"])
    assert found["versions_deleted"] == 1
    rows = {(r["key"], r["number"]): r for r in versions(results_engine)}
    assert [(key, number, r["state"]) for (key, number), r in rows.items()] == [
        ("incoming/annex.ifc", 1, "loaded"), ("incoming/floor.ifc", 1, "loaded"),
        ("incoming/floor.ifc", 2, "deleted")]
    with results_engine.connect() as conn:
        deleted = dict(conn.execute(select(Document.key, Document.deleted_at.is_not(None))).all())
        assert deleted == {"incoming/annex.ifc": False, "incoming/floor.ifc": True}
        latest_model = rows[("incoming/floor.ifc", 2)]["model_id"]
        kept = conn.scalar(select(Model.loaded_at).where(Model.id == latest_model))
        assert kept is not None  # results kept
    assert discover_files(s3_landing, results_engine, s3_pipeline, "run-4",
                          keys=["incoming/floor.ifc"])["versions_deleted"] == 0  # once

    # A full listing that no longer finds a loaded key (its event was lost) marks it too.
    s3_landing.delete("incoming/annex.ifc")
    monkeypatch.setattr(discovery, "DELETION_SLACK", timedelta(0))
    with results_engine.begin() as conn:
        conn.execute(delete(ListingWatermark))  # a full listing is due
    assert discover_files(s3_landing, results_engine, s3_pipeline, "run-5")["versions_deleted"] == 1
    assert [r["state"] for r in versions(results_engine)] == ["deleted", "loaded", "deleted"]

    # A new version of the deleted document revives it; the deleted one stays in its history.
    put_revision(s3_landing, "incoming/floor.ifc", revisions["v3"])
    ingest(aps, s3_landing, results_engine, s3_pipeline, "run-6")
    assert [(r["key"], r["number"], r["state"]) for r in versions(results_engine)][1:] == [
        ("incoming/floor.ifc", 1, "loaded"), ("incoming/floor.ifc", 2, "deleted"),
        ("incoming/floor.ifc", 3, "loaded")]
    with results_engine.connect() as conn:
        assert conn.scalar(select(Document.deleted_at).where(Document.key == "incoming/floor.ifc")) is None


def test_a_version_landing_late_between_two_others_renumbers_them_and_gets_both_its_diffs(
    aps: APSClient, s3_landing: Landing, results_engine: Engine, s3_pipeline: PipelineConfig,
) -> None:
    revisions = revision_bytes()
    for name in ("v1", "v2", "v3"):
        put_revision(s3_landing, f"incoming/floor-{name}.ifc", revisions[name], document="floor")
    ingest(aps, s3_landing, results_engine, s3_pipeline, "run-a", keys=["incoming/floor-v1.ifc"])
    ingest(aps, s3_landing, results_engine, s3_pipeline, "run-c", keys=["incoming/floor-v3.ifc"])
    before = versions(results_engine)
    assert [(r["number"], r["s3_key"]) for r in before] == [(1, "incoming/floor-v1.ifc"),
                                                            (2, "incoming/floor-v3.ifc")]
    ingest(aps, s3_landing, results_engine, s3_pipeline, "run-b", keys=["incoming/floor-v2.ifc"])
    rows = versions(results_engine)
    assert [(r["number"], r["s3_key"]) for r in rows] == [
        (1, "incoming/floor-v1.ifc"), (2, "incoming/floor-v2.ifc"), (3, "incoming/floor-v3.ifc")]
    one, two, three = (r["id"] for r in rows)
    diffs = {diff["pair"]: diff["counts"] for diff in stored_diffs(results_engine)}
    assert diffs == {
        (one, three): {"added": 2, "removed": 2, "changed": 1, "unchanged": 6 + SPATIAL_ELEMENTS},  # kept
        (one, two): {"added": 1, "removed": 1, "changed": 2, "unchanged": 6 + SPATIAL_ELEMENTS},
        (two, three): {"added": 0, "removed": 0, "changed": 0, "unchanged": 9 + SPATIAL_ELEMENTS},
    }
