"""A run's intake: the steps before the batch group, in order, as one task runs them (`aps_pipeline.steps`).

    steps = intake_steps(landing, engine, pipeline, run_id, check_schema=..., ensure_bucket=...,
                         max_map_length=1024, event_keys=lambda: None, aps=aps)
    outcomes = run_steps(steps, last_attempt=False)
    batches = outcomes.result(PLAN_STEP)     # what the batch group maps over

check_results_schema → discover_files → validate_files → quarantine_rejected → plan_models →
ensure_aps_bucket. Each step keeps its own per-file boundary (`aps_pipeline.boundary`): one file's trouble is
that file's reason, never the step's failure. Quarantine is the one non-blocking step: what it leaves undone
a later run's quarantine takes up, so on the last attempt the valid files go on to be loaded (and the run
is failed at its end). The bucket is ensured only when there is something to upload.

What needs Airflow (the schema check's and the bucket's "do not retry" errors, the run's triggering events,
whether another run is live) comes in as callables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Engine

from aps_landing import Landing
from aps_pipeline.batch import ModelBatch, plan_batches
from aps_pipeline.budget import BudgetDecision
from aps_pipeline.config import PipelineConfig
from aps_pipeline.discovery import discover_files
from aps_pipeline.quarantine import quarantine_rejected
from aps_pipeline.steps import Step
from aps_pipeline.validation import validate_files

PLAN_STEP = "plan_models"


def intake_steps(
    landing: Landing, engine: Engine, pipeline: PipelineConfig, run_id: str, *,
    check_schema: Callable[[], Any], ensure_bucket: Callable[[], Any], max_map_length: int,
    event_keys: Callable[[], list[str] | None] = lambda: None,
    run_is_active: Callable[[str], bool] = lambda run_id: False,
    limit: int | None = None, prefix: str | None = None, force: bool = False,
    aps: Any | None = None, supported: Mapping[str, list[str]] | None = None,
    on_budget: Callable[[BudgetDecision], None] | None = None,
) -> list[Step]:
    """The intake's steps for `run_id` (see the module's docstring); `event_keys` gives the keys the run's
    events name (None: list the prefix), `aps` or `supported` the input formats validation accepts,
    `on_budget` hears the planning's budget decision (metrics, notices)."""
    planned: list[ModelBatch] = []

    def discover() -> dict[str, Any]:
        return discover_files(landing, engine, pipeline, run_id, limit=limit, prefix=prefix,
                              keys=event_keys(), run_is_active=run_is_active)

    def plan() -> list[ModelBatch]:
        planned[:] = plan_batches(engine, pipeline, run_id, max_map_length=max_map_length, force=force,
                                  on_budget=on_budget)
        return planned

    def bucket() -> Any:
        return ensure_bucket() if planned else None  # nothing to upload: no APS call

    return [
        Step("check_results_schema", check_schema),
        Step("discover_files", discover),
        Step("validate_files", lambda: validate_files(landing, engine, pipeline, run_id, supported=supported,
                                                      aps=aps)),
        Step("quarantine_rejected", lambda: quarantine_rejected(landing, engine, pipeline, run_id),
             blocking=False),
        Step(PLAN_STEP, plan, summary=lambda batches: {
            "batches": len(batches), "models": sum(len(batch["models"]) for batch in batches)}),
        Step("ensure_aps_bucket", bucket),
    ]
