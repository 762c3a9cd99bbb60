"""Pipelines-file overrides for local stacks (aps_devstack.overrides): assignments, validation, the copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from aps_devstack.overrides import parse_assignments, write_pipelines_file
from aps_pipeline.config import DEFAULT_PIPELINES_FILE, PipelineConfigError, get_pipeline


def test_assignments_are_yaml_scalars_and_dotted_keys_nest() -> None:
    assert parse_assignments(
        [
            "upload_concurrency=16",
            "pool.slots=4",
            "pool.name=bench",
            "max_file_size=2GiB",
            "schedule=",
            "models_per_task=5",
            "models_per_task=7",
        ]
    ) == {
        "upload_concurrency": 16,
        "pool": {"slots": 4, "name": "bench"},
        "max_file_size": "2GiB",
        "schedule": "",
        "models_per_task": 7,
    }


@pytest.mark.parametrize("bad", ["upload_concurrency", "=3", "pool.=3", ".slots=3"])
def test_an_assignment_without_a_key_or_value_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="key=value"):
        parse_assignments([bad])


def test_the_copy_sets_the_fields_and_keeps_the_rest(tmp_path: Path) -> None:
    env = {"APS_LANDING_BUCKET": "bench-landing", "APS_MODELS_PER_TASK": "3"}
    overrides = parse_assignments(["upload_concurrency=5", "pool.slots=2", "load_concurrency=2"])
    path, pipeline = write_pipelines_file(tmp_path / "p.yaml", "aps_ingest", overrides, env=env)
    assert (pipeline.upload_concurrency, pipeline.pool.slots, pipeline.load_concurrency) == (5, 2, 2)
    # What the stack's components will read from the written file, with their environment:
    assert get_pipeline("aps_ingest", path, env=env) == pipeline
    shipped = get_pipeline("aps_ingest", DEFAULT_PIPELINES_FILE, env=env)
    assert pipeline.models_per_task == shipped.models_per_task == 3  # ${APS_MODELS_PER_TASK} still applies
    assert pipeline.pool.name == shipped.pool.name
    assert pipeline.landing == shipped.landing
    assert (
        pipeline.model_copy(
            update={
                "upload_concurrency": shipped.upload_concurrency,
                "pool": shipped.pool,
                "load_concurrency": shipped.load_concurrency,
            }
        )
        == shipped
    )


def test_an_unknown_field_fails_before_anything_is_written(tmp_path: Path) -> None:
    dest = tmp_path / "p.yaml"
    with pytest.raises(PipelineConfigError, match="upload_concurency"):
        write_pipelines_file(dest, "aps_ingest", {"upload_concurency": 4}, env={})
    with pytest.raises(PipelineConfigError, match="upload_concurrency"):
        write_pipelines_file(dest, "aps_ingest", {"upload_concurrency": 0}, env={})
    with pytest.raises(PipelineConfigError, match="no pipeline named 'nope'"):
        write_pipelines_file(dest, "nope", {}, env={})
    assert not dest.exists()
