"""The budget guard: how many translation jobs a pipeline (and all pipelines together) may start per UTC day
and month, each weighted by its input format (`budget:` in the pipelines file, config.BudgetConfig).

    snapshot = read_snapshot(connection, pipeline)                  # what this day and month have spent
    decision = decide_budget(snapshot, [Candidate("m1", "ifc"), Candidate("m2", "rvt", free=True)])
    decision.admitted, decision.waiting, decision.use                # the ONE decision, a pure function

A period's spend is read from the `translations` table: every job a run of the pipeline submitted since the
period began, weighted by its model's extension, except the jobs APS only reused (`translations.reused`:
`Submission.REUSED`, or a 201 for derivatives that exist), which cost nothing. A candidate costs nothing when
no new job will be started for it: its model is translating already (the job is recorded and only waited
on) or translated (a reprocess's reload: the submit reuses the successful job), unless the run forces.
The planning step (`plan_within_budget`, from aps_pipeline.batch) and `aps-pipeline budget` both decide
through `decide_budget`.

Candidates are admitted in plan order while every limit they count against has room; the first that does
not fit, and every paid one after it, waits (first come, first served: a big file is never overtaken for
ever by small ones). A waiting file is `waiting_budget` with the reason, released (no run holds it): a later
run's discovery takes it over and its planning decides again, so it continues when the period rolls over or
the budget is raised. Its attempts are not counted up while it waits (registry.claim_files).

Overlapping runs plan against the same recorded spend, so together they may start what each planned: the
overshoot is bounded by one run's admitted jobs per live run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from aps_pipeline.checks import extension_of
from aps_pipeline.config import BudgetConfig, PipelineConfig
from aps_pipeline.dedupe import ModelPlan
from aps_results import registry
from aps_results.models import BudgetNotice, File, FileState, Model, ModelStatus, Translation

logger = logging.getLogger(__name__)

# A model in these states has its job already: the submit reuses it (a running job, or a successful one a
# reload fetches again: aps_client.derivative.job_is_reusable), so it costs nothing unless forced.
_JOB_REUSED = frozenset({ModelStatus.TRANSLATING.value, ModelStatus.SUCCESS.value})
GLOBAL_SCOPE = "*"  # the scope name of the file's top-level budget
THRESHOLDS = (80, 100)  # percent of a budget at which operators hear about it, once per period
PeriodKind = Literal["day", "month"]


@dataclass(frozen=True)
class Candidate:
    """One model a run would translate: `key` names it, `extension` weighs it; `free`: no new job starts."""

    key: str
    extension: str
    free: bool = False


@dataclass(frozen=True)
class ScopeSpend:
    """One budget (a pipeline's, or the global one) and what this day and month have spent of it."""

    scope: str
    budget: BudgetConfig
    spent_day: float
    spent_month: float


@dataclass(frozen=True)
class BudgetSnapshot:
    """Everything `decide_budget` looks at: the clock and each scope's budget and spend."""

    now: datetime
    scopes: tuple[ScopeSpend, ...]

    def period(self, kind: PeriodKind) -> str:
        return f"day:{self.now:%Y-%m-%d}" if kind == "day" else f"month:{self.now:%Y-%m}"


@dataclass(frozen=True)
class PeriodUse:
    """One limit's use: spent before, planned now (admitted costs), the limit, and whether anything waits."""

    scope: str
    kind: PeriodKind
    period: str
    limit: float
    spent: float
    planned: float
    blocked: bool

    @property
    def percent(self) -> float:
        used = self.spent + self.planned
        return 100.0 if self.limit <= 0 else round(100.0 * used / self.limit, 1)

    def line(self) -> str:
        who = "all pipelines" if self.scope == GLOBAL_SCOPE else self.scope
        planned = f" + {self.planned:g} planned" if self.planned else ""
        return (f"{who} {self.period}: {self.spent:g} spent{planned} of {self.limit:g} weighted jobs "
                f"({self.percent:g}%){', spent: files wait' if self.blocked else ''}")


@dataclass
class BudgetDecision:
    admitted: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # key -> reason
    use: list[PeriodUse] = field(default_factory=list)


def _limit(budget: BudgetConfig, kind: PeriodKind) -> float | None:
    return budget.jobs_per_day if kind == "day" else budget.jobs_per_month


def decide_budget(snapshot: BudgetSnapshot, candidates: Sequence[Candidate]) -> BudgetDecision:
    """Which candidates may start a job now and which wait (with the reason), and each limit's use."""
    limits = [(s, kind, limit) for s in snapshot.scopes for kind in ("day", "month")
              if (limit := _limit(s.budget, kind)) is not None]
    planned = {(s.scope, kind): 0.0 for s, kind, _ in limits}
    blocked: dict[tuple[str, str], bool] = {}
    decision = BudgetDecision()
    stopped_by: str | None = None
    for candidate in candidates:
        if candidate.free:
            decision.admitted.append(candidate.key)
            continue
        if stopped_by is None:
            for scope, kind, limit in limits:
                spent = scope.spent_day if kind == "day" else scope.spent_month
                cost = scope.budget.weight(candidate.extension)
                if spent + planned[(scope.scope, kind)] + cost > limit:
                    blocked[(scope.scope, kind)] = True
                    who = "the global budget" if scope.scope == GLOBAL_SCOPE else f"{scope.scope}'s budget"
                    stopped_by = (f"waiting for budget: {who} of {limit:g} weighted jobs per {kind} is spent "
                                  f"for {snapshot.period(kind)}; continues when the {kind} rolls over or the "
                                  "budget is raised")
                    break
        if stopped_by is not None:
            decision.waiting[candidate.key] = stopped_by
            continue
        for scope, kind, _ in limits:
            planned[(scope.scope, kind)] += scope.budget.weight(candidate.extension)
        decision.admitted.append(candidate.key)
    decision.use = [
        PeriodUse(scope.scope, kind, snapshot.period(kind), limit,
                  scope.spent_day if kind == "day" else scope.spent_month, planned[(scope.scope, kind)],
                  blocked.get((scope.scope, kind), False))
        for scope, kind, limit in limits
    ]
    return decision


def due_notices(use: Sequence[PeriodUse]) -> list[tuple[PeriodUse, int]]:
    """The (limit, threshold) pairs this use has reached: 80% of the limit, and 100% (or files waiting)."""
    due = []
    for entry in use:
        for threshold in THRESHOLDS:
            if entry.percent >= threshold or (threshold == 100 and entry.blocked):
                due.append((entry, threshold))
    return due


# --- reading the spend, and applying a decision -----------------------------------------------------------


def _period_starts(now: datetime) -> tuple[datetime, datetime]:
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(day=1)


def database_now(connection: Connection) -> datetime:
    """The database's clock: every run and the CLI agree on what day it is."""
    return connection.execute(select(func.now())).scalar_one().astimezone(UTC)


def read_snapshot(
    connection: Connection, pipeline: PipelineConfig, now: datetime | None = None
) -> BudgetSnapshot:
    """The pipeline's and the global budget with this day's and month's weighted spend (`now`: the clock)."""
    now = (now or database_now(connection)).astimezone(UTC)
    day_start, month_start = _period_starts(now)
    extension = func.lower(func.substring(Model.object_key, r"\.([^./]*)$"))
    rows = connection.execute(
        select(Translation.pipeline, extension, Translation.job_submitted_at >= day_start, func.count())
        .join(Model, Model.id == Translation.model_id)
        .where(Translation.reused.is_(False), Translation.job_submitted_at >= month_start,
               Translation.job_submitted_at <= now)
        .group_by(text("1, 2, 3"))  # by position: the bound day start makes each expression a new one
    ).all()

    def spend(budget: BudgetConfig, only: str | None) -> ScopeSpend:
        mine = [r for r in rows if only is None or r[0] == only]
        day = sum(budget.weight(r[1] or "") * r[3] for r in mine if r[2])
        month = sum(budget.weight(r[1] or "") * r[3] for r in mine)
        return ScopeSpend(only or GLOBAL_SCOPE, budget, day, month)

    scopes = [spend(pipeline.budget, pipeline.name), spend(pipeline.global_budget, None)]
    return BudgetSnapshot(now, tuple(s for s in scopes if s.budget.limited))


def claim_notices(engine: Engine, due: Sequence[tuple[PeriodUse, int]]) -> list[tuple[PeriodUse, int]]:
    """Record the due notices; returns those not recorded before (each is sent once per period)."""
    fresh = []
    with engine.begin() as connection:
        for use, threshold in due:
            inserted = connection.execute(
                pg_insert(BudgetNotice).values(scope=use.scope, period=use.period, threshold=threshold)
                .on_conflict_do_nothing().returning(BudgetNotice.threshold)
            ).scalar()
            if inserted is not None:
                fresh.append((use, threshold))
    return fresh


def model_extension(object_key: str | None, source_key: str) -> str:
    """The input format that weighs a model's job: its OSS object's extension (its source key's)."""
    return extension_of(object_key or source_key)


def plan_within_budget(
    engine: Engine, pipeline: PipelineConfig, run_id: str, models: Sequence[ModelPlan], *,
    force: bool = False, now: datetime | None = None,
) -> tuple[list[ModelPlan], BudgetDecision]:
    """The planned models the budget lets start now (in order); the others' files wait, released, in
    `waiting_budget` with the reason. `now` replaces the database's clock (tests)."""
    by_key = {str(m["model_id"]): m for m in models}
    candidates = [
        Candidate(key, model_extension(m["object_key"], m["source_key"]),
                  free=m["status"] in _JOB_REUSED and not force)
        for key, m in by_key.items()
    ]
    with engine.begin() as connection:
        snapshot = read_snapshot(connection, pipeline, now)
        decision = decide_budget(snapshot, candidates)
        for key, reason in decision.waiting.items():
            registry.set_file_state(connection, by_key[key]["file_ids"], FileState.WAITING_BUDGET, reason,
                                    run_id=None, pipeline=pipeline.name)
    if decision.waiting:
        waiting_files = sum(len(by_key[key]["file_ids"]) for key in decision.waiting)
        logger.warning("%d models (%d files) wait for budget: %s", len(decision.waiting), waiting_files,
                       next(iter(decision.waiting.values())))
    for use in decision.use:
        logger.info("budget: %s", use.line())
    return [by_key[key] for key in decision.admitted], decision


def period_use(engine: Engine, pipeline: PipelineConfig) -> tuple[list[PeriodUse], int]:
    """This period's use of each limited budget, and how many of the pipeline's files wait for budget (the
    run page and `aps-pipeline budget` show them)."""
    with engine.connect() as connection:
        use = decide_budget(read_snapshot(connection, pipeline), []).use
        waiting = connection.execute(select(func.count()).select_from(File).where(
            File.pipeline == pipeline.name, File.state == FileState.WAITING_BUDGET.value)).scalar_one()
    return use, waiting
