"""The one place the model-based test calls the pipeline's steps (aps_pipeline), as the DAG's tasks do.

Other work changes these steps' signatures (settlement taking the wait's verdicts, intake's per-file error
boundary): adapt the calls HERE, and only here. `SimulatedRun` plays one DAG run the way Airflow would:
the tasks in order, each tried `retries + 1` times: `intake` (prepare_run: discover, validate, quarantine
and plan through `aps_pipeline.steps`, a retry re-running them from the first), per batch `upload_submit`,
`wait` (wait_for_translations) and `load` (load_models: run whatever happened upstream, with the wait's
verdicts or None), and `summary` (run whatever happened upstream, as finish_run is); a task killed mid-way
retried.

Kills: `StepKilled` is a BaseException (as a SIGKILL is no exception a step could catch): once armed, the
step's Nth SQL statement or landing call raises it, and every one after it, so nothing more of that try
happens (work already running in another thread may finish, as a real worker's in-flight requests do).
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Engine, event, text

from aps_client import APSClient, APSConfig
from aps_client.derivative import (
    ManifestPoll,
    PollState,
    deadline_status,
    manifest_verdict,
    waited_status,
)
from aps_client.errors import APSError
from aps_devstack import EmulatorServer, LocalPostgres, S3Server
from aps_landing import Landing, LandingError
from aps_landing.local import LocalLanding
from aps_landing.s3 import S3Landing
from aps_pipeline import maintenance
from aps_pipeline.batch_steps import settle_batch, upload_and_submit
from aps_pipeline.config import BudgetConfig, PipelineConfig, RetentionConfig
from aps_pipeline.intake import PLAN_STEP, intake_steps
from aps_pipeline.quarantine import REASON_SUFFIX, quarantine_key
from aps_pipeline.steps import StepOutcomes, run_steps
from aps_pipeline.summary import summarize_run
from aps_results import derivatives
from aps_results.db import make_engine
from aps_results.migrate import upgrade

FORMATS = {"svf2": ["ifc", "obj"], "svf": ["ifc", "obj"]}  # what the emulator translates (no formats GET)
APS_BUCKET = "model-test-bucket"
MAP_LENGTH = 1024
WAIT_ROUNDS = 6  # manifest polls per URN before the wait's deadline
WAIT_ROUND_SECONDS = 30.0  # emulator (and verdict) clock per round: translations take TRANSLATION_SECONDS
TRANSLATION_SECONDS = 20.0
NOT_FOUND_GRACE = 60.0
CLIENT_TIMEOUT = 2.0
DAY_AND_AN_HOUR = 25 * 3600.0  # past OSS's 24-hour retention of transient objects (aps-api.md)
# The runs here take turns in one thread: a run waiting for another's claim could never see it released, so
# it does not wait (ModelClaimed: the step fails, as a task does after its wait, and is retried).
CLAIM_WAIT = 0.0
S3_KEY_BYTES = 1024  # seconds: a latency fault above it is a timeout


class StepKilled(BaseException):
    """The step's worker died here (injected)."""


@dataclass
class Services:
    """The session's real services, shared by every example (each example gets its own database,
    bucket or folder, and a reset emulator)."""

    postgres: LocalPostgres
    s3_server: S3Server
    emulator: EmulatorServer
    tmp: Path
    template_db: str = ""

    def fresh_database(self, name: str) -> str:
        """A new database at the head migration: a copy of a migrated template (migrating each is slow)."""
        import psycopg

        if not self.template_db:
            self.template_db = f"model_tpl_{uuid.uuid4().hex[:8]}"
            upgrade(self.postgres.create_database(self.template_db))
        with psycopg.connect(self.postgres.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template_db}"')
        return self.postgres.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.postgres.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class KillSwitch:
    """Counts a step's SQL statements and landing calls; raises StepKilled from the armed one on."""

    def __init__(self) -> None:
        self.after: int | None = None
        self.calls = 0
        self.fired = False

    def arm(self, after: int | None) -> None:
        self.after, self.calls, self.fired = after, 0, False

    def tick(self) -> None:
        if self.after is None:
            return
        self.calls += 1
        if self.calls > self.after:
            self.fired = True
            raise StepKilled(f"killed at call {self.calls}")


class KillableLanding:
    """A landing whose every call first asks the kill switch (the steps see a plain Landing)."""

    def __init__(self, landing: Landing, switch: KillSwitch) -> None:
        self._landing = landing
        self._switch = switch

    @property
    def location(self) -> str:
        return self._landing.location

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._landing, name)
        if not callable(target) or name == "url":
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self._switch.tick()
            return target(*args, **kwargs)

        return call


@dataclass
class ApsFaults:
    """Faults the driver applies itself (the emulator's own switches go through its control API)."""

    refuse_tokens: bool = False  # clients get a wrong secret: the token endpoint answers 401
    poll_status: int | None = None  # the wait's manifest GETs answer 400 or 403


class PipelineDriver:
    """One example's world: its database, landing, two pipelines and the emulator; and the steps' calls."""

    def __init__(self, services: Services, landing_kind: str = "s3") -> None:
        self.services = services
        self.emulator = services.emulator
        self.example = uuid.uuid4().hex[:10]
        self.db_name = f"model_{self.example}"
        self.engine: Engine = make_engine(services.fresh_database(self.db_name), pool_size=8, max_overflow=8)
        self.switch = KillSwitch()
        event.listen(self.engine, "before_cursor_execute", lambda *a, **k: self.switch.tick())
        self.raw_landing = self._landing(landing_kind)
        self.landing = KillableLanding(self.raw_landing, self.switch)
        self.faults = ApsFaults()
        self.client_timeout = CLIENT_TIMEOUT
        self._clients: dict[bool, APSClient] = {}
        self.emulator.reset()
        self.emulator.configure(translation_seconds=TRANSLATION_SECONDS, retry_after_seconds=0)
        place = ({"bucket": self.raw_landing.location} if isinstance(self.raw_landing, S3Landing)
                 else {"path": self.raw_landing.location})
        common = {"aps": {"bucket_key": APS_BUCKET, "region": "US"}, "max_file_size": "1MB",
                  "read_concurrency": 4, "upload_concurrency": 3, "load_concurrency": 2}
        self.pipelines = {
            "a": PipelineConfig.model_validate({
                **common, "name": "model_a",
                "landing": {**place, "prefix": "incoming/", "quarantine_prefix": "quarantine/"}}),
            # Other output formats: another translation of the same bytes.
            "b": PipelineConfig.model_validate({
                **common, "name": "model_b", "output_formats": [{"type": "svf", "views": ["3d"]}],
                "landing": {**place, "prefix": "other/", "quarantine_prefix": "quarantine-b/"}}),
        }
        with self.client() as aps:
            aps.oss.ensure_bucket(APS_BUCKET)

    def _landing(self, kind: str) -> Landing:
        if kind == "local":
            root = self.services.tmp / f"landing-{self.example}"
            root.mkdir()
            return LocalLanding(root)
        bucket = f"model-{self.example}"
        self.services.s3_server.make_bucket(bucket)
        return S3Landing(self.services.s3_server.client(), bucket)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self.engine.dispose()
        self.services.drop_database(self.db_name)

    # -- the world outside the pipeline -------------------------------------------------------------

    def put(self, key: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        self.raw_landing.put(key, body, metadata=metadata)

    def delete(self, key: str) -> None:
        if isinstance(self.raw_landing, S3Landing):
            self.services.s3_server.client().delete_object(Bucket=self.raw_landing.location, Key=key)
        else:
            os.remove(Path(self.raw_landing.location) / key)

    def quarantinable(self, pipeline_key: str, key: str) -> bool:
        """Whether a rejected file of this key gets quarantine keys S3 can hold (run ids stay below r999)."""
        target = quarantine_key(self.pipelines[pipeline_key], "r999", key) + REASON_SUFFIX
        return len(target.encode("utf-8", "surrogatepass")) <= S3_KEY_BYTES

    def delete_sidecar(self, key: str) -> None:
        sidecar = key + ".meta.json"
        with suppress(LandingError):  # none could be there: a key too long, a name no folder holds
            if self.etag_of(sidecar) is not None:
                self.delete(sidecar)

    def etag_of(self, key: str) -> str | None:
        from aps_landing import ObjectChanged

        try:
            return self.raw_landing.head(key).etag
        except ObjectChanged:
            return None

    def configure_emulator(self, **settings: Any) -> None:
        self.emulator.configure(**settings)

    def clear_faults(self) -> None:
        self.emulator.configure(fault_429_rate=0.0, fault_429_operations=[], fault_5xx_burst=0, latency_ms=0,
                                latency_operations=[])
        self.faults = ApsFaults()
        self.set_budget("a", None)  # a raised budget: what waits for it goes on

    def set_budget(self, pipeline_key: str, jobs_per_day: int | None) -> None:
        """Pipeline `pipeline_key`'s translation jobs per day (None: no limit), for the runs' later steps."""
        pipeline = self.pipelines[pipeline_key]
        self.pipelines[pipeline_key] = pipeline.model_copy(
            update={"budget": BudgetConfig(jobs_per_day=jobs_per_day)})

    def a_day_passes_at_aps(self) -> None:
        self.emulator.advance_clock(DAY_AND_AN_HOUR)

    # -- the maintenance DAG's deletion of APS derivatives, in its two moments -----------------------------

    def derivatives_to_delete(self, pipeline_key: str) -> list[derivatives.ModelAtAPS]:
        """delete_derivatives' snapshot and decision: the models no live version of the pipeline needs."""
        snapshot = derivatives.read_model_uses(self.engine, self.pipelines[pipeline_key].name)
        return derivatives.models_no_live_version_needs(snapshot)

    def delete_derivatives(self, pipeline_key: str, candidates: list[derivatives.ModelAtAPS]) -> list[int]:
        """Then its deletions at APS, model by model; the models deleted."""
        pipeline = self.pipelines[pipeline_key].model_copy(
            update={"retention": RetentionConfig(delete_derivatives=True)})
        with self.client() as aps:
            return maintenance.delete_unneeded_derivatives(aps, self.engine, pipeline,
                                                           candidates)["derivatives_deleted"]

    def delete_manifest(self, urn: str) -> None:
        with self.client() as aps, suppress(APSError):  # APSError: already gone
            aps.derivative.delete_manifest(urn)

    def emulator_stats(self) -> dict[str, Any]:
        return self.emulator.stats()

    @contextmanager
    def client(self) -> Iterator[APSClient]:
        """The APS client a task would build from its connection (one per credentials: building one costs
        ~0.1 s of TLS set-up, and a task's client is shared by its threads as this one is)."""
        refused = self.faults.refuse_tokens
        if refused not in self._clients:
            secret = "wrong-secret" if refused else self.emulator.client_secret
            config = APSConfig(client_id=self.emulator.client_id, client_secret=SecretStr(secret),
                               base_url=self.emulator.base_url, timeout=self.client_timeout, max_attempts=3,
                               backoff_initial=0.01, backoff_max=0.05, max_retry_seconds=5.0,
                               poll_initial_delay=0.01, poll_max_delay=0.05, poll_timeout=20.0)
            self._clients[refused] = APSClient(config)
        yield self._clients[refused]

    # -- the steps, as plugins/aps_ingest_tasks/tasks.py calls them -------------------------------------

    @contextmanager
    def killable(self, kill_after: int | None) -> Iterator[None]:
        self.switch.arm(kill_after)
        try:
            yield
        finally:
            self.switch.arm(None)

    def intake(self, pipeline: PipelineConfig, run_id: str, live: Callable[[str], bool], last_attempt: bool,
               claimed: set[int]) -> StepOutcomes:
        """prepare_run's steps (no schema check: the driver's database is current; the bucket is made once);
        the files discovery claimed go into `claimed` even when a later step fails."""

        def record(outcomes: StepOutcomes) -> None:
            discovered = next(o for o in outcomes.steps if o.name == "discover_files")
            if discovered.state == "success":
                claimed.update(discovered.result["file_ids"])

        steps = intake_steps(self.landing, self.engine, pipeline, run_id, check_schema=lambda: None,
                             ensure_bucket=lambda: None, max_map_length=MAP_LENGTH, run_is_active=live,
                             supported=FORMATS)
        return run_steps(steps, last_attempt=last_attempt, record=record)

    def upload_submit(self, pipeline: PipelineConfig, run_id: str, models: list[Any], retried: bool,
                      last_attempt: bool) -> list[Any]:
        """upload_and_submit (when it fails for good, `load` still settles the batch)."""
        with self.client() as aps:
            return upload_and_submit(aps, self.landing, self.engine, models, pipeline=pipeline, run_id=run_id,
                                     force=False, retried=retried, last_attempt=last_attempt,
                                     claim_wait=CLAIM_WAIT)

    def wait(self, urns: list[str]) -> dict[str, dict[str, Any]]:
        """What APSTranslationsSensor does, without Airflow: poll every URN's manifest, judged by
        `manifest_verdict`, until each finished or the deadline (WAIT_ROUNDS) passed. The emulator's clock
        moves WAIT_ROUND_SECONDS per round, so translations finish unless a fault keeps the wait from
        seeing it."""
        polls = {urn: ManifestPoll(urn, not_found_grace=NOT_FOUND_GRACE) for urn in urns}
        statuses: dict[str, dict[str, Any]] = {}
        now = 0.0
        with self.client() as aps:
            for _ in range(WAIT_ROUNDS):
                for urn in [u for u in urns if u not in statuses]:
                    outcome = self._poll(aps, urn)
                    verdict = manifest_verdict(polls[urn], outcome, now)
                    if verdict.state is not PollState.PENDING:
                        statuses[urn] = waited_status(verdict)
                if len(statuses) == len(urns):
                    break
                now += WAIT_ROUND_SECONDS
                self.emulator.advance_clock(WAIT_ROUND_SECONDS)  # synchronous: the next poll sees it
        return {**{urn: deadline_status(polls[urn]) for urn in urns if urn not in statuses}, **statuses}

    def _poll(self, aps: APSClient, urn: str) -> Any:
        if self.faults.poll_status is not None:
            # A 400 or 403 on a poll: a malformed URN gets APS's 400; a token without data:read its 403.
            urn = "not~a~urn" if self.faults.poll_status == 400 else urn
            if self.faults.poll_status == 403:
                with self._read_refused_client() as refused:
                    return self._get_manifest(refused, urn)
        return self._get_manifest(aps, urn)

    def _read_refused_client(self) -> APSClient:
        config = APSConfig(client_id=self.emulator.client_id,
                           client_secret=SecretStr(self.emulator.client_secret),
                           base_url=self.emulator.base_url, timeout=CLIENT_TIMEOUT, max_attempts=2,
                           backoff_initial=0.01, backoff_max=0.05, scopes=("bucket:read",))
        return APSClient(config)

    @staticmethod
    def _get_manifest(aps: APSClient, urn: str) -> Any:
        try:
            return aps.derivative.manifest(urn)
        except APSError as exc:
            return exc

    def settle(self, pipeline: PipelineConfig, run_id: str, models: list[Any],
               verdicts: dict[str, dict[str, Any]] | None, last_attempt: bool) -> list[dict[str, Any]]:
        """load_models: the wait's statuses by URN drive the settlement, as the DAG passes the sensor's
        result (None when the wait or the upload failed for good)."""
        with self.client() as aps:
            return settle_batch(aps, self.engine, models, pipeline=pipeline, run_id=run_id,
                                verdicts=verdicts, last_attempt=last_attempt)

    def let_claims_expire(self) -> None:
        """Age every claim past its lease, as the hour between scheduled runs does."""
        with self.engine.begin() as connection:
            connection.execute(text("UPDATE aps.models SET claimed_at = claimed_at - interval '1 day' "
                                    "WHERE claimed_at IS NOT NULL"))

    def summarize(self, pipeline: PipelineConfig, run_id: str) -> dict[str, Any]:
        return summarize_run(self.engine, pipeline.name, run_id)


# -- one DAG run -------------------------------------------------------------------------------------

HEAD_STEPS = ("intake",)


@dataclass
class StepOutcome:
    step: str
    tried: int
    error: BaseException | None = None
    killed: bool = False


@dataclass
class SimulatedRun:
    """One DAG run of a pipeline, one task try at a time (`advance`), as Airflow's scheduler would run it."""

    driver: PipelineDriver
    pipeline_key: str
    run_id: str
    is_live: Callable[[str], bool]
    quiet: bool = False  # started after the faults stopped
    steps: list[str] = field(default_factory=lambda: [*HEAD_STEPS])
    position: int = 0
    tries: int = 0  # of the current step
    failed_steps: list[str] = field(default_factory=list)
    batches: list[Any] = field(default_factory=list)
    submitted: dict[int, list[Any]] = field(default_factory=dict)
    verdicts: dict[int, dict[str, Any]] = field(default_factory=dict)
    claimed: set[int] = field(default_factory=set)
    summary: dict[str, Any] | None = None
    summary_error: BaseException | None = None
    kills: Counter[str] = field(default_factory=Counter)  # killed tries per step name
    # Models a killed upload or submit try had in flight: the step works on them concurrently, so one kill
    # can leave each of them done at APS and not yet recorded (its retry records them without sending again).
    killed_in_flight: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # why each failed try failed

    @property
    def pipeline(self) -> PipelineConfig:
        return self.driver.pipelines[self.pipeline_key]

    @property
    def finished(self) -> bool:
        return self.position >= len(self.steps)

    @property
    def current(self) -> str:
        return self.steps[self.position]

    def advance(self, kill_after: int | None = None) -> StepOutcome:
        """Run one try of the current step; on success or its last failed try, move to the next step."""
        step = self.current
        self.tries += 1
        last_attempt = self.tries > self.pipeline.retries
        outcome = StepOutcome(step, self.tries)
        try:
            with self.driver.killable(kill_after):
                self._run(step, last_attempt)
        except StepKilled as exc:
            outcome.error, outcome.killed = exc, True
            name, _, index = step.partition(":")
            self.kills[name] += 1
            self.killed_in_flight[name] += len(self._step_models(name, int(index or -1)))
        except Exception as exc:  # a task failure: Airflow retries it, or fails it on its last try
            outcome.error = exc
            self.errors.append(f"{step}: {type(exc).__name__}: {str(exc)[:200]}")
        if outcome.error is None or last_attempt:
            if outcome.error is not None:
                self._fail(step)
            self.position += 1
            self.tries = 0
        return outcome

    def _step_models(self, name: str, index: int) -> list[Any]:
        return list(self.batches[index]["models"]) if name == "upload_submit" else []

    def _fail(self, step: str) -> None:
        """A task failed for good: what its downstream tasks do by their trigger rules."""
        self.failed_steps.append(step)
        name, _, index = step.partition(":")
        if name in HEAD_STEPS:  # the batch group never expands; the summary still runs (all_done)
            self.steps = [*self.steps[: self.position + 1], "summary"]
        elif name == "upload_submit":  # the wait is upstream_failed; the load runs (all_done), no verdicts
            self.steps = [s for s in self.steps if s != f"wait:{index}"]
        # A wait that failed for good left no verdicts: the load (all_done) settles the batch without them.

    def _run(self, step: str, last_attempt: bool) -> None:
        d, p, run = self.driver, self.pipeline, self.run_id
        name, _, raw_index = step.partition(":")
        i = int(raw_index) if raw_index else -1
        if name == "intake":
            outcomes = d.intake(p, run, self.is_live, last_attempt, self.claimed)
            self.batches = list(outcomes.result(PLAN_STEP))
            # A non-blocking step that failed for good (quarantine): the batches go on, the run ends failed.
            self.failed_steps += [f"intake:{o.name}" for o in outcomes.failed]
            for b in range(len(self.batches)):
                self.steps += [f"upload_submit:{b}", f"wait:{b}", f"load:{b}"]
            self.steps.append("summary")
        elif name == "upload_submit":
            self.submitted[i] = d.upload_submit(p, run, self.batches[i]["models"], retried=self.tries > 1,
                                                last_attempt=last_attempt)
        elif name == "wait":
            self.verdicts[i] = d.wait([s["urn"] for s in self.submitted.get(i, [])])
        elif name == "load":
            d.settle(p, run, self.batches[i]["models"], self.verdicts.get(i), last_attempt)
        elif name == "summary":
            try:
                self.summary = d.summarize(p, run)
            except Exception as exc:  # files without a terminal state: the run fails, a later run finishes
                self.summary_error = exc
                raise
        else:
            raise AssertionError(step)
