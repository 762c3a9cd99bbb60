"""The run page's queries on a real results database, read through a login in the read-only role."""

from __future__ import annotations

import secrets
import threading
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from aps_results.db import make_engine
from aps_results.loader import load_model_results
from aps_results.models import (
    SCHEMA,
    File,
    Model,
    ModelObject,
    ModelView,
    Property,
    Thumbnail,
    Translation,
)
from aps_results.records import ObjectProperties
from aps_results.roles import create_reader_login
from aps_results.run_report import latest_manifest, run_report, thumbnail_png
from tests.fixtures.results import results_engine, results_url

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
FAILURE = {"type": "error", "code": "TranslationWorker-InternalFailure", "message": "Unrecoverable exit code"}


def _seed(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        good = Model(region="US", sha256="a" * 64, urn="dXJuOmdvb2Q", status="success", property_rows=1)
        bad = Model(region="US", sha256="b" * 64, urn="dXJuOmJhZA", status="failed",
                    reason="translation failed")
        session.add_all([good, bad])
        session.flush()
        session.add_all([
            File(pipeline="p", s3_bucket="landing", s3_key="in/tower.ifc", etag="1", size=2048,
                 state="loaded", meta={"project": "tower", "_source": "sidecar"}, run_id="run-1",
                 model_id=good.id),
            File(pipeline="p", s3_bucket="landing", s3_key="in/broken.ifc", etag="2", size=10, state="failed",
                 reason="translation failed: TranslationWorker-InternalFailure", run_id="run-1",
                 model_id=bad.id),
            File(pipeline="p", s3_bucket="landing", s3_key="in/notes.txt", etag="3", size=5, state="rejected",
                 reason="extension: .txt is not an APS input", run_id="run-1"),
            File(pipeline="p", s3_bucket="landing", s3_key="in/other-run.ifc", etag="4", size=5,
                 state="loaded", run_id="run-2", model_id=good.id),
            File(pipeline="q", s3_bucket="landing", s3_key="in/tower.ifc", etag="1", size=2048,
                 state="loaded", run_id="run-1"),
            ModelView(model_id=good.id, guid="v3d", name="{3D}", role="3d", is_master_view=True),
            ModelView(model_id=good.id, guid="v2d", name="Level 1", role="2d"),
            ModelObject(model_id=good.id, view_guid="v3d", object_id=1, name="root"),
            ModelObject(model_id=good.id, view_guid="v3d", object_id=2, name="wall", parent_object_id=1),
            Property(model_id=good.id, view_guid="v3d", object_id=2, category="Dimensions", name="Height",
                     value="3", row_no=1),
            Thumbnail(model_id=good.id, png=PNG, width=1, height=1),
            Translation(model_id=good.id, attempt=1, status="success", manifest={"status": "success"}),
            Translation(model_id=bad.id, attempt=1, status="failed", messages=[{"code": "old"}]),
            Translation(model_id=bad.id, attempt=2, status="failed", messages=[FAILURE],
                        manifest={"status": "failed"}),
        ])
        session.commit()
        return {"good": good.id, "bad": bad.id}


def test_the_run_page_reads_every_file_of_the_run_with_its_model_through_the_reader_login(
    results_url: str, results_engine: Engine
) -> None:
    ids = _seed(results_engine)
    password = secrets.token_urlsafe(12)
    create_reader_login(results_url, "run_page", password)
    reader = make_engine(make_url(results_url).set(username="run_page", password=password))
    try:
        report = run_report(reader, "p", "run-1")
        files = {f.s3_key: f for f in report.files}
        assert list(files) == ["in/broken.ifc", "in/notes.txt", "in/tower.ifc"]  # this run, this pipeline
        tower = files["in/tower.ifc"]
        assert (tower.state, tower.size, tower.metadata["project"]) == ("loaded", 2048, "tower")
        assert tower.model is not None
        assert [v["name"] for v in tower.model.views] == ["{3D}", "Level 1"]  # master view first
        assert (tower.model.objects, tower.model.properties, tower.model.has_thumbnail) == (2, 1, True)
        broken = files["in/broken.ifc"]
        assert broken.model is not None
        assert broken.model.messages == [FAILURE]  # of the latest attempt only
        assert broken.reason == "translation failed: TranslationWorker-InternalFailure"
        assert files["in/notes.txt"].model is None
        assert report.summary is None  # the summary task has not run

        assert thumbnail_png(reader, "p", ids["good"]) == PNG
        assert thumbnail_png(reader, "q", ids["good"]) is None  # no file of pipeline q uses that model
        stored = latest_manifest(reader, "p", "dXJuOmJhZA")
        assert stored is not None
        assert (stored.model_id, stored.manifest) == (ids["bad"], {"status": "failed"})
        assert latest_manifest(reader, "q", "dXJuOmJhZA") is None
    finally:
        reader.dispose()


# --- Issue 20, finding 11: the run page never scans, nor waits on, a model's properties ------------------


def _properties(rows: int, tag: str) -> list[ObjectProperties]:
    return [ObjectProperties("v3d", index, f"e{index}", None, {"Height": f"{tag}-{index}"})
            for index in range(rows)]


def test_the_run_page_counts_without_reading_the_rows_a_load_is_replacing(
    results_url: str, results_engine: Engine
) -> None:
    ids = _seed(results_engine)
    load_model_results(results_engine, ids["bad"], properties=_properties(3, "v1"))
    password = secrets.token_urlsafe(12)
    create_reader_login(results_url, "run_page_2", password)
    reader = make_engine(make_url(results_url).set(username="run_page_2", password=password))
    in_the_load, let_it_commit = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def reload() -> None:  # deletes the model's rows and writes 5 new ones, then waits before its commit
        try:
            load_model_results(results_engine, ids["bad"], properties=_properties(5, "v2"),
                               before_commit=lambda _: (in_the_load.set(), let_it_commit.wait(120)))
        except BaseException as error:
            errors.append(error)

    loader = threading.Thread(target=reload, daemon=True)
    loader.start()
    try:
        assert in_the_load.wait(120), errors
        reports: list[Any] = []
        worker = threading.Thread(target=lambda: reports.append(run_report(reader, "p", "run-1")),
                                  daemon=True)
        worker.start()
        worker.join(120)  # a bound on the test: the page must not wait for the load at all
        assert not worker.is_alive(), "the run page waits on a load in progress"
        broken = {f.s3_key: f for f in reports[0].files}["in/broken.ifc"]
        assert broken.model is not None
        assert broken.model.properties == 3  # the count the committed load recorded
        tower = {f.s3_key: f for f in reports[0].files}["in/tower.ifc"]
        assert tower.model is not None
        assert tower.model.properties == 1
    finally:
        let_it_commit.set()
        loader.join(120)
        reader.dispose()
    assert errors == []
    broken = {f.s3_key: f for f in run_report(results_engine, "p", "run-1").files}["in/broken.ifc"]
    assert broken.model is not None
    assert broken.model.properties == 5


def test_the_run_page_gives_up_after_its_statement_timeout(results_url: str, results_engine: Engine) -> None:
    """Whatever it reads, the page's queries carry a statement and lock timeout: a lock on `files` (a long
    migration, say) makes the page fail after them, never hang."""
    _seed(results_engine)
    password = secrets.token_urlsafe(12)
    create_reader_login(results_url, "run_page_3", password)
    reader = make_engine(make_url(results_url).set(username="run_page_3", password=password))
    holder = results_engine.connect()
    transaction = holder.begin()
    try:
        holder.execute(text(f"LOCK TABLE {SCHEMA}.files IN ACCESS EXCLUSIVE MODE"))
        errors: list[BaseException] = []

        def read() -> None:
            try:
                run_report(reader, "p", "run-1")
            except Exception as exc:
                errors.append(exc)

        worker = threading.Thread(target=read, daemon=True)
        worker.start()
        worker.join(120)
        assert not worker.is_alive(), "the run page has no timeout"
        assert errors
        assert "timeout" in str(errors[0]).lower()
    finally:
        transaction.rollback()
        holder.close()
        reader.dispose()
