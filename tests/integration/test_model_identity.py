"""A model's identity is everything that makes its translation different (issue 20, finding 6): the content,
the region, the output formats and their options, and the APS application that owns the bucket."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from aps_client.derivative import default_formats
from aps_landing.s3 import S3Landing
from aps_pipeline.config import PipelineConfig
from aps_pipeline.dedupe import assign_models, translation_profile
from aps_pipeline.discovery import discover_files
from aps_pipeline.validation import validate_files
from aps_results import migrate
from aps_results.db import make_engine
from aps_results.models import DEFAULT_OUTPUT_PROFILE, SCHEMA, Model
from aps_samples import generate_ifc
from tests.fixtures.results import results_engine

FORMATS = {"svf2": ["ifc", "obj", "rvt"]}


def pipeline(name: str, bucket: str, landing_bucket: str, formats: list[dict[str, Any]] | None = None
             ) -> PipelineConfig:
    entry: dict[str, Any] = {"name": name, "landing": {"bucket": landing_bucket, "prefix": f"{name}/"},
                             "aps": {"bucket_key": bucket, "region": "US"}}
    if formats is not None:
        entry["output_formats"] = formats
    return PipelineConfig.model_validate(entry)


def plan(landing: S3Landing, engine: Engine, config: PipelineConfig, data: bytes) -> dict[str, Any]:
    landing.put(f"{config.name}/tower.ifc", data, metadata={"project": "p"})
    discover_files(landing, engine, config, "run-1")
    validate_files(landing, engine, config, "run-1", supported=FORMATS)
    (model,) = assign_models(engine, config, "run-1")["models"]
    return model


def test_the_same_bytes_with_other_formats_or_another_application_are_other_models(
    s3_server: Any, s3_bucket: str, results_engine: Engine
) -> None:
    landing = S3Landing(s3_server.client(), s3_bucket)
    data = generate_ifc(71, name="tower").data
    svf2_3d = [{"type": "svf2", "views": ["3d"]}]
    reordered = [{"type": "thumbnail"}, {"views": ["2d", "3d"], "type": "svf2"}]
    plans = {
        "defaults": plan(landing, results_engine, pipeline("defaults", "bucket-a", s3_bucket), data),
        "same": plan(landing, results_engine, pipeline("same", "bucket-a", s3_bucket, reordered), data),
        "only3d": plan(landing, results_engine, pipeline("only3d", "bucket-a", s3_bucket, svf2_3d), data),
        "other_app": plan(landing, results_engine, pipeline("other_app", "bucket-b", s3_bucket), data),
    }
    # Default formats written in another order are the same translation: one model.
    assert plans["same"]["model_id"] == plans["defaults"]["model_id"]
    # Other formats, or another application's bucket: a model of their own, on an object of their own.
    ids = {plans[n]["model_id"] for n in ("defaults", "only3d", "other_app")}
    assert len(ids) == 3
    assert plans["only3d"]["object_key"] != plans["defaults"]["object_key"]
    assert plans["other_app"]["bucket_key"] == "bucket-b"
    with results_engine.connect() as connection:
        profiles = dict(connection.execute(select(Model.id, Model.output_profile)).all())
    assert profiles[plans["defaults"]["model_id"]] == DEFAULT_OUTPUT_PROFILE
    assert profiles[plans["only3d"]["model_id"]] == translation_profile(svf2_3d)


def test_the_default_profile_is_the_default_formats_hash() -> None:
    assert translation_profile(default_formats()) == DEFAULT_OUTPUT_PROFILE


def test_0005_gives_existing_models_the_identity_of_the_defaults(database_url: str) -> None:
    migrate.upgrade(database_url, "0004")
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"INSERT INTO {SCHEMA}.models (region, sha256, bucket_key) "
                                    "VALUES ('US', :sha, 'bucket-a')"), {"sha": "f" * 64})
        migrate.upgrade(database_url)
        with engine.connect() as connection:
            assert connection.scalar(select(Model.output_profile)) == DEFAULT_OUTPUT_PROFILE
        with engine.begin() as connection:  # the same content for another application is another model
            connection.execute(insert(Model).values(region="US", sha256="f" * 64, bucket_key="bucket-b"))
            assert connection.scalar(select(func.count()).select_from(Model)) == 2
    finally:
        engine.dispose()
