"""Batches of models: the shape the DAG maps over, bounded per task and per run, with readable labels.

    batches, left = batch_models(plan["models"], models_per_task=25, max_entries=ceiling(1024))

Airflow refuses a mapped push longer than `[core] max_map_length`, so a run never maps more than a ceiling
kept under it; the models beyond it are returned, in order, for the caller to leave to the next run.
"""

from __future__ import annotations

from typing import TypedDict

from aps_pipeline.dedupe import ModelPlan
from aps_pipeline.labels import files_label

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
