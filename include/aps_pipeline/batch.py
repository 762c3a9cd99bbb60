"""Batches of models: the shape the DAG maps over, bounded per task and per run, with readable labels.

    batches = plan_batches(engine, pipeline, run_id, max_map_length=1024)   # what the DAG maps over
    batches, left = batch_models(plan["models"], models_per_task=50, max_entries=ceiling(1024))

Airflow refuses a mapped push longer than `[core] max_map_length`, so a run never maps more than a ceiling
kept under it; the models beyond it are returned, in order, for the caller to leave to the next run.
Inside a batch, `for_each_model` runs a step's per-model work a bounded number at a time, so one model's
failure never stops the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime
from typing import TypedDict, TypeVar

from sqlalchemy import Engine

from aps_pipeline.budget import BudgetDecision, plan_within_budget
from aps_pipeline.config import PipelineConfig
from aps_pipeline.dedupe import ModelPlan, assign_models
from aps_pipeline.labels import files_label
from aps_results import registry
from aps_results.models import FileState

logger = logging.getLogger(__name__)
M = TypeVar("M")
R = TypeVar("R")
MAP_LENGTH_SHARE = 0.9  # keep mapped entries at 90% of max_map_length: headroom for Airflow's own counting


class ModelBatch(TypedDict):
    """One mapped task instance's work: its label (map_index_template) and its models, in plan order."""

    label: str
    models: list[ModelPlan]


def mapped_entry_ceiling(max_map_length: int) -> int:
    """The most mapped entries one run may push, safely under Airflow's `[core] max_map_length`."""
    return max(1, int(max_map_length * MAP_LENGTH_SHARE))


def batch_models(
    models: list[ModelPlan], *, models_per_task: int, max_entries: int
) -> tuple[list[ModelBatch], list[ModelPlan]]:
    """Split `models` into batches of at most `models_per_task`, at most `max_entries` batches; return the
    batches and the models left over (in order) for the next run."""
    if models_per_task < 1 or max_entries < 1:
        raise ValueError("models_per_task and max_entries must be at least 1")
    taken = models[: models_per_task * max_entries]
    batches = [
        ModelBatch(label=files_label([m["source_key"] for m in chunk]), models=chunk)
        for chunk in (taken[i : i + models_per_task] for i in range(0, len(taken), models_per_task))
    ]
    return batches, models[len(taken) :]


class ModelWorkFailed(RuntimeError):
    """Some models of a batch hit trouble that a later try may get past; the others are done."""

    def __init__(self, step: str, failures: dict[int, BaseException]) -> None:
        listed = "; ".join(f"model {model_id}: {type(exc).__name__}: {exc}"
                           for model_id, exc in sorted(failures.items())[:10])
        more = f" (and {len(failures) - 10} more)" if len(failures) > 10 else ""
        super().__init__(f"{step}: {len(failures)} model(s) not done yet: {listed}{more}")
        self.failures = failures


def for_each_model(
    models: Sequence[M], work: Callable[[M], R], *, concurrency: int, model_id: Callable[[M], int]
) -> tuple[list[R], dict[int, BaseException]]:
    """Run `work` for every model, `concurrency` at a time; one model's exception never stops the others.

    Returns the results (in the models' order, of those that succeeded) and the exceptions by model id.
    """
    results: dict[int, R] = {}
    failures: dict[int, BaseException] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(models) or 1))) as pool:
        futures = {pool.submit(work, model): index for index, model in enumerate(models)}
        for future in as_completed(futures):
            index = futures[future]
            try:
                results[index] = future.result()
            except Exception as exc:  # recorded per model; the caller decides (retry the task, or fail it)
                failures[model_id(models[index])] = exc
    return [results[i] for i in sorted(results)], failures


def plan_batches(
    engine: Engine, pipeline: PipelineConfig, run_id: str, *, max_map_length: int, force: bool = False,
    on_budget: Callable[[BudgetDecision], None] | None = None, now: datetime | None = None,
) -> list[ModelBatch]:
    """The run's models (`assign_models`) that the budget lets start (`plan_within_budget`; the others wait,
    released, in `waiting_budget`) in batches, at most what Airflow can map; the rest go to the next run:
    their files are released (valid, no run), so the next run's discovery takes them over in order and this
    run's summary does not count them as lost. `on_budget` hears the budget's decision (notices, metrics);
    `now` replaces the database's clock for the budget (tests)."""
    plan = assign_models(engine, pipeline, run_id, force=force)
    admitted, decision = plan_within_budget(engine, pipeline, run_id, plan["models"], force=force, now=now)
    if on_budget is not None:
        on_budget(decision)
    batches, left = batch_models(admitted, models_per_task=pipeline.models_per_task,
                                 max_entries=mapped_entry_ceiling(max_map_length))
    if left:
        file_ids = [i for model in left for i in model["file_ids"]]
        with engine.begin() as connection:
            registry.set_file_state(connection, file_ids, FileState.VALID,
                                    "left for the next run: this run's batches were full", run_id=None)
        logger.warning("%d models (%d files) left for the next run: %d batches of %d is the most one run "
                       "maps (max_map_length %d)", len(left), len(file_ids), len(batches),
                       pipeline.models_per_task, max_map_length)
    logger.info("%d models in %d batches of up to %d", sum(len(b["models"]) for b in batches), len(batches),
                pipeline.models_per_task)
    return batches
