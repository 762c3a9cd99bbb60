"""The budget guard's one decision (aps_pipeline.budget.decide_budget) and its notices, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aps_pipeline.budget import (
    GLOBAL_SCOPE,
    BudgetSnapshot,
    Candidate,
    ScopeSpend,
    decide_budget,
    due_notices,
)
from aps_pipeline.config import BudgetConfig, PipelineConfigError, parse_pipelines

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


def snapshot(*scopes: ScopeSpend) -> BudgetSnapshot:
    return BudgetSnapshot(NOW, scopes)


def test_candidates_are_admitted_in_order_until_a_limit_is_spent_then_the_rest_wait() -> None:
    budget = BudgetConfig(jobs_per_day=3, weights={"rvt": 2})
    decision = decide_budget(snapshot(ScopeSpend("p", budget, spent_day=0, spent_month=0)),
                             [Candidate("a", "ifc"), Candidate("b", "rvt"), Candidate("c", "ifc")])
    assert decision.admitted == ["a", "b"]
    assert list(decision.waiting) == ["c"]
    assert "p's budget of 3 weighted jobs per day is spent for day:2026-12-07" in decision.waiting["c"]
    (use,) = decision.use
    assert (use.spent, use.planned, use.percent, use.blocked) == (0, 3, 100.0, True)


def test_a_big_file_is_not_overtaken_by_smaller_ones_and_free_ones_always_pass() -> None:
    budget = BudgetConfig(jobs_per_month=10, weights={"nwd": 5})
    decision = decide_budget(snapshot(ScopeSpend("p", budget, spent_day=0, spent_month=7)),
                             [Candidate("big", "nwd"), Candidate("small", "obj"),
                              Candidate("reused", "nwd", free=True)])
    assert decision.admitted == ["reused"]
    assert list(decision.waiting) == ["big", "small"]
    assert decision.use[0].kind == "month"
    assert decision.use[0].period == "month:2026-12"


def test_the_global_budget_limits_too_with_its_own_weights() -> None:
    pipeline = ScopeSpend("p", BudgetConfig(jobs_per_day=100), spent_day=1, spent_month=1)
    shared = ScopeSpend(GLOBAL_SCOPE, BudgetConfig(jobs_per_day=4, default_weight=2), spent_day=2,
                        spent_month=2)
    decision = decide_budget(snapshot(pipeline, shared), [Candidate("a", "ifc"), Candidate("b", "ifc")])
    assert decision.admitted == ["a"]
    assert "the global budget of 4 weighted jobs per day" in decision.waiting["b"]


def test_no_budget_admits_everything_and_reports_no_use() -> None:
    decision = decide_budget(snapshot(), [Candidate(str(i), "ifc") for i in range(50)])
    assert len(decision.admitted) == 50
    assert not decision.waiting
    assert decision.use == []


@pytest.mark.parametrize(("spent", "planned_files", "expected"), [
    (0, 7, []), (7, 1, [80]), (4, 6, [80, 100]), (9, 5, [80, 100]),
])
def test_notices_are_due_at_80_and_100_percent_or_when_files_wait(
    spent: float, planned_files: int, expected: list[int]
) -> None:
    budget = BudgetConfig(jobs_per_day=10)
    decision = decide_budget(snapshot(ScopeSpend("p", budget, spent_day=spent, spent_month=spent)),
                             [Candidate(str(i), "ifc") for i in range(planned_files)])
    assert [threshold for _, threshold in due_notices(decision.use)] == expected


def test_the_pipelines_file_has_a_global_budget_that_an_entry_cannot_set() -> None:
    entry = {"name": "p", "landing": {"bucket": "landing"}, "aps": {"bucket_key": "some-bucket"},
             "budget": {"jobs_per_day": 5, "weights": {".RVT": 2}}}
    (pipeline,) = parse_pipelines({"pipelines": [entry], "budget": {"jobs_per_month": "${CAP:-100}"}},
                                  source="t", env={})
    assert pipeline.budget.weight("rvt") == 2
    assert pipeline.budget.weight("ifc") == 1
    assert pipeline.global_budget.jobs_per_month == 100
    with pytest.raises(PipelineConfigError, match="top-level `budget:`"):
        parse_pipelines({"pipelines": [{**entry, "global_budget": {}}]}, source="t", env={})
