"""aps_results.derivatives.models_no_live_version_needs: which models lose their APS side, on hand-made
snapshots (the decision reads nothing itself)."""

from __future__ import annotations

from datetime import UTC, datetime

from aps_results.derivatives import ModelAtAPS, ModelUse, ModelUses, models_no_live_version_needs


def model(model_id: int, urn: str | None = "dXJu", deleted: datetime | None = None) -> ModelAtAPS:
    return ModelAtAPS(model_id, "US", urn, "bucket", f"{model_id}.ifc", deleted)


def use(model_id: int, file_state: str, version_state: str | None, pipeline: str = "p") -> ModelUse:
    return ModelUse(model_id, pipeline, file_state, version_state)


def decide(models: list[ModelAtAPS], uses: list[ModelUse], pipeline: str = "p") -> list[int]:
    return [m.id for m in models_no_live_version_needs(ModelUses(pipeline, tuple(models), tuple(uses)))]


def test_a_model_whose_every_version_is_deleted_or_purged_goes() -> None:
    uses = [use(1, "loaded", "deleted"), use(1, "loaded", "purged"), use(1, "rejected", None),
            use(1, "failed", None)]
    assert decide([model(1)], uses) == [1]


def test_a_loaded_version_a_loaded_file_without_version_or_a_file_in_flight_keeps_it() -> None:
    gone = use(1, "loaded", "deleted")
    assert decide([model(1)], [gone, use(1, "loaded", "loaded")]) == []
    assert decide([model(1)], [gone, use(1, "loaded", None)]) == []
    for in_flight in ("discovered", "valid", "uploading", "translating", "loading", "waiting_budget"):
        assert decide([model(1)], [gone, use(1, in_flight, None)]) == []
    assert decide([model(1)], [gone, use(1, "loaded", "loaded", pipeline="other")]) == []


def test_already_deleted_without_urn_or_without_this_pipelines_gone_version_is_not_asked() -> None:
    gone = [use(1, "loaded", "deleted")]
    assert decide([model(1, deleted=datetime(2026, 12, 1, tzinfo=UTC))], gone) == []
    assert decide([model(1, urn=None)], gone) == []
    assert decide([model(1)], gone, pipeline="other") == []


def test_several_models_are_decided_each_in_id_order() -> None:
    uses = [use(3, "loaded", "purged"), use(2, "loaded", "loaded"), use(1, "loaded", "deleted")]
    assert decide([model(3), model(2), model(1)], uses) == [1, 3]
