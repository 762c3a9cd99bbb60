"""The registry's read behind the stuck-translations metric: the oldest translating file's age."""

from __future__ import annotations

from sqlalchemy import Engine, insert, text

from aps_results import registry
from aps_results.models import File
from tests.fixtures.results import results_engine


def _file(engine: Engine, key: str, state: str, pipeline: str = "p", age_seconds: int = 0) -> None:
    with engine.begin() as connection:
        connection.execute(insert(File).values(pipeline=pipeline, s3_bucket="b", s3_key=key, etag="e", size=1,
                                               state=state))
        connection.execute(text("UPDATE aps.files SET updated_at = now() - make_interval(secs => :age) "
                                "WHERE s3_key = :key"), {"age": age_seconds, "key": key})


def test_the_oldest_translating_file_of_the_pipeline_is_measured(results_engine: Engine) -> None:
    with results_engine.connect() as connection:
        assert registry.oldest_translating_seconds(connection, "p") is None
    _file(results_engine, "young", "translating", age_seconds=60)
    _file(results_engine, "old", "translating", age_seconds=7200)
    _file(results_engine, "older-but-loaded", "loaded", age_seconds=90000)
    _file(results_engine, "other-pipeline", "translating", pipeline="q", age_seconds=90000)
    with results_engine.connect() as connection:
        seconds = registry.oldest_translating_seconds(connection, "p")
    assert seconds is not None
    assert 7200 <= seconds < 7200 + 600
