"""What the landing holds now would cost: `aps-pipeline budget` (aps_pipeline.cli) prints it.

    estimate = estimate_landing(landing, engine, pipeline)
    estimate.decision   # the budget's decision (aps_pipeline.budget.decide_budget) over the landing's files

The landing is listed (as discovery lists it: no sidecars, folder markers or quarantined copies; only the
pipeline's extensions) and each object version is judged with the rules the planning applies:
- a version the registry has in a terminal state costs nothing (nothing will be done);
- a version whose model is translating costs nothing (its job is only waited on);
- content already loaded costs nothing: the version's ETag equals one of a file whose model is loaded (an
  S3 ETag of a single-part upload is its MD5, so equal ETags are equal bytes; the planning's real test is
  the SHA-256 after validation, so this estimate can only count too much, never too little);
- anything else costs its format's weight, in the order discovery would take it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from aps_landing import Landing, ListedObject
from aps_pipeline.budget import BudgetDecision, Candidate, decide_budget, read_snapshot
from aps_pipeline.checks import extension_of
from aps_pipeline.config import PipelineConfig
from aps_pipeline.discovery import is_ingestible_key
from aps_results.models import TERMINAL_FILE_STATES, File, Model, ModelStatus

_TERMINAL = {state.value for state in TERMINAL_FILE_STATES}


@dataclass
class LandingEstimate:
    pipeline: str
    listed: int = 0
    free: Counter[str] = field(default_factory=Counter)  # why a file costs nothing -> how many
    paid: Counter[str] = field(default_factory=Counter)  # extension -> how many files cost a job
    decision: BudgetDecision = field(default_factory=BudgetDecision)


def _known(engine: Engine, pipeline: str, location: str
           ) -> tuple[dict[tuple[str, str], tuple[str, str | None]], set[str]]:
    """{(key, etag): (file state, model status)} of the pipeline's files, and the ETags of loaded content."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(File.s3_key, File.etag, File.state, Model.status, Model.loaded_at)
            .outerjoin(Model, Model.id == File.model_id)
            .where(File.pipeline == pipeline, File.s3_bucket == location)
        ).all()
    versions = {(key, etag): (state, status) for key, etag, state, status, _ in rows}
    loaded = {etag for _, etag, _, status, loaded_at in rows
              if status == ModelStatus.SUCCESS.value and loaded_at is not None}
    return versions, loaded


def _candidate(obj: ListedObject, versions: dict[tuple[str, str], tuple[str, str | None]],
               loaded: set[str]) -> tuple[Candidate, str | None]:
    """The object as a budget candidate, and why it is free (None when it costs its weight)."""
    state, status = versions.get((obj.key, obj.etag), (None, None))
    why = ("already ended" if state in _TERMINAL else
           "translating: its job is waited on" if status == ModelStatus.TRANSLATING.value else
           "content already loaded" if obj.etag in loaded else None)
    return Candidate(obj.key, extension_of(obj.key), free=why is not None), why


def estimate_landing(landing: Landing, engine: Engine, pipeline: PipelineConfig) -> LandingEstimate:
    """The budget's decision over what the pipeline's landing holds now."""
    allowed = set(pipeline.allowed_extensions or [])
    listed = [obj for obj in landing.list(pipeline.landing.prefix)
              if is_ingestible_key(obj.key, pipeline.landing.quarantine_prefix)
              and (not allowed or extension_of(obj.key) in allowed)]
    listed.sort(key=lambda o: (o.last_modified is None, o.last_modified, o.key))
    versions, loaded = _known(engine, pipeline.name, landing.location)
    estimate = LandingEstimate(pipeline.name, listed=len(listed))
    candidates = []
    for obj in listed:
        candidate, why = _candidate(obj, versions, loaded)
        if why is not None and why != "translating: its job is waited on":
            estimate.free[why] += 1
            continue  # nothing will be done for it: not a candidate at all
        if why is not None:
            estimate.free[why] += 1
        else:
            estimate.paid[candidate.extension] += 1
        candidates.append(candidate)
    with engine.connect() as connection:
        estimate.decision = decide_budget(read_snapshot(connection, pipeline), candidates)
    return estimate
