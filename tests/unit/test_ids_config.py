"""The pipelines file's IDS fields: `ids` (a list, or a comma-separated text from the environment) and
`on_ids_failure` (reject or warn)."""

from __future__ import annotations

import pytest

from aps_pipeline.config import PipelineConfigError, parse_pipelines

ENTRY = {"name": "ifc_only", "landing": {"bucket": "landing"}, "aps": {"bucket_key": "aps-ifc"}}


def test_ids_default_to_none_and_reject() -> None:
    (pipeline,) = parse_pipelines({"pipelines": [ENTRY]}, source="test.yaml", env={})
    assert (pipeline.ids, pipeline.on_ids_failure) == ([], "reject")
    assert pipeline.ids_timeout > 0
    assert int(pipeline.ids_memory_limit) == 4 * 1024**3


def test_ids_from_the_environment_and_the_warn_policy() -> None:
    entry = {**ENTRY, "ids": "${IDS_FILES:-}", "on_ids_failure": "warn", "ids_memory_limit": "2GiB"}
    env = {"IDS_FILES": "specs/walls.ids, s3://landing/specs/slabs.ids"}
    (pipeline,) = parse_pipelines({"pipelines": [entry]}, source="test.yaml", env=env)
    assert pipeline.ids == ["specs/walls.ids", "s3://landing/specs/slabs.ids"]
    assert pipeline.on_ids_failure == "warn"
    assert int(pipeline.ids_memory_limit) == 2 * 1024**3
    (unset,) = parse_pipelines({"pipelines": [entry]}, source="test.yaml", env={})
    assert unset.ids == []


def test_ids_per_project_maps_projects_to_documents() -> None:
    entry = {**ENTRY, "ids_per_project": {"towers": ["specs/towers.ids"]}}
    (pipeline,) = parse_pipelines({"pipelines": [entry]}, source="test.yaml", env={})
    assert pipeline.ids_per_project == {"towers": ["specs/towers.ids"]}
    with pytest.raises(PipelineConfigError, match="ids_per_project"):
        parse_pipelines({"pipelines": [{**ENTRY, "ids_per_project": ["specs/towers.ids"]}]},
                        source="test.yaml", env={})


def test_an_unknown_policy_is_refused_with_where() -> None:
    with pytest.raises(PipelineConfigError, match=r"ifc_only.*on_ids_failure"):
        parse_pipelines({"pipelines": [{**ENTRY, "on_ids_failure": "ignore"}]}, source="test.yaml", env={})
