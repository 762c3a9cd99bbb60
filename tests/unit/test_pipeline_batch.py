"""aps_pipeline.batch: batches bounded per task and per run, leftovers in order, readable labels."""

from __future__ import annotations

import pytest

from aps_pipeline.batch import batch_models, mapped_entry_ceiling
from aps_pipeline.dedupe import ModelPlan
from aps_pipeline.labels import files_label


def _plan(i: int) -> ModelPlan:
    return ModelPlan(model_id=i, file_ids=[i], sha256=f"{i:064x}", status="pending", urn=None, region="US",
                     bucket_key="b", object_key=f"{i}.ifc", source_key=f"incoming/f{i}.ifc",
                     source_etag="e", source_version_id=None, source_size=1, source_sha1=None)


def test_batches_are_bounded_and_keep_plan_order() -> None:
    models = [_plan(i) for i in range(7)]
    batches, left = batch_models(models, models_per_task=3, max_entries=10)
    assert [[m["model_id"] for m in b["models"]] for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert left == []
    assert batches[0]["label"] == "f0.ifc, f1.ifc +1 more"
    assert batches[2]["label"] == "f6.ifc"


def test_the_ceiling_leaves_the_rest_in_order_for_the_next_run() -> None:
    models = [_plan(i) for i in range(100)]
    batches, left = batch_models(models, models_per_task=2, max_entries=mapped_entry_ceiling(16))
    assert len(batches) == 14  # 90% of 16
    assert [m["model_id"] for m in left] == list(range(28, 100))
    again, rest = batch_models(left, models_per_task=2, max_entries=14)
    assert again[0]["models"][0]["model_id"] == 28
    assert rest[0]["model_id"] == 56


def test_one_model_per_task_and_labels() -> None:
    batches, _ = batch_models([_plan(1), _plan(2)], models_per_task=1, max_entries=5)
    assert [b["label"] for b in batches] == ["f1.ifc", "f2.ifc"]
    assert files_label(["a/a.ifc", "b.ifc", "c.ifc", "d.ifc", "e.ifc"]) == "a.ifc, b.ifc +3 more"
    with pytest.raises(ValueError, match="at least 1"):
        batch_models([], models_per_task=0, max_entries=1)
