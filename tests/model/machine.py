"""The pipeline as a Hypothesis state machine: files land, faults come and go, runs overlap and die, and
after every step the invariants of design.md §9 are checked against the results database and the emulator.

KNOWN_OPEN names findings being fixed elsewhere: while a name is in it, the rules that produce that case are
not generated (the rule and its check stay). Remove a name once its fix is merged; the test must then pass.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from aps_landing import LandingError
from aps_pipeline.boundary import is_storable_text
from aps_results.models import (
    TERMINAL_FILE_STATES,
    DocumentVersion,
    File,
    FileState,
    Model,
    ModelView,
    RunSummary,
    Translation,
    VersionState,
)
from aps_samples import generate_ifc, generate_obj
from tests.model.driver import S3_KEY_BYTES, PipelineDriver, Services, SimulatedRun
from tests.model.hostile import PYTHON_REFUSES, hostile_sidecars, odd_key_names

#: Cases this machine does not generate (see module doc). The other findings of issue 20 (hostile sidecars,
#: unquarantinable keys, early wait ends, overlapping runs, model identity, late sidecars) and the NUL key
#: this machine found are generated: their fixes are merged.
KNOWN_OPEN: set[str] = {
    # (8) event-only pipelines are refused when the pipelines file is read; the model drives listings only.
    "event_only_drops",
}

# MODEL_ENABLE_FINDINGS=name,name generates those cases anyway (to try a fix before editing the set above).
KNOWN_OPEN -= set(os.environ.get("MODEL_ENABLE_FINDINGS", "").split(","))

MAX_LIVE_RUNS = 3
QUIESCE_RUNS = 3  # K: runs per pipeline after faults stop, within which every claimed file must end
TERMINAL = {s.value for s in TERMINAL_FILE_STATES}
SUPPORTED_OPS = ["manifest", "upload_complete", "object_details", "job", "upload_urls", "metadata", "tree",
                 "properties", "token"]


def is_open(finding: str) -> bool:
    return finding in KNOWN_OPEN


def timed_rule(**strategies: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], Any]:
    """`rule`, after which time passes: a live run (drawn) moves on 0-3 steps. Files land and faults come
    while runs work, and runs move far more often than a rule of their own among twenty would let them."""

    def decorate(function: Callable[..., None]) -> Any:
        @functools.wraps(function)
        def with_time(self: PipelineMachine, time_passes: tuple[int, int], **kwargs: Any) -> None:
            function(self, **kwargs)
            self._let_time_pass(*time_passes)

        return rule(time_passes=st.tuples(st.integers(0, 7), st.integers(0, 3)), **strategies)(with_time)

    return decorate


@dataclass
class Landed:
    """What the model knows of one key it landed: whether its current version should load."""

    pipeline: str
    key: str
    content: bytes
    metadata_ok: bool | None  # None: hostile metadata or key, only "ends with a reason" is asserted
    kind: str
    content_ok: bool = True
    user_metadata: dict[str, str] | None = None  # sent again with every overwrite (S3 replaces it)

    @property
    def expected_valid(self) -> bool | None:
        if self.metadata_ok is None:
            return None if self.content_ok else False
        return self.metadata_ok and self.content_ok


@dataclass
class World:
    landed: dict[str, Landed] = field(default_factory=dict)
    terminal: dict[int, str] = field(default_factory=dict)  # file id -> terminal state seen
    holder: dict[int, str | None] = field(default_factory=dict)  # file id -> run id seen
    loaded_models: set[int] = field(default_factory=set)
    # keys whose sidecar landed after them: their metadata rejection may be re-opened, once (issue 20, 7)
    late_sidecar_keys: set[str] = field(default_factory=set)
    reopened_from: Counter[str] = field(default_factory=Counter)  # run id -> its rejected files re-opened
    disturbed: bool = False  # a fault or a kill happened: a valid file may end failed (with its reason)
    expired_objects: int = 0  # OSS objects a day at APS let expire: each may rightly be uploaded again
    # The maintenance DAG's delete_derivatives between its snapshot and its deletions (pipeline -> candidates)
    deletion_candidates: dict[str, list[Any]] = field(default_factory=dict)
    derivatives_deleted: int = 0  # models whose APS side maintenance deleted: each may be uploaded again
    deleted: dict[str, Landed] = field(default_factory=dict)  # valid keys deleted from the landing


class PipelineMachine(RuleBasedStateMachine):
    services: Services  # set by the test before it runs the machine
    landing_kind = "s3"
    examples = 0  # examples begun in this process (soak's examples per second)
    tally: Counter[str] = Counter()  # step outcomes over the process: what the examples exercised
    errors: dict[str, str] = {}  # one message per (step, error type) seen, for a reader of the soak

    def __init__(self) -> None:
        super().__init__()
        PipelineMachine.examples += 1
        self.driver = PipelineDriver(self.services, self.landing_kind)
        self.world = World()
        self.live: dict[str, SimulatedRun] = {}
        self.ended: dict[str, SimulatedRun] = {}
        self.run_numbers = itertools.count(1)
        self.seeds = itertools.count(1)

    # -- landing ----------------------------------------------------------------------------------------

    def _prefix(self, pipeline: str) -> str:
        return self.driver.pipelines[pipeline].landing.prefix

    def _content(self, kind: str) -> bytes:
        seed = next(self.seeds)
        return generate_obj(seed).data if kind == "obj" else generate_ifc(seed, name=f"m{seed}").data

    def _land(self, entry: Landed, metadata: bytes | dict[str, str] | None) -> bool:
        try:
            self.driver.delete_sidecar(entry.key)
            if isinstance(metadata, dict):
                entry.user_metadata = metadata
                self.driver.put(entry.key, entry.content, metadata=metadata)
            else:
                self.driver.put(entry.key, entry.content)
                if metadata is not None:
                    self.driver.put(entry.key + ".meta.json", metadata)
        except (OSError, LandingError):  # the landing refuses the name (a folder, or S3 for some bytes)
            return False
        self.world.landed[entry.key] = entry
        return True

    def _same_content_may_meet_in_two_runs(self) -> bool:
        return is_open("overlapping_runs_same_content") and bool(self.live)

    @timed_rule(pipeline=st.sampled_from(["a", "b"]), kind=st.sampled_from(["ifc", "obj"]),
          name=st.integers(0, 30), as_user_metadata=st.booleans())
    def land_valid(self, pipeline: str, kind: str, name: int, as_user_metadata: bool) -> None:
        key = f"{self._prefix(pipeline)}v/{kind}-{name}.{kind}"
        entry = Landed(pipeline, key, self._content(kind), True, "valid")
        self._land(entry, {"project": "p"} if as_user_metadata else b'{"project": "p", "tags": ["m"]}')

    @precondition(lambda self: any(e.expected_valid for e in self.world.landed.values()))
    @timed_rule(data=st.data(), to_other_pipeline=st.booleans())
    def land_copy(self, data: st.DataObject, to_other_pipeline: bool) -> None:
        """The same bytes under another key: in the same pipeline (dedupe), or in the other one, whose
        output formats differ (a different translation of the same content)."""
        if to_other_pipeline and is_open("model_identity_formats"):
            return
        if self._same_content_may_meet_in_two_runs():
            return
        valid = sorted(k for k, e in self.world.landed.items() if e.expected_valid)
        source = data.draw(st.sampled_from(valid))
        original = self.world.landed[source]
        pipeline = original.pipeline
        if to_other_pipeline:
            pipeline = "b" if pipeline == "a" else "a"
        key = f"{self._prefix(pipeline)}copies/{data.draw(st.integers(0, 20))}-{source.rsplit('/', 1)[-1]}"
        self._land(Landed(pipeline, key, original.content, True, "copy"), b'{"project": "p"}')

    @timed_rule(data=st.data(), pipeline=st.sampled_from(["a", "b"]))
    def land_hostile_sidecar(self, data: st.DataObject, pipeline: str) -> None:
        excluded = frozenset(PYTHON_REFUSES) if is_open("hostile_sidecar_json") else frozenset()
        kind, sidecar = data.draw(hostile_sidecars(excluded))
        key = f"{self._prefix(pipeline)}hostile/{kind}-{data.draw(st.integers(0, 5))}.ifc"
        self._land(Landed(pipeline, key, self._content("ifc"), None, f"sidecar:{kind}"), sidecar)

    @timed_rule(data=st.data(), pipeline=st.sampled_from(["a", "b"]), content_ok=st.booleans())
    def land_odd_key(self, data: st.DataObject, pipeline: str, content_ok: bool) -> None:
        """A file under an odd or long key; with bad content it is rejected, and its quarantine key (the
        prefix, the run, the key escaped) may be longer than S3 allows."""
        prefix = self._prefix(pipeline)
        room = 200 if self.landing_kind == "local" else S3_KEY_BYTES - len(prefix.encode())
        kind, name = data.draw(odd_key_names(room, allow_nul=not is_open("nul_in_key")))
        if is_open("unquarantinable_key") and not self.driver.quarantinable(pipeline, prefix + name):
            return
        body = self._content("ifc") if content_ok else b"not a model under an odd key"
        entry = Landed(pipeline, prefix + name, body, None, f"key:{kind}", content_ok=content_ok)
        sidecar_fits = len((entry.key + ".meta.json").encode()) <= S3_KEY_BYTES
        self._land(entry, b'{"project": "p"}' if sidecar_fits else {"project": "p"})

    @timed_rule(pipeline=st.sampled_from(["a", "b"]), name=st.integers(0, 5),
          bad=st.sampled_from(["magic", "empty", "extension", "too_big"]))
    def land_bad_content(self, pipeline: str, name: int, bad: str) -> None:
        body, extension = {"magic": (b"not an ifc at all\n", "ifc"), "empty": (b"", "ifc"),
                           "extension": (self._content("ifc"), "xyz"),
                           "too_big": (b"ISO-10303-21;\n" + b"x" * 1_100_000, "ifc")}[bad]
        key = f"{self._prefix(pipeline)}bad/{bad}-{name}.{extension}"
        self._land(Landed(pipeline, key, body, True, f"bad:{bad}", content_ok=False), b'{"project": "p"}')

    @timed_rule(pipeline=st.sampled_from(["a", "b"]), name=st.integers(0, 5))
    def land_without_metadata(self, pipeline: str, name: int) -> None:
        key = f"{self._prefix(pipeline)}bare/{name}.ifc"
        self._land(Landed(pipeline, key, self._content("ifc"), False, "bare"), None)

    @precondition(lambda self: any(e.kind == "bare" for e in self.world.landed.values()))
    @timed_rule(data=st.data())
    def sidecar_after_file(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(k for k, e in self.world.landed.items() if e.kind == "bare")))
        if is_open("sidecar_after_file") and self._version_claimed(key):
            return
        self.driver.put(key + ".meta.json", b'{"project": "late"}')
        self.world.late_sidecar_keys.add(key)
        entry = self.world.landed[key]
        entry.kind, entry.metadata_ok = "late_sidecar", True

    @precondition(lambda self: bool(self.world.landed))
    @timed_rule(data=st.data(), valid=st.booleans())
    def overwrite(self, data: st.DataObject, valid: bool) -> None:
        key = data.draw(st.sampled_from(sorted(self.world.landed)))
        entry = self.world.landed[key]
        body = self._content("obj" if key.endswith(".obj") else "ifc") if valid else b"garbage, not a model"
        self.driver.put(key, body, metadata=entry.user_metadata)
        entry.content, entry.content_ok = body, valid and not key.endswith(".xyz")

    @precondition(lambda self: bool(self.world.landed))
    @timed_rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.world.landed)))
        self.driver.delete(key)
        self.driver.delete_sidecar(key)
        entry = self.world.landed.pop(key)
        if entry.expected_valid:
            self.world.deleted[key] = entry

    @precondition(lambda self: bool(self.world.deleted))
    @timed_rule(data=st.data())
    def land_deleted_content_again(self, data: st.DataObject) -> None:
        """Content whose file was deleted lands again under another key: its model, no longer needed by a
        live version, is needed again (and maintenance may be about to delete its APS side)."""
        if self._same_content_may_meet_in_two_runs():
            return
        source = data.draw(st.sampled_from(sorted(self.world.deleted)))
        original = self.world.deleted[source]
        name = f"{data.draw(st.integers(0, 5))}-{source.rsplit('/', 1)[-1]}"
        key = f"{self._prefix(original.pipeline)}again/{name}"
        self._land(Landed(original.pipeline, key, original.content, True, "again"), b'{"project": "p"}')

    def _version_claimed(self, key: str) -> bool:
        etag = self.driver.etag_of(key)
        with Session(self.driver.engine) as session:
            return session.scalar(select(func.count()).select_from(File).where(
                File.s3_key == key, File.etag == etag)) > 0

    # -- faults -----------------------------------------------------------------------------------------

    @timed_rule(rate=st.sampled_from([0.2, 0.5, 1.0]), operations=st.lists(st.sampled_from(SUPPORTED_OPS),
                                                                         min_size=1, max_size=3))
    def fault_429(self, rate: float, operations: list[str]) -> None:
        self.world.disturbed = True
        self.driver.configure_emulator(fault_429_rate=rate, fault_429_operations=operations)

    @timed_rule(burst=st.integers(1, 12))
    def fault_5xx_burst(self, burst: int) -> None:
        self.world.disturbed = True
        self.driver.configure_emulator(fault_5xx_burst=burst)

    @timed_rule(operation=st.sampled_from(SUPPORTED_OPS))
    def fault_timeouts(self, operation: str) -> None:
        self.world.disturbed = True
        self.driver.configure_emulator(latency_ms=int(self.driver.client_timeout * 1000) + 300,
                                       latency_operations=[operation])

    @timed_rule(data=st.data())
    def fault_manifest_404(self, data: st.DataObject) -> None:
        with Session(self.driver.engine) as session:
            urns = sorted(u for u in session.scalars(select(Model.urn).where(Model.urn.is_not(None))))
        if urns:
            self.world.disturbed = True
            self.driver.delete_manifest(data.draw(st.sampled_from(urns)))

    @timed_rule(status=st.sampled_from([400, 403]))
    def fault_poll_refused(self, status: int) -> None:
        if is_open("early_wait_end_timeout"):
            return
        self.world.disturbed = True
        self.driver.faults.poll_status = status

    @timed_rule()
    def fault_token_refused(self) -> None:
        if is_open("early_wait_end_timeout"):
            return  # a wait that cannot poll ends early: the open finding (3)
        self.world.disturbed = True
        self.driver.faults.refuse_tokens = True

    @timed_rule()
    def a_day_passes_at_aps(self) -> None:
        """A day passes on APS's clock: every transient OSS object expires (finding 4), translations in
        progress end, tokens and signed URLs lapse. A later copy of loaded content must upload it again."""
        if is_open("expired_source_object"):
            return
        self.world.disturbed = True
        with Session(self.driver.engine) as session:
            self.world.expired_objects += session.scalar(
                select(func.count()).select_from(Model).where(Model.object_id.is_not(None))) or 0
        self.driver.a_day_passes_at_aps()

    # -- maintenance ------------------------------------------------------------------------------------

    @timed_rule(pipeline=st.sampled_from(["a", "b"]))
    def maintenance_decides_what_to_delete_at_aps(self, pipeline: str) -> None:
        """delete_derivatives reads its snapshot; runs and landings go on before it deletes."""
        candidates = self.driver.derivatives_to_delete(pipeline)
        self.world.deletion_candidates[pipeline] = candidates
        PipelineMachine.tally["maintenance candidates"] += len(candidates)

    @precondition(lambda self: bool(self.world.deletion_candidates))
    @timed_rule(data=st.data())
    def maintenance_deletes_at_aps(self, data: st.DataObject) -> None:
        pipeline = data.draw(st.sampled_from(sorted(self.world.deletion_candidates)))
        candidates = self.world.deletion_candidates.pop(pipeline)
        deleted = self.driver.delete_derivatives(pipeline, candidates)
        self.world.derivatives_deleted += len(deleted)
        PipelineMachine.tally["maintenance deleted"] += len(deleted)
        PipelineMachine.tally["maintenance kept (needed again)"] += len(candidates) - len(deleted)

    @timed_rule()
    def clear_faults(self) -> None:
        self.driver.clear_faults()

    @timed_rule(jobs_per_day=st.integers(0, 2))
    def spend_budget(self, jobs_per_day: int) -> None:
        """Pipeline a's budget is (nearly) spent: its files wait in `waiting_budget` until it is raised."""
        self.driver.set_budget("a", jobs_per_day)

    # -- runs -------------------------------------------------------------------------------------------

    def _is_live(self, run_id: str) -> bool:
        return run_id in self.live

    @precondition(lambda self: len(self.live) < MAX_LIVE_RUNS)
    @rule(pipeline=st.sampled_from(["a", "b"]))
    def start_run(self, pipeline: str) -> None:
        run_id = f"r{next(self.run_numbers)}"
        self.live[run_id] = SimulatedRun(self.driver, pipeline, run_id, self._is_live)

    def _pick_run(self, data: st.DataObject) -> SimulatedRun:
        return self.live[data.draw(st.sampled_from(sorted(self.live)))]

    def _advance(self, run: SimulatedRun, kill_after: int | None = None) -> None:
        outcome = run.advance(kill_after)
        step = outcome.step.partition(":")[0]
        error = outcome.error
        result = "ok" if error is None else "killed" if outcome.killed else type(error).__name__
        PipelineMachine.tally[f"{step} {result}"] += 1
        if outcome.error is not None and not outcome.killed:
            PipelineMachine.errors.setdefault(f"{step} {result}", str(outcome.error)[:300])
        self.world.disturbed |= outcome.killed

    def _let_time_pass(self, which: int, steps: int) -> None:
        if not self.live or not steps:
            return
        run = self.live[sorted(self.live)[which % len(self.live)]]
        for _ in range(steps):
            if run.finished:
                break
            self._advance(run)
        self._after_step(run)

    def _after_step(self, run: SimulatedRun) -> None:
        if run.finished:
            self.ended[run.run_id] = self.live.pop(run.run_id)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), steps=st.integers(1, 12))
    def step_run(self, data: st.DataObject, steps: int) -> None:
        run = self._pick_run(data)
        for _ in range(steps):
            if run.finished:
                break
            self._advance(run)
        self._after_step(run)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), after=st.integers(0, 60))
    def kill_step(self, data: st.DataObject, after: int) -> None:
        """The step's worker dies at its `after`th SQL statement or landing call; Airflow retries it."""
        run = self._pick_run(data)
        self._advance(run, kill_after=after)
        self._after_step(run)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def abandon_run(self, data: st.DataObject) -> None:
        """The run ends without finishing (marked failed, its worker lost): a later run takes its files."""
        run = self._pick_run(data)
        self.world.disturbed = True
        self.ended[run.run_id] = self.live.pop(run.run_id)

    # -- invariants -------------------------------------------------------------------------------------

    @invariant()
    def files_keep_their_promises(self) -> None:
        with Session(self.driver.engine) as session:
            rows = session.execute(select(File.id, File.s3_key, File.state, File.reason, File.run_id)).all()
        for file_id, key, state, reason, run_id in rows:
            where = f"file {file_id} {key!r} ({state}, run {run_id}, reason {reason!r})"
            if state in (FileState.REJECTED.value, FileState.FAILED.value):
                assert reason, f"{where}: ended without a reason"
            if state == FileState.WAITING_BUDGET.value:  # visible, released: a later run takes it over
                PipelineMachine.tally["seen waiting_budget"] += 1  # the soak prints what was exercised
                assert "waiting for budget" in (reason or ""), f"{where}: waits without its reason"
                assert run_id is None, f"{where}: waits for budget, yet a run holds it"
            if state in TERMINAL:
                assert run_id is not None, f"{where}: terminal but no run holds it: no summary counts it"
            seen = self.world.terminal.get(file_id)
            if seen == FileState.REJECTED.value and state != seen and key in self.world.late_sidecar_keys:
                # The one sanctioned way out of `rejected` besides a reprocess: a sidecar that landed after
                # its file re-opens the metadata rejection, once per sidecar.
                self.world.late_sidecar_keys.discard(key)
                del self.world.terminal[file_id]
                seen = None
                rejected_by = self.world.holder.get(file_id)
                # Re-opened into a later run: the rejecting run had ended, its summary counted it rejected.
                # Re-opened by the rejecting run itself (its intake retried after the sidecar landed, seed
                # 3963899122): it never left that run, whose summary counts where it ends.
                if rejected_by is not None and rejected_by != run_id:
                    self.world.reopened_from[rejected_by] += 1
            assert seen is None or seen == state, f"{where}: terminal {seen} changed without a reprocess"
            if state in TERMINAL:
                self.world.terminal[file_id] = state
            before = self.world.holder.get(file_id)
            if before is not None and run_id is not None and run_id != before:
                assert before not in self.live, f"{where}: taken from live run {before} by {run_id}"
            self.world.holder[file_id] = run_id

    @invariant()
    def loaded_models_stay_servable(self) -> None:
        """A model once loaded stays loaded and viewable (`success`, its views, its APS side), unless the
        maintenance deleted its APS side because no live version needed it: then none may need it now."""
        with Session(self.driver.engine) as session:
            loaded = set(session.scalars(select(Model.id).where(Model.loaded_at.is_not(None))))
            self.world.loaded_models |= loaded
            for model_id in sorted(self.world.loaded_models):
                model = session.get(Model, model_id)
                if model is not None and model.derivatives_deleted_at is not None:
                    live = session.scalars(select(File.s3_key).outerjoin(
                        DocumentVersion, DocumentVersion.file_id == File.id).where(
                        File.model_id == model_id, File.state == FileState.LOADED.value,
                        or_(DocumentVersion.state.is_(None),
                            DocumentVersion.state.not_in([VersionState.DELETED.value,
                                                          VersionState.PURGED.value])))).all()
                    assert not live, f"model {model_id}'s APS side was deleted, loaded files use it: {live}"
                    continue
                views = session.scalar(select(func.count()).select_from(ModelView)
                                       .where(ModelView.model_id == model_id))
                assert model is not None, f"model {model_id} was loaded, now it is gone"
                assert model.status == "success", f"model {model_id} was loaded, now {model.status}"
                assert views, f"model {model_id} was loaded, now it has no views"

    @invariant()
    def one_upload_and_one_job_per_model_and_attempt(self) -> None:
        responses = self.driver.emulator_stats()["responses"]
        completes = sum(n for op, n in responses.items() if op.startswith("upload_complete 2"))
        jobs = sum(n for op, n in responses.items() if op.startswith("job 2"))
        with Session(self.driver.engine) as session:
            models = session.scalar(select(func.count()).select_from(Model)
                                    .where(Model.object_id.is_not(None)))
            attempts = session.scalar(select(func.count()).select_from(Translation))
        runs = [*self.live.values(), *self.ended.values()]
        # A try killed after APS answered and before the registry recorded it leaves what it had in flight
        # unrecorded (the retry must then not send again): each model of a killed try may account for one.
        # upload_submit uploads, then submits: a killed try may be in either.
        killed_uploads = killed_submits = sum(r.killed_in_flight["upload_submit"] for r in runs)
        expired = self.world.expired_objects + self.world.derivatives_deleted
        assert completes <= models + killed_uploads + expired, (
            f"{completes} uploads completed for {models} models ({killed_uploads} in killed upload tries, "
            f"{expired} objects expired or deleted by maintenance)")
        assert jobs <= attempts + killed_submits, (
            f"{jobs} job POSTs for {attempts} attempts ({killed_submits} in killed submit tries)")

    @invariant()
    def summaries_count_their_files(self) -> None:
        with Session(self.driver.engine) as session:
            for summary in session.scalars(select(RunSummary).where(RunSummary.lost == 0)):
                counts = dict(session.execute(
                    select(File.state, func.count()).where(File.pipeline == summary.pipeline,
                                                           File.run_id == summary.run_id)
                    .group_by(File.state)).all())
                # A late sidecar's re-open moves a rejected file to a later run after this summary counted it.
                reopened = self.world.reopened_from[summary.run_id]
                found = (counts.get("loaded", 0), counts.get("rejected", 0) + reopened,
                         counts.get("failed", 0))
                assert found == (summary.loaded, summary.rejected, summary.failed), (
                    f"run {summary.run_id}'s summary counted (loaded, rejected, failed) "
                    f"{summary.loaded, summary.rejected, summary.failed}, its files now {counts}")

    @invariant()
    def loaded_files_got_their_formats(self) -> None:
        with Session(self.driver.engine) as session:
            for pipeline_key, config in self.driver.pipelines.items():
                wanted = {f["type"] for f in config.job_formats()}
                model_ids = set(session.scalars(select(File.model_id).where(
                    File.pipeline == config.name, File.state == "loaded", File.model_id.is_not(None))))
                for model_id in model_ids:
                    done = session.scalars(select(Translation.output_formats).where(
                        Translation.model_id == model_id, Translation.status == "success"))
                    formats = {f for listed in done for f in (listed or [])}
                    assert wanted <= formats, (
                        f"pipeline {pipeline_key}: files loaded from model {model_id}, made of {formats}")

    # -- the end: faults stop, K runs, every claimed file ended and every valid landed file loaded ---------

    def teardown(self) -> None:
        try:
            self._quiesce_and_check()
        finally:
            self.driver.close()

    def _quiesce_and_check(self) -> None:
        self.driver.clear_faults()
        for run in list(self.live.values()):
            while not run.finished:
                self._advance(run)
            self._after_step(run)
        # The runs after the faults come an hour apart (the schedule): a dead run's claim on a shared model
        # (its lease: aps_pipeline.claims) has run out by then.
        self.driver.let_claims_expire()
        for _ in range(QUIESCE_RUNS):
            for pipeline in ("a", "b"):
                run_id = f"r{next(self.run_numbers)}"
                run = SimulatedRun(self.driver, pipeline, run_id, self._is_live, quiet=True)
                self.live[run_id] = run
                while not run.finished:
                    self._advance(run)
                self._after_step(run)
            self.files_keep_their_promises()
        self.one_upload_and_one_job_per_model_and_attempt()
        self.loaded_models_stay_servable()
        self._every_file_ended_and_valid_ones_loaded()

    def _quiet_failures(self) -> str:
        """What failed in the runs after the faults stopped (the likely cause of a liveness failure)."""
        failed = [f"{r.run_id}({r.pipeline_key}): {r.failed_steps} {r.errors}" for r in self.ended.values()
                  if r.quiet and r.failed_steps]
        return "; ".join(failed)[:2000] or "none"

    def _every_file_ended_and_valid_ones_loaded(self) -> None:
        with Session(self.driver.engine) as session:
            rows = session.execute(
                select(File.s3_key, File.etag, File.state, File.reason, File.pipeline)).all()
        open_rows = [r for r in rows if r.state not in TERMINAL]
        assert not open_rows, (f"{QUIESCE_RUNS} runs after faults stopped, files still open: "
                               f"{open_rows[:5]}; failed steps of those runs: {self._quiet_failures()}")
        by_version = {(r.pipeline, r.s3_key, r.etag): r for r in rows}
        for key, entry in sorted(self.world.landed.items()):
            pipeline = self.driver.pipelines[entry.pipeline].name
            row = by_version.get((pipeline, key, self.driver.etag_of(key)))
            if not is_storable_text(key):  # no registry row can hold it: discovery leaves it out and logs it
                assert row is None, f"{key!r} holds what PostgreSQL cannot store, yet it was claimed"
                continue
            assert row is not None, (f"{key!r} ({entry.kind}) landed and was never claimed; failed steps "
                                     f"of the runs after faults stopped: {self._quiet_failures()}")
            if entry.expected_valid is True:
                allowed = {"loaded", "failed"} if self.world.disturbed else {"loaded"}
                assert row.state in allowed, (
                    f"{key!r} ({entry.kind}) is valid, ended {row.state}: {row.reason}")
            elif entry.expected_valid is False:
                assert row.state in ("rejected", "failed"), (
                    f"{key!r} ({entry.kind}) is invalid, ended {row.state}: {row.reason}")


def machine_for(services: Services, landing_kind: str = "s3") -> type[PipelineMachine]:
    """The machine class bound to the session's services (Hypothesis builds one instance per example)."""
    return type("PipelineMachineOn" + landing_kind.title(), (PipelineMachine,),
                {"services": services, "landing_kind": landing_kind})


def describe(run: SimulatedRun) -> dict[str, Any]:
    return {"run": run.run_id, "pipeline": run.pipeline_key, "failed_steps": run.failed_steps}
